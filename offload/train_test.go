package offload

import (
	"bytes"
	"testing"

	"github.com/ferry-overlay/ferry/header"
)

// trainOf lays pkts out as a UDP_GRO train: each behind a skip-byte tunnel
// header (0xee bytes), in slots of the first one's size; it returns the
// train and that slot size.
func trainOf(pkts [][]byte, skip int) ([]byte, int) {
	seg := skip + len(pkts[0])
	var d []byte
	for _, p := range pkts {
		d = append(d, bytes.Repeat([]byte{0xee}, skip)...)
		d = append(d, p...)
	}
	return d, seg
}

// TestTrainEqualsCoalesce checks that a train Train accepts comes out as
// the very superpacket and header Coalesce makes of the same segments
// split apart, behind the first datagram's tunnel header.
func TestTrainEqualsCoalesce(t *testing.T) {
	eth4, eth6 := baseSpec(false), baseSpec(true)
	eth4.ether, eth6.ether = true, true
	psh := map[int]func(*spec){44: func(s *spec) { s.flags |= header.TCPFlagPSH }}
	for _, tc := range []struct {
		name  string
		base  spec
		sizes []int
		muts  map[int]func(*spec)
	}{
		{"ipv4 in ethernet, 45 full segments", eth4, repeat(1398, 45), nil},
		{"ipv4 in ethernet, last short", eth4, append(repeat(1398, 20), 77), nil},
		{"ipv4 in ethernet, PSH on the last", eth4, repeat(1398, 45), psh},
		{"ipv6 in ethernet", eth6, append(repeat(1378, 10), 1000), nil},
		{"bare ipv4, two segments", baseSpec(false), []int{1400, 1400}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts := flowSegs(t, tc.base, tc.sizes, tc.muts, nil)
			linkLen := tc.base.linkLen()
			d, seg := trainOf(pkts, 8)
			n, hdr, ok := NewCoalescer(linkLen, 64).Train(d, seg, 8)
			if !ok {
				t.Fatal("Train refused a train of one flow's consecutive segments")
			}
			hdrs := make([]VirtioNetHdr, len(pkts))
			if left := NewCoalescer(linkLen, 64).Coalesce(pkts, hdrs); left != 1 {
				t.Fatalf("Coalesce left %d packets, want 1", left)
			}
			if !bytes.Equal(d[:8], bytes.Repeat([]byte{0xee}, 8)) {
				t.Fatal("tunnel header changed")
			}
			if !bytes.Equal(d[8:n], pkts[0]) {
				t.Fatalf("superpacket differs from Coalesce's (%d vs %d bytes)", n-8, len(pkts[0]))
			}
			if hdr != hdrs[0] {
				t.Fatalf("header %+v, Coalesce's %+v", hdr, hdrs[0])
			}
		})
	}
}

// TestTrainRefusesAndLeavesBytes checks that a train with anything the
// rules forbid is refused whole, byte for byte unchanged.
func TestTrainRefusesAndLeavesBytes(t *testing.T) {
	eth := baseSpec(false)
	eth.ether = true
	other := eth
	other.sport++
	badCsum := func(p []byte) { p[len(p)-1] ^= 0xff }
	udp := eth
	udp.udp = true
	for _, tc := range []struct {
		name string
		pkts [][]byte
	}{
		{"one datagram", flowSegs(t, eth, []int{1398}, nil, nil)},
		{"bad checksum in the middle", flowSegs(t, eth, repeat(1398, 5), nil, map[int]func([]byte){2: badCsum})},
		{"bad checksum on the first", flowSegs(t, eth, repeat(1398, 5), nil, map[int]func([]byte){0: badCsum})},
		{"PSH before the last", flowSegs(t, eth, repeat(1398, 5), map[int]func(*spec){1: func(s *spec) { s.flags |= header.TCPFlagPSH }}, nil)},
		{"short segment before the last", flowSegs(t, eth, []int{1398, 700, 1398}, nil, nil)},
		{"sequence gap", flowSegs(t, eth, repeat(1398, 3), map[int]func(*spec){2: func(s *spec) { s.seq += 10 }}, nil)},
		{"another flow", append(flowSegs(t, eth, repeat(1398, 2), nil, nil), flowSegs(t, other, []int{1398}, nil, nil)...)},
		{"different ACK", flowSegs(t, eth, repeat(1398, 3), map[int]func(*spec){1: func(s *spec) { s.ack++ }}, nil)},
		{"FIN", flowSegs(t, eth, repeat(1398, 3), map[int]func(*spec){2: func(s *spec) { s.flags |= header.TCPFlagFIN }}, nil)},
		{"UDP datagrams", flowSegs(t, udp, repeat(1000, 4), nil, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, seg := trainOf(tc.pkts, 8)
			orig := bytes.Clone(d)
			co := NewCoalescer(14, 64)
			co.SetUDP(true)
			if _, _, ok := co.Train(d, seg, 8); ok {
				t.Fatal("Train accepted it")
			}
			if !bytes.Equal(d, orig) {
				t.Fatal("refused train was changed")
			}
		})
	}
}

// TestTrainShortLastDatagram: a last datagram no longer than the tunnel
// header (found by FuzzTrain, which made Train slice past it) is refused.
func TestTrainShortLastDatagram(t *testing.T) {
	eth := baseSpec(false)
	eth.ether = true
	d, seg := trainOf(flowSegs(t, eth, repeat(1398, 2), nil, nil), 8)
	d = append(d, 0xee, 0xee, 0xee, 0xee, 0xee)
	orig := bytes.Clone(d)
	if _, _, ok := NewCoalescer(14, 64).Train(d, seg, 8); ok || !bytes.Equal(d, orig) {
		t.Fatalf("Train accepted (%v) or changed a train ending in 5 bytes", ok)
	}
}

// TestTrainAllocs proves Train allocates nothing.
func TestTrainAllocs(t *testing.T) {
	eth := baseSpec(false)
	eth.ether = true
	d, seg := trainOf(flowSegs(t, eth, repeat(1398, 45), nil, nil), 8)
	work := make([]byte, len(d))
	co := NewCoalescer(14, 64)
	allocs := testing.AllocsPerRun(100, func() {
		copy(work, d)
		if _, _, ok := co.Train(work, seg, 8); !ok {
			t.Fatal("refused")
		}
	})
	if allocs != 0 {
		t.Fatalf("Train allocates %.1f times per call", allocs)
	}
}

// BenchmarkTrain measures Train on a 45-segment train (a 64 KiB TCP
// superpacket as a VXLAN peer cuts it), against the split-and-coalesce
// path it replaces.
func BenchmarkTrain(b *testing.B) {
	eth := baseSpec(false)
	eth.ether = true
	pkts := flowSegs(b, eth, repeat(1398, 45), nil, nil)
	d, seg := trainOf(pkts, 8)
	work := make([]byte, len(d))
	b.Run("train", func(b *testing.B) {
		co := NewCoalescer(14, 64)
		b.SetBytes(int64(len(d)))
		b.ReportAllocs()
		for b.Loop() {
			copy(work, d)
			if _, _, ok := co.Train(work, seg, 8); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("split+coalesce", func(b *testing.B) {
		co := NewCoalescer(14, 64)
		bufs := make([][]byte, len(pkts))
		for i := range bufs {
			bufs[i] = make([]byte, bufCap)
		}
		in := make([][]byte, len(pkts))
		hdrs := make([]VirtioNetHdr, len(pkts))
		b.SetBytes(int64(len(d)))
		b.ReportAllocs()
		for b.Loop() {
			copy(work, d)
			for i := range in {
				in[i] = bufs[i][:copy(bufs[i], work[i*seg+8:min((i+1)*seg, len(work))])]
			}
			if co.Coalesce(in, hdrs) != 1 {
				b.Fatal("not merged")
			}
		}
	})
}

// FuzzTrain feeds Train arbitrary trains: it must not panic, must leave a
// refused train unchanged, and what it accepts must be exactly what
// Coalesce makes of the same datagrams split apart.
func FuzzTrain(f *testing.F) {
	eth := baseSpec(false)
	eth.ether = true
	d, seg := trainOf(flowSegs(f, eth, []int{600, 600, 200}, nil, nil), 8)
	f.Add(d, uint16(seg), uint8(8), true)
	d, seg = trainOf(flowSegs(f, baseSpec(true), []int{500, 500}, nil, nil), 0)
	f.Add(d, uint16(seg), uint8(0), false)
	co := [2]*Coalescer{NewCoalescer(0, 64), NewCoalescer(14, 64)}
	f.Fuzz(func(t *testing.T, d []byte, seg uint16, skip uint8, ether bool) {
		c := co[0]
		if ether {
			c = co[1]
		}
		orig := bytes.Clone(d)
		n, hdr, ok := c.Train(d, int(seg), int(skip))
		if !ok {
			if !bytes.Equal(d, orig) {
				t.Fatal("refused train was changed")
			}
			return
		}
		var pkts [][]byte
		for i := 0; i*int(seg) < len(orig); i++ {
			p := make([]byte, 0, bufCap)
			pkts = append(pkts, append(p, orig[i*int(seg)+int(skip):min((i+1)*int(seg), len(orig))]...))
		}
		hdrs := make([]VirtioNetHdr, len(pkts))
		if left := c.Coalesce(pkts, hdrs); left != 1 {
			t.Fatalf("Train merged %d datagrams that Coalesce leaves as %d packets", len(pkts), left)
		}
		if !bytes.Equal(d[:skip], orig[:skip]) || !bytes.Equal(d[skip:n], pkts[0]) || hdr != hdrs[0] {
			t.Fatalf("Train's superpacket (%d bytes, %+v) is not Coalesce's (%d bytes, %+v)", n-int(skip), hdr, len(pkts[0]), hdrs[0])
		}
	})
}
