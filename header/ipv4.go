package header

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header layout (RFC 791 §3.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ipv4VerIHL   = 0
	ipv4TOS      = 1
	ipv4TotalLen = 2
	ipv4ID       = 4
	ipv4FlagsOff = 6
	ipv4TTL      = 8
	ipv4Protocol = 9
	ipv4Checksum = 10
	ipv4Src      = 12
	ipv4Dst      = 16
)

const (
	// IPv4MinLen is the size of an IPv4 header without options.
	IPv4MinLen = 20
	// IPv4MaxLen is the largest IPv4 header, IHL 15 × 4 bytes.
	IPv4MaxLen = 60
	// IPv4Version is the value of the version nibble.
	IPv4Version = 4
)

// IPv4 flag bits, in the position returned by IPv4.Flags.
const (
	// IPv4FlagMoreFragments is the MF bit.
	IPv4FlagMoreFragments uint8 = 1 << 0
	// IPv4FlagDontFragment is the DF bit.
	IPv4FlagDontFragment uint8 = 1 << 1
)

// IPProto is an IP protocol number (the IPv4 Protocol field, the IPv6 Next
// Header field).
type IPProto uint8

// IP protocol numbers ferry handles.
const (
	ProtoICMPv4 IPProto = 1
	ProtoTCP    IPProto = 6
	ProtoUDP    IPProto = 17
	ProtoGRE    IPProto = 47
	ProtoICMPv6 IPProto = 58
)

// IPv4 is a view of an IPv4 header (and, past it, the packet's payload).
//
// Contract: accessors read fixed offsets and panic on a slice shorter than
// IPv4MinLen (or than HeaderLength for Payload). Call IsValid first on
// untrusted bytes.
type IPv4 []byte

// IsValid reports whether b holds a well-formed IPv4 header for a packet
// whose buffer holds pktLen bytes: version 4, IHL >= 5, the header within
// both b and TotalLength, and TotalLength within pktLen. Bytes past
// TotalLength (Ethernet padding) are allowed. It does not check the header
// checksum; see CalculateChecksum.
func (b IPv4) IsValid(pktLen int) bool {
	if len(b) < IPv4MinLen || b[ipv4VerIHL]>>4 != IPv4Version {
		return false
	}
	hlen := b.HeaderLength()
	tlen := int(b.TotalLength())
	return hlen >= IPv4MinLen && hlen <= len(b) && hlen <= tlen && tlen <= pktLen
}

// Version returns the version nibble (4 for a valid header).
func (b IPv4) Version() uint8 { return b[ipv4VerIHL] >> 4 }

// HeaderLength returns the header length in bytes (IHL × 4), options
// included.
func (b IPv4) HeaderLength() int { return int(b[ipv4VerIHL]&0x0f) * 4 }

// TOS returns the Type of Service (DSCP and ECN) byte.
func (b IPv4) TOS() uint8 { return b[ipv4TOS] }

// TotalLength returns the Total Length field: header plus payload in bytes.
func (b IPv4) TotalLength() uint16 { return binary.BigEndian.Uint16(b[ipv4TotalLen:]) }

// ID returns the Identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[ipv4ID:]) }

// Flags returns the three flag bits (IPv4FlagDontFragment,
// IPv4FlagMoreFragments; the top bit is reserved).
func (b IPv4) Flags() uint8 { return b[ipv4FlagsOff] >> 5 }

// DF reports whether the Don't Fragment flag is set.
func (b IPv4) DF() bool { return b.Flags()&IPv4FlagDontFragment != 0 }

// MoreFragments reports whether the More Fragments flag is set.
func (b IPv4) MoreFragments() bool { return b.Flags()&IPv4FlagMoreFragments != 0 }

// FragmentOffset returns the fragment offset in bytes (the field × 8).
func (b IPv4) FragmentOffset() int {
	return int(binary.BigEndian.Uint16(b[ipv4FlagsOff:])&0x1fff) * 8
}

// IsFragment reports whether the packet is a fragment: MF set or a non-zero
// fragment offset.
func (b IPv4) IsFragment() bool {
	return binary.BigEndian.Uint16(b[ipv4FlagsOff:])&0x3fff != 0
}

// TTL returns the Time to Live.
func (b IPv4) TTL() uint8 { return b[ipv4TTL] }

// SetTTL sets the Time to Live without touching the checksum; a router that
// decrements TTL then calls SetChecksum(UpdateChecksum16(...)) on the word
// holding TTL and Protocol.
func (b IPv4) SetTTL(ttl uint8) { b[ipv4TTL] = ttl }

// Protocol returns the Protocol field.
func (b IPv4) Protocol() IPProto { return IPProto(b[ipv4Protocol]) }

// Checksum returns the Header Checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ipv4Checksum:]) }

// SetChecksum sets the Header Checksum field.
func (b IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[ipv4Checksum:], c) }

// CalculateChecksum returns the header checksum the header should carry,
// computed over HeaderLength bytes with the checksum field taken as zero
// (RFC 791). A received header is intact iff CalculateChecksum() ==
// Checksum().
func (b IPv4) CalculateChecksum() uint16 {
	hdr := b[:b.HeaderLength()]
	sum := Checksum(hdr[:ipv4Checksum], 0)
	sum = Checksum(hdr[ipv4Checksum+2:], sum)
	return ^FoldChecksum(sum)
}

// Src returns the source address. It does not allocate.
func (b IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Src : ipv4Src+4])) }

// Dst returns the destination address. It does not allocate.
func (b IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Dst : ipv4Dst+4])) }

// SetSrc sets the source address, which must be IPv4 (As4 panics otherwise),
// without updating the checksum.
func (b IPv4) SetSrc(a netip.Addr) { a4 := a.As4(); copy(b[ipv4Src:], a4[:]) }

// SetDst sets the destination address, which must be IPv4, without updating
// the checksum.
func (b IPv4) SetDst(a netip.Addr) { a4 := a.As4(); copy(b[ipv4Dst:], a4[:]) }

// Payload returns the bytes after the header up to TotalLength. Call only
// on a header for which IsValid(len(b)) holds.
func (b IPv4) Payload() []byte { return b[b.HeaderLength():b.TotalLength()] }

// IPv4Fields holds the values Encode writes into an IPv4 header without
// options.
type IPv4Fields struct {
	TOS            uint8
	TotalLength    uint16 // header + payload bytes
	ID             uint16
	Flags          uint8  // IPv4FlagDontFragment | IPv4FlagMoreFragments
	FragmentOffset uint16 // in bytes; must be a multiple of 8
	TTL            uint8
	Protocol       IPProto
	Src, Dst       netip.Addr // both must be IPv4
}

// Encode writes a 20-byte IPv4 header (IHL 5, no options) from f into
// b[:IPv4MinLen] and fills in its checksum. It panics if b is shorter than
// IPv4MinLen or an address is not IPv4. It does not allocate.
func (b IPv4) Encode(f *IPv4Fields) {
	_ = b[IPv4MinLen-1]
	b[ipv4VerIHL] = IPv4Version<<4 | IPv4MinLen/4
	b[ipv4TOS] = f.TOS
	binary.BigEndian.PutUint16(b[ipv4TotalLen:], f.TotalLength)
	binary.BigEndian.PutUint16(b[ipv4ID:], f.ID)
	binary.BigEndian.PutUint16(b[ipv4FlagsOff:], uint16(f.Flags&0x7)<<13|(f.FragmentOffset/8)&0x1fff)
	b[ipv4TTL] = f.TTL
	b[ipv4Protocol] = uint8(f.Protocol)
	b.SetSrc(f.Src)
	b.SetDst(f.Dst)
	b.SetChecksum(0)
	b.SetChecksum(b.CalculateChecksum())
}
