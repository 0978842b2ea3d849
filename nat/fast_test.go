package nat

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/ferry-overlay/ferry/header"
)

// TestBadInput: malformed packets are counted drops (or NoMatch) and are
// left untouched; nothing panics.
func TestBadInput(t *testing.T) {
	good := tcpPkt(t, ap(c1, 40000), ap(srvS, 80), fSYN, nil)
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := []struct {
		name string
		pkt  []byte
		dir  Dir
		want Verdict
	}{
		{"empty", nil, Outbound, DropMalformed},
		{"19 bytes", good[:19], Outbound, DropMalformed},
		{"IPv6 version", mut(func(b []byte) []byte { b[0] = 0x60; return b }), Outbound, DropMalformed},
		{"IHL 4", mut(func(b []byte) []byte { b[0] = 0x44; return b }), Outbound, DropMalformed},
		{"total length past the buffer", mut(func(b []byte) []byte { b[3] = 200; return b }), Outbound, DropMalformed},
		{"TCP header cut off", mut(func(b []byte) []byte { b[3] = 30; return b }), Outbound, DropMalformed},
		{"TCP data offset 4", mut(func(b []byte) []byte { b[32] = 0x40; return b }), Outbound, DropMalformed},
		{"TCP data offset past the packet", mut(func(b []byte) []byte { b[32] = 0xf0; return b }), Outbound, DropMalformed},
		{"UDP length 7", func() []byte {
			b := udpPkt(t, ap(c1, 5000), ap(srvS, 53), []byte("x"))
			b[25] = 7
			return b
		}(), Outbound, DropMalformed},
		{"UDP length past the packet", func() []byte {
			b := udpPkt(t, ap(c1, 5000), ap(srvS, 53), []byte("x"))
			b[25] = 200
			return b
		}(), Outbound, DropMalformed},
		{"ICMP cut off", echoPkt(t, c1, srvS, 8, 1, 1)[:24], Outbound, DropMalformed},
		{"ICMP timestamp request", echoPkt(t, c1, srvS, 13, 1, 1), Outbound, DropUnsupported},
		{"GRE", mut(func(b []byte) []byte { b[9] = 47; return b }), Outbound, DropUnsupported},
		{"fragment (MF)", mut(func(b []byte) []byte { b[6] |= 0x20; return b }), Outbound, DropFragment},
		{"fragment (offset)", mut(func(b []byte) []byte { b[7] = 1; return b }), Outbound, DropFragment},
		{"outbound echo reply with no flow", echoPkt(t, c1, srvS, 0, 1, 1), Outbound, DropInvalid},
		{"unknown direction", bytes.Clone(good), Dir(9), DropInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab := newTable(t, Options{MaxEntries: 16})
			keep := bytes.Clone(tc.pkt)
			v := process(tab, 0, tc.dir, tc.pkt)
			if v != tc.want || !v.IsDrop() && v != NoMatch {
				t.Fatalf("verdict %v, want %v", v, tc.want)
			}
			if !bytes.Equal(tc.pkt, keep) {
				t.Fatal("packet modified")
			}
			if n := tab.Stats().Entries; n != 0 {
				t.Fatalf("%d entries", n)
			}
		})
	}
}

// established returns a table with n established TCP flows c1:(10000+i)
// -> S:80, a batch of 1400-byte data segments of those flows outbound, and
// one of their replies inbound.
func established(tb testing.TB, n int) (*Table, [][]byte, [][]byte) {
	tab := newTable(tb, Options{MaxEntries: 4096})
	out := make([][]byte, n)
	in := make([][]byte, n)
	for i := range n {
		src := ap(c1, uint16(10000+i))
		for _, s := range []struct {
			d Dir
			b []byte
		}{
			{Outbound, tcpPkt(tb, src, ap(srvS, 80), fSYN, nil)},
			{Inbound, tcpPkt(tb, ap(srvS, 80), ap(natIP, src.Port()), fSYNACK, nil)},
			{Outbound, tcpPkt(tb, src, ap(srvS, 80), fACK, nil)},
		} {
			if v := process(tab, 0, s.d, s.b); v != Translated {
				tb.Fatalf("setup flow %d: %v", i, v)
			}
		}
		out[i] = tcpPkt(tb, src, ap(srvS, 80), fACK, bytes.Repeat([]byte{'d'}, 1400))
		in[i] = tcpPkt(tb, ap(srvS, 80), ap(natIP, src.Port()), fACK, bytes.Repeat([]byte{'r'}, 1400))
	}
	return tab, out, in
}

// headers saves the first 40 bytes (IPv4 + TCP headers, all NAT changes)
// of every packet; restore puts them back, so a benchmark can translate
// the same buffers again at the cost of a 40-byte copy per packet.
func headers(pkts [][]byte) [][40]byte {
	h := make([][40]byte, len(pkts))
	for i, p := range pkts {
		copy(h[i][:], p)
	}
	return h
}

func restore(pkts [][]byte, h [][40]byte) {
	for i, p := range pkts {
		copy(p, h[i][:])
	}
}

func dirs(n int, d Dir) []Dir {
	ds := make([]Dir, n)
	for i := range ds {
		ds[i] = d
	}
	return ds
}

// TestZeroAllocs: the established path and the new-flow path allocate
// nothing.
func TestZeroAllocs(t *testing.T) {
	tab, out, in := established(t, 64)
	vs := make([]Verdict, 64)
	dOut, dIn := dirs(64, Outbound), dirs(64, Inbound)
	now := int64(sec)
	ho, hi := headers(out), headers(in)
	if a := testing.AllocsPerRun(100, func() {
		restore(out, ho)
		restore(in, hi)
		tab.Process(now, out, dOut, vs)
		tab.Process(now, in, dIn, vs)
		now += sec / 100 // the collection step runs too
	}); a != 0 {
		t.Fatalf("established: %v allocs per run", a)
	}
	for _, v := range vs {
		if v != Translated {
			t.Fatalf("verdict %v", v)
		}
	}
	tab2 := newTable(t, Options{MaxEntries: 1 << 14})
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = udpPkt(t, ap(c1, 1), ap(srvS, 53), nil)
	}
	port := 1
	if a := testing.AllocsPerRun(100, func() {
		for _, p := range pkts {
			p[20], p[21] = byte(port>>8), byte(port)
			p[26], p[27] = 0, 0
			p[12], p[13], p[14], p[15] = 10, 42, 0, 2
			port++
		}
		tab2.Process(0, pkts, dOut, vs)
	}); a != 0 {
		t.Fatalf("new flows: %v allocs per run", a)
	}
	if s := tab2.Stats(); s.Inserts != 101*64 {
		t.Fatalf("inserts %d, want %d", s.Inserts, 101*64)
	}
}

// TestConcurrentWorkers: four workers translate their own flows both ways
// while the control path snapshots, expires and swaps rules; every packet
// comes back to its original tuple. Run with -race.
func TestConcurrentWorkers(t *testing.T) {
	tab := newTable(t, Options{MaxEntries: 1 << 12, PortMin: 20000, PortMax: 29999})
	const workers, flows, rounds = 4, 64, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([][]byte, flows)
			want := make([]Tuple, flows)
			for i := range out {
				// Every worker uses the same source ports, from its own
				// container, so mappings collide and get remapped.
				out[i] = udpPkt(t, ap(netipFrom(10, 42, 2, byte(w+1)), uint16(5000+i)), ap(srvS, 53), []byte("q"))
				want[i] = tupleOf(out[i])
			}
			in := make([][]byte, flows)
			vs := make([]Verdict, flows)
			for r := range rounds {
				now := int64(r) * sec / 10
				tab.Process(now, out, dirs(flows, Outbound), vs)
				for i, p := range out {
					if vs[i] != Translated {
						errs <- fmt.Errorf("worker %d: out verdict %v", w, vs[i])
						return
					}
					tr := tupleOf(p)
					in[i] = udpPkt(t, tr.Dst, tr.Src, []byte("a"))
				}
				tab.Process(now, in, dirs(flows, Inbound), vs)
				for i, p := range in {
					if got := tupleOf(p); vs[i] != Translated || got != want[i].Reverse() {
						errs <- fmt.Errorf("worker %d: reply %v became %v, want %v", w, vs[i], got, want[i].Reverse())
						return
					}
					out[i] = udpPkt(t, want[i].Src, want[i].Dst, []byte("q"))
				}
			}
		}()
	}
	stop := make(chan struct{})
	var ctl sync.WaitGroup
	ctl.Add(1)
	go func() {
		defer ctl.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = tab.Snapshot(int64(i), nil)
			_ = tab.Stats()
			tab.Expire(0, 64)
			if _, err := tab.SetRules([]Rule{{Proto: header.ProtoTCP, Port: uint16(8000 + i%2), To: ap(c2, 80)}}); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	ctl.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if s := tab.Stats(); s.UDP != workers*flows || s.Inserts != workers*flows {
		t.Fatalf("stats %+v, want %d UDP flows", s, workers*flows)
	}
}

// BenchmarkEstablishedTCP: translate a batch of 64 data segments of 64
// established flows outbound and a batch of their replies inbound; ns/pkt
// is per packet translated and includes restoring the 40 header bytes of
// each packet (see BenchmarkRestore for that cost alone).
func BenchmarkEstablishedTCP(b *testing.B) {
	tab, out, in := established(b, 64)
	vs := make([]Verdict, 64)
	dOut, dIn := dirs(64, Outbound), dirs(64, Inbound)
	ho, hi := headers(out), headers(in)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		restore(out, ho)
		restore(in, hi)
		tab.Process(int64(i), out, dOut, vs)
		tab.Process(int64(i), in, dIn, vs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*128), "ns/pkt")
	if vs[0] != Translated {
		b.Fatal(vs[0])
	}
}

// BenchmarkRestore is the header-restoring overhead included in
// BenchmarkEstablishedTCP, per packet.
func BenchmarkRestore(b *testing.B) {
	_, out, in := established(b, 64)
	ho, hi := headers(out), headers(in)
	b.ReportAllocs()
	for b.Loop() {
		restore(out, ho)
		restore(in, hi)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*128), "ns/pkt")
}

// BenchmarkNewFlow: every packet starts a UDP connection (masquerade, port
// kept); the table is flushed outside the timer when it fills.
func BenchmarkNewFlow(b *testing.B) {
	const max = 1 << 16
	tab := newTable(b, Options{MaxEntries: max})
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = udpPkt(b, ap(c1, 1), ap(srvS, 53), nil)
		pkts[i][26], pkts[i][27] = 0, 0
	}
	vs := make([]Verdict, 64)
	d := dirs(64, Outbound)
	flow := 0
	b.ReportAllocs()
	for b.Loop() {
		if flow+64 > max {
			b.StopTimer()
			tab.Flush()
			flow = 0
			b.StartTimer()
		}
		for _, p := range pkts {
			// A fresh server address for each packet, so every flow
			// keeps its source port.
			p[16], p[17], p[18], p[19] = 192, byte(flow>>16), byte(flow>>8), byte(flow)
			p[10], p[11] = 0, 0
			binaryPutIPChecksum(p)
			flow++
		}
		tab.Process(0, pkts, d, vs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
	if vs[0] != Translated {
		b.Fatal(vs[0])
	}
}

func binaryPutIPChecksum(p []byte) {
	ip := header.IPv4(p)
	ip.SetChecksum(ip.CalculateChecksum())
}
