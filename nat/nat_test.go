package nat

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/ferry-overlay/ferry/header"
)

// TestMasqueradeKeepsPortAndTranslatesBack: the first flow keeps its
// source port, a second flow from another container with the same source
// port to the same server gets another one, and replies reach each.
func TestMasqueradeKeepsPortAndTranslatesBack(t *testing.T) {
	tab := newTable(t, Options{MaxEntries: 16, PortMin: 30000, PortMax: 30009})
	p1 := tcpPkt(t, ap(c1, 40000), ap(srvS, 80), fSYN, nil)
	p2 := tcpPkt(t, ap(c2, 40000), ap(srvS, 80), fSYN, nil)
	if v := process(tab, 0, Outbound, p1); v != Translated {
		t.Fatal(v)
	}
	if v := process(tab, 0, Outbound, p2); v != Translated {
		t.Fatal(v)
	}
	checkChecksums(t, p1)
	checkChecksums(t, p2)
	t1, t2 := tupleOf(p1), tupleOf(p2)
	if t1.Src != ap(natIP, 40000) || t1.Dst != ap(srvS, 80) {
		t.Fatalf("first flow leaves as %v", t1)
	}
	if t2.Src.Addr() != natIP || t2.Src.Port() < 30000 || t2.Src.Port() > 30009 || t2.Dst != ap(srvS, 80) {
		t.Fatalf("second flow leaves as %v", t2)
	}
	for _, tc := range []struct {
		port uint16
		want Tuple
	}{
		{40000, Tuple{header.ProtoTCP, ap(srvS, 80), ap(c1, 40000)}},
		{t2.Src.Port(), Tuple{header.ProtoTCP, ap(srvS, 80), ap(c2, 40000)}},
	} {
		r := tcpPkt(t, ap(srvS, 80), ap(natIP, tc.port), fSYNACK, []byte("hello"))
		if v := process(tab, 1, Inbound, r); v != Translated {
			t.Fatal(v)
		}
		checkChecksums(t, r)
		if got := tupleOf(r); got != tc.want {
			t.Fatalf("reply to port %d became %v, want %v", tc.port, got, tc.want)
		}
	}
}

// TestICMPEchoSameIdentifier: two containers ping one host with the same
// identifier at once; they get distinct identifiers on the nat_address and
// both replies come back to the right container with the original id.
func TestICMPEchoSameIdentifier(t *testing.T) {
	tab := newTable(t, Options{MaxEntries: 16})
	r1, r2 := echoPkt(t, c1, srvS, 8, 7, 1), echoPkt(t, c2, srvS, 8, 7, 1)
	batch := [][]byte{r1, r2}
	vs := make([]Verdict, 2)
	tab.Process(0, batch, []Dir{Outbound, Outbound}, vs)
	if vs[0] != Translated || vs[1] != Translated {
		t.Fatalf("verdicts %v", vs)
	}
	id1, id2 := header.ICMPv4(r1[20:]).Ident(), header.ICMPv4(r2[20:]).Ident()
	if id1 != 7 || id2 == 7 {
		t.Fatalf("identifiers on the wire %d and %d, want 7 and another", id1, id2)
	}
	for _, r := range batch {
		checkChecksums(t, r)
		if got := header.IPv4(r).Src(); got != natIP {
			t.Fatalf("request leaves from %v", got)
		}
	}
	for _, tc := range []struct {
		id   uint16
		want netip.Addr
	}{{id1, c1}, {id2, c2}} {
		rep := echoPkt(t, srvS, natIP, 0, tc.id, 1)
		if v := process(tab, 1, Inbound, rep); v != Translated {
			t.Fatalf("reply id %d: %v", tc.id, v)
		}
		checkChecksums(t, rep)
		if got := header.IPv4(rep).Dst(); got != tc.want || header.ICMPv4(rep[20:]).Ident() != 7 {
			t.Fatalf("reply id %d went to %v id %d", tc.id, header.IPv4(rep).Dst(), header.ICMPv4(rep[20:]).Ident())
		}
	}
	if s := tab.Stats(); s.ICMP != 2 || s.Inserts != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// TestChecksumsAfterRewrite translates random TCP, UDP and ICMP packets of
// random sizes (odd ones included) both ways and checks every checksum by
// full recomputation and with gopacket; a UDP checksum of 0 stays 0.
func TestChecksumsAfterRewrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tab := newTable(t, Options{MaxEntries: 4096, PortMin: 20000, PortMax: 20999})
	for i := range 600 {
		payload := make([]byte, rng.IntN(300))
		for j := range payload {
			payload[j] = byte(rng.Uint32())
		}
		src := ap(c1, uint16(1024+i))
		dst := ap(srvS, uint16(rng.IntN(65535)+1))
		var out []byte
		switch i % 4 {
		case 0:
			out = tcpPkt(t, src, dst, fSYN, payload)
		case 1:
			out = udpPkt(t, src, dst, payload)
		case 2:
			out = udpPkt(t, src, dst, payload)
			out[26], out[27] = 0, 0 // no checksum
		default:
			out = echoPkt(t, c1, srvS, 8, uint16(i), uint16(i))
		}
		orig := tupleOf(out)
		if v := process(tab, 0, Outbound, out); v != Translated {
			t.Fatalf("packet %d: %v", i, v)
		}
		checkChecksums(t, out)
		if i%4 == 2 && be16(out[26:]) != 0 {
			t.Fatalf("packet %d: UDP checksum 0 became %#x", i, be16(out[26:]))
		}
		// The reply: the translated packet with source and destination
		// swapped, built afresh.
		tr := tupleOf(out)
		var in []byte
		switch i % 4 {
		case 0:
			in = tcpPkt(t, tr.Dst, tr.Src, fSYNACK, payload)
		case 1, 2:
			in = udpPkt(t, tr.Dst, tr.Src, payload)
		default:
			in = echoPkt(t, srvS, natIP, 0, tr.Src.Port(), 1)
		}
		if v := process(tab, 0, Inbound, in); v != Translated {
			t.Fatalf("reply %d: %v", i, v)
		}
		checkChecksums(t, in)
		if got := tupleOf(in); got != orig.Reverse() {
			t.Fatalf("reply %d became %v, want %v", i, got, orig.Reverse())
		}
	}
}

// TestPortExhaustion: with four ports to pick from, six containers using
// source port 5000 to one server get 5000 (kept) and the four; the sixth
// is a counted drop, and succeeds once a mapping expires.
func TestPortExhaustion(t *testing.T) {
	tab := newTable(t, Options{MaxEntries: 64, PortMin: 2000, PortMax: 2003})
	got := map[uint16]bool{}
	for i := range 5 {
		src := netipFrom(10, 42, 1, byte(i+1))
		p := udpPkt(t, ap(src, 5000), ap(srvS, 53), []byte("q"))
		if v := process(tab, 0, Outbound, p); v != Translated {
			t.Fatalf("flow %d: %v", i, v)
		}
		got[tupleOf(p).Src.Port()] = true
	}
	for _, p := range []uint16{5000, 2000, 2001, 2002, 2003} {
		if !got[p] {
			t.Fatalf("ports used %v, missing %d", got, p)
		}
	}
	sixth := udpPkt(t, ap(netipFrom(10, 42, 1, 6), 5000), ap(srvS, 53), []byte("q"))
	keep := bytes.Clone(sixth)
	if v := process(tab, 0, Outbound, sixth); v != DropPortExhausted || v.String() != "nat-port-exhausted" {
		t.Fatalf("sixth flow: %v", v)
	}
	if !bytes.Equal(sixth, keep) {
		t.Fatal("a dropped packet was modified")
	}
	// The same server on another port is another tuple space.
	if v := process(tab, 0, Outbound, udpPkt(t, ap(netipFrom(10, 42, 1, 6), 5000), ap(srvS, 54), nil)); v != Translated {
		t.Fatalf("other server port: %v", v)
	}
	if s := tab.Stats(); s.PortExhausted != 1 || s.Entries != 6 {
		t.Fatalf("stats %+v", s)
	}
	if v := process(tab, 30*sec, Outbound, sixth); v != Translated {
		t.Fatalf("after expiry: %v", v)
	}
}

func netipFrom(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

// TestTableFullEarlyDrop: a full table evicts an unassured connection for
// a new one, and refuses (counted) when every connection is assured.
func TestTableFullEarlyDrop(t *testing.T) {
	tab := newTable(t, Options{MaxEntries: 4})
	flow := func(i int) (out, in []byte) {
		return udpPkt(t, ap(c1, uint16(6000+i)), ap(srvS, 53), nil), udpPkt(t, ap(srvS, 53), ap(natIP, uint16(6000+i)), nil)
	}
	for i := range 4 {
		out, in := flow(i)
		process(tab, 0, Outbound, out)
		if i < 2 {
			process(tab, 0, Inbound, in) // flows 0 and 1 assured
		}
	}
	out, _ := flow(4)
	if v := process(tab, 0, Outbound, out); v != Translated {
		t.Fatalf("fifth flow: %v", v)
	}
	if s := tab.Stats(); s.EarlyDrops != 1 || s.Entries != 4 {
		t.Fatalf("stats %+v", s)
	}
	for i := 0; i < 2; i++ { // the assured flows survive
		_, in := flow(i)
		if v := process(tab, 0, Inbound, in); v != Translated {
			t.Fatalf("assured flow %d: %v", i, v)
		}
	}
	// Make all four assured; the next flow finds nothing to evict.
	for i := 0; i < 5; i++ {
		_, in := flow(i)
		process(tab, 0, Inbound, in)
	}
	out, _ = flow(9)
	if v := process(tab, 0, Outbound, out); v != DropTableFull {
		t.Fatalf("flow into a table of assured flows: %v", v)
	}
	if s := tab.Stats(); s.TableFull != 1 || s.EarlyDrops != 1 || s.Entries != 4 {
		t.Fatalf("stats %+v", s)
	}
	// An expired entry is reclaimed before anything is evicted.
	if v := process(tab, 121*sec, Outbound, out); v != Translated {
		t.Fatalf("after expiry: %v", v)
	}
}
