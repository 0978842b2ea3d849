package offload

import (
	"bytes"
	"testing"
)

// reportRates adds ns per segment and GB/s (bytes of packet handled per
// nanosecond) to a benchmark that handled segs segments and byteCount bytes
// per operation.
func reportRates(b *testing.B, segs, byteCount int) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(ns/float64(segs), "ns/segment")
	b.ReportMetric(float64(byteCount)/ns, "GB/s")
}

func BenchmarkSegment(b *testing.B) {
	cases := []struct {
		name    string
		v6, udp bool
		payload int
		gso     int
	}{
		{"tcp4-64KiB-mtu1450", false, false, 65535 - 52, 1398},
		{"tcp6-64KiB-mtu1450", true, false, 65535 - 72, 1378},
		{"udp4-64KiB-mtu1450", false, true, 65535 - 28, 1422},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := baseSpec(c.v6)
			s.udp = c.udp
			s.payload = pattern(c.payload, 1)
			pkt, hdr := makeSuperpacket(b, s, c.gso)
			out, sizes := outBufs(64, 2048)
			n, st := Segment(pkt, 0, hdr, 1450, out, sizes)
			if st != StatusOK {
				b.Fatal(st)
			}
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			for b.Loop() {
				Segment(pkt, 0, hdr, 1450, out, sizes)
			}
			reportRates(b, n, len(pkt))
		})
	}
}

func BenchmarkFinishChecksum(b *testing.B) {
	s := baseSpec(false)
	s.payload = pattern(1398, 1)
	pkt, hdr := makeSuperpacket(b, s, 1)
	hdr.GSOType, hdr.GSOSize = GSONone, 0
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		FinishChecksum(pkt, hdr)
	}
}

func BenchmarkCoalesce(b *testing.B) {
	cases := []struct {
		name  string
		v6    bool
		sizes []int
		wantN int
	}{
		{"tcp4-44x1398-one-flow", false, repeat(1398, 44), 1},
		{"tcp6-44x1378-one-flow", true, repeat(1378, 44), 1},
		{"tcp4-64-pure-acks", false, repeat(0, 64), 64},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			pkts := flowSegs(b, baseSpec(c.v6), c.sizes, nil, nil)
			orig := make([][]byte, len(pkts))
			total := 0
			for i, p := range pkts {
				orig[i] = bytes.Clone(p)
				total += len(p)
			}
			co := NewCoalescer(0, 64)
			hdrs := make([]VirtioNetHdr, len(pkts))
			if n := co.Coalesce(pkts, hdrs); n != c.wantN {
				b.Fatalf("Coalesce left %d packets, want %d", n, c.wantN)
			}
			b.SetBytes(int64(total))
			b.ReportAllocs()
			for b.Loop() {
				restore(pkts, orig)
				co.Coalesce(pkts, hdrs)
			}
			reportRates(b, len(pkts), total)
		})
	}
}
