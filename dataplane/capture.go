package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/header"
)

// Packet capture. A capture session watches one point of the pipeline: a
// port's rx or tx, the tunnel's rx or tx (outer datagrams, optionally of one
// peer), or drops. When a packet passes the point and the filter, the worker
// copies at most snaplen bytes of it into a free slot of its own ring for
// the session — no lock, no allocation; when the ring is full (the reader
// is slow) the packet is not captured and counted in Dropped. The control
// plane drains the rings (Capture.Read).

// observer is what workers observe with: loaded once per batch from
// Engine.obs, immutable once published. A nil observer, the common case,
// costs the fast path that one atomic load.
type observer struct {
	trace    *traceSession // nil unless a session is selecting packets
	captures []*captureSession
	// at[point] reports whether some capture watches that point kind.
	at [numPoints]bool
}

// publishObserver rebuilds the observer from e.trace and e.captures; ctlMu
// held.
func (e *Engine) publishObserver() {
	o := &observer{captures: e.captures}
	if e.trace != nil && e.trace.remaining.Load() > 0 {
		o.trace = e.trace
	}
	for _, c := range e.captures {
		o.at[c.point] = true
	}
	if o.trace == nil && len(o.captures) == 0 {
		e.obs.Store(nil)
		return
	}
	e.obs.Store(o)
}

// pointKind is a kind of capture point.
type pointKind uint8

const (
	pointRx pointKind = iota
	pointTx
	pointTunnelRx
	pointTunnelTx
	pointDrop
	numPoints
)

// Capture limits.
const (
	// DefaultSnaplen is the snap length of a capture that names none.
	DefaultSnaplen = 65535
	// MaxSnaplen is the largest snap length.
	MaxSnaplen = 65535 + 128
	// captureBudget bounds the memory of one worker's capture ring.
	captureBudget = 4 << 20
	// MaxCaptures is how many captures may run at once.
	MaxCaptures = 8
)

// CaptureSpec is the request of `ferry pcap`.
type CaptureSpec struct {
	// Point is rx:PORT, tx:PORT, tunnel-rx[:PEER], tunnel-tx[:PEER] or
	// drop.
	Point string `json:"point"`
	// Filter is a filter expression on the (inner) frame; empty matches
	// all.
	Filter string `json:"filter,omitempty"`
	// Snaplen is the most bytes kept of each packet (outer headers
	// included at tunnel points); 0 means DefaultSnaplen.
	Snaplen int `json:"snaplen,omitempty"`
}

type capSlot struct {
	t       int64
	origLen int
	n       int
	data    []byte
	// src, dst are the outer UDP endpoints at tunnel points.
	src, dst netip.AddrPort
	stage    Stage
	reason   Reason
	port     uint16
	peer     netip.Addr // drop: the peer the packet was bound for
}

type capRing struct {
	slots []capSlot
	head  atomic.Uint64
	tail  atomic.Uint64
	// next is the worker's next slot to fill (head is published per
	// batch); only the worker touches it.
	next uint64
	// dirty reports unpublished slots; only the worker touches it.
	dirty bool
}

type captureSession struct {
	point   pointKind
	port    uint16
	peer    netip.Addr // tunnel points: only this peer, if valid
	filter  *Filter
	snaplen int
	rings   []*capRing
	dropped atomic.Uint64
	spec    CaptureSpec
}

// Capture is a running capture session, read by one goroutine.
type Capture struct {
	e *Engine
	s *captureSession
}

// CapturedPacket is one captured packet, owned by the caller.
type CapturedPacket struct {
	Time time.Time
	// Data is the packet as seen at the point, cut to the snap length.
	// At tunnel points it is a whole Ethernet/IP/UDP/VXLAN packet: the
	// socket only carries the VXLAN payload, so the outer Ethernet, IP
	// and UDP headers are synthesized with the real addresses and ports.
	Data []byte
	// Length is the packet's length before cutting.
	Length int
	// Comment says, for drops, the stage and reason.
	Comment string
}

// StartCapture starts a capture session. Stop it with Capture.Stop.
func (e *Engine) StartCapture(spec CaptureSpec) (*Capture, error) {
	s := &captureSession{snaplen: spec.Snaplen, spec: spec}
	if s.snaplen == 0 {
		s.snaplen = DefaultSnaplen
	}
	if s.snaplen < 0 || s.snaplen > MaxSnaplen {
		return nil, fmt.Errorf("snaplen %d: want 1 to %d: %w", spec.Snaplen, MaxSnaplen, ErrInvalid)
	}
	kind, arg, _ := strings.Cut(spec.Point, ":")
	switch kind {
	case "rx", "tx":
		s.point = pointRx
		if kind == "tx" {
			s.point = pointTx
		}
		id, ok := e.PortID(arg)
		if !ok {
			return nil, fmt.Errorf("capture point %q: no port %q: %w", spec.Point, arg, ErrNotFound)
		}
		s.port = id
	case "tunnel-rx", "tunnel-tx":
		s.point = pointTunnelRx
		if kind == "tunnel-tx" {
			s.point = pointTunnelTx
		}
		if arg != "" {
			a, err := netip.ParseAddr(arg)
			if err != nil {
				return nil, fmt.Errorf("capture point %q: %q is not a peer address: %w", spec.Point, arg, ErrInvalid)
			}
			s.peer = a.Unmap()
		}
	case "drop":
		if arg != "" {
			return nil, fmt.Errorf("capture point %q: drop takes no argument: %w", spec.Point, ErrInvalid)
		}
		s.point = pointDrop
	default:
		return nil, fmt.Errorf("capture point %q: want rx:PORT, tx:PORT, tunnel-rx[:PEER], tunnel-tx[:PEER] or drop: %w", spec.Point, ErrInvalid)
	}
	f, err := ParseFilter(spec.Filter)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	s.filter = f
	slotLen := s.snaplen
	nslots := min(max(captureBudget/slotLen, 16), 1024)
	for range e.counters {
		r := &capRing{slots: make([]capSlot, nslots)}
		buf := make([]byte, nslots*slotLen)
		for i := range r.slots {
			r.slots[i].data = buf[i*slotLen : (i+1)*slotLen : (i+1)*slotLen]
		}
		s.rings = append(s.rings, r)
	}
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	if len(e.captures) == MaxCaptures {
		return nil, fmt.Errorf("%d captures are running already: %w", MaxCaptures, ErrInvalid)
	}
	e.captures = append(e.captures[:len(e.captures):len(e.captures)], s)
	e.publishObserver()
	return &Capture{e: e, s: s}, nil
}

// Stop ends the capture; packets already captured can still be Read.
func (c *Capture) Stop() {
	e := c.e
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	var keep []*captureSession
	for _, s := range e.captures {
		if s != c.s {
			keep = append(keep, s)
		}
	}
	e.captures = keep
	e.publishObserver()
}

// Dropped returns how many packets passed the point and filter but were
// not captured because the reader was too slow.
func (c *Capture) Dropped() uint64 { return c.s.dropped.Load() }

// Spec returns the capture's request.
func (c *Capture) Spec() CaptureSpec { return c.s.spec }

// Read appends the packets captured since the last Read, up to max (<= 0:
// no limit), to dst, each worker's in order, and returns dst. It does not
// block.
func (c *Capture) Read(dst []CapturedPacket, max int) []CapturedPacket {
	for _, r := range c.s.rings {
		head := r.head.Load()
		tail := r.tail.Load()
		for ; tail < head && (max <= 0 || len(dst) < max); tail++ {
			sl := &r.slots[tail%uint64(len(r.slots))]
			dst = append(dst, c.s.packet(c.e, sl))
		}
		r.tail.Store(tail)
	}
	return dst
}

func (s *captureSession) packet(e *Engine, sl *capSlot) CapturedPacket {
	cp := CapturedPacket{Time: e.start.Add(time.Duration(sl.t)), Length: sl.origLen}
	data := sl.data[:sl.n]
	switch s.point {
	case pointTunnelRx, pointTunnelTx:
		outer := outerHeaders(sl.src, sl.dst, sl.origLen)
		cp.Data = append(outer, data...)
		cp.Length += len(outer)
		if len(cp.Data) > s.snaplen {
			cp.Data = cp.Data[:s.snaplen]
		}
	default:
		cp.Data = append([]byte(nil), data...)
	}
	if s.point == pointDrop {
		t := e.tables.Load()
		cp.Comment = fmt.Sprintf("dropped at %s: %s (%s)", sl.stage, sl.reason, sl.reason.Help())
		switch {
		case sl.peer.IsValid():
			cp.Comment += fmt.Sprintf("; bound for peer %s", sl.peer)
		case sl.stage == StagePortTx:
			cp.Comment += fmt.Sprintf("; bound for port %s", t.portName(sl.port))
		}
	}
	return cp
}

// --- worker side ---

// capture copies b into a slot of session s's ring for this worker.
func (w *Worker) capture(s *captureSession, b []byte, vni uint32, innerOff int) *capSlot {
	if s.filter.root != nil {
		var inner []byte
		if innerOff <= len(b) {
			inner = b[innerOff:]
		}
		w.parsed.Decode(inner)
		if !s.filter.Match(&w.parsed, vni) {
			return nil
		}
	}
	r := s.rings[w.id]
	if r.next-r.tail.Load() >= uint64(len(r.slots)) {
		s.dropped.Add(1)
		return nil
	}
	sl := &r.slots[r.next%uint64(len(r.slots))]
	r.next++
	r.dirty = true
	sl.t = w.eng.now()
	sl.origLen = len(b)
	sl.n = copy(sl.data, b)
	sl.peer = netip.Addr{}
	return sl
}

// publishCaptures makes the slots of the batch visible to readers.
func (w *Worker) publishCaptures(o *observer) {
	for _, s := range o.captures {
		r := s.rings[w.id]
		if r.dirty {
			r.head.Store(r.next)
			r.dirty = false
		}
	}
}

// capturePort captures pkts at port point kind k of port id.
func (w *Worker) capturePort(o *observer, k pointKind, id uint16, vni uint32, pkts []*Packet) {
	for _, s := range o.captures {
		if s.point != k || s.port != id {
			continue
		}
		for _, p := range pkts {
			w.capture(s, p.Bytes(), vni, 0)
		}
	}
}

// captureTunnelRx captures received datagrams (VXLAN payloads) with their
// outer addresses.
func (w *Worker) captureTunnelRx(o *observer, pkts []*Packet) {
	local, _ := tunnelAddrs(w.tunnel)
	for _, s := range o.captures {
		if s.point != pointTunnelRx {
			continue
		}
		for i, p := range pkts {
			if s.peer.IsValid() && s.peer != p.Peer {
				continue
			}
			b := p.Bytes()
			vni, _ := encap.DecodeVXLAN(b)
			if sl := w.capture(s, b, vni, encap.VXLANHeaderLen); sl != nil {
				sport := uint16(vxlanPort)
				if a, ok := w.tunnel.(TunnelAddrs); ok {
					sport = a.RxSourcePort(i)
				}
				sl.src = netip.AddrPortFrom(p.Peer, sport)
				sl.dst = local
			}
		}
	}
}

// captureTunnelTx captures the datagrams w.sort*[start:end] sent from
// source index src, except the refused ones (indices relative to start).
func (w *Worker) captureTunnelTx(o *observer, src, start, end int, refused []int) {
	local, srcPorts := tunnelAddrs(w.txTun)
	from := netip.AddrPortFrom(local.Addr(), 0)
	if src < len(srcPorts) {
		from = netip.AddrPortFrom(local.Addr(), srcPorts[src])
	}
	for _, s := range o.captures {
		if s.point != pointTunnelTx {
			continue
		}
		ri := 0
		for i := start; i < end; i++ {
			if ri < len(refused) && start+refused[ri] == i {
				ri++
				continue
			}
			if s.peer.IsValid() && s.peer != w.sortDst[i] {
				continue
			}
			b := w.sortPkts[i].Bytes()
			vni, _ := encap.DecodeVXLAN(b)
			if sl := w.capture(s, b, vni, encap.VXLANHeaderLen); sl != nil {
				sl.src = from
				sl.dst = netip.AddrPortFrom(w.sortDst[i], local.Port())
			}
		}
	}
}

// captureDrop captures p, dropped at stage st for reason r on its way to
// port id or peer (if valid).
func (w *Worker) captureDrop(o *observer, p *Packet, st Stage, r Reason, port uint16, peer netip.Addr) {
	for _, s := range o.captures {
		if s.point != pointDrop {
			continue
		}
		b := p.Bytes()
		off := 0
		var vni uint32
		if st == StageVXLANDecap || st == StageTunnelRx {
			off = encap.VXLANHeaderLen
			vni, _ = encap.DecodeVXLAN(b)
		} else if int(p.Network) < len(w.tbl.nets) {
			vni = w.tbl.nets[p.Network].vni
		}
		if st == StageTunnelTx {
			off = encap.VXLANHeaderLen
		}
		if sl := w.capture(s, b, vni, off); sl != nil {
			sl.stage, sl.reason, sl.port, sl.peer = st, r, port, peer
		}
	}
}

// TunnelAddrs is implemented by a TunnelIO that knows its addresses, so
// tunnel captures can show the real outer headers.
type TunnelAddrs interface {
	// LocalAddr is the local underlay address and the VXLAN port
	// (datagrams are received on it and sent to it on the peers).
	LocalAddr() netip.AddrPort
	// SourcePorts are the outer source ports, by source index. The
	// slice is the tunnel's; do not modify it.
	SourcePorts() []uint16
	// RxSourcePort is the UDP source port of the i-th datagram of the
	// last ReadBatch; valid until the next ReadBatch.
	RxSourcePort(i int) uint16
}

func tunnelAddrs(t TunnelIO) (netip.AddrPort, []uint16) {
	if a, ok := t.(TunnelAddrs); ok {
		return a.LocalAddr(), a.SourcePorts()
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), vxlanPort), nil
}

// vxlanPort is the IANA VXLAN port, assumed when the tunnel does not say.
const vxlanPort = 4789

// Placeholder MACs of the synthesized outer Ethernet header: the socket
// never sees the underlay's link layer.
var (
	outerSrcMAC = [6]byte{0x02, 0, 0, 0, 0xfe, 0x01}
	outerDstMAC = [6]byte{0x02, 0, 0, 0, 0xfe, 0x02}
)

// outerHeaders returns Ethernet, IPv4 or IPv6, and UDP headers for a UDP
// datagram of payloadLen bytes from src to dst, as the kernel would have
// sent it (TTL 64, DF clear, UDP checksum 0 — allowed for VXLAN over IPv4
// by RFC 7348 and for tunnels over IPv6 by RFC 6935).
func outerHeaders(src, dst netip.AddrPort, payloadLen int) []byte {
	v6 := src.Addr().Is6() || dst.Addr().Is6()
	ipLen := 20
	if v6 {
		ipLen = 40
	}
	b := make([]byte, 14+ipLen+8, 14+ipLen+8+payloadLen)
	copy(b[0:6], outerDstMAC[:])
	copy(b[6:12], outerSrcMAC[:])
	udpLen := 8 + payloadLen
	ip := b[14 : 14+ipLen]
	if v6 {
		binary.BigEndian.PutUint16(b[12:], header.EtherTypeIPv6)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(udpLen))
		ip[6] = 17
		ip[7] = 64
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	} else {
		binary.BigEndian.PutUint16(b[12:], header.EtherTypeIPv4)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+udpLen))
		ip[8] = 64
		ip[9] = 17
		s, d := src.Addr().Unmap().As4(), dst.Addr().Unmap().As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^header.FoldChecksum(header.Checksum(ip, 0)))
	}
	udp := b[14+ipLen:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen))
	return b
}
