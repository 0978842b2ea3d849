package header

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// naiveChecksum is the reference twin of Checksum: RFC 1071 taken
// literally, one byte at a time, folded at the end.
func naiveChecksum(b []byte, initial uint32) uint32 {
	sum := uint64(initial)
	for i, x := range b {
		if i%2 == 0 {
			sum += uint64(x) << 8
		} else {
			sum += uint64(x)
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint32(sum)
}

func TestChecksumMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	backing := make([]byte, 2000+8)
	for i := range backing {
		backing[i] = byte(rng.Uint32())
	}
	for size := 0; size <= 2000; size++ {
		for align := 0; align < 8; align++ {
			b := backing[align : align+size]
			initial := rng.Uint32()
			if size%5 == 0 {
				initial = 0
			}
			if got, want := Checksum(b, initial), naiveChecksum(b, initial); got != want {
				t.Fatalf("size %d align %d initial %#x: Checksum = %#x, naive = %#x", size, align, initial, got, want)
			}
		}
	}
}

func TestChecksumEdgeValues(t *testing.T) {
	ones := make([]byte, 1501)
	for i := range ones {
		ones[i] = 0xff
	}
	tests := []struct {
		name    string
		b       []byte
		initial uint32
	}{
		{name: "empty zero initial", b: nil},
		{name: "empty max initial", initial: 0xffffffff},
		{name: "all zeros", b: make([]byte, 1500)},
		{name: "all ones even", b: ones[:1500]},
		{name: "all ones odd", b: ones},
		{name: "all ones with initial 0xffff", b: ones[:64], initial: 0xffff},
		{name: "single byte", b: []byte{0xab}},
		{name: "carry chain", b: []byte{0xff, 0xff, 0x00, 0x01}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := Checksum(tc.b, tc.initial), naiveChecksum(tc.b, tc.initial); got != want {
				t.Errorf("Checksum = %#x, naive = %#x", got, want)
			}
		})
	}
}

func TestChecksumChains(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 999)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	whole := Checksum(b, 0)
	for split := 0; split <= len(b); split += 2 {
		if got := Checksum(b[split:], Checksum(b[:split], 0)); got != whole {
			t.Fatalf("split at %d: %#x, want %#x", split, got, whole)
		}
	}
}

// RFC 1071 §3 example: the words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2.
func TestChecksumRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := FoldChecksum(Checksum(b, 0)); got != 0xddf2 {
		t.Errorf("sum = %#x, want 0xddf2", got)
	}
}

func TestFoldChecksum(t *testing.T) {
	tests := []struct {
		in   uint32
		want uint16
	}{
		{0, 0},
		{0xffff, 0xffff},
		{0x10000, 1},
		{0x1fffe, 0xffff},
		{0xffffffff, 0xffff},
		{0x0001fffe, 0xffff},
		{0x12345678, 0x68ac},
	}
	for _, tc := range tests {
		if got := FoldChecksum(tc.in); got != tc.want {
			t.Errorf("FoldChecksum(%#x) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

// fullChecksum is the checksum field a 20-byte header hdr should carry,
// recomputed from scratch with the checksum field (bytes 10-11) zero.
func fullChecksum(hdr []byte) uint16 {
	return ^FoldChecksum(naiveChecksum(append(append([]byte(nil), hdr[:10]...), append([]byte{0, 0}, hdr[12:]...)...), 0))
}

// TestUpdateChecksum16MatchesRecompute changes random words of random
// headers and checks the incremental update against recomputation.
func TestUpdateChecksum16MatchesRecompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	hdr := make([]byte, 20)
	for range 20000 {
		for i := range hdr {
			hdr[i] = byte(rng.Uint32())
		}
		hdr[0] = 0x45 // never all zeros
		binary.BigEndian.PutUint16(hdr[10:], fullChecksum(hdr))
		word := 2 * rng.IntN(10)
		if word == 10 {
			continue // the checksum field itself
		}
		oldVal := binary.BigEndian.Uint16(hdr[word:])
		newVal := uint16(rng.Uint32())
		binary.BigEndian.PutUint16(hdr[word:], newVal)
		got := UpdateChecksum16(binary.BigEndian.Uint16(hdr[10:]), oldVal, newVal)
		if want := fullChecksum(hdr); got != want {
			t.Fatalf("word %d %#x->%#x: incremental %#x, recomputed %#x", word, oldVal, newVal, got, want)
		}
	}
}

// TestUpdateChecksum16Corners covers the cases RFC 1624 §3-§5 discusses:
// the new correct checksum is 0x0000 (where RFC 1141's eqn. 2 gives
// 0xffff), the old checksum is 0x0000, and the changed field is 0xffff or
// 0x0000 on either side.
func TestUpdateChecksum16Corners(t *testing.T) {
	// A header whose other words are fixed; the word at offset 4 (ID) is
	// chosen so the data sums to a wanted value.
	base := []byte{0x45, 0x00, 0x00, 0x54, 0, 0, 0x40, 0x00, 0x40, 0x01, 0, 0, 10, 1, 0, 2, 10, 1, 0, 3}
	withID := func(id uint16) []byte {
		h := append([]byte(nil), base...)
		binary.BigEndian.PutUint16(h[4:], id)
		binary.BigEndian.PutUint16(h[10:], fullChecksum(h))
		return h
	}
	// idFor returns the ID that makes the header's checksum field cs:
	// the data must sum to ^cs, so id = ^cs - rest = ^cs + ^rest.
	restSum := FoldChecksum(naiveChecksum(withID(0)[:10], 0) + naiveChecksum(base[12:], 0))
	idFor := func(cs uint16) uint16 { return FoldChecksum(uint32(^cs) + uint32(^restSum)) }
	tests := []struct {
		name         string
		fromCS, toCS uint16 // checksum field before and after the change
		eqn2Wrong    bool   // RFC 1141's HC' = HC + m - m' gets it wrong
	}{
		{name: "new checksum 0x0000", fromCS: 0x1234, toCS: 0x0000, eqn2Wrong: true},
		{name: "old checksum 0x0000", fromCS: 0x0000, toCS: 0x4321},
		{name: "old checksum 0x0000 to 0x0001", fromCS: 0x0000, toCS: 0x0001},
		{name: "new checksum 0xfffe", fromCS: 0x0000, toCS: 0xfffe},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fromID, toID := idFor(tc.fromCS), idFor(tc.toCS)
			before, after := withID(fromID), withID(toID)
			if got := binary.BigEndian.Uint16(before[10:]); got != tc.fromCS {
				t.Fatalf("setup: before checksum %#x, want %#x", got, tc.fromCS)
			}
			if got := binary.BigEndian.Uint16(after[10:]); got != tc.toCS {
				t.Fatalf("setup: after checksum %#x, want %#x", got, tc.toCS)
			}
			if got := UpdateChecksum16(tc.fromCS, fromID, toID); got != tc.toCS {
				t.Errorf("UpdateChecksum16(%#x, %#x, %#x) = %#x, want %#x", tc.fromCS, fromID, toID, got, tc.toCS)
			}
			eqn2 := FoldChecksum(uint32(tc.fromCS) + uint32(fromID) + uint32(^toID))
			if (eqn2 != tc.toCS) != tc.eqn2Wrong {
				t.Errorf("eqn. 2 gives %#x; the case does not exercise the corner it names", eqn2)
			}
		})
	}
	// The field values 0x0000 and 0xffff are the same number in ones'
	// complement: changing one into the other keeps the checksum.
	for _, cs := range []uint16{0x0000, 0x1234, 0xfffe} {
		if got := UpdateChecksum16(cs, 0x0000, 0xffff); got != cs {
			t.Errorf("UpdateChecksum16(%#x, 0, 0xffff) = %#x", cs, got)
		}
		if got := UpdateChecksum16(cs, 0xffff, 0x0000); got != cs {
			t.Errorf("UpdateChecksum16(%#x, 0xffff, 0) = %#x", cs, got)
		}
	}
}

func TestUpdateChecksumAddr(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	tests := []struct {
		name     string
		from, to netip.Addr
	}{
		{name: "ipv4 snat", from: netip.MustParseAddr("10.1.0.2"), to: netip.MustParseAddr("192.0.2.1")},
		{name: "ipv4 to zero", from: netip.MustParseAddr("10.1.0.2"), to: netip.MustParseAddr("0.0.0.0")},
		{name: "ipv4 to broadcast", from: netip.MustParseAddr("0.0.0.0"), to: netip.MustParseAddr("255.255.255.255")},
		{name: "ipv6", from: netip.MustParseAddr("fd00::2"), to: netip.MustParseAddr("2001:db8::ffff:1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Data: some random words, then the address.
			n := len(tc.from.AsSlice())
			data := make([]byte, 12+n)
			for i := range 12 {
				data[i] = byte(rng.Uint32())
			}
			data[0] |= 1
			copy(data[12:], tc.from.AsSlice())
			old := ^FoldChecksum(Checksum(data, 0))
			copy(data[12:], tc.to.AsSlice())
			want := ^FoldChecksum(Checksum(data, 0))
			if got := UpdateChecksumAddr(old, tc.from, tc.to); got != want {
				t.Errorf("UpdateChecksumAddr = %#x, recomputed %#x", got, want)
			}
		})
	}
	if got := UpdateChecksumAddr(0x1234, ip4A, ip6A); got != 0x1234 {
		t.Errorf("mixed families changed the checksum to %#x", got)
	}
}

func TestUpdateChecksum32(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	data := make([]byte, 24)
	for range 5000 {
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		data[0] |= 1
		old := ^FoldChecksum(Checksum(data, 0))
		oldVal := binary.BigEndian.Uint32(data[8:])
		newVal := rng.Uint32()
		binary.BigEndian.PutUint32(data[8:], newVal)
		if got, want := UpdateChecksum32(old, oldVal, newVal), ^FoldChecksum(Checksum(data, 0)); got != want {
			t.Fatalf("%#x->%#x: %#x, want %#x", oldVal, newVal, got, want)
		}
	}
}

func TestChecksumAllocs(t *testing.T) {
	b := make([]byte, 1500)
	if n := testing.AllocsPerRun(100, func() { _ = FoldChecksum(Checksum(b, 0)) }); n != 0 {
		t.Errorf("Checksum allocates %v times", n)
	}
}

// TestChecksumStackBufferAllocs checks that a buffer on the caller's stack
// stays there on both paths (short: the scalar loop; long: the vector
// path, where the CPU has one): if Checksum let its argument escape, every
// header checksummed from a local array would be allocated on the heap.
func TestChecksumStackBufferAllocs(t *testing.T) {
	short := testing.AllocsPerRun(100, func() {
		var b [40]byte
		b[0] = 0x45
		_ = Checksum(b[:], 0)
	})
	long := testing.AllocsPerRun(100, func() {
		var b [1024]byte
		b[0] = 0x45
		_ = Checksum(b[:], 0)
	})
	if short != 0 || long != 0 {
		t.Errorf("Checksum over a stack array allocates %v (40 bytes) and %v (1024 bytes) times", short, long)
	}
}

func BenchmarkChecksum(b *testing.B) { benchChecksum(b) }

// benchChecksum runs Checksum over 64, 1500 and 65535 bytes as
// sub-benchmarks, with whichever paths the caller left enabled.
func benchChecksum(b *testing.B) {
	for _, size := range []int{64, 1500, 65535} {
		buf := make([]byte, size)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var sink uint32
			for b.Loop() {
				sink += Checksum(buf, 0)
			}
			_ = sink
		})
	}
}

func BenchmarkChecksumNaive1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(1500)
	b.ReportAllocs()
	for b.Loop() {
		_ = naiveChecksum(buf, 0)
	}
}
