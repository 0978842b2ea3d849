package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Default option values, modelled on Linux netfilter's defaults (see the
// package comment for the source files).
const (
	DefaultMaxEntries     = 262144
	DefaultTCPSynSent     = 120 * time.Second
	DefaultTCPSynRecv     = 60 * time.Second
	DefaultTCPEstablished = 5 * 24 * time.Hour
	DefaultTCPFinWait     = 120 * time.Second
	DefaultTCPCloseWait   = 60 * time.Second
	DefaultTCPLastAck     = 30 * time.Second
	DefaultTCPTimeWait    = 120 * time.Second
	DefaultTCPClose       = 10 * time.Second
	DefaultUDPUnreplied   = 30 * time.Second
	DefaultUDPAssured     = 120 * time.Second
	DefaultICMP           = 30 * time.Second
	DefaultPortMin        = 1024
	DefaultPortMax        = 65535
	DefaultGCBatch        = 512
	DefaultGCInterval     = 10 * time.Millisecond
)

// Options configures a Table. The zero value of every field except NATAddr
// means its default; New validates the result.
type Options struct {
	// NATAddr is the uplink's nat_address: the source of masqueraded
	// packets and the address whose ports are published. Required, IPv4.
	NATAddr netip.Addr

	// MaxEntries caps the number of tracked connections (default
	// DefaultMaxEntries); storage for all of them is allocated by New.
	MaxEntries int

	// TCP timeouts per state (SYN_SENT2, the simultaneous-open state,
	// uses TCPSynSent, as in the kernel).
	TCPSynSent, TCPSynRecv, TCPEstablished, TCPFinWait time.Duration
	TCPCloseWait, TCPLastAck, TCPTimeWait, TCPClose    time.Duration
	// UDPUnreplied applies until a reply is seen, UDPAssured after.
	UDPUnreplied, UDPAssured time.Duration
	// ICMP applies to ICMP echo flows.
	ICMP time.Duration

	// PortMin and PortMax bound the ports (and ICMP identifiers)
	// masquerade picks when a flow's own source port is taken on the
	// nat_address; defaults 1024 and 65535. Both zero means the defaults.
	PortMin, PortMax uint16

	// GCBatch bounds how many entries one collection step examines
	// (default 512); GCInterval is how often Process runs one (default
	// 10 ms of the caller's clock).
	GCBatch    int
	GCInterval time.Duration
}

// withDefaults returns o with zero fields set to their defaults, or an
// error naming the first invalid field.
func (o Options) withDefaults() (Options, error) {
	if !o.NATAddr.Unmap().Is4() {
		return o, fmt.Errorf("nat: NATAddr %v is not an IPv4 address", o.NATAddr)
	}
	o.NATAddr = o.NATAddr.Unmap()
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxEntries < 0 || o.MaxEntries > 1<<26 {
		return o, fmt.Errorf("nat: MaxEntries %d out of range 1..%d", o.MaxEntries, 1<<26)
	}
	durs := []struct {
		p   *time.Duration
		def time.Duration
		n   string
	}{
		{&o.TCPSynSent, DefaultTCPSynSent, "TCPSynSent"},
		{&o.TCPSynRecv, DefaultTCPSynRecv, "TCPSynRecv"},
		{&o.TCPEstablished, DefaultTCPEstablished, "TCPEstablished"},
		{&o.TCPFinWait, DefaultTCPFinWait, "TCPFinWait"},
		{&o.TCPCloseWait, DefaultTCPCloseWait, "TCPCloseWait"},
		{&o.TCPLastAck, DefaultTCPLastAck, "TCPLastAck"},
		{&o.TCPTimeWait, DefaultTCPTimeWait, "TCPTimeWait"},
		{&o.TCPClose, DefaultTCPClose, "TCPClose"},
		{&o.UDPUnreplied, DefaultUDPUnreplied, "UDPUnreplied"},
		{&o.UDPAssured, DefaultUDPAssured, "UDPAssured"},
		{&o.ICMP, DefaultICMP, "ICMP"},
		{&o.GCInterval, DefaultGCInterval, "GCInterval"},
	}
	for _, d := range durs {
		if *d.p == 0 {
			*d.p = d.def
		}
		if *d.p < 0 {
			return o, fmt.Errorf("nat: %s %v is negative", d.n, *d.p)
		}
	}
	if o.PortMin == 0 && o.PortMax == 0 {
		o.PortMin, o.PortMax = DefaultPortMin, DefaultPortMax
	}
	if o.PortMin == 0 || o.PortMin > o.PortMax {
		return o, fmt.Errorf("nat: port range %d-%d is empty or starts at 0", o.PortMin, o.PortMax)
	}
	if o.GCBatch == 0 {
		o.GCBatch = DefaultGCBatch
	}
	if o.GCBatch < 0 {
		return o, errors.New("nat: GCBatch is negative")
	}
	return o, nil
}
