package offload

import (
	"encoding/binary"
	"net/netip"

	"github.com/ferry-overlay/ferry/header"
)

// superpacket is the layout of a validated superpacket: offsets from the
// start of the packet (link-layer header included).
type superpacket struct {
	l3, l4, payload int
	v6              bool
	proto           header.IPProto
}

// parse validates pkt against hdr for segmentation and returns its layout.
// It checks, in this order: the GSO type and size, hdr_len, the IP header
// (version, lengths, fragment, protocol), the L4 header, and finally
// csum_start/csum_offset when FlagNeedsCsum is set.
func parse(pkt []byte, linkLen int, hdr *VirtioNetHdr) (superpacket, Status) {
	var sp superpacket
	wantVersion := uint8(0) // 0: either
	switch hdr.GSOType {
	case GSOTCPv4, GSOTCPv4 | GSOECN:
		sp.proto, wantVersion = header.ProtoTCP, 4
	case GSOTCPv6, GSOTCPv6 | GSOECN:
		sp.proto, wantVersion = header.ProtoTCP, 6
	case GSOUDPL4:
		sp.proto = header.ProtoUDP
	default:
		return sp, StatusVnetBadGSOType
	}
	if hdr.GSOSize == 0 {
		return sp, StatusVnetBadGSOSize
	}
	if int(hdr.HdrLen) > len(pkt) {
		return sp, StatusVnetBadHdrLen
	}
	if linkLen < 0 || linkLen >= len(pkt) {
		return sp, StatusBadLength
	}
	sp.l3 = linkLen
	ip := pkt[linkLen:]
	version := ip[0] >> 4
	if wantVersion != 0 && version != wantVersion {
		return sp, StatusVnetBadGSOType
	}
	var l4off int
	switch version {
	case 4:
		if len(ip) < header.IPv4MinLen {
			return sp, StatusBadLength
		}
		v4 := header.IPv4(ip)
		l4off = v4.HeaderLength()
		if l4off < header.IPv4MinLen {
			return sp, StatusBadIP
		}
		if int(v4.TotalLength()) != len(ip) || l4off > len(ip) {
			return sp, StatusBadLength
		}
		if v4.IsFragment() || v4.Protocol() != sp.proto {
			return sp, StatusBadIP
		}
	case 6:
		if len(ip) < header.IPv6Len {
			return sp, StatusBadLength
		}
		v6 := header.IPv6(ip)
		if int(v6.PayloadLength()) != len(ip)-header.IPv6Len {
			return sp, StatusBadLength
		}
		if v6.NextHeader() != sp.proto {
			return sp, StatusBadIP
		}
		l4off = header.IPv6Len
		sp.v6 = true
	default:
		return sp, StatusBadIP
	}
	l4hl := header.UDPLen
	csumOffset := udpCsumOffset
	if sp.proto == header.ProtoTCP {
		if len(ip) < l4off+header.TCPMinLen {
			return sp, StatusBadLength
		}
		l4hl = header.TCP(ip[l4off:]).DataOffset()
		if l4hl < header.TCPMinLen || l4off+l4hl > len(ip) {
			return sp, StatusBadL4
		}
		csumOffset = tcpCsumOffset
	} else if len(ip) < l4off+header.UDPLen {
		return sp, StatusBadLength
	}
	sp.l4 = linkLen + l4off
	sp.payload = sp.l4 + l4hl
	if sp.payload >= len(pkt) {
		return sp, StatusBadLength
	}
	if hdr.Flags&FlagNeedsCsum != 0 {
		if int(hdr.CsumStart) != sp.l4 {
			return sp, StatusVnetBadCsumStart
		}
		if int(hdr.CsumOffset) != csumOffset {
			return sp, StatusVnetBadCsumOffset
		}
	}
	return sp, StatusOK
}

// Segment cuts the superpacket pkt, described by hdr, into packets of at
// most mtu bytes of IP packet each (plus the linkLen-byte link-layer header,
// which every segment repeats), written to out[i][:sizes[i]] for i < n.
//
// TCP superpackets (GSOTCPv4, GSOTCPv6) are cut every GSOSize payload bytes,
// or every mtu minus headers if that is smaller (TCP segment boundaries are
// free to move). UDP superpackets (GSOUDPL4) are cut every GSOSize bytes
// exactly, because each piece is one datagram; if one does not fit mtu,
// Segment returns StatusMTUTooSmall. Every segment gets: the IP total (or
// payload) length; for IPv4 the superpacket's ID plus the segment's index
// and a fresh header checksum; for TCP the sequence number advanced by the
// bytes before it, FIN and PSH only on the last segment and CWR only on the
// first; for UDP its own length; and a complete, freshly computed TCP/UDP
// checksum (whether or not FlagNeedsCsum was set, so a partial checksum is
// completed). The last segment carries what is left and may be short.
//
// A packet with GSOType GSONone is copied to out[0] and its checksum
// completed as by FinishChecksum; callers that can work in place should
// call FinishChecksum instead and save the copy. Its IP packet must fit mtu.
//
// pkt is not modified. Output buffers must not overlap pkt; each out[i] is
// used up to its length, which must cover its segment. On a status other
// than StatusOK, n is 0 and out may hold partial garbage. Segment does not
// allocate and is safe for concurrent use on distinct buffers.
func Segment(pkt []byte, linkLen int, hdr VirtioNetHdr, mtu int, out [][]byte, sizes []int) (n int, st Status) {
	if hdr.GSOType == GSONone {
		return copyOne(pkt, linkLen, hdr, mtu, out, sizes)
	}
	sp, st := parse(pkt, linkLen, &hdr)
	if st != StatusOK {
		return 0, st
	}
	hdrBytes := sp.payload - sp.l3 // IP + L4 header bytes in each segment
	mss := int(hdr.GSOSize)
	if sp.proto == header.ProtoTCP {
		mss = min(mss, mtu-hdrBytes)
		if mss <= 0 {
			return 0, StatusMTUTooSmall
		}
	} else if hdrBytes+mss > mtu {
		return 0, StatusMTUTooSmall
	}
	payload := len(pkt) - sp.payload
	nseg := (payload + mss - 1) / mss
	if nseg > len(out) || nseg > len(sizes) {
		return 0, StatusTooManySegments
	}
	for i := range nseg {
		if len(out[i]) < sp.payload+min(mss, payload-i*mss) {
			return 0, StatusBufferTooSmall
		}
	}

	ip := pkt[sp.l3:]
	var src, dst netip.Addr
	if sp.v6 {
		src, dst = header.IPv6(ip).Src(), header.IPv6(ip).Dst()
	} else {
		src, dst = header.IPv4(ip).Src(), header.IPv4(ip).Dst()
	}
	pseudo := header.PseudoHeaderChecksum(sp.proto, src, dst, 0)
	id := binary.BigEndian.Uint16(ip[4:]) // IPv4 only
	l4 := pkt[sp.l4:]
	seq := binary.BigEndian.Uint32(l4[4:]) // TCP only
	l4hl := sp.payload - sp.l4

	for i := range nseg {
		off := sp.payload + i*mss
		segLen := min(mss, len(pkt)-off)
		size := sp.payload + segLen
		o := out[i][:size]
		copy(o, pkt[:sp.payload])
		copy(o[sp.payload:], pkt[off:off+segLen])

		l4len := l4hl + segLen
		oip := o[sp.l3:]
		if sp.v6 {
			binary.BigEndian.PutUint16(oip[4:], uint16(l4len))
		} else {
			binary.BigEndian.PutUint16(oip[2:], uint16(hdrBytes+segLen))
			binary.BigEndian.PutUint16(oip[4:], id+uint16(i))
			v4 := header.IPv4(oip)
			v4.SetChecksum(v4.CalculateChecksum())
		}
		ol4 := o[sp.l4:]
		if sp.proto == header.ProtoTCP {
			t := header.TCP(ol4)
			binary.BigEndian.PutUint32(ol4[4:], seq+uint32(i*mss))
			flags := t.Flags()
			if i > 0 {
				flags &^= header.TCPFlagCWR
			}
			if i < nseg-1 {
				flags &^= header.TCPFlagFIN | header.TCPFlagPSH
			}
			ol4[13] = flags
			t.SetChecksum(0)
			t.SetChecksum(^header.FoldChecksum(header.Checksum(ol4[:l4len], pseudo+uint32(l4len))))
		} else {
			u := header.UDP(ol4)
			u.SetLength(uint16(l4len))
			u.SetChecksum(0)
			c := ^header.FoldChecksum(header.Checksum(ol4[:l4len], pseudo+uint32(l4len)))
			if c == 0 {
				c = 0xffff // RFC 768: 0 means "no checksum"
			}
			u.SetChecksum(c)
		}
		sizes[i] = size
	}
	return nseg, StatusOK
}

// copyOne is Segment for a packet that is not a superpacket.
func copyOne(pkt []byte, linkLen int, hdr VirtioNetHdr, mtu int, out [][]byte, sizes []int) (int, Status) {
	if linkLen < 0 || linkLen >= len(pkt) {
		return 0, StatusBadLength
	}
	if len(pkt)-linkLen > mtu {
		return 0, StatusMTUTooSmall
	}
	if len(out) < 1 || len(sizes) < 1 {
		return 0, StatusTooManySegments
	}
	if len(out[0]) < len(pkt) {
		return 0, StatusBufferTooSmall
	}
	o := out[0][:len(pkt)]
	copy(o, pkt)
	if st := FinishChecksum(o, hdr); st != StatusOK {
		return 0, st
	}
	sizes[0] = len(pkt)
	return 1, StatusOK
}

// FinishChecksum completes the partial checksum of a packet that is not a
// superpacket, in place, when hdr has FlagNeedsCsum (it does nothing
// otherwise): it sums pkt from CsumStart to the end — the checksum field
// at CsumStart+CsumOffset holding the pseudo-header sum the sender left
// there — and stores the complement in that field. A result of 0 is stored
// as 0xffff, its ones'-complement equal, which keeps UDP's "no checksum"
// value out (as the kernel's skb_checksum_help does). CsumStart counts from
// the start of pkt, link-layer header included. It does not allocate.
func FinishChecksum(pkt []byte, hdr VirtioNetHdr) Status {
	if hdr.Flags&FlagNeedsCsum == 0 {
		return StatusOK
	}
	start := int(hdr.CsumStart)
	at := start + int(hdr.CsumOffset)
	if start >= len(pkt) {
		return StatusVnetBadCsumStart
	}
	if at+2 > len(pkt) {
		return StatusVnetBadCsumOffset
	}
	c := ^header.FoldChecksum(header.Checksum(pkt[start:], 0))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[at:], c)
	return StatusOK
}
