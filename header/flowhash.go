package header

import (
	"encoding/binary"
	"math/bits"
)

// FlowHash returns a 32-bit hash of the inner flow of an Ethernet frame, for
// choosing a tunnel's outer UDP source port (RFC 7348 §5: so that routers
// and receivers spreading by 5-tuple keep a flow on one path and spread
// different flows) and for spreading flows across workers.
//
// What it hashes:
//   - IPv4 or IPv6 (after at most one 802.1Q tag) carrying TCP or UDP, not a
//     non-first fragment: the 5-tuple (addresses, protocol, ports);
//   - other IPv4 or IPv6: the addresses and the protocol;
//   - anything else, or an IP header too short to read: the MAC addresses
//     and the EtherType.
//
// The hash is symmetric: both directions of a flow (source and destination
// swapped) hash alike, as the Linux flow dissector's hash is, so a worker
// chosen by it sees both directions of a connection. It is not keyed, so it
// is not meant to resist crafted collisions; it only spreads honest traffic.
//
// FlowHash never panics, whatever frame holds (short or garbage), never
// allocates, and keeps no reference to frame. It does less checking than
// Parsed.Decode: a frame Decode rejects still gets a stable hash.
func FlowHash(frame []byte) uint32 {
	if len(frame) < EthernetLen {
		return finish(mix(hashSeed, uint64(len(frame))))
	}
	etype := binary.BigEndian.Uint16(frame[ethType:])
	off := EthernetLen
	if etype == EtherTypeVLAN && len(frame) >= EthernetLen+VLANTagLen {
		etype = binary.BigEndian.Uint16(frame[vlanType:])
		off += VLANTagLen
	}
	l3 := frame[off:]
	switch {
	case etype == EtherTypeIPv4 && len(l3) >= IPv4MinLen && l3[0]>>4 == IPv4Version:
		return hashIPv4(l3)
	case etype == EtherTypeIPv6 && len(l3) >= IPv6Len && l3[0]>>4 == IPv6Version:
		return hashIPv6(l3)
	}
	// L2 flow: the two MACs in canonical order, and the EtherType.
	a := uint64(binary.BigEndian.Uint32(frame[ethDst:]))<<16 | uint64(binary.BigEndian.Uint16(frame[ethDst+4:]))
	b := uint64(binary.BigEndian.Uint32(frame[ethSrc:]))<<16 | uint64(binary.BigEndian.Uint16(frame[ethSrc+4:]))
	if a > b {
		a, b = b, a
	}
	h := mix(hashSeed, a)
	h = mix(h, b)
	return finish(mix(h, uint64(etype)))
}

func hashIPv4(l3 []byte) uint32 {
	ip := IPv4(l3)
	src := binary.BigEndian.Uint32(l3[ipv4Src:])
	dst := binary.BigEndian.Uint32(l3[ipv4Dst:])
	proto := ip.Protocol()
	var sport, dport uint16
	hlen := ip.HeaderLength()
	if (proto == ProtoTCP || proto == ProtoUDP) && ip.FragmentOffset() == 0 &&
		hlen >= IPv4MinLen && len(l3) >= hlen+4 {
		sport = binary.BigEndian.Uint16(l3[hlen:])
		dport = binary.BigEndian.Uint16(l3[hlen+2:])
	}
	if src > dst || (src == dst && sport > dport) {
		src, dst = dst, src
		sport, dport = dport, sport
	}
	h := mix(hashSeed, uint64(src)<<32|uint64(dst))
	return finish(mix(h, uint64(proto)<<32|uint64(sport)<<16|uint64(dport)))
}

func hashIPv6(l3 []byte) uint32 {
	proto := IPv6(l3).NextHeader()
	var sport, dport uint16
	// Only a transport header straight after the fixed header is used;
	// with extension headers the flow is hashed by addresses and the first
	// Next Header, which is still stable per flow.
	if (proto == ProtoTCP || proto == ProtoUDP) && len(l3) >= IPv6Len+4 {
		sport = binary.BigEndian.Uint16(l3[IPv6Len:])
		dport = binary.BigEndian.Uint16(l3[IPv6Len+2:])
	}
	s1 := binary.BigEndian.Uint64(l3[ipv6Src:])
	s2 := binary.BigEndian.Uint64(l3[ipv6Src+8:])
	d1 := binary.BigEndian.Uint64(l3[ipv6Dst:])
	d2 := binary.BigEndian.Uint64(l3[ipv6Dst+8:])
	if s1 > d1 || (s1 == d1 && (s2 > d2 || (s2 == d2 && sport > dport))) {
		s1, s2, d1, d2 = d1, d2, s1, s2
		sport, dport = dport, sport
	}
	h := mix(hashSeed, s1)
	h = mix(h, s2)
	h = mix(h, d1)
	h = mix(h, d2)
	return finish(mix(h, uint64(proto)<<32|uint64(sport)<<16|uint64(dport)))
}

// hashSeed is an arbitrary odd constant (the 64-bit golden ratio).
const hashSeed = 0x9e3779b97f4a7c15

// mix folds v into h: a 64×64→128-bit multiply whose halves are xored
// together, the mixing step of the wyhash family.
func mix(h, v uint64) uint64 {
	hi, lo := bits.Mul64(h^v, 0xbf58476d1ce4e5b9)
	return hi ^ lo
}

// finish avalanches the state (splitmix64's finalizer) and returns 32 bits.
func finish(h uint64) uint32 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return uint32(h ^ h>>32)
}

// FlowHashIPv4 is FlowHash for a bare IPv4 packet (an l3 network's packet,
// with no Ethernet header): the same symmetric 5-tuple or address hash, so
// a flow keeps one outer source port. A packet too short for an IPv4 header
// or not version 4 hashes by its length. It never panics or allocates.
func FlowHashIPv4(pkt []byte) uint32 {
	if len(pkt) < IPv4MinLen || pkt[0]>>4 != IPv4Version {
		return finish(mix(hashSeed, uint64(len(pkt))))
	}
	return hashIPv4(pkt)
}
