package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/router"
	bridge "github.com/ferry-overlay/ferry/switch"
)

// The l3 (flannel-style, routed) pipeline. An l3 network has one port, its
// TUN device, which carries bare IPv4 packets; the kernel routes the whole
// network into it, and delivers what ferry writes into it.
//
//	port rx (TUN) ──► ip-input ──► route ──► udp-encap | gre-encap | l3-vxlan-encap ──► tunnel-tx
//	tunnel rx ──► udp-decap | gre-decap | vxlan-decap ──► [l3-vxlan-decap] ──► ip-input ──► port-tx (TUN)
//
// route finds the peer whose subnet holds the destination by longest-prefix
// match over the peers' subnets: one map per distinct prefix length, keyed
// by the masked destination, scanned longest first (a node has few distinct
// lengths, usually one). A packet to this host's own subnet coming out of
// the TUN is a routing loop and is dropped; so is one for outside the
// network. A packet from a peer must be for this host's subnet: ferry does
// not relay between peers (the overlay is a full mesh).
//
// flannel-UDP decrements the inner TTL on both sides, as flannel's udp
// backend does (it is a userspace router hop), so ferry's packets are byte
// for byte flannel's; GRE and VXLAN leave it to the kernel's forwarding.
// A packet for an overlay address no peer owns is a counted no-route drop
// answered with an ICMP net unreachable (netUnreachable).

// TunnelKind is a tunnel encapsulation, and the kind of socket it needs.
type TunnelKind uint8

// The tunnel kinds. Each worker has at most one TunnelIO of each.
const (
	// TunnelVXLAN is VXLAN over UDP (l2 and l3 networks).
	TunnelVXLAN TunnelKind = iota
	// TunnelFlannelUDP is flannel's udp backend format (l3 only): the
	// inner IPv4 packet is the whole UDP payload.
	TunnelFlannelUDP
	// TunnelGRE is GRE on a raw IP socket: transparent Ethernet bridging
	// keyed by VNI on l2 networks, bare IPv4 on l3 networks.
	TunnelGRE
	// NumTunnelKinds is the number of tunnel kinds.
	NumTunnelKinds
)

var tunnelKindNames = [NumTunnelKinds]string{
	TunnelVXLAN:      "vxlan",
	TunnelFlannelUDP: "udp",
	TunnelGRE:        "gre",
}

// String returns the kind's config name (encap: vxlan | udp | gre).
func (k TunnelKind) String() string {
	if k < NumTunnelKinds {
		return tunnelKindNames[k]
	}
	return "unknown"
}

// L3Spec is the routing part of an l3 network's NetworkSpec.
type L3Spec struct {
	// Network is the whole overlay prefix; Subnet is this host's share
	// of it. Both IPv4.
	Network, Subnet netip.Prefix
	// VTEPMAC is this host's VTEP MAC (vxlan only).
	VTEPMAC [6]byte
	// PeerSubnets[i] is the subnet owned by NetworkSpec.Peers[i]; the
	// subnets do not overlap each other or Subnet, and lie in Network.
	PeerSubnets []netip.Prefix
	// PeerMACs[i] is the VTEP MAC of NetworkSpec.Peers[i] (vxlan only;
	// may be nil otherwise).
	PeerMACs [][6]byte
}

// l3net is the routing state of an l3 network. It never changes after
// NewEngine (l3 peers come from the config only), so table clones share it.
type l3net struct {
	network, subnet prefix4
	vtep            [6]byte
	port            uint16 // global id of the TUN port
	routes          []routeTable
}

// prefix4 is an IPv4 prefix as a masked address and a mask, for a
// Contains that is one AND and one compare.
type prefix4 struct{ addr, mask uint32 }

func newPrefix4(p netip.Prefix) prefix4 {
	m := ^uint32(0) << (32 - p.Bits())
	if p.Bits() == 0 {
		m = 0
	}
	return prefix4{addr: binary.BigEndian.Uint32(p.Masked().Addr().AsSlice()), mask: m}
}

func (p prefix4) contains(a uint32) bool { return a&p.mask == p.addr }

// routeTable holds the peer subnets of one prefix length.
type routeTable struct {
	mask  uint32
	peers map[uint32]uint16 // masked address → global peer id
}

// lookup returns the peer owning dst by longest-prefix match.
func (l *l3net) lookup(dst uint32) (uint16, bool) {
	for i := range l.routes {
		r := &l.routes[i]
		if id, ok := r.peers[dst&r.mask]; ok {
			return id, true
		}
	}
	return 0, false
}

// setupL3 builds n's routing state from s; n's peers are already made.
func (t *tables) setupL3(n *network, s NetworkSpec) error {
	l := s.L3
	if len(s.Ports) != 1 {
		return fmt.Errorf("l3 network needs exactly one port (its TUN device), has %d", len(s.Ports))
	}
	if !l.Network.Addr().Is4() || !l.Subnet.Addr().Is4() || !l.Network.Contains(l.Subnet.Addr()) {
		return fmt.Errorf("subnet %s is not an IPv4 prefix inside network %s", l.Subnet, l.Network)
	}
	if len(l.PeerSubnets) != len(s.Peers) || (n.encap == TunnelVXLAN && len(l.PeerMACs) != len(s.Peers)) {
		return fmt.Errorf("%d peers but %d subnets and %d VTEP MACs", len(s.Peers), len(l.PeerSubnets), len(l.PeerMACs))
	}
	ln := &l3net{network: newPrefix4(l.Network), subnet: newPrefix4(l.Subnet), vtep: l.VTEPMAC, port: n.ports[0]}
	for i, id := range n.peers {
		sub := l.PeerSubnets[i]
		if !sub.Addr().Is4() || !l.Network.Contains(sub.Addr()) || sub.Bits() < l.Network.Bits() {
			return fmt.Errorf("peer %s: subnet %s is not inside network %s", s.Peers[i], sub, l.Network)
		}
		p := t.peers[id]
		p.subnet = sub.Masked()
		if i < len(l.PeerMACs) {
			p.mac = l.PeerMACs[i]
		}
		pf := newPrefix4(sub)
		j := slices.IndexFunc(ln.routes, func(r routeTable) bool { return r.mask == pf.mask })
		if j < 0 {
			ln.routes = append(ln.routes, routeTable{mask: pf.mask, peers: make(map[uint32]uint16)})
			j = len(ln.routes) - 1
		}
		if _, dup := ln.routes[j].peers[pf.addr]; dup {
			return fmt.Errorf("peer %s: subnet %s is another peer's", s.Peers[i], sub)
		}
		ln.routes[j].peers[pf.addr] = id
	}
	// Longest prefix first: a larger mask is a longer prefix.
	slices.SortFunc(ln.routes, func(a, b routeTable) int {
		switch {
		case a.mask > b.mask:
			return -1
		case a.mask < b.mask:
			return 1
		}
		return 0
	})
	n.l3 = ln
	return nil
}

// index rebuilds the receive-side lookups (by VNI, by GRE key, the l3
// networks of GRE and flannel-UDP) from t.nets.
func (t *tables) index() {
	t.byVNI = make(map[uint32]*network)
	t.greKey = make(map[uint32]*network)
	t.l3GRE, t.l3UDP = nil, nil
	for _, n := range t.nets {
		switch n.encap {
		case TunnelVXLAN:
			t.byVNI[n.vni] = n
		case TunnelGRE:
			if n.l3 != nil {
				t.l3GRE = append(t.l3GRE, n)
			} else {
				t.greKey[n.vni] = n
			}
		case TunnelFlannelUDP:
			if n.l3 != nil {
				t.l3UDP = append(t.l3UDP, n)
			}
		}
	}
}

// l3ByDst returns the network of nets whose own subnet holds dst, the
// destination of a packet from a peer; nil if none.
func l3ByDst(nets []*network, dst uint32) *network {
	for _, n := range nets {
		if n.l3.subnet.contains(dst) {
			return n
		}
	}
	return nil
}

// ipv4Dst returns the destination address of a packet that passed
// header.IPv4.IsValid or holds at least IPv4MinLen bytes.
func ipv4Dst(b []byte) uint32 { return binary.BigEndian.Uint32(b[16:20]) }

// checkIPv4 is ip-input's test of a packet's IPv4 header: it returns the
// drop reason, or ReasonNone and trims p to the header's total length
// (dropping link-layer padding).
func checkIPv4(p *Packet) Reason {
	b := p.Bytes()
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) {
		if len(b) > 0 && b[0]>>4 == header.IPv6Version {
			return ReasonNotIPv4
		}
		return ReasonBadIPv4
	}
	p.SetLen(int(ip.TotalLength()))
	return ReasonNone
}

// fromTUN runs packets read from the TUN port id of l3 network n through
// ip-input, route, encap and tunnel-tx.
func (w *Worker) fromTUN(t *tables, n *network, id uint16, pkts []*Packet) {
	l := n.l3
	w.rawDrops = true
	defer func() { w.rawDrops = false }()
	k := 0
	for _, p := range pkts {
		if r := checkIPv4(p); r != ReasonNone {
			w.dropPkt(p, StageIPInput, r)
			continue
		}
		p.InPort, p.Network, p.From = id, n.id, bridge.PortLocation(id)
		w.keep[k] = p
		k++
	}
	w.mark(StageIPInput, len(pkts))
	for _, p := range w.keep[:k] {
		dst := ipv4Dst(p.Bytes())
		switch {
		case !l.network.contains(dst):
			w.dropPkt(p, StageRoute, ReasonNotInNetwork)
			continue
		case l.subnet.contains(dst):
			w.dropPkt(p, StageRoute, ReasonLocalSubnet)
			continue
		}
		pid, ok := l.lookup(dst)
		if !ok {
			w.dropPkt(p, StageRoute, ReasonNoRoute)
			w.netUnreachable(l, id, p)
			continue
		}
		if w.tracing && p.Trace {
			w.traceEvent(p, traceEvent{stage: StageRoute, kind: evRouteL3, port: pid, addr: t.peers[pid].addr})
		}
		w.tunPkts = append(w.tunPkts, p)
		w.tunDst = append(w.tunDst, t.peers[pid].addr)
		w.tunPeer = append(w.tunPeer, pid)
	}
	w.mark(StageRoute, k)
	if len(w.portDirty) > 0 {
		w.flushPorts() // ICMP errors back into the TUN
	}
	w.l3Encapsulate(t, n)
	w.txTun, w.txStage = w.tunnels[n.encap], l3EncapStage[n.encap]
	w.flushTunnel()
}

// netUnreachable answers a packet whose destination lies in the overlay
// but in no peer's subnet with an ICMP net-unreachable (RFC 792) from this
// host's overlay address, written back into the TUN port id, so the sender
// learns at once instead of timing out. router.NetUnreachable applies RFC
// 1812's rules (never about an ICMP error, a fragment or a group address);
// when it declines, nothing is sent.
func (w *Worker) netUnreachable(l *l3net, id uint16, orig *Packet) {
	q := w.pool.Get()
	if q == nil {
		w.c.drop(StageRoute, ReasonPoolEmpty, 1)
		return
	}
	var src [4]byte
	binary.BigEndian.PutUint32(src[:], l.subnet.addr)
	m, st := router.NetUnreachable(q.RxBuffer(), orig.Bytes(), netip.AddrFrom4(src))
	if st != router.OK {
		w.pool.Put(q)
		return
	}
	q.SetLen(m)
	if w.tracing && orig.Trace {
		w.traceICMPError(orig, StageRoute, q.Bytes())
	}
	w.made = append(w.made, q)
	w.toPort(id, q)
}

var l3EncapStage = [NumTunnelKinds]Stage{
	TunnelVXLAN:      StageL3VXLANEncap,
	TunnelFlannelUDP: StageUDPEncap,
	TunnelGRE:        StageGREEncap,
}

// l3VXLANHeaderLen is what l3-vxlan-encap prepends: VXLAN and the inner
// Ethernet header.
const l3VXLANHeaderLen = encap.VXLANHeaderLen + header.EthernetLen

// l3Encapsulate gives each packet of w.tunPkts (all of l3 network n, each
// bound for one peer) its tunnel header; a refusal is left in encapDrop for
// tunnel-tx to count.
func (w *Worker) l3Encapsulate(t *tables, n *network) {
	if len(w.tunPkts) == 0 {
		return
	}
	for i, p := range w.tunPkts {
		if r := finishChecksum(p); r != ReasonNone { // partial checksum from the TUN (offload.go)
			p.encapDrop = r
			continue
		}
		if n.mtu > 0 && p.Len() > n.mtu && !p.isGSO() { // a superpacket is cut at tunnel-tx
			p.encapDrop = ReasonTooBig
			continue
		}
		switch n.encap {
		case TunnelFlannelUDP:
			if !encap.DecrementTTL(p.Bytes()) {
				p.encapDrop = ReasonTTLExpired
				continue
			}
			p.Hash = header.FlowHashIPv4(p.Bytes())
		case TunnelGRE:
			h := p.Prepend(encap.GREHeaderLen)
			if h == nil {
				p.encapDrop = ReasonNoHeadroom
				continue
			}
			encap.PutGRE(h, encap.GREProtoIPv4, 0, false)
		default:
			p.Hash = header.FlowHashIPv4(p.Bytes())
			h := p.Prepend(l3VXLANHeaderLen)
			if h == nil {
				p.encapDrop = ReasonNoHeadroom
				continue
			}
			encap.PutVXLAN(h, n.vni)
			header.Ethernet(h[encap.VXLANHeaderLen:]).Encode(t.peers[w.tunPeer[i]].mac, n.l3.vtep, header.EtherTypeIPv4)
			// A superpacket's offsets counted from its IP header; it now
			// starts with an Ethernet header.
			p.shiftOffsets(header.EthernetLen)
		}
		if w.tracing && p.Trace {
			w.traceL3Encap(t, n, p, w.tunPeer[i])
		}
	}
	w.mark(l3EncapStage[n.encap], len(w.tunPkts))
}

// traceL3Encap records the tunnel header l3Encapsulate gave the traced
// packet p of l3 network n, bound for peer pid (and, for flannel-UDP, the
// TTL it decremented).
func (w *Worker) traceL3Encap(t *tables, n *network, p *Packet, pid uint16) {
	switch n.encap {
	case TunnelFlannelUDP:
		ttl := ttlOf(p.Bytes())
		w.traceEvent(p, traceEvent{stage: StageUDPEncap, kind: evTTL, n1: ttl + 1, n2: ttl})
		w.traceEvent(p, traceEvent{stage: StageUDPEncap, kind: evL3Encap, n1: flannelPort(w.tunnels[TunnelFlannelUDP])})
	case TunnelGRE:
		w.traceGRE(p, encap.GREProtoIPv4, 0, false)
	default:
		w.traceEvent(p, traceEvent{stage: StageL3VXLANEncap, kind: evL3Encap, vni: n.vni, mac: t.peers[pid].mac})
	}
}

// l3FromTunnel delivers the packets of rest that belong to l3 network n
// (decapsulated, Network and From set) into its TUN port, and returns the
// others, compacted to the front of rest.
func (w *Worker) l3FromTunnel(n *network, rest []*Packet) []*Packet {
	l := n.l3
	other, k := 0, 0
	vxlan := n.encap == TunnelVXLAN
	for _, p := range rest {
		if p.Network != n.id {
			rest[other] = p
			other++
			continue
		}
		if vxlan {
			b := p.Bytes()
			if len(b) < header.EthernetLen {
				w.dropPkt(p, StageL3VXLANDecap, ReasonL3VXLANShort)
				continue
			}
			if [6]byte(b[0:6]) != l.vtep {
				w.dropPkt(p, StageL3VXLANDecap, ReasonVTEPMACMismatch)
				continue
			}
			if header.Ethernet(b).EtherType() != header.EtherTypeIPv4 {
				w.dropPkt(p, StageL3VXLANDecap, ReasonNotIPv4)
				continue
			}
			stripEthernet(p) // a superpacket's offsets move with it (a merged train)
			if w.tracing && p.Trace {
				w.traceEvent(p, traceEvent{stage: StageL3VXLANDecap, kind: evL3Decap, mac: l.vtep})
			}
		}
		w.keep[k] = p
		k++
	}
	if vxlan {
		w.mark(StageL3VXLANDecap, len(rest)-other)
	}
	w.rawDrops = true
	defer func() { w.rawDrops = false }()
	j := 0
	for _, p := range w.keep[:k] {
		if r := checkIPv4(p); r != ReasonNone {
			w.dropPkt(p, StageIPInput, r)
			continue
		}
		if !l.subnet.contains(ipv4Dst(p.Bytes())) {
			w.dropPkt(p, StageIPInput, ReasonNotLocalSubnet)
			continue
		}
		if n.encap == TunnelFlannelUDP {
			if !encap.DecrementTTL(p.Bytes()) {
				w.dropPkt(p, StageIPInput, ReasonTTLExpired)
				continue
			}
			if w.tracing && p.Trace {
				ttl := ttlOf(p.Bytes())
				w.traceEvent(p, traceEvent{stage: StageIPInput, kind: evTTL, n1: ttl + 1, n2: ttl})
			}
		}
		w.toPort(l.port, p)
		j++
	}
	w.mark(StageIPInput, k)
	w.flushPorts()
	return rest[:other]
}
