package config

import (
	"fmt"
	"net/netip"
	"time"
)

// Uplink is an L3 port (a TUN device in ferry's own namespace) that joins
// ferry's networks to the host's routing: masqueraded traffic leaves
// through it and published ports are reached through it.
type Uplink struct {
	// Name is the TUN device's name, unique among all ports, devices and
	// uplinks (interface name rules as Port.Name); networks refer to the
	// uplink by it (Network.Masquerade).
	Name string `yaml:"name"`
	// Address is the kernel side of the link, with its prefix length
	// (e.g. 100.64.0.1/30): the daemon gives it to the TUN device, so the
	// host routes Address's prefix into ferry. IPv4, /30 or wider.
	Address netip.Prefix `yaml:"address"`
	// NATAddress is ferry's own address on the link, inside Address's
	// prefix and not Address itself nor the prefix's network or broadcast
	// address: the source of masqueraded packets and the address whose
	// ports are published.
	NATAddress netip.Addr `yaml:"nat_address"`
}

// Publish forwards a TCP or UDP port of an uplink's NATAddress to a
// container (Docker's -p PORT:ADDR:PORT).
type Publish struct {
	// Proto is "tcp" or "udp".
	Proto string `yaml:"proto"`
	// Port is the published port on the uplink's NATAddress, 1..65535,
	// unique per proto among all networks of the same uplink.
	Port uint16 `yaml:"port"`
	// To is the container's address and port: the address inside the
	// network's Subnet (not its gateway, network or broadcast address),
	// the port 1..65535.
	To netip.AddrPort `yaml:"to"`
}

// Conntrack tunes connection tracking (package nat). Every zero field means
// the package's default, which follows Linux netfilter.
type Conntrack struct {
	// MaxEntries caps the tracked connections per uplink, 0 or
	// 16..67108864 (default 262144). Storage for all of them is
	// allocated at start, about 68 bytes a connection.
	MaxEntries int `yaml:"max_entries,omitempty"`
	// TCPSynSent .. TCPClose are the TCP timeouts per state; UDPUnreplied
	// applies to a UDP flow until a reply is seen, UDPAssured after; ICMP
	// to ICMP echo flows. Each is 0 (the default) or at least 1s.
	TCPSynSent     time.Duration `yaml:"tcp_syn_sent,omitempty"`
	TCPSynRecv     time.Duration `yaml:"tcp_syn_recv,omitempty"`
	TCPEstablished time.Duration `yaml:"tcp_established,omitempty"`
	TCPFinWait     time.Duration `yaml:"tcp_fin_wait,omitempty"`
	TCPCloseWait   time.Duration `yaml:"tcp_close_wait,omitempty"`
	TCPLastAck     time.Duration `yaml:"tcp_last_ack,omitempty"`
	TCPTimeWait    time.Duration `yaml:"tcp_time_wait,omitempty"`
	TCPClose       time.Duration `yaml:"tcp_close,omitempty"`
	UDPUnreplied   time.Duration `yaml:"udp_unreplied,omitempty"`
	UDPAssured     time.Duration `yaml:"udp_assured,omitempty"`
	ICMP           time.Duration `yaml:"icmp,omitempty"`
	// PortMin and PortMax bound the ports masquerade picks when a flow's
	// own source port is taken; both 0 (defaults 1024..65535) or
	// 1 <= PortMin <= PortMax.
	PortMin uint16 `yaml:"port_min,omitempty"`
	PortMax uint16 `yaml:"port_max,omitempty"`
}

const (
	minConntrackEntries = 16
	maxConntrackEntries = 1 << 26
	minConntrackTimeout = time.Second
)

// UplinkByName returns the uplink with the given name, or nil.
func (c *Config) UplinkByName(name string) *Uplink {
	for i := range c.Uplinks {
		if c.Uplinks[i].Name == name {
			return &c.Uplinks[i]
		}
	}
	return nil
}

// validateUplinks checks the uplinks, the conntrack section and every
// network's masquerade and publish keys. links holds the host link names
// the networks use, so that an uplink's device name is unique too.
func (c *Config) validateUplinks(links map[string]string) *Error {
	names := make(map[string]string)
	for i := range c.Uplinks {
		u := &c.Uplinks[i]
		p := fmt.Sprintf("uplinks[%d]", i)
		if !validIfname(u.Name) {
			return errorf(p+".name", "%q is not an interface name: want 1..%d bytes, not . or .., without / : %% or whitespace", u.Name, maxIfname)
		}
		if other, dup := links[u.Name]; dup {
			return errorf(p+".name", "%q is already the name of %s", u.Name, other)
		}
		links[u.Name] = p + ".name"
		names[u.Name] = p
		a := u.Address
		switch {
		case !a.IsValid():
			return errorf(p+".address", "required: the kernel side of the link with its prefix length, e.g. 100.64.0.1/30")
		case !a.Addr().Is4():
			return errorf(p+".address", "%s is not IPv4", a)
		case a.Bits() > 30:
			return errorf(p+".address", "%s leaves no room for nat_address (at most /30)", a)
		case a.Addr() == a.Masked().Addr() || a.Addr() == lastAddr(a.Masked()):
			return errorf(p+".address", "%s is the network or broadcast address of %s", a.Addr(), a.Masked())
		}
		na := u.NATAddress
		switch {
		case !na.IsValid():
			return errorf(p+".nat_address", "required: ferry's own address inside %s", a.Masked())
		case !a.Masked().Contains(na):
			return errorf(p+".nat_address", "%s is outside %s (the prefix of address)", na, a.Masked())
		case na == a.Addr():
			return errorf(p+".nat_address", "%s is the kernel side's address; ferry needs another one", na)
		case na == a.Masked().Addr() || na == lastAddr(a.Masked()):
			return errorf(p+".nat_address", "%s is the network or broadcast address of %s", na, a.Masked())
		}
		for j := range c.Networks {
			if s := c.Networks[j].space(); s.IsValid() && s.Overlaps(a.Masked()) {
				return errorf(p+".address", "%s overlaps %s of network %q", a.Masked(), s, c.Networks[j].Name)
			}
		}
		for j := range i {
			if o := c.Uplinks[j].Address.Masked(); o.Overlaps(a.Masked()) {
				return errorf(p+".address", "%s overlaps %s of uplink %q", a.Masked(), o, c.Uplinks[j].Name)
			}
		}
	}
	if e := c.Conntrack.validate(); e != nil {
		return e
	}
	type pubKey struct {
		uplink, proto string
		port          uint16
	}
	pubs := make(map[pubKey]string)
	for i := range c.Networks {
		n := &c.Networks[i]
		p := fmt.Sprintf("networks[%d]", i)
		if n.Masquerade == "" {
			if len(n.Publish) > 0 {
				return errorf(p+".publish", "needs %s.masquerade: published ports live on an uplink's nat_address", p)
			}
			continue
		}
		if _, ok := names[n.Masquerade]; !ok {
			return errorf(p+".masquerade", "%q is not the name of an uplink", n.Masquerade)
		}
		if n.Mode != ModeL2 {
			return errorf(p+".masquerade", "only l2 networks with a gateway are routed by ferry")
		}
		if !n.Gateway.IsValid() {
			return errorf(p+".masquerade", "needs %s.gateway: containers reach the uplink through it", p)
		}
		for j := range n.Publish {
			pb := &n.Publish[j]
			pp := fmt.Sprintf("%s.publish[%d]", p, j)
			if pb.Proto != "tcp" && pb.Proto != "udp" {
				return errorf(pp+".proto", "%q is not tcp or udp", pb.Proto)
			}
			if pb.Port == 0 {
				return errorf(pp+".port", "required: 1..65535")
			}
			to := pb.To
			switch {
			case !to.IsValid():
				return errorf(pp+".to", "required: the container's ADDRESS:PORT")
			case to.Port() == 0:
				return errorf(pp+".to", "%s has no port", to)
			case !n.Subnet.Contains(to.Addr()):
				return errorf(pp+".to", "%s is outside subnet %s", to.Addr(), n.Subnet)
			case to.Addr() == n.Gateway || to.Addr() == n.Subnet.Addr() || to.Addr() == lastAddr(n.Subnet):
				return errorf(pp+".to", "%s is the gateway, network or broadcast address of %s", to.Addr(), n.Subnet)
			}
			k := pubKey{n.Masquerade, pb.Proto, pb.Port}
			if other, dup := pubs[k]; dup {
				return errorf(pp+".port", "%s %d of uplink %q is already published by %s", pb.Proto, pb.Port, n.Masquerade, other)
			}
			pubs[k] = pp
		}
	}
	return nil
}

func (ct *Conntrack) validate() *Error {
	if m := ct.MaxEntries; m != 0 && (m < minConntrackEntries || m > maxConntrackEntries) {
		return errorf("conntrack.max_entries", "%d is out of range %d..%d (or 0 for the default)", m, minConntrackEntries, maxConntrackEntries)
	}
	durs := []struct {
		d   time.Duration
		key string
	}{
		{ct.TCPSynSent, "tcp_syn_sent"}, {ct.TCPSynRecv, "tcp_syn_recv"},
		{ct.TCPEstablished, "tcp_established"}, {ct.TCPFinWait, "tcp_fin_wait"},
		{ct.TCPCloseWait, "tcp_close_wait"}, {ct.TCPLastAck, "tcp_last_ack"},
		{ct.TCPTimeWait, "tcp_time_wait"}, {ct.TCPClose, "tcp_close"},
		{ct.UDPUnreplied, "udp_unreplied"}, {ct.UDPAssured, "udp_assured"},
		{ct.ICMP, "icmp"},
	}
	for _, d := range durs {
		if d.d != 0 && d.d < minConntrackTimeout {
			return errorf("conntrack."+d.key, "%s is shorter than %s", d.d, minConntrackTimeout)
		}
	}
	if (ct.PortMin != 0 || ct.PortMax != 0) && (ct.PortMin == 0 || ct.PortMin > ct.PortMax) {
		return errorf("conntrack.port_min", "range %d..%d is empty or starts at 0", ct.PortMin, ct.PortMax)
	}
	return nil
}

// linkNames maps the host link names of the networks (ports and l3
// devices) to their paths, for the uniqueness check of uplink names.
func (c *Config) linkNames() map[string]string {
	links := make(map[string]string)
	for i := range c.Networks {
		n := &c.Networks[i]
		if n.Device != "" {
			links[n.Device] = fmt.Sprintf("networks[%d].device", i)
		}
		for j := range n.Ports {
			links[n.Ports[j].Name] = fmt.Sprintf("networks[%d].ports[%d]", i, j)
		}
	}
	return links
}
