package nat

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
)

// FuzzProcess feeds arbitrary bytes as an IPv4 packet, in both directions,
// to a table holding masqueraded, published and hairpin flows. Invariants:
// no panic; a packet that is not Translated is untouched; a translated one
// keeps its length, and every checksum that was right before is right
// after (full recomputation).
func FuzzProcess(f *testing.F) {
	tab := rulesTable(f)
	seedFlows := []struct {
		d Dir
		b []byte
	}{
		{Outbound, tcpPkt(f, ap(c1, 40000), ap(srvS, 80), fSYN, []byte("abc"))},
		{Outbound, udpPkt(f, ap(c1, 5000), ap(srvS, 53), []byte("q"))},
		{Outbound, echoPkt(f, c1, srvS, 8, 7, 1)},
		{Inbound, udpPkt(f, ap(cliC, 7777), ap(natIP, 5353), []byte("q"))},
		{Outbound, tcpPkt(f, ap(c1, 6000), ap(natIP, 8080), fSYN, nil)},
	}
	for _, s := range seedFlows {
		orig := bytes.Clone(s.b)
		if v := process(tab, 0, s.d, s.b); v != Translated {
			f.Fatalf("seed flow: %v", v)
		}
		f.Add(orig)
		f.Add(s.b)
	}
	f.Add(tcpPkt(f, ap(srvS, 80), ap(natIP, 40000), fSYNACK, []byte("reply")))
	f.Add(echoPkt(f, srvS, natIP, 0, 7, 1))
	tcpOut := tcpPkt(f, ap(natIP, 40000), ap(srvS, 80), fSYN, []byte("0123"))
	f.Add(icmpErrPkt(f, rtrR, natIP, 3, 4, 1400, tcpOut[:28]))
	f.Add(icmpErrPkt(f, rtrR, natIP, 11, 0, 0, tcpOut))
	f.Add(icmpErrPkt(f, c3, cliC, 3, 3, 0, udpPkt(f, ap(cliC, 7777), ap(c3, 53), []byte("q"))))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, d := range []Dir{Outbound, Inbound} {
			b := bytes.Clone(pkt)
			before := checksumProblems(b)
			v := process(tab, 1, d, b)
			if v >= numVerdicts {
				t.Fatalf("verdict %d out of range", v)
			}
			if v != Translated {
				if !bytes.Equal(b, pkt) {
					t.Fatalf("%v packet with verdict %v was modified", d, v)
				}
				continue
			}
			if len(b) != len(pkt) {
				t.Fatalf("length changed %d -> %d", len(pkt), len(b))
			}
			for _, p := range checksumProblems(b) {
				if !slices.Contains(before, p) {
					t.Fatalf("%v: translation broke the %s checksum (before: %v)", d, p, before)
				}
			}
		}
	})
}

// FuzzPlan feeds arbitrary bytes, in both directions, to Plan and then to
// Process on a table holding a masqueraded and a published flow.
// Invariants: no panic; Plan changes neither the table's connections nor
// its statistics; Process then gives the verdict Plan foresaw and rewrites
// the packet to the same bytes.
func FuzzPlan(f *testing.F) {
	f.Add(tcpPkt(f, ap(c2, 41000), ap(srvS, 80), fSYN, nil))
	f.Add(tcpPkt(f, ap(srvS, 80), ap(natIP, 40000), fSYNACK, nil))
	f.Add(tcpPkt(f, ap(c1, 6000), ap(natIP, 8080), fSYN, nil))
	f.Add(udpPkt(f, ap(cliC, 7777), ap(natIP, 5353), []byte("q")))
	f.Add(echoPkt(f, c1, srvS, 8, 9, 1))
	tcpOut := tcpPkt(f, ap(natIP, 40000), ap(srvS, 80), fSYN, []byte("0123"))
	f.Add(icmpErrPkt(f, rtrR, natIP, 3, 4, 1400, tcpOut[:28]))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, d := range []Dir{Outbound, Inbound} {
			tab := planTable(t)
			before := stateOf(tab, sec)
			planned := bytes.Clone(pkt)
			pl := tab.Plan(sec, planned, d)
			if after := stateOf(tab, sec); !reflect.DeepEqual(after, before) {
				t.Fatalf("%v: Plan changed the table", d)
			}
			processed := bytes.Clone(pkt)
			if v := process(tab, sec, d, processed); v != pl.Verdict {
				t.Fatalf("%v: Process says %v, Plan said %v", d, v, pl.Verdict)
			}
			if !bytes.Equal(processed, planned) {
				t.Fatalf("%v: Process and Plan wrote different bytes", d)
			}
		}
	})
}
