package dataplane

import (
	"encoding/binary"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/offload"
	"github.com/ferry-overlay/ferry/router"
)

// Offloads through the router and NAT (networks with a gateway):
//
//	port rx (TAP with IFF_VNET_HDR) ──► bridge ──► gateway: a partial
//	    checksum of a packet that is not a superpacket is completed here,
//	    so the router, echo replies and NAT see whole packets
//	router: a superpacket is routed whole, one TTL decrement; the egress
//	    MTU check (frag-needed) is on its segments: IP and L4 headers plus
//	    the GSO size, as the kernel's skb_gso_validate_network_len
//	    ──► neighbour ──► port-tx (written as it is) | tunnel-tx (cut there)
//	nat (outbound): the headers are rewritten once; with a partial
//	    checksum the TCP/UDP checksum field holds the pseudo-header sum,
//	    which is updated for the address change only, as the kernel does
//	    for CHECKSUM_PARTIAL (inet_proto_csum_replace4 with pseudohdr)
//	    ──► uplink-tx: the uplink TUN has a virtio-net header and the same
//	    offloads as the ports, so a superpacket is written whole, and the
//	    host's stack cuts it only if its way out needs that. An uplink
//	    without them (or without UDP segmentation, for a UDP superpacket)
//	    gets each cut at its MTU with full checksums (gso-segment) into the
//	    worker's segmentation scratch, written segment by segment.
//	uplink-rx: the host's stack hands ferry superpackets too. A partial
//	    checksum of a packet that is not a superpacket is completed before
//	    nat (inbound); a superpacket's is kept across it as above, its MTU
//	    check is on its segments, and it reaches its network whole.

// uplinkSegmentMTU is the size superpackets are cut at for an uplink that
// has no MTU set.
const uplinkSegmentMTU = 1500

// gsoSegLen returns the IP length of the largest segment superpacket p
// (whose IPv4 packet is pkt) is cut into: its IP and TCP/UDP headers and
// its GSO size. A packet too short to hold those headers gives its own
// length, so the caller's MTU check sees it as it is.
func gsoSegLen(p *Packet, pkt []byte) int {
	if len(pkt) < header.IPv4MinLen {
		return len(pkt)
	}
	ihl := header.IPv4(pkt).HeaderLength()
	l4 := header.UDPLen
	if header.IPv4(pkt).Protocol() == header.ProtoTCP {
		if len(pkt) < ihl+header.TCPMinLen {
			return len(pkt)
		}
		l4 = header.TCP(pkt[ihl:]).DataOffset()
	}
	return min(len(pkt), ihl+l4+int(p.vnet.GSOSize))
}

// routeTooBig is router.NeedsFrag for a packet p that may be a
// superpacket (pkt its IPv4 bytes): a superpacket is too big when its
// segments would be.
func routeTooBig(p *Packet, pkt []byte, mtu int) bool {
	if !p.isGSO() {
		return router.NeedsFrag(pkt, mtu)
	}
	return header.IPv4(pkt).DF() && gsoSegLen(p, pkt) > mtu
}

// partialSum keeps, across NAT, what the partial checksum of one packet
// depends on: the sum in its TCP/UDP checksum field (at, from the start of
// its IPv4 header) and its addresses before NAT.
type partialSum struct {
	on       bool
	at       int
	sum      uint16
	src, dst uint32
}

// save records the partial checksum of p, whose IPv4 header starts at ip
// (l3 bytes into p, where its virtio-net offsets count from), before NAT
// rewrites it. A packet without FlagNeedsCsum, or whose offsets do not
// point into ip's TCP/UDP header, is left alone (restore does nothing; a
// bad offset is dropped later, when the checksum is finished or cut).
func (s *partialSum) save(p *Packet, ip []byte, l3 int) {
	s.on = false
	if p.vnet.Flags&offload.FlagNeedsCsum == 0 || len(ip) < header.IPv4MinLen {
		return
	}
	at := int(p.vnet.CsumStart) + int(p.vnet.CsumOffset) - l3
	if at < header.IPv4MinLen || at+2 > len(ip) {
		return
	}
	s.on, s.at = true, at
	s.sum = binary.BigEndian.Uint16(ip[at:])
	s.src, s.dst = binary.BigEndian.Uint32(ip[12:16]), binary.BigEndian.Uint32(ip[16:20])
}

// restore writes into ip, the packet save saw after NAT rewrote it, its
// partial checksum for the new addresses: the saved sum minus the old
// addresses plus the new ones. NAT's own update of the field (which
// assumes a complete checksum and also counts the ports) is overwritten.
func (s *partialSum) restore(ip []byte) {
	if !s.on {
		return
	}
	src, dst := binary.BigEndian.Uint32(ip[12:16]), binary.BigEndian.Uint32(ip[16:20])
	// UpdateChecksum32 moves a complete checksum, the complement of a
	// sum; complementing in and out moves the sum itself.
	c := ^header.UpdateChecksum32(^s.sum, s.src, src)
	c = ^header.UpdateChecksum32(^c, s.dst, dst)
	binary.BigEndian.PutUint16(ip[s.at:], c)
}

// stripEthernet turns a frame into the bare IPv4 packet inside (for an
// uplink, or an l3 network's TUN): the Ethernet header goes, and a
// superpacket's virtio-net offsets, counted from the frame's start, move
// with it.
func stripEthernet(p *Packet) {
	p.Advance(header.EthernetLen)
	p.shiftOffsets(-header.EthernetLen)
}

// shiftOffsets moves the virtio-net offsets of superpacket p, which count
// from the start of its bytes, by d: a header of d bytes was prepended
// (d > 0) or stripped (d < 0). Other packets carry no offsets that matter:
// their partial checksums are completed where they enter.
func (p *Packet) shiftOffsets(d int) {
	if !p.isGSO() {
		return
	}
	p.vnet.CsumStart = uint16(int(p.vnet.CsumStart) + d)
	p.vnet.HdrLen = uint16(max(int(p.vnet.HdrLen)+d, 0))
}

// cutForUplink is gso-segment for superpacket p (a bare IPv4 packet) bound
// for uplink u: it is cut at u's MTU into the worker's segmentation
// scratch, and the segments are returned as packets over that scratch,
// valid until the scratch is used again (the next superpacket). On a bad
// superpacket it counts the drop and returns nil.
func (w *Worker) cutForUplink(u *uplink, p *Packet) []*Packet {
	o := &w.off
	mtu := u.mtu
	if mtu <= 0 {
		mtu = uplinkSegmentMTU
	}
	o.last = nil // the scratch no longer holds a tunnel superpacket
	slot := Headroom + mtu
	slots := min(len(o.buf)/slot, len(o.out))
	for i := range slots {
		o.out[i] = o.buf[i*slot+Headroom : (i+1)*slot]
	}
	n, st := offload.Segment(p.Bytes(), 0, p.vnet, mtu, o.out[:slots], o.sizes[:slots])
	clear(o.out[:slots])
	w.mark(StageGSOSegment, n)
	if st != offload.StatusOK {
		w.dropPkt(p, StageGSOSegment, reasonOf(st))
		return nil
	}
	if w.tracing && p.Trace {
		w.traceEvent(p, traceEvent{stage: StageGSOSegment, kind: evGSOSegment,
			vni: uint32(p.Len()), num: uint16(p.vnet.GSOType), n1: p.vnet.GSOSize, n2: uint16(n)})
	}
	segs := o.upSegs[:n]
	for i, q := range segs {
		q.reset()
		q.buf = o.buf[i*slot : (i+1)*slot]
		q.end = Headroom + o.sizes[i]
		q.Network, q.InPort, q.From = p.Network, p.InPort, p.From
	}
	return segs
}
