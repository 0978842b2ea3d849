package offload

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/ferry-overlay/ferry/header"
)

// maxSuperpacket bounds a coalesced superpacket's IP packet (header
// included) to what an IPv4 total length field can state, 64 KiB - 1, which
// is also within the 64 KiB GSO limit of the kernel's TAP/TUN.
const maxSuperpacket = 65535

// EtherTypes checked on the link-layer header's last two bytes.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

// Coalescer merges consecutive in-order TCP segments of a flow, found in one
// batch of received packets, into superpackets with a virtio-net header, so
// one write to a TAP/TUN device opened with IFF_VNET_HDR delivers many
// segments (receive-side GRO, done in userspace).
//
// A segment is appended to the superpacket its flow has open in the batch
// when everything the kernel's GRO requires holds: same link-layer header,
// addresses and ports; IPv4 without options or fragmentation, with the same
// TOS, TTL and DF bit and the next IP ID; IPv6 with the same version,
// traffic class, flow label and hop limit and TCP as the next header; the
// next expected sequence number; the same ACK number, header length and
// reserved bits, window, urgent pointer and option bytes; the same flags
// apart from PSH; no SYN, FIN, RST, URG or (past the first) CWR; a payload
// no larger than the first segment's; no earlier segment shorter than the
// first or carrying PSH; valid TCP (and IPv4 header) checksums on both; and
// room, both within 64 KiB of IP packet and within the head packet's buffer
// capacity. Anything else passes through unchanged, in its place; a TCP
// packet of the flow that cannot be merged (a pure ACK, a FIN...) ends the
// flow's superpacket. A flow's segments are only ever appended to the
// flow's most recent packet, so the order of a flow's bytes never changes,
// and Segment cuts a superpacket back into exactly the segments it was
// made of.
//
// With SetUDP, UDP datagrams are coalesced too, into USO superpackets
// (GSOUDPL4) that the kernel cuts back into the same datagrams: same
// link-layer header, addresses and ports; IPv4 without options or
// fragmentation with the same TOS, TTL and DF bit (and, without DF, the
// next IP ID; with DF the ID carries nothing and the kernel numbers the
// datagrams it cuts from the first one's); IPv6 as for TCP with UDP as the
// next header; a UDP length that matches the packet; a payload of the
// first datagram's size, but the last, which may be shorter and ends the
// superpacket; a valid UDP checksum (or, over IPv4, none); at most
// maxUDPSegments datagrams. A datagram that cannot be merged ends its
// flow's superpacket, so datagrams of a flow keep their order.
//
// A Coalescer is owned by one worker: it is not safe for concurrent use.
// It keeps no reference to packets between calls.
type Coalescer struct {
	linkLen int
	udp     bool   // coalesce UDP datagrams too (SetUDP)
	flows   []flow // flows opened in this batch, at most maxBatch
	slots   []slot // open-addressing table: flow key -> latest flow
	mask    uint32
	gen     uint32 // slots with another generation are empty
}

// slot maps a flow key (by hash, then by comparing the head packet's
// bytes) to the flow's latest entry in Coalescer.flows.
type slot struct {
	gen  uint32
	hash uint32
	flow int32
}

// flow is one superpacket being built: the head packet and what the next
// segment must look like.
type flow struct {
	head     int // index of the head packet in the batch
	l4       int // offset of the TCP header in the packet
	payload  int // offset of the payload: all headers' length
	gsoSize  int // payload size of the first segment
	count    int // segments merged, head included
	nextSeq  uint32
	nextID   uint16 // IPv4 only
	v6       bool
	psh      bool // the last segment merged carried PSH
	closed   bool // nothing more may be appended
	verified bool // the head's TCP checksum was checked and is valid
	udp      bool // a UDP flow: no sequence numbers, USO on finish
	anyID    bool // UDP over IPv4 with DF: IP IDs need not follow
}

// segment is what Coalesce reads from a packet that may take part.
type segment struct {
	l4, payload int
	v6, udp     bool
	flags       uint8 // TCP only
}

// maxUDPSegments bounds the datagrams of one UDP superpacket: the kernel's
// UDP_MAX_SEGMENTS, the most it will cut one GSO packet into.
const maxUDPSegments = 64

// NewCoalescer returns a Coalescer for packets that begin with a
// link-layer header of linkLen bytes (14 for Ethernet frames from a TAP
// device, 0 for IP packets from a TUN device; when linkLen >= 2 its last two
// bytes must be the EtherType) and batches of up to maxBatch packets. All
// state is allocated here; Coalesce allocates nothing.
func NewCoalescer(linkLen, maxBatch int) *Coalescer {
	linkLen = max(linkLen, 0)
	maxBatch = max(maxBatch, 1)
	size := 1
	for size < 2*maxBatch {
		size <<= 1
	}
	return &Coalescer{
		linkLen: linkLen,
		flows:   make([]flow, 0, maxBatch),
		slots:   make([]slot, size),
		mask:    uint32(size - 1),
	}
}

// SetUDP sets whether Coalesce merges UDP datagrams as well as TCP
// segments. Turn it on only for a device that takes UDP superpackets (a
// TAP/TUN with TUN_F_USO4 and TUN_F_USO6); it may change between calls.
func (c *Coalescer) SetUDP(on bool) { c.udp = on }

// Coalesce merges the TCP segments (and with SetUDP the UDP datagrams) in
// pkts, in place, and returns the
// number of packets left to write.
//
// On return, for every i: if len(pkts[i]) == 0 the packet was merged into
// an earlier one and its buffer is free (a packet that was empty on entry
// stays empty and is not counted); otherwise pkts[i] is a packet to
// write, preceded on the device by hdrs[i] — a zero header for a packet
// that passes through unchanged, or, for a superpacket of two or more
// segments, NEEDS_CSUM with csum_start/csum_offset at the TCP checksum
// (which holds the pseudo-header sum over the superpacket's length),
// GSOType GSOTCPv4/GSOTCPv6 (with GSOECN when the first segment has CWR),
// GSOSize the first segment's payload size and HdrLen the exact header
// length. Packets to write keep the order of their first segment.
//
// A superpacket grows in its head packet's buffer: pkts[i][len:cap] must be
// free for Coalesce to write and must belong to packet i alone (cap slices
// of a shared buffer with a full slice expression, b[lo:hi:hi], which
// leaves no room and so disables merging into them). len(hdrs) must be at
// least len(pkts); packets beyond the maxBatch given to NewCoalescer pass
// through unchanged.
func (c *Coalescer) Coalesce(pkts [][]byte, hdrs []VirtioNetHdr) int {
	hdrs = hdrs[:len(pkts)]
	c.gen++
	if c.gen == 0 { // wrapped: every old stamp could look current
		clear(c.slots)
		c.gen = 1
	}
	c.flows = c.flows[:0]
	n := 0
	for i, p := range pkts {
		hdrs[i] = VirtioNetHdr{}
		if len(p) == 0 {
			continue
		}
		n++
		if i >= cap(c.flows) {
			continue
		}
		seg, kind := c.candidate(p)
		if kind == kindOther {
			continue
		}
		s := c.lookup(pkts, p, &seg)
		if s.gen == c.gen {
			f := &c.flows[s.flow]
			if kind == kindSegment && c.merge(pkts, i, f, &seg) {
				pkts[i] = p[:0]
				n--
				continue
			}
			f.closed = true
		}
		if kind == kindTCP || (!seg.udp && seg.flags&header.TCPFlagPSH != 0) {
			// Nothing may be appended to it; the closed flow (if
			// any) stays in the slot so no later segment of the flow
			// jumps over this packet.
			continue
		}
		s.gen = c.gen
		s.flow = int32(len(c.flows))
		c.flows = append(c.flows, c.newFlow(p, i, &seg))
	}
	for fi := range c.flows {
		if c.flows[fi].count > 1 {
			c.finish(pkts, hdrs, &c.flows[fi])
		}
	}
	return n
}

// newFlow returns the flow that packet i, p (seg), heads.
func (c *Coalescer) newFlow(p []byte, i int, seg *segment) flow {
	f := flow{
		head:    i,
		l4:      seg.l4,
		payload: seg.payload,
		gsoSize: len(p) - seg.payload,
		count:   1,
		nextID:  binary.BigEndian.Uint16(p[c.linkLen+4:]) + 1,
		v6:      seg.v6,
		udp:     seg.udp,
	}
	if seg.udp {
		f.anyID = !seg.v6 && p[c.linkLen+6]&0x40 != 0 // DF
	} else {
		f.nextSeq = header.TCP(p[seg.l4:]).Seq() + uint32(len(p)-seg.payload)
	}
	return f
}

// Kinds of packet, as candidate sees them.
const (
	kindOther   = iota // not TCP (or UDP) over IPv4/IPv6 as Coalesce understands it
	kindTCP            // TCP (or UDP) of a flow that may not be merged (no payload, SYN, IP options...)
	kindSegment        // TCP segment (or UDP datagram) that may be merged or start a superpacket
)

// candidate classifies p and, for kindTCP and kindSegment, says where its
// headers are.
func (c *Coalescer) candidate(p []byte) (segment, int) {
	var seg segment
	if len(p) < c.linkLen+header.IPv4MinLen+header.UDPLen {
		return seg, kindOther
	}
	etherType := -1
	if c.linkLen >= 2 {
		etherType = int(binary.BigEndian.Uint16(p[c.linkLen-2:]))
	}
	ip := p[c.linkLen:]
	kind := kindSegment
	switch ip[0] >> 4 {
	case 4:
		v4 := header.IPv4(ip)
		hl := v4.HeaderLength()
		seg.udp = c.udp && v4.Protocol() == header.ProtoUDP
		if (etherType >= 0 && etherType != etherTypeIPv4) || hl < header.IPv4MinLen ||
			len(ip) < hl+l4Min(seg.udp) || v4.IsFragment() || (v4.Protocol() != header.ProtoTCP && !seg.udp) {
			return seg, kindOther
		}
		if hl != header.IPv4MinLen || int(v4.TotalLength()) != len(ip) {
			kind = kindTCP // IP options, or trailing bytes
		}
		seg.l4 = c.linkLen + hl
	case 6:
		v6 := header.IPv6(ip)
		if len(ip) < header.IPv6Len {
			return seg, kindOther
		}
		seg.udp = c.udp && v6.NextHeader() == header.ProtoUDP
		if len(ip) < header.IPv6Len+l4Min(seg.udp) || (etherType >= 0 && etherType != etherTypeIPv6) ||
			(v6.NextHeader() != header.ProtoTCP && !seg.udp) {
			return seg, kindOther
		}
		if int(v6.PayloadLength()) != len(ip)-header.IPv6Len {
			kind = kindTCP
		}
		seg.l4 = c.linkLen + header.IPv6Len
		seg.v6 = true
	default:
		return seg, kindOther
	}
	if seg.udp {
		seg.payload = seg.l4 + header.UDPLen
		if int(header.UDP(p[seg.l4:]).Length()) != len(p)-seg.l4 || seg.payload == len(p) {
			kind = kindTCP // a length that disagrees, or no payload: not merged
		}
		return seg, kind
	}
	tcp := header.TCP(p[seg.l4:])
	doff := tcp.DataOffset()
	seg.payload = seg.l4 + doff
	seg.flags = tcp.Flags()
	if doff < header.TCPMinLen || seg.payload >= len(p) ||
		seg.flags&(header.TCPFlagSYN|header.TCPFlagFIN|header.TCPFlagRST|header.TCPFlagURG) != 0 {
		kind = kindTCP
	}
	return seg, kind
}

// l4Min is the least L4 header length of a candidate.
func l4Min(udp bool) int {
	if udp {
		return header.UDPLen
	}
	return header.TCPMinLen
}

// lookup returns the slot of p's flow key: the current generation if the
// flow has a superpacket in this batch, an empty slot to fill otherwise.
// The key is the IP version, addresses and ports; a hash match is
// confirmed against the flow's head packet.
func (c *Coalescer) lookup(pkts [][]byte, p []byte, seg *segment) *slot {
	addrs, ports := c.flowKey(p, seg.l4, seg.v6)
	h := keyHash(addrs, ports)
	for i := h & c.mask; ; i = (i + 1) & c.mask {
		s := &c.slots[i]
		if s.gen != c.gen {
			s.hash = h
			return s
		}
		if s.hash != h {
			continue
		}
		f := &c.flows[s.flow]
		hAddrs, hPorts := c.flowKey(pkts[f.head], f.l4, f.v6)
		if f.v6 == seg.v6 && f.udp == seg.udp && bytes.Equal(hAddrs, addrs) && bytes.Equal(hPorts, ports) {
			return s
		}
	}
}

// flowKey returns the bytes of packet p's flow key: its source and
// destination addresses, and its ports (the L4 header at l4).
func (c *Coalescer) flowKey(p []byte, l4 int, v6 bool) (addrs, ports []byte) {
	ip := p[c.linkLen:]
	if v6 {
		return ip[8:40], p[l4 : l4+4]
	}
	return ip[12:20], p[l4 : l4+4]
}

// keyHash mixes a flow key's address and port bytes.
func keyHash(addrs, ports []byte) uint32 {
	var h uint64
	for len(addrs) >= 8 {
		h = (h ^ binary.LittleEndian.Uint64(addrs)) * 0x9e3779b97f4a7c15
		addrs = addrs[8:]
	}
	h = (h ^ uint64(binary.LittleEndian.Uint32(ports))) * 0x9e3779b97f4a7c15
	return uint32(h >> 32)
}

// merge appends packet i to flow f's superpacket if every rule in the
// Coalescer comment holds, and reports whether it did.
func (c *Coalescer) merge(pkts [][]byte, i int, f *flow, seg *segment) bool {
	if f.udp {
		return c.mergeUDP(pkts, i, f, seg)
	}
	if !c.tcpFollows(pkts[f.head], pkts[i], f, seg) || !c.append(pkts, i, f) {
		return false
	}
	f.advance(len(pkts[i])-f.payload, seg.flags)
	return true
}

// tcpFollows reports whether TCP segment p (seg) may be appended to flow
// f, whose head packet is h, by the header rules of the Coalescer comment:
// the flow still open, the same header layout, link-layer and IP fields,
// the next sequence number, the same ACK number, window, urgent pointer
// and options, flags that may follow, and no more payload than the first
// segment's. Room and checksums are not its business.
func (c *Coalescer) tcpFollows(h, p []byte, f *flow, seg *segment) bool {
	if f.closed || seg.l4 != f.l4 || seg.payload != f.payload || seg.flags&header.TCPFlagCWR != 0 {
		return false
	}
	if !c.sameHeaders(h, p, f) {
		return false
	}
	ht, pt := h[f.l4:f.payload], p[f.l4:f.payload]
	return header.TCP(pt).Seq() == f.nextSeq &&
		bytes.Equal(ht[8:13], pt[8:13]) && // ACK number, data offset and reserved bits
		ht[13]&^(header.TCPFlagPSH|header.TCPFlagCWR) == seg.flags&^header.TCPFlagPSH &&
		bytes.Equal(ht[14:16], pt[14:16]) && // window
		bytes.Equal(ht[18:], pt[18:]) && // urgent pointer, options
		len(p)-f.payload <= f.gsoSize
}

// advance moves TCP flow f past a merged segment of plen payload bytes
// with the given flags: a PSH or a short segment closes it.
func (f *flow) advance(plen int, flags uint8) {
	f.nextSeq += uint32(plen)
	if flags&header.TCPFlagPSH != 0 {
		f.psh, f.closed = true, true
	}
	if plen < f.gsoSize {
		f.closed = true
	}
}

// mergeUDP is merge for a UDP flow.
func (c *Coalescer) mergeUDP(pkts [][]byte, i int, f *flow, seg *segment) bool {
	if f.closed || seg.l4 != f.l4 || f.count == maxUDPSegments {
		return false
	}
	h, p := pkts[f.head], pkts[i]
	if !c.sameHeaders(h, p, f) {
		return false
	}
	plen := len(p) - f.payload
	if plen > f.gsoSize || !c.append(pkts, i, f) {
		return false
	}
	if plen < f.gsoSize {
		f.closed = true
	}
	return true
}

// sameHeaders reports whether packet p's link-layer and IP headers may
// follow the head h's in flow f: the same link-layer header; for IPv6 the
// same version, traffic class, flow label and hop limit; for IPv4 the same
// TOS, flags (DF) and TTL, and the next IP ID unless the flow's IDs are
// free.
func (c *Coalescer) sameHeaders(h, p []byte, f *flow) bool {
	if !bytes.Equal(h[:c.linkLen], p[:c.linkLen]) {
		return false
	}
	hip, pip := h[c.linkLen:], p[c.linkLen:]
	if f.v6 {
		return bytes.Equal(hip[:4], pip[:4]) && hip[7] == pip[7]
	}
	return hip[1] == pip[1] && hip[6]>>5 == pip[6]>>5 && hip[8] == pip[8] &&
		(f.anyID || binary.BigEndian.Uint16(pip[4:]) == f.nextID)
}

// append appends packet i's payload to flow f's superpacket if it fits (in
// 64 KiB and in the head's buffer) and both packets' checksums verify, and
// reports whether it did.
func (c *Coalescer) append(pkts [][]byte, i int, f *flow) bool {
	h, p := pkts[f.head], pkts[i]
	plen := len(p) - f.payload
	newLen := len(h) + plen
	if newLen-c.linkLen > maxSuperpacket || newLen > cap(h) {
		return false
	}
	if !f.verified {
		if !checksumsValid(h, c.linkLen, f.l4, f.v6, f.udp) {
			f.closed = true
			return false
		}
		f.verified = true
	}
	if !checksumsValid(p, c.linkLen, f.l4, f.v6, f.udp) {
		return false
	}
	h = h[:newLen]
	copy(h[newLen-plen:], p[f.payload:])
	pkts[f.head] = h
	f.count++
	f.nextID++
	return true
}

// addrs returns the source and destination of the IP packet ip.
func addrs(ip []byte, v6 bool) (src, dst netip.Addr) {
	if v6 {
		return header.IPv6(ip).Src(), header.IPv6(ip).Dst()
	}
	return header.IPv4(ip).Src(), header.IPv4(ip).Dst()
}

// checksumsValid reports whether the TCP (udp: UDP) checksum of packet p
// (IP header at linkLen, L4 header at l4, nothing past the segment)
// verifies, and for IPv4 the header checksum too, as the kernel's GRO
// requires. A zero UDP checksum means none: valid over IPv4, not over IPv6.
func checksumsValid(p []byte, linkLen, l4 int, v6, udp bool) bool {
	ip := p[linkLen:]
	if !v6 && header.FoldChecksum(header.Checksum(ip[:header.IPv4MinLen], 0)) != 0xffff {
		return false
	}
	proto := header.ProtoTCP
	if udp {
		if header.UDP(p[l4:]).Checksum() == 0 {
			return !v6
		}
		proto = header.ProtoUDP
	}
	src, dst := addrs(ip, v6)
	sum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(p)-l4))
	return header.FoldChecksum(header.Checksum(p[l4:], sum)) == 0xffff
}

// finish turns flow f's head packet into a superpacket: IP length (and
// IPv4 header checksum), PSH if the last segment had it, the TCP checksum
// field set to the pseudo-header sum, and the virtio-net header.
func (c *Coalescer) finish(pkts [][]byte, hdrs []VirtioNetHdr, f *flow) {
	h := pkts[f.head]
	ip := h[c.linkLen:]
	setIPLength(ip, f.v6)
	if f.udp {
		c.finishUDP(h, ip, hdrs, f)
		return
	}
	gsoType := GSOTCPv4
	if f.v6 {
		gsoType = GSOTCPv6
	}
	tcp := header.TCP(h[f.l4:])
	if f.psh {
		tcp[13] |= header.TCPFlagPSH
	}
	if tcp.Flags()&header.TCPFlagCWR != 0 {
		gsoType |= GSOECN
	}
	src, dst := addrs(ip, f.v6)
	tcp.SetChecksum(header.FoldChecksum(header.PseudoHeaderChecksum(header.ProtoTCP, src, dst, uint16(len(h)-f.l4))))
	hdrs[f.head] = VirtioNetHdr{
		Flags:      FlagNeedsCsum,
		GSOType:    gsoType,
		HdrLen:     uint16(f.payload),
		GSOSize:    uint16(f.gsoSize),
		CsumStart:  uint16(f.l4),
		CsumOffset: tcpCsumOffset,
	}
}

// setIPLength sets the length field of the IP header ip to the whole
// packet (and for IPv4 the header checksum).
func setIPLength(ip []byte, v6 bool) {
	if v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-header.IPv6Len))
		return
	}
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	v4 := header.IPv4(ip)
	v4.SetChecksum(v4.CalculateChecksum())
}

// finishUDP is finish for a UDP flow (its IP length already set): the UDP
// length over the whole superpacket, the UDP checksum field set to the pseudo-header sum, and a
// GSOUDPL4 header.
func (c *Coalescer) finishUDP(h, ip []byte, hdrs []VirtioNetHdr, f *flow) {
	udp := header.UDP(h[f.l4:])
	udp.SetLength(uint16(len(h) - f.l4))
	src, dst := addrs(ip, f.v6)
	udp.SetChecksum(header.FoldChecksum(header.PseudoHeaderChecksum(header.ProtoUDP, src, dst, uint16(len(h)-f.l4))))
	hdrs[f.head] = VirtioNetHdr{
		Flags:      FlagNeedsCsum,
		GSOType:    GSOUDPL4,
		HdrLen:     uint16(f.payload),
		GSOSize:    uint16(f.gsoSize),
		CsumStart:  uint16(f.l4),
		CsumOffset: udpCsumOffset,
	}
}
