package header

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// scalarChecksum is Checksum with the vector path turned off.
func scalarChecksum(b []byte, initial uint32) uint32 {
	defer func(v bool) { useAVX2 = v }(useAVX2)
	useAVX2 = false
	return Checksum(b, initial)
}

// TestChecksumAVX2MatchesScalar compares the AVX2 path with the scalar
// loop on every length up to 4096 at eight alignments, on random, all-0xff
// and all-zero data, and on lengths around the chunk bound where a lane
// would overflow if the bound were wrong.
func TestChecksumAVX2MatchesScalar(t *testing.T) {
	if !useAVX2 {
		t.Skip("this CPU has no AVX2: Checksum only has the scalar path here")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 4096+8)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	for _, data := range []struct {
		name string
		b    []byte
	}{
		{"random", random},
		{"0xff", bytes.Repeat([]byte{0xff}, 4096+8)},
		{"zero", make([]byte, 4096+8)},
	} {
		for size := 0; size <= 4096; size++ {
			for align := range 8 {
				b := data.b[align : align+size]
				initial := rng.Uint32()
				if got, want := Checksum(b, initial), scalarChecksum(b, initial); got != want {
					t.Fatalf("%s size %d align %d: AVX2 %#x, scalar %#x", data.name, size, align, got, want)
				}
			}
		}
	}
	ff := bytes.Repeat([]byte{0xff}, 3*avx2Chunk+100)
	for _, size := range []int{65535, avx2Chunk - 1, avx2Chunk, avx2Chunk + 1, 2*avx2Chunk + 63, 3*avx2Chunk + 99} {
		for _, b := range [][]byte{ff[:size], random[:min(size, len(random))]} {
			if got, want := Checksum(b, 0xffff), naiveChecksum(b, 0xffff); got != want {
				t.Fatalf("size %d: AVX2 %#x, naive %#x", len(b), got, want)
			}
		}
	}
}

func FuzzChecksumAVX2MatchesScalar(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0xff}, 300), uint32(0), uint8(0))
	f.Add(make([]byte, 1000), uint32(0xffffffff), uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, initial uint32, align uint8) {
		b = b[min(int(align%8), len(b)):]
		if got, want := Checksum(b, initial), scalarChecksum(b, initial); got != want {
			t.Fatalf("%d bytes: Checksum %#x, scalar %#x", len(b), got, want)
		}
	})
}

// BenchmarkChecksumScalar is BenchmarkChecksum without the vector path,
// for comparison in one run.
func BenchmarkChecksumScalar(b *testing.B) {
	defer func(v bool) { useAVX2 = v }(useAVX2)
	useAVX2 = false
	benchChecksum(b)
}
