package header

import (
	"encoding/binary"
	"net/netip"
)

// UDP header layout (RFC 768):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Source Port          |       Destination Port        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|            Length             |           Checksum            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	udpSrcPort  = 0
	udpDstPort  = 2
	udpLength   = 4
	udpChecksum = 6
)

// UDPLen is the size of a UDP header.
const UDPLen = 8

// UDP is a view of a UDP header (and its payload after UDPLen bytes).
//
// Contract: the caller checks len(u) >= UDPLen before calling any method.
type UDP []byte

// SrcPort returns the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u[udpSrcPort:]) }

// DstPort returns the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u[udpDstPort:]) }

// Length returns the Length field: header plus payload bytes.
func (u UDP) Length() uint16 { return binary.BigEndian.Uint16(u[udpLength:]) }

// Checksum returns the Checksum field (0 means none was computed, which is
// allowed over IPv4 and what VXLAN senders usually do).
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[udpChecksum:]) }

// SetSrcPort sets the source port without updating the checksum.
func (u UDP) SetSrcPort(p uint16) { binary.BigEndian.PutUint16(u[udpSrcPort:], p) }

// SetDstPort sets the destination port without updating the checksum.
func (u UDP) SetDstPort(p uint16) { binary.BigEndian.PutUint16(u[udpDstPort:], p) }

// SetLength sets the Length field.
func (u UDP) SetLength(l uint16) { binary.BigEndian.PutUint16(u[udpLength:], l) }

// SetChecksum sets the Checksum field.
func (u UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(u[udpChecksum:], c) }

// UDPFields holds the values Encode writes into a UDP header.
type UDPFields struct {
	SrcPort, DstPort uint16
	Length           uint16 // header + payload bytes
	Checksum         uint16 // 0 for none (IPv4 only)
}

// Encode writes f into u[:UDPLen].
func (u UDP) Encode(f *UDPFields) {
	_ = u[UDPLen-1]
	u.SetSrcPort(f.SrcPort)
	u.SetDstPort(f.DstPort)
	u.SetLength(f.Length)
	u.SetChecksum(f.Checksum)
}

// PseudoHeaderChecksum returns the partial checksum of the TCP/UDP
// pseudo-header (RFC 768, RFC 793 for IPv4; RFC 8200 §8.1 for IPv6) for a
// segment of length bytes. Both addresses must be of the same family. Add
// the segment with Checksum(segment, PseudoHeaderChecksum(...)) and store
// ^FoldChecksum of the result (UDP stores 0xffff in place of 0).
func PseudoHeaderChecksum(proto IPProto, src, dst netip.Addr, length uint16) uint32 {
	var sum uint32
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		sum = Checksum(s[:], 0)
		sum = Checksum(d[:], sum)
	} else {
		s, d := src.As16(), dst.As16()
		sum = Checksum(s[:], 0)
		sum = Checksum(d[:], sum)
	}
	return sum + uint32(proto) + uint32(length)
}
