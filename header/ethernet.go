package header

import "encoding/binary"

// Ethernet II header layout:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination MAC Address                    |
//	+                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	|                      Source MAC Address                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           EtherType           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ethDst   = 0
	ethSrc   = 6
	ethType  = 12
	vlanTCI  = 14 // 802.1Q tag control information, after TPID 0x8100
	vlanType = 16 // EtherType after one 802.1Q tag
)

// Ethernet header sizes.
const (
	// EthernetLen is the size of an untagged Ethernet II header.
	EthernetLen = 14
	// VLANTagLen is the size of one 802.1Q tag (TPID + TCI).
	VLANTagLen = 4
)

// EtherType values ferry handles.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeARP  uint16 = 0x0806
	EtherTypeIPv6 uint16 = 0x86DD
	// EtherTypeVLAN is the 802.1Q tag protocol identifier (TPID).
	EtherTypeVLAN uint16 = 0x8100
	// EtherTypeQinQ is the 802.1ad service tag's protocol identifier,
	// the outer tag of a double-tagged (QinQ) frame.
	EtherTypeQinQ uint16 = 0x88a8
	// EtherTypeTEB is transparent Ethernet bridging, GRE's protocol type
	// for an inner Ethernet frame (GRE/TEB, ferry's l2 GRE mode).
	EtherTypeTEB uint16 = 0x6558
)

// MaxVLANTags is how many stacked VLAN tags EthernetHeaderLen looks
// through: one 802.1Q tag, or an 802.1ad service tag and a customer tag
// (QinQ).
const MaxVLANTags = 2

// EthernetHeaderLen returns the length of frame's Ethernet header with its
// VLAN tags (TPID 0x8100 or 0x88a8, at most MaxVLANTags): 14, 18 or 22,
// where the network header starts. It reads only what frame holds: a frame
// cut inside a tag gets the length the tag would end at.
func EthernetHeaderLen(frame []byte) int {
	n := EthernetLen
	for range MaxVLANTags {
		if len(frame) < n {
			break
		}
		if t := binary.BigEndian.Uint16(frame[n-2:]); t != EtherTypeVLAN && t != EtherTypeQinQ {
			break
		}
		n += VLANTagLen
	}
	return n
}

// Ethernet is a view of an Ethernet II frame, starting at the destination
// MAC.
//
// Contract: the caller checks len(e) >= EthernetLen before calling any
// method; accessors on a shorter slice panic. Ethernet does not interpret
// 802.1Q tags: EtherType returns EtherTypeVLAN for a tagged frame (Parsed
// handles one tag).
type Ethernet []byte

// Dst returns the destination MAC address.
func (e Ethernet) Dst() MAC { return MAC(e[ethDst : ethDst+6]) }

// Src returns the source MAC address.
func (e Ethernet) Src() MAC { return MAC(e[ethSrc : ethSrc+6]) }

// EtherType returns the EtherType field (bytes 12-13).
func (e Ethernet) EtherType() uint16 { return binary.BigEndian.Uint16(e[ethType:]) }

// SetDst sets the destination MAC address.
func (e Ethernet) SetDst(m MAC) { copy(e[ethDst:ethDst+6], m[:]) }

// SetSrc sets the source MAC address.
func (e Ethernet) SetSrc(m MAC) { copy(e[ethSrc:ethSrc+6], m[:]) }

// SetEtherType sets the EtherType field.
func (e Ethernet) SetEtherType(t uint16) { binary.BigEndian.PutUint16(e[ethType:], t) }

// Encode writes a whole untagged Ethernet header into e[:EthernetLen].
func (e Ethernet) Encode(dst, src MAC, etype uint16) {
	_ = e[EthernetLen-1]
	e.SetDst(dst)
	e.SetSrc(src)
	e.SetEtherType(etype)
}
