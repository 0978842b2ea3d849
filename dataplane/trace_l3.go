package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/nat"
)

// Trace events of the routed stages: the l3 (flannel-style) route to a
// peer and its GRE / flannel-UDP / l3 VXLAN encapsulation and
// decapsulation, the gateway's routing decisions (route and next hop, TTL,
// ICMP errors it generates), NAT rewrites with their conntrack state, and
// uplink rx/tx. Every record call is made only for a traced packet, from a
// site guarded by w.tracing, so untraced traffic pays nothing more.

// tuple4 is a packet's IPv4 5-tuple as a NAT trace event keeps it; for
// ICMP echo both ports hold the identifier (nat.Tuple's convention).
type tuple4 struct {
	proto        header.IPProto
	src, dst     [4]byte
	sport, dport uint16
}

// tupleOf reads the 5-tuple of the bare IPv4 packet b into a tuple4 and
// reports whether b is an ICMP error (whose tuple is its outer addresses
// only). It decodes into the worker's scratch.
func (w *Worker) tupleOf(b []byte) (tuple4, bool) {
	p := &w.parsed
	p.DecodeIP(b)
	var tu tuple4
	if p.IPVersion != header.IPv4Version {
		return tu, false
	}
	tu.proto, tu.src, tu.dst = p.IPProto, p.SrcIP.As4(), p.DstIP.As4()
	switch {
	case p.HasPorts():
		tu.sport, tu.dport = p.SrcPort, p.DstPort
	case p.Status == header.DecodeOK && p.IPProto == header.ProtoICMPv4 && !p.Fragment:
		if p.ICMPType != header.ICMPv4EchoRequest && p.ICMPType != header.ICMPv4EchoReply {
			return tu, true
		}
		tu.sport, tu.dport = p.ICMPIdent, p.ICMPIdent
	}
	return tu, false
}

func (tu tuple4) natTuple() nat.Tuple {
	return nat.Tuple{
		Proto: tu.proto,
		Src:   netip.AddrPortFrom(netip.AddrFrom4(tu.src), tu.sport),
		Dst:   netip.AddrPortFrom(netip.AddrFrom4(tu.dst), tu.dport),
	}
}

// String formats the tuple as "tcp 10.42.0.2:40000 > 198.18.0.2:80" or
// "icmp 10.42.0.2 > 198.18.0.2 id 7".
func (tu tuple4) String() string {
	switch tu.proto {
	case header.ProtoTCP:
		return "tcp " + tu.ends()
	case header.ProtoUDP:
		return "udp " + tu.ends()
	case header.ProtoICMPv4:
		return "icmp " + tu.ends()
	}
	return fmt.Sprintf("proto %d %s", uint8(tu.proto), tu.ends())
}

// ends formats the tuple's endpoints without the protocol:
// "10.42.0.2:40000 > 198.18.0.2:80", "10.42.0.2 > 198.18.0.2 id 7".
func (tu tuple4) ends() string {
	s, d := netip.AddrFrom4(tu.src), netip.AddrFrom4(tu.dst)
	switch tu.proto {
	case header.ProtoTCP, header.ProtoUDP:
		return fmt.Sprintf("%s > %s", netip.AddrPortFrom(s, tu.sport), netip.AddrPortFrom(d, tu.dport))
	case header.ProtoICMPv4:
		return fmt.Sprintf("%s > %s id %d", s, d, tu.sport)
	}
	return fmt.Sprintf("%s > %s", s, d)
}

// Flags of an evNAT event (its n2; the TCP state sits in the high byte).
const (
	natEvNew      uint16 = 1 << iota // the connection has not seen a reply: conntrack NEW
	natEvReply                       // the packet matched the reply tuple: a reverse translation
	natEvICMPErr                     // an ICMP error about a tracked connection
	natEvUntraced                    // the connection was not found after translation
)

// traceNATPre remembers, for each traced packet of the NAT batch
// w.nt.pkts/bufs, its tuple before translation.
func (w *Worker) traceNATPre() {
	for i, p := range w.nt.pkts {
		if p.Trace {
			w.nt.pre[i], _ = w.tupleOf(w.nt.bufs[i])
		}
	}
}

// traceNAT records the rewrite of the traced, translated packets of the
// NAT batch, looking up the conntrack entry each belongs to.
func (w *Worker) traceNAT(u *uplink) {
	for i, p := range w.nt.pkts {
		if !p.Trace || w.nt.verd[i] != nat.Translated {
			continue
		}
		pre := w.nt.pre[i]
		post, icmpErr := w.tupleOf(w.nt.bufs[i])
		var flags uint16
		switch {
		case icmpErr:
			flags = natEvICMPErr
		default:
			c, reply, ok := u.nat.Lookup(w.t, pre.natTuple())
			switch {
			case !ok:
				flags = natEvUntraced
			case reply:
				flags = natEvReply
			case !c.SeenReply:
				flags = natEvNew
			}
			if ok && pre.proto == header.ProtoTCP {
				flags |= uint16(c.State) << 8
			}
		}
		w.traceEvent(p, traceEvent{stage: StageNAT, kind: evNAT, num: u.id, n1: uint16(w.nt.dirs[i]), n2: flags, tu: [2]tuple4{pre, post}})
	}
}

// traceICMPError records that the ICMP error msg (a bare IPv4 packet) was
// generated about the traced packet p at stage s.
func (w *Worker) traceICMPError(p *Packet, s Stage, msg []byte) {
	if len(msg) < header.IPv4MinLen {
		return
	}
	hl := int(msg[0]&0x0f) * 4
	if len(msg) < hl+2 {
		return
	}
	w.traceEvent(p, traceEvent{stage: s, kind: evICMPError, n1: uint16(msg[hl]), n2: uint16(msg[hl+1]), addr: netip.AddrFrom4([4]byte(msg[16:20]))})
}

// isL3Port reports whether port id carries bare IP packets (the TUN of an
// l3 network).
func (t *tables) isL3Port(id uint16) bool {
	return int(id) < len(t.ports) && t.ports[id].net.l3 != nil
}

func (t *tables) uplinkName(id uint16) string {
	if int(id) < len(t.uplinks) {
		return t.uplinks[id].name
	}
	return fmt.Sprintf("uplink#%d", id)
}

// describeTunnelRx says in words what a tunnel of kind k received from
// peer: head is the datagram (VXLAN), the GRE packet without its outer IP
// header, or the flannel-UDP payload.
func describeTunnelRx(k TunnelKind, peer netip.Addr, head []byte) string {
	switch k {
	case TunnelFlannelUDP:
		return fmt.Sprintf("flannel-UDP datagram from peer %s: %s", peer, DescribeIP(head))
	case TunnelGRE:
		proto, key, hasKey, hlen, st := encap.DecodeGRE(head)
		if st != encap.GREOK {
			return fmt.Sprintf("GRE packet from peer %s (%d bytes, undecodable)", peer, len(head))
		}
		keyWords := ""
		if hasKey {
			keyWords = fmt.Sprintf(" key %d", key)
		}
		if proto == encap.GREProtoTEB {
			return fmt.Sprintf("GRE packet from peer %s, Ethernet%s: %s", peer, keyWords, DescribeFrame(head[hlen:]))
		}
		return fmt.Sprintf("GRE packet from peer %s, IPv4%s: %s", peer, keyWords, DescribeIP(head[hlen:]))
	}
	inner := ""
	if len(head) >= encap.VXLANHeaderLen {
		inner = ": " + DescribeFrame(head[encap.VXLANHeaderLen:])
	}
	return fmt.Sprintf("datagram from peer %s%s", peer, inner)
}

// icmpErrorWords names the ICMP errors ferry generates.
func icmpErrorWords(typ, code uint16) string {
	switch {
	case typ == 3 && code == 0:
		return "ICMP net unreachable"
	case typ == 3 && code == 4:
		return "ICMP fragmentation needed"
	case typ == 11 && code == 0:
		return "ICMP time exceeded in transit"
	}
	return fmt.Sprintf("ICMP type %d code %d", typ, code)
}

// l3Words says in words what a routed event decided; would turns a verb
// into its dry-run form.
func (ev *traceEvent) l3Words(t *tables, would func(string) string) string {
	switch ev.kind {
	case evRouteL3:
		sub := netip.Prefix{}
		if int(ev.port) < len(t.peers) {
			sub = t.peers[ev.port].subnet
		}
		return fmt.Sprintf("route: destination in %s, next hop peer %s", sub, ev.addr)
	case evRouteNet:
		sub := netip.Prefix{}
		if int(ev.num) < len(t.nets) && t.nets[ev.num].gw != nil {
			sub = t.nets[ev.num].gw.subnet
		}
		return fmt.Sprintf("route: destination in %s, directly connected network %s; TTL %d → %d", sub, t.netName(ev.num), ev.n1, ev.n2)
	case evRouteUplink:
		return fmt.Sprintf("route: destination in no local network, default route out of uplink %s; TTL %d → %d", t.uplinkName(ev.num), ev.n1, ev.n2)
	case evGatewayARP:
		return fmt.Sprintf("ARP request for the gateway address %s: %s, %s is at %s", ev.addr, would("answered"), ev.addr, header.MAC(ev.mac))
	case evGatewayEcho:
		return fmt.Sprintf("echo request to gateway address %s: %s", ev.addr, would("answered"))
	case evNeighbour:
		return fmt.Sprintf("next hop %s is at %s", ev.addr, header.MAC(ev.mac))
	case evNeighbourMiss:
		return fmt.Sprintf("next hop %s is not in the neighbour table: the gateway would ask for it with ARP and drop this packet", ev.addr)
	case evNATPlan:
		return ev.natPlanWords(t)
	case evNAT:
		return ev.natWords(t)
	case evTTL:
		return fmt.Sprintf("TTL %d → %d (flannel-UDP hop)", ev.n1, ev.n2)
	case evICMPError:
		return fmt.Sprintf("%s %s to %s", icmpErrorWords(ev.n1, ev.n2), would("sent back"), ev.addr)
	case evL3Encap:
		switch ev.stage {
		case StageGREEncap:
			if ev.n1 != 0 {
				return fmt.Sprintf("GRE header, protocol 0x%04x, key %d", ev.n2, ev.vni)
			}
			return fmt.Sprintf("GRE header, protocol 0x%04x, no key", ev.n2)
		case StageUDPEncap:
			return fmt.Sprintf("flannel-UDP: the IPv4 packet is the whole payload of a datagram to UDP port %d", ev.n1)
		}
		return fmt.Sprintf("VXLAN header, VNI %d, inner Ethernet to VTEP MAC %s", ev.vni, header.MAC(ev.mac))
	case evL3Decap:
		switch ev.stage {
		case StageGREDecap:
			key := "no key"
			if ev.n1 != 0 {
				key = fmt.Sprintf("key %d", ev.vni)
			}
			return fmt.Sprintf("GRE protocol 0x%04x, %s, from peer %s: network %s", ev.n2, key, ev.addr, t.netName(ev.num))
		case StageUDPDecap:
			return fmt.Sprintf("flannel-UDP from peer %s: network %s", ev.addr, t.netName(ev.num))
		}
		return fmt.Sprintf("inner Ethernet to this host's VTEP MAC %s: IPv4 packet", header.MAC(ev.mac))
	case evUplinkRx:
		return "read from uplink " + t.uplinkName(ev.port)
	case evUplinkTx:
		if ev.n1 > 0 {
			return fmt.Sprintf("written to uplink %s as %d segments", t.uplinkName(ev.port), ev.n1)
		}
		return would("written to uplink " + t.uplinkName(ev.port))
	case evToGateway:
		return fmt.Sprintf("destination MAC is the gateway of network %s: to the router", t.netName(ev.num))
	}
	return "unknown event"
}

// natWords describes an evNAT event: which translation, from → to, and
// the conntrack state.
func (ev *traceEvent) natWords(t *tables) string {
	dir := nat.Dir(ev.n1)
	pre, post := ev.tu[0], ev.tu[1]
	flags := ev.n2 & 0xff
	state := ""
	switch {
	case flags&natEvICMPErr != 0:
	case flags&natEvUntraced != 0:
		state = ", conntrack entry gone"
	case flags&natEvNew != 0:
		state = ", conntrack NEW"
	default:
		state = ", conntrack ESTABLISHED"
	}
	if st := nat.TCPState(ev.n2 >> 8); st != nat.TCPNone && state != "" {
		state += fmt.Sprintf(" (%s)", st)
	}
	return fmt.Sprintf("%s on uplink %s, %s: %s → %s%s", natWhat(dir, flags, pre, post), t.uplinkName(ev.num), dir, pre, post.ends(), state)
}

// natPlanWords describes an evNATPlan event: the translation a new
// connection's first packet would get in a what-if trace, and the port
// the live path would pick now.
func (ev *traceEvent) natPlanWords(t *tables) string {
	dir := nat.Dir(ev.n1)
	pre, post := ev.tu[0], ev.tu[1]
	state := "NEW"
	if st := nat.TCPState(ev.n2 >> 8); st != nat.TCPNone {
		state += fmt.Sprintf(" (%s)", st)
	}
	port := ""
	if pre.src != post.src {
		what := "source port"
		if post.proto == header.ProtoICMPv4 {
			what = "echo identifier"
		}
		port = fmt.Sprintf("; %s %d is the one free now, taken only when a packet is really sent", what, post.sport)
	}
	return fmt.Sprintf("%s on uplink %s, %s: %s → %s, a new connection: would get a conntrack entry (%s)%s",
		natWhat(dir, 0, pre, post), t.uplinkName(ev.num), dir, pre, post.ends(), state, port)
}

// natWhat names the translation that turned pre into post, for a packet
// travelling dir with evNAT flags.
func natWhat(dir nat.Dir, flags uint16, pre, post tuple4) string {
	switch {
	case flags&natEvICMPErr != 0:
		return "ICMP error about a tracked connection, translated"
	case flags&natEvReply != 0 && dir == nat.Inbound:
		return "reply of a masqueraded connection, translated back"
	case flags&natEvReply != 0:
		return "reply of a published connection, translated back"
	case dir == nat.Inbound:
		return "publish (DNAT)"
	case pre.src != post.src && pre.dst != post.dst:
		return "masquerade and publish (SNAT+DNAT, hairpin)"
	case pre.dst != post.dst:
		return "publish (DNAT, hairpin)"
	default:
		return "masquerade (SNAT)"
	}
}

// ttlOf returns the TTL of a bare IPv4 packet of at least IPv4MinLen
// bytes.
func ttlOf(b []byte) uint16 { return uint16(b[8]) }

// flannelPort is the UDP port a flannel-UDP tunnel sends to: its own local
// port (every host listens on the same one).
func flannelPort(t TunnelIO) uint16 {
	local, _ := tunnelAddrs(t, TunnelFlannelUDP)
	return local.Port()
}

// traceGRE records the GRE header PutGRE wrote on a traced packet.
func (w *Worker) traceGRE(p *Packet, proto uint16, key uint32, hasKey bool) {
	var k uint16
	if hasKey {
		k = 1
	}
	w.traceEvent(p, traceEvent{stage: StageGREEncap, kind: evL3Encap, n1: k, n2: proto, vni: key})
}
