package header

import (
	"math/bits"

	"golang.org/x/sys/cpu"
)

// Why assembly: every byte of a TCP stream is summed twice on ferry's
// path (cut into segments on one host, verified when coalesced on the
// other), and Go has no vector intrinsics. The scalar loop adds about 8
// bytes per cycle through one carry chain; sumAVX2 widens 16-bit words
// into 32-bit lanes of four independent accumulators.

// useAVX2 says whether sumWide may use sumAVX2; a variable so the test can
// compare both paths on a machine that has AVX2.
var useAVX2 = cpu.X86.HasAVX2

const (
	// avx2Min is the shortest input worth the vector path's setup and
	// final reduction; headers take the scalar loop.
	avx2Min = 256
	// avx2Chunk bounds one sumAVX2 call so no 32-bit lane can overflow:
	// each of the 32 lanes adds one 16-bit word per 64 bytes, and the
	// four accumulators are added together at the end, so a lane holds
	// at most 4 * (avx2Chunk/64) * 0xffff, below 2^32 for 1 MiB.
	avx2Chunk = 1 << 20
)

// sumAVX2 returns the sum of the little-endian 16-bit words of b, whose
// length must be a multiple of 64 and at most avx2Chunk. Implemented in
// checksum_amd64.s.
//
//go:noescape
func sumAVX2(b []byte) uint64

// sumWide adds the leading multiple of 64 bytes of b to the byte-swapped
// partial sum acc with AVX2, when the CPU has it and b is long enough, and
// returns the new sum and the bytes left for the scalar loop.
func sumWide(acc uint64, b []byte) (uint64, []byte) {
	if !useAVX2 || len(b) < avx2Min {
		return acc, b
	}
	n := len(b) &^ 63
	var c uint64
	for i := 0; i < n; i += avx2Chunk {
		acc, c = bits.Add64(acc, sumAVX2(b[i:min(i+avx2Chunk, n)]), 0)
		acc += c
	}
	return acc, b[n:]
}
