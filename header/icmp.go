package header

import "encoding/binary"

// ICMPv4 header layout (RFC 792); the second word is the identifier and
// sequence number for echo messages:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Identifier          |        Sequence Number        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	icmpType     = 0
	icmpCode     = 1
	icmpChecksum = 2
	icmpIdent    = 4
	icmpSeq      = 6
)

// ICMPv4MinLen is the size of the fixed part of every ICMPv4 message (and
// of an ICMPv6 echo header, which has the same layout).
const ICMPv4MinLen = 8

// ICMPv4 types ferry handles.
const (
	ICMPv4EchoReply       uint8 = 0
	ICMPv4DestUnreachable uint8 = 3
	ICMPv4EchoRequest     uint8 = 8
	ICMPv4TimeExceeded    uint8 = 11
)

// ICMPv6 echo types (RFC 4443 §4), whose header layout matches ICMPv4 echo.
const (
	ICMPv6EchoRequest uint8 = 128
	ICMPv6EchoReply   uint8 = 129
)

// ICMPv4 is a view of an ICMPv4 message.
//
// Contract: the caller checks len(i) >= ICMPv4MinLen before calling any
// method. Ident and Seq are meaningful only for echo request and reply.
type ICMPv4 []byte

// Type returns the message type.
func (i ICMPv4) Type() uint8 { return i[icmpType] }

// Code returns the message code.
func (i ICMPv4) Code() uint8 { return i[icmpCode] }

// SetType sets the message type (answering a ping turns EchoRequest into
// EchoReply) without updating the checksum.
func (i ICMPv4) SetType(t uint8) { i[icmpType] = t }

// SetCode sets the message code without updating the checksum.
func (i ICMPv4) SetCode(c uint8) { i[icmpCode] = c }

// Checksum returns the Checksum field.
func (i ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(i[icmpChecksum:]) }

// SetChecksum sets the Checksum field.
func (i ICMPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(i[icmpChecksum:], c) }

// CalculateChecksum returns the checksum the whole message i (header and
// data, which must be exactly the ICMP message) should carry, with the
// checksum field taken as zero.
func (i ICMPv4) CalculateChecksum() uint16 {
	sum := Checksum(i[:icmpChecksum], 0)
	sum = Checksum(i[icmpChecksum+2:], sum)
	return ^FoldChecksum(sum)
}

// Ident returns the echo identifier.
func (i ICMPv4) Ident() uint16 { return binary.BigEndian.Uint16(i[icmpIdent:]) }

// Seq returns the echo sequence number.
func (i ICMPv4) Seq() uint16 { return binary.BigEndian.Uint16(i[icmpSeq:]) }
