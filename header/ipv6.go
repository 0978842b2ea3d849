package header

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 fixed header layout (RFC 8200 §3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                         Source Address                        +
//	|                          (16 bytes)                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                      Destination Address                      +
//	|                          (16 bytes)                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ipv6PayloadLen = 4
	ipv6NextHeader = 6
	ipv6HopLimit   = 7
	ipv6Src        = 8
	ipv6Dst        = 24
)

const (
	// IPv6Len is the size of the fixed IPv6 header.
	IPv6Len = 40
	// IPv6Version is the value of the version nibble.
	IPv6Version = 6
)

// IPv6 is a view of an IPv6 fixed header (extension headers, if any, follow
// it and are not interpreted here; Parsed walks the common ones).
//
// Contract: accessors panic on a slice shorter than IPv6Len; call IsValid
// first on untrusted bytes.
type IPv6 []byte

// IsValid reports whether b holds an IPv6 fixed header with version 6 whose
// payload (PayloadLength) fits in a packet buffer of pktLen bytes. Jumbograms
// (Payload Length 0 with a jumbo option) are not supported.
func (b IPv6) IsValid(pktLen int) bool {
	return len(b) >= IPv6Len && b[0]>>4 == IPv6Version &&
		IPv6Len+int(b.PayloadLength()) <= pktLen
}

// PayloadLength returns the Payload Length field: bytes after the fixed
// header, extension headers included.
func (b IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(b[ipv6PayloadLen:]) }

// NextHeader returns the Next Header field of the fixed header.
func (b IPv6) NextHeader() IPProto { return IPProto(b[ipv6NextHeader]) }

// HopLimit returns the Hop Limit.
func (b IPv6) HopLimit() uint8 { return b[ipv6HopLimit] }

// Src returns the source address. It does not allocate.
func (b IPv6) Src() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Src : ipv6Src+16])) }

// Dst returns the destination address. It does not allocate.
func (b IPv6) Dst() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Dst : ipv6Dst+16])) }
