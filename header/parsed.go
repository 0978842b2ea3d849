package header

import (
	"encoding/binary"
	"net/netip"
)

// DecodeStatus is the outcome of Parsed.Decode or Parsed.DecodeIP: a
// sentinel value rather than an allocated error, so the fast path can drop a
// packet and count the reason without allocating. String names the reason
// in kebab-case, fit for a drop-reason label.
type DecodeStatus uint8

// Decode outcomes. Only DecodeOK means every field that applies to the
// packet is valid; on any other status the fields decoded before the problem
// was found are valid and later ones are zero (see each field's comment).
const (
	// DecodeOK: the frame decoded; fields are valid as documented.
	DecodeOK DecodeStatus = iota
	// DecodeRunt: the frame is shorter than an Ethernet header (14 bytes).
	DecodeRunt
	// DecodeTruncatedVLAN: an 802.1Q tag does not fit in the frame.
	DecodeTruncatedVLAN
	// DecodeBadIPVersion: DecodeIP got an empty packet or a version nibble
	// other than 4 or 6.
	DecodeBadIPVersion
	// DecodeBadIPv4: the IPv4 header is short, not version 4, has IHL < 5,
	// or its lengths do not fit the frame (IPv4.IsValid fails).
	DecodeBadIPv4
	// DecodeBadIPv6: the IPv6 header is short or not version 6, its
	// payload does not fit the frame, or an extension header is cut off
	// or the chain is longer than Decode follows.
	DecodeBadIPv6
	// DecodeBadARP: an ARP frame is short or not Ethernet/IPv4 ARP.
	DecodeBadARP
	// DecodeTruncatedL4: a TCP, UDP or ICMP header does not fit in the IP
	// packet.
	DecodeTruncatedL4
	// DecodeBadL4: a TCP header's data offset is below 5 words.
	DecodeBadL4
)

var decodeStatusNames = [...]string{
	DecodeOK:            "ok",
	DecodeRunt:          "runt",
	DecodeTruncatedVLAN: "truncated-vlan",
	DecodeBadIPVersion:  "bad-ip-version",
	DecodeBadIPv4:       "bad-ipv4",
	DecodeBadIPv6:       "bad-ipv6",
	DecodeBadARP:        "bad-arp",
	DecodeTruncatedL4:   "truncated-l4",
	DecodeBadL4:         "bad-l4",
}

// String returns the kebab-case name of s, e.g. "bad-ipv4", or "unknown".
func (s DecodeStatus) String() string {
	if int(s) < len(decodeStatusNames) {
		return decodeStatusNames[s]
	}
	return "unknown"
}

// maxIPv6ExtHeaders bounds the extension-header walk so a crafted chain
// costs a fixed amount of work.
const maxIPv6ExtHeaders = 8

// IPv6 extension header protocol numbers Decode walks past.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60
)

// Parsed holds the decoded fields of one frame or IP packet: what the
// bridge, router, NAT, flow hash and tracer need, read once. It is meant to
// be owned by a worker and reused for every packet (Decode overwrites every
// field), and it keeps no reference to the decoded bytes.
//
// Field validity: after Decode, Status says how far decoding got; the
// comment on each field says when it is valid. Fields that are not valid
// are zero.
type Parsed struct {
	// Status is the decode outcome; always valid.
	Status DecodeStatus

	// DstMAC, SrcMAC are the Ethernet addresses; valid iff Status !=
	// DecodeRunt and the packet came through Decode (zero for DecodeIP).
	DstMAC, SrcMAC MAC
	// HasVLAN reports that the frame carried one 802.1Q tag, and VLANID
	// is that tag's 12-bit VLAN identifier; valid like the MACs.
	HasVLAN bool
	VLANID  uint16
	// EtherType is the frame's EtherType after at most one 802.1Q tag
	// (EtherTypeVLAN if a second tag follows, which is not decoded);
	// valid iff Status is not DecodeRunt or DecodeTruncatedVLAN. DecodeIP
	// sets it from the IP version.
	EtherType uint16
	// L3Offset is the offset of the L3 header (IP, ARP) in the decoded
	// bytes: 14, 18 with a VLAN tag, 0 for DecodeIP; valid like EtherType.
	L3Offset int

	// IPVersion is 4 or 6 when EtherType is IPv4 or IPv6 and the IP header
	// was valid, else 0. The IP fields below are valid iff IPVersion != 0.
	IPVersion uint8
	// IPLength is the IP packet length in bytes from its header (IPv4
	// Total Length, or 40 + IPv6 Payload Length); bytes after L3Offset +
	// IPLength are link-layer padding.
	IPLength int
	// IPProto is the transport protocol: the IPv4 Protocol, or the IPv6
	// Next Header after the extension headers Decode walks.
	IPProto IPProto
	// SrcIP, DstIP are the IP addresses. For an ARP frame (Status ==
	// DecodeOK, EtherType == EtherTypeARP) they hold the sender and target
	// protocol addresses instead.
	SrcIP, DstIP netip.Addr
	// TTL is the IPv4 TTL or IPv6 Hop Limit.
	TTL uint8
	// Fragment reports a fragment that is not the first (IPv4 offset or
	// IPv6 Fragment header offset non-zero): it has no L4 header, so no L4
	// field below is valid. A first fragment carries its L4 header and is
	// decoded like a whole packet.
	Fragment bool

	// L4Offset is the offset of the transport header; valid iff IPVersion
	// != 0 and !Fragment.
	L4Offset int
	// SrcPort, DstPort are the transport ports; valid iff HasPorts().
	SrcPort, DstPort uint16
	// TCPFlags are the TCP flag bits; valid iff Status == DecodeOK and
	// IPProto == ProtoTCP and !Fragment.
	TCPFlags uint8
	// ICMPType, ICMPCode are the ICMP message type and code; valid iff
	// Status == DecodeOK, !Fragment and IPProto is ProtoICMPv4 (IPv4) or
	// ProtoICMPv6 (IPv6).
	ICMPType, ICMPCode uint8
	// ICMPIdent is the echo identifier; valid as ICMPType, and meaningful
	// only for echo request/reply types.
	ICMPIdent uint16

	// ARPOp is the ARP operation; valid iff Status == DecodeOK and
	// EtherType == EtherTypeARP.
	ARPOp uint16
}

// HasPorts reports whether SrcPort and DstPort are valid: the packet decoded
// fully, is TCP or UDP, and is not a non-first fragment.
func (p *Parsed) HasPorts() bool {
	return p.Status == DecodeOK && !p.Fragment && (p.IPProto == ProtoTCP || p.IPProto == ProtoUDP)
}

// Decode decodes an Ethernet frame into p, overwriting every field. It never
// panics, never allocates, and keeps no reference to frame.
func (p *Parsed) Decode(frame []byte) {
	*p = Parsed{}
	if len(frame) < EthernetLen {
		p.Status = DecodeRunt
		return
	}
	eth := Ethernet(frame)
	p.DstMAC = eth.Dst()
	p.SrcMAC = eth.Src()
	etype := eth.EtherType()
	off := EthernetLen
	if etype == EtherTypeVLAN {
		if len(frame) < EthernetLen+VLANTagLen {
			p.Status = DecodeTruncatedVLAN
			return
		}
		p.HasVLAN = true
		p.VLANID = binary.BigEndian.Uint16(frame[vlanTCI:]) & 0x0fff
		etype = binary.BigEndian.Uint16(frame[vlanType:])
		off += VLANTagLen
	}
	p.EtherType = etype
	p.L3Offset = off
	switch etype {
	case EtherTypeIPv4:
		p.decodeIPv4(frame[off:])
	case EtherTypeIPv6:
		p.decodeIPv6(frame[off:])
	case EtherTypeARP:
		a := ARP(frame[off:])
		if !a.IsValid() {
			p.Status = DecodeBadARP
			return
		}
		p.ARPOp = a.Op()
		p.SrcIP = a.SenderIP()
		p.DstIP = a.TargetIP()
	}
}

// DecodeIP decodes a bare IP packet (as read from a TUN device or carried by
// flannel-UDP) into p, overwriting every field: the MACs stay zero,
// L3Offset is 0 and EtherType is set from the version nibble. It never
// panics, never allocates, and keeps no reference to pkt.
func (p *Parsed) DecodeIP(pkt []byte) {
	*p = Parsed{}
	if len(pkt) == 0 {
		p.Status = DecodeBadIPVersion
		return
	}
	switch pkt[0] >> 4 {
	case IPv4Version:
		p.EtherType = EtherTypeIPv4
		p.decodeIPv4(pkt)
	case IPv6Version:
		p.EtherType = EtherTypeIPv6
		p.decodeIPv6(pkt)
	default:
		p.Status = DecodeBadIPVersion
	}
}

// decodeIPv4 decodes b, which starts at the IPv4 header and runs to the end
// of the frame.
func (p *Parsed) decodeIPv4(b []byte) {
	ip := IPv4(b)
	if !ip.IsValid(len(b)) {
		p.Status = DecodeBadIPv4
		return
	}
	p.IPVersion = IPv4Version
	p.IPLength = int(ip.TotalLength())
	p.IPProto = ip.Protocol()
	p.SrcIP = ip.Src()
	p.DstIP = ip.Dst()
	p.TTL = ip.TTL()
	if ip.FragmentOffset() != 0 {
		p.Fragment = true
		return
	}
	hlen := ip.HeaderLength()
	p.L4Offset = p.L3Offset + hlen
	p.decodeL4(b[hlen:p.IPLength])
}

// decodeIPv6 decodes b, which starts at the IPv6 header and runs to the end
// of the frame.
func (p *Parsed) decodeIPv6(b []byte) {
	ip := IPv6(b)
	if !ip.IsValid(len(b)) {
		p.Status = DecodeBadIPv6
		return
	}
	p.IPLength = IPv6Len + int(ip.PayloadLength())
	b = b[:p.IPLength]
	proto := ip.NextHeader()
	off := IPv6Len
	fragment := false
walk:
	for i := 0; ; i++ {
		switch proto {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts, ipv6Fragment:
		default:
			break walk
		}
		if i == maxIPv6ExtHeaders || len(b)-off < 8 {
			p.Status = DecodeBadIPv6
			p.IPLength = 0
			return
		}
		next := IPProto(b[off])
		if proto == ipv6Fragment {
			// Fragment header: 8 bytes; offset in the top 13 bits of
			// bytes 2-3.
			if binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
				fragment = true
			}
			off += 8
		} else {
			// Hdr Ext Len counts 8-byte units after the first 8.
			off += (int(b[off+1]) + 1) * 8
			if off > len(b) {
				p.Status = DecodeBadIPv6
				p.IPLength = 0
				return
			}
		}
		proto = next
		if fragment {
			break
		}
	}
	p.IPVersion = IPv6Version
	p.IPProto = proto
	p.SrcIP = ip.Src()
	p.DstIP = ip.Dst()
	p.TTL = ip.HopLimit()
	if fragment {
		p.Fragment = true
		return
	}
	p.L4Offset = p.L3Offset + off
	p.decodeL4(b[off:])
}

// decodeL4 decodes the transport header at the start of l4, which runs to
// the end of the IP packet (padding excluded).
func (p *Parsed) decodeL4(l4 []byte) {
	switch p.IPProto {
	case ProtoTCP:
		if len(l4) < TCPMinLen {
			p.Status = DecodeTruncatedL4
			return
		}
		t := TCP(l4)
		if t.DataOffset() < TCPMinLen {
			p.Status = DecodeBadL4
			return
		}
		if t.DataOffset() > len(l4) {
			p.Status = DecodeTruncatedL4
			return
		}
		p.SrcPort, p.DstPort = t.SrcPort(), t.DstPort()
		p.TCPFlags = t.Flags()
	case ProtoUDP:
		if len(l4) < UDPLen {
			p.Status = DecodeTruncatedL4
			return
		}
		u := UDP(l4)
		p.SrcPort, p.DstPort = u.SrcPort(), u.DstPort()
	case ProtoICMPv4, ProtoICMPv6:
		// ICMPv4 only over IPv4 and ICMPv6 only over IPv6; the other
		// combination is left undecoded.
		if (p.IPProto == ProtoICMPv4) != (p.IPVersion == IPv4Version) {
			return
		}
		if len(l4) < ICMPv4MinLen {
			p.Status = DecodeTruncatedL4
			return
		}
		m := ICMPv4(l4)
		p.ICMPType, p.ICMPCode, p.ICMPIdent = m.Type(), m.Code(), m.Ident()
	}
}
