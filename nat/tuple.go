package nat

import (
	"fmt"
	"net/netip"

	"github.com/ferry-overlay/ferry/header"
)

// Tuple is one direction of a tracked connection: protocol, source and
// destination. For ICMP echo both ports hold the echo identifier, so the
// tuple of an echo reply is the reverse of its request's. Addresses are
// IPv4.
type Tuple struct {
	Proto header.IPProto `json:"proto"`
	Src   netip.AddrPort `json:"src"`
	Dst   netip.AddrPort `json:"dst"`
}

// Reverse returns t with source and destination swapped: the tuple of a
// packet travelling the other way.
func (t Tuple) Reverse() Tuple { return Tuple{Proto: t.Proto, Src: t.Dst, Dst: t.Src} }

// String formats t in the style of conntrack -L:
// "src=10.42.0.2 dst=192.0.2.7 sport=40000 dport=80", or for ICMP
// "src=10.42.0.2 dst=192.0.2.7 id=7".
func (t Tuple) String() string {
	if t.Proto == header.ProtoICMPv4 {
		return fmt.Sprintf("src=%s dst=%s id=%d", t.Src.Addr(), t.Dst.Addr(), t.Src.Port())
	}
	return fmt.Sprintf("src=%s dst=%s sport=%d dport=%d", t.Src.Addr(), t.Dst.Addr(), t.Src.Port(), t.Dst.Port())
}

// protoName returns the lower-case name conntrack prints for p.
func protoName(p header.IPProto) string {
	switch p {
	case header.ProtoTCP:
		return "tcp"
	case header.ProtoUDP:
		return "udp"
	case header.ProtoICMPv4:
		return "icmp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// key is a Tuple packed into two words, the table's hash key: comparing and
// hashing it costs a few instructions, where netip.AddrPort (24 bytes with
// a zone pointer) costs a lot more (see Tailscale's net/flowtrack for the
// same choice).
//
//	addrs = src<<32 | dst
//	rest  = sport<<24 | dport<<8 | proto
type key struct {
	addrs uint64
	rest  uint64
}

func makeKey(proto header.IPProto, src, dst uint32, sport, dport uint16) key {
	return key{
		addrs: uint64(src)<<32 | uint64(dst),
		rest:  uint64(sport)<<24 | uint64(dport)<<8 | uint64(proto),
	}
}

func (k key) src() uint32           { return uint32(k.addrs >> 32) }
func (k key) dst() uint32           { return uint32(k.addrs) }
func (k key) sport() uint16         { return uint16(k.rest >> 24) }
func (k key) dport() uint16         { return uint16(k.rest >> 8) }
func (k key) proto() header.IPProto { return header.IPProto(k.rest) }
func (k key) reverse() key          { return makeKey(k.proto(), k.dst(), k.src(), k.dport(), k.sport()) }
func addrOf(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}
func addrBits(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func (k key) srcAddr() netip.Addr { return addrOf(k.src()) }
func (k key) dstAddr() netip.Addr { return addrOf(k.dst()) }
func (k key) tuple() Tuple {
	return Tuple{
		Proto: k.proto(),
		Src:   netip.AddrPortFrom(k.srcAddr(), k.sport()),
		Dst:   netip.AddrPortFrom(k.dstAddr(), k.dport()),
	}
}

// keyOf packs t; ok is false unless both addresses are IPv4 (IPv4-mapped
// IPv6 addresses are unmapped first).
func keyOf(t Tuple) (k key, ok bool) {
	s, d := t.Src.Addr().Unmap(), t.Dst.Addr().Unmap()
	if !s.Is4() || !d.Is4() {
		return key{}, false
	}
	return makeKey(t.Proto, addrBits(s), addrBits(d), t.Src.Port(), t.Dst.Port()), true
}

// hash mixes k with the table's seed (murmur3's 64-bit finaliser over a
// multiply-combined key): the index uses linear probing, which needs
// well-spread low bits, and the seed keeps outsiders from aiming tuples at
// one probe chain.
func hash(k key, seed uint64) uint64 {
	h := (k.addrs^seed)*0x9e3779b97f4a7c15 ^ (k.rest+seed)*0xc2b2ae3d27d4eb4f
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
