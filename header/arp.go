package header

import (
	"encoding/binary"
	"net/netip"
)

// ARP packet layout for Ethernet and IPv4 (RFC 826):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      Hardware Type (1)        |     Protocol Type (0x0800)    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  HLEN (6)     |  PLEN (4)     |           Operation           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Sender Hardware Address (6 bytes) ...                |
//	|          Sender Protocol Address (4 bytes) ...                |
//	|          Target Hardware Address (6 bytes) ...                |
//	|          Target Protocol Address (4 bytes)                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	arpHType     = 0
	arpPType     = 2
	arpHLen      = 4
	arpPLen      = 5
	arpOp        = 6
	arpSenderMAC = 8
	arpSenderIP  = 14
	arpTargetMAC = 18
	arpTargetIP  = 24
)

// ARPLen is the size of an Ethernet/IPv4 ARP packet (without Ethernet
// padding).
const ARPLen = 28

// ARP operations.
const (
	ARPRequest uint16 = 1
	ARPReply   uint16 = 2
)

// arpHTypeEthernet is the hardware type for Ethernet.
const arpHTypeEthernet = 1

// ARP is a view of an ARP packet, the payload of an EtherTypeARP frame.
//
// Contract: accessors assume the Ethernet/IPv4 layout; call IsValid first.
type ARP []byte

// IsValid reports whether a holds an Ethernet/IPv4 ARP packet: at least
// ARPLen bytes, hardware type 1 with 6-byte addresses, protocol type 0x0800
// with 4-byte addresses. Other ARP flavours are not valid for ferry.
func (a ARP) IsValid() bool {
	return len(a) >= ARPLen &&
		binary.BigEndian.Uint16(a[arpHType:]) == arpHTypeEthernet &&
		binary.BigEndian.Uint16(a[arpPType:]) == EtherTypeIPv4 &&
		a[arpHLen] == 6 && a[arpPLen] == 4
}

// Op returns the operation (ARPRequest, ARPReply, ...).
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a[arpOp:]) }

// SenderMAC returns the sender hardware address.
func (a ARP) SenderMAC() MAC { return MAC(a[arpSenderMAC : arpSenderMAC+6]) }

// SenderIP returns the sender protocol address. It does not allocate.
func (a ARP) SenderIP() netip.Addr {
	return netip.AddrFrom4([4]byte(a[arpSenderIP : arpSenderIP+4]))
}

// TargetMAC returns the target hardware address (zero in a request).
func (a ARP) TargetMAC() MAC { return MAC(a[arpTargetMAC : arpTargetMAC+6]) }

// TargetIP returns the target protocol address. It does not allocate.
func (a ARP) TargetIP() netip.Addr {
	return netip.AddrFrom4([4]byte(a[arpTargetIP : arpTargetIP+4]))
}

// ARPFields holds the values Encode writes into an Ethernet/IPv4 ARP packet.
type ARPFields struct {
	Op        uint16
	SenderMAC MAC
	SenderIP  netip.Addr // must be IPv4
	TargetMAC MAC
	TargetIP  netip.Addr // must be IPv4
}

// Encode writes an Ethernet/IPv4 ARP packet from f into a[:ARPLen]. It
// panics if a is shorter than ARPLen or an address is not IPv4.
func (a ARP) Encode(f *ARPFields) {
	_ = a[ARPLen-1]
	binary.BigEndian.PutUint16(a[arpHType:], arpHTypeEthernet)
	binary.BigEndian.PutUint16(a[arpPType:], EtherTypeIPv4)
	a[arpHLen] = 6
	a[arpPLen] = 4
	binary.BigEndian.PutUint16(a[arpOp:], f.Op)
	copy(a[arpSenderMAC:], f.SenderMAC[:])
	s := f.SenderIP.As4()
	copy(a[arpSenderIP:], s[:])
	copy(a[arpTargetMAC:], f.TargetMAC[:])
	t := f.TargetIP.As4()
	copy(a[arpTargetIP:], t[:])
}
