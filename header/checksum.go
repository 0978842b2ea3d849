package header

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Checksum adds the bytes of b to the partial Internet checksum initial and
// returns the new partial sum (RFC 1071): the ones'-complement sum of b read
// as big-endian 16-bit words, with an odd final byte padded with a zero.
//
// Partial sums chain: Checksum(b2, Checksum(b1, 0)) equals Checksum of b1
// followed by b2 as long as len(b1) is even; only the last piece may have
// an odd length. A uint32 partial sum may also be added to with +, e.g.
// for pseudo-header fields, as long as it does not overflow (the returned
// value is at most 0xffff). FoldChecksum turns a partial sum into the 16-bit
// value; the checksum field of a header holds its complement.
//
// Long inputs are summed with vector instructions where the CPU has them
// (sumWide: AVX2 on amd64), the rest by the loop below. The loop adds
// 64-bit words with end-around carry (2^64 ≡ 1 mod 2^16-1, so this equals
// the 16-bit sum) and reads them little-endian, which by the
// byte-order independence of the ones'-complement sum (RFC 1071 §2(B))
// yields the byte-swapped result; it is swapped back at the end.
func Checksum(b []byte, initial uint32) uint32 {
	// Fold initial to 16 bits and move it into the byte-swapped domain.
	acc := uint64(bits.ReverseBytes16(FoldChecksum(initial)))
	acc, b = sumWide(acc, b)
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), 0)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:]), c)
		acc += c // cannot overflow: acc <= 2^64-2 after a carry out
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), 0)
		acc += c
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(b)), 0)
		acc += c
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint16(b)), 0)
		acc += c
		b = b[2:]
	}
	if len(b) == 1 {
		// The odd byte is the high byte of a big-endian word, so the low
		// byte in the swapped domain.
		acc, c = bits.Add64(acc, uint64(b[0]), 0)
		acc += c
	}
	// Fold 64 -> 32 -> 16 bits with end-around carries.
	s := (acc >> 32) + (acc & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	return uint32(bits.ReverseBytes16(FoldChecksum(uint32(s))))
}

// FoldChecksum folds a 32-bit partial sum into 16 bits with end-around
// carries. The result is the ones'-complement sum; a header's checksum field
// holds ^FoldChecksum(sum), and a received header (checksum field included)
// is intact iff FoldChecksum of its sum is 0xffff.
func FoldChecksum(sum uint32) uint16 {
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return uint16(sum)
}

// UpdateChecksum16 returns the checksum field that replaces old when a
// 16-bit word of the covered data changes from oldVal to newVal, without
// summing the data again (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
//
// Eqn. 3 rather than RFC 1141's HC' = HC + m - m' (eqn. 2) matters in the
// corner RFC 1624 §3 describes: when the new sum of the data is 0xffff the
// correct checksum is 0x0000, which eqn. 3 yields and eqn. 2 does not (it
// yields 0xffff, the other zero, which full recomputation never produces for
// data that is not all zeros). An old field of 0xffff is handled alike.
func UpdateChecksum16(old, oldVal, newVal uint16) uint16 {
	sum := uint32(^old) + uint32(^oldVal) + uint32(newVal)
	return ^FoldChecksum(sum)
}

// UpdateChecksum32 is UpdateChecksum16 for an aligned 32-bit field (an IPv4
// address, a TCP sequence number) changing from oldVal to newVal.
func UpdateChecksum32(old uint16, oldVal, newVal uint32) uint16 {
	sum := uint32(^old) +
		uint32(^uint16(oldVal>>16)) + uint32(^uint16(oldVal)) +
		(newVal >> 16) + (newVal & 0xffff)
	return ^FoldChecksum(sum)
}

// UpdateChecksumAddr is UpdateChecksum16 for an address field changing from
// oldAddr to newAddr: an IPv4 header's source or destination, or the
// pseudo-header part of a TCP/UDP checksum when NAT rewrites an address.
// Both addresses must be of the same family (both IPv4, or both IPv6);
// otherwise old is returned unchanged.
func UpdateChecksumAddr(old uint16, oldAddr, newAddr netip.Addr) uint16 {
	switch {
	case oldAddr.Is4() && newAddr.Is4():
		o, n := oldAddr.As4(), newAddr.As4()
		return UpdateChecksum32(old, binary.BigEndian.Uint32(o[:]), binary.BigEndian.Uint32(n[:]))
	case oldAddr.Is6() && newAddr.Is6():
		o, n := oldAddr.As16(), newAddr.As16()
		sum := uint32(^old)
		for i := 0; i < 16; i += 2 {
			sum += uint32(^binary.BigEndian.Uint16(o[i:])) + uint32(binary.BigEndian.Uint16(n[i:]))
		}
		return ^FoldChecksum(sum)
	}
	return old
}
