package dataplane

import (
	"github.com/ferry-overlay/ferry/encap"
	bridge "github.com/ferry-overlay/ferry/switch"
)

// Tunnel receive for GRE and flannel-UDP (see l3.go for the l3 pipeline):
//
//	GRE socket ──► gre-decap ──┬─ 0x6558 + key ──► ethernet-input ──► bridge (l2 gre network)
//	                           └─ 0x0800 ────────► ip-input ──► port-tx (l3 gre network's TUN)
//	flannel-UDP socket ──► udp-decap ──► ip-input ──► port-tx (l3 udp network's TUN)
//
// Every packet's sender must be a configured peer of the network it is for,
// or it is dropped as unknown-peer: flannel accepts anything that reaches
// its port; ferry does not.

// greReason maps a GRE decoder status to its drop reason.
var greReason = [...]Reason{
	encap.GREShort:            ReasonGREShort,
	encap.GREBadVersion:       ReasonGREBadVersion,
	encap.GRERouting:          ReasonGRERouting,
	encap.GREUnsupportedFlags: ReasonGREUnsupportedFlags,
	encap.GREUnknownProtocol:  ReasonGREUnknownProtocol,
	encap.GREBadChecksum:      ReasonGREBadChecksum,
}

// flannelReason maps a flannel-UDP decoder status to its drop reason.
var flannelReason = [...]Reason{
	encap.FlannelUDPShort:     ReasonFlannelUDPShort,
	encap.FlannelUDPNotIPv4:   ReasonFlannelUDPNotIPv4,
	encap.FlannelUDPBadLength: ReasonFlannelUDPBadLength,
}

// fromGRE is gre-decap: it validates each GRE header (the raw socket has
// already removed the outer IPv4 header), finds the network (l2 by key,
// l3 by the inner destination), checks the sender, strips the header and
// hands the packets on.
func (w *Worker) fromGRE(t *tables, pkts []*Packet) {
	valid := 0
	for _, p := range pkts {
		if p.truncated {
			w.dropPkt(p, StageGREDecap, ReasonRxTruncated)
			continue
		}
		proto, key, hasKey, hlen, st := encap.DecodeGRE(p.Bytes())
		if st != encap.GREOK {
			r := ReasonGREShort
			if int(st) < len(greReason) {
				r = greReason[st]
			}
			w.dropPkt(p, StageGREDecap, r)
			continue
		}
		var n *network
		if proto == encap.GREProtoTEB {
			if !hasKey {
				w.dropPkt(p, StageGREDecap, ReasonGRENoKey)
				continue
			}
			if n = t.greKey[key]; n == nil {
				w.dropPkt(p, StageGREDecap, ReasonUnknownGREKey)
				continue
			}
		} else if n = l3ByDst(t.l3GRE, ipv4Dst(p.Bytes()[hlen:])); n == nil {
			// DecodeGRE checked that an IPv4 header's worth follows.
			w.dropPkt(p, StageGREDecap, ReasonNotLocalSubnet)
			continue
		}
		if !w.acceptPeer(n, p) {
			w.dropPkt(p, StageGREDecap, ReasonUnknownPeer)
			continue
		}
		if w.tracing && p.Trace {
			var k uint16
			if hasKey {
				k = 1
			}
			w.traceEvent(p, traceEvent{stage: StageGREDecap, kind: evL3Decap, addr: p.Peer, num: n.id, vni: key, n1: k, n2: proto})
		}
		p.Advance(hlen)
		pkts[valid] = p
		valid++
	}
	w.countPeerRx(pkts[:valid])
	w.mark(StageGREDecap, len(pkts))
	w.decapped(t, pkts[:valid])
}

// fromFlannelUDP is udp-decap: the UDP payload must be exactly one IPv4
// packet, for the subnet of an l3 udp network of which the sender is a
// peer.
func (w *Worker) fromFlannelUDP(t *tables, pkts []*Packet) {
	valid := 0
	for _, p := range pkts {
		if p.truncated {
			w.dropPkt(p, StageUDPDecap, ReasonRxTruncated)
			continue
		}
		inner, st := encap.DecodeFlannelUDP(p.Bytes())
		if st != encap.FlannelUDPOK {
			r := ReasonFlannelUDPShort
			if int(st) < len(flannelReason) {
				r = flannelReason[st]
			}
			w.dropPkt(p, StageUDPDecap, r)
			continue
		}
		n := l3ByDst(t.l3UDP, ipv4Dst(inner))
		if n == nil {
			w.dropPkt(p, StageUDPDecap, ReasonNotLocalSubnet)
			continue
		}
		if !w.acceptPeer(n, p) {
			w.dropPkt(p, StageUDPDecap, ReasonUnknownPeer)
			continue
		}
		if w.tracing && p.Trace {
			w.traceEvent(p, traceEvent{stage: StageUDPDecap, kind: evL3Decap, addr: p.Peer, num: n.id})
		}
		pkts[valid] = p
		valid++
	}
	w.countPeerRx(pkts[:valid])
	w.mark(StageUDPDecap, len(pkts))
	w.decapped(t, pkts[:valid])
}

// acceptPeer reports whether p's sender is a peer of n, and if so sets p's
// network and source location.
func (w *Worker) acceptPeer(n *network, p *Packet) bool {
	pid, ok := n.peerIdx[p.Peer]
	if !ok {
		return false
	}
	p.Network, p.From = n.id, bridge.PeerLocation(pid)
	return true
}
