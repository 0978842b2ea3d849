package nat

import (
	"testing"

	"github.com/ferry-overlay/ferry/header"
)

var testRules = []Rule{
	{Proto: header.ProtoTCP, Port: 8080, To: ap(c2, 80)},
	{Proto: header.ProtoUDP, Port: 5353, To: ap(c3, 53)},
}

func rulesTable(t testing.TB) *Table {
	tab := newTable(t, Options{MaxEntries: 64})
	if _, err := tab.SetRules(testRules); err != nil {
		t.Fatal(err)
	}
	return tab
}

// step is one packet through the table and what it must become.
type step struct {
	name string
	dir  Dir
	pkt  []byte
	v    Verdict
	want Tuple // after translation, when v == Translated
}

func runSteps(t *testing.T, tab *Table, steps []step) {
	t.Helper()
	for _, s := range steps {
		if v := process(tab, 0, s.dir, s.pkt); v != s.v {
			t.Fatalf("%s: verdict %v, want %v", s.name, v, s.v)
		}
		if s.v == Translated {
			checkChecksums(t, s.pkt)
			if got := tupleOf(s.pkt); got != s.want {
				t.Fatalf("%s: became %v, want %v", s.name, got, s.want)
			}
		}
	}
}

func TestPublish(t *testing.T) {
	tab := rulesTable(t)
	tcp, udp := header.ProtoTCP, header.ProtoUDP
	runSteps(t, tab, []step{
		{"client SYN to the published TCP port", Inbound, tcpPkt(t, ap(cliC, 5555), ap(natIP, 8080), fSYN, nil), Translated, Tuple{tcp, ap(cliC, 5555), ap(c2, 80)}},
		{"container SYN-ACK", Outbound, tcpPkt(t, ap(c2, 80), ap(cliC, 5555), fSYNACK, nil), Translated, Tuple{tcp, ap(natIP, 8080), ap(cliC, 5555)}},
		{"client ACK with data", Inbound, tcpPkt(t, ap(cliC, 5555), ap(natIP, 8080), fACK, []byte("GET / HTTP/1.0\r\n\r\n")), Translated, Tuple{tcp, ap(cliC, 5555), ap(c2, 80)}},
		{"UDP request to the published port", Inbound, udpPkt(t, ap(cliC, 7777), ap(natIP, 5353), []byte("q")), Translated, Tuple{udp, ap(cliC, 7777), ap(c3, 53)}},
		{"UDP response", Outbound, udpPkt(t, ap(c3, 53), ap(cliC, 7777), []byte("a")), Translated, Tuple{udp, ap(natIP, 5353), ap(cliC, 7777)}},
		{"unpublished TCP port", Inbound, tcpPkt(t, ap(cliC, 5555), ap(natIP, 8081), fSYN, nil), NoMatch, Tuple{}},
		{"TCP to the UDP-only port", Inbound, tcpPkt(t, ap(cliC, 5555), ap(natIP, 5353), fSYN, nil), NoMatch, Tuple{}},
		{"ping to the nat address", Inbound, echoPkt(t, cliC, natIP, 8, 1, 1), NoMatch, Tuple{}},
		{"routed traffic not to the nat address", Inbound, tcpPkt(t, ap(cliC, 5555), ap(c2, 80), fSYN, nil), NoMatch, Tuple{}},
		{"spoofed container source from outside", Inbound, tcpPkt(t, ap(c2, 80), ap(natIP, 8080), fSYNACK, nil), DropInvalid, Tuple{}},
		{"RST cannot open a published flow", Inbound, tcpPkt(t, ap(cliC, 6666), ap(natIP, 8080), fRST, nil), DropInvalid, Tuple{}},
	})
	cs := tab.Snapshot(0, nil)
	if len(cs) != 2 {
		t.Fatalf("%d connections: %v", len(cs), cs)
	}
}

// TestHairpin: a container reaches its own network's published port
// through the nat_address; the server sees the nat_address as the client,
// so its answer comes back through ferry and is translated to look like it
// came from nat_address:8080.
func TestHairpin(t *testing.T) {
	tab := rulesTable(t)
	tcp := header.ProtoTCP
	runSteps(t, tab, []step{
		{"c1 SYN to nat:8080", Outbound, tcpPkt(t, ap(c1, 6000), ap(natIP, 8080), fSYN, nil), Translated, Tuple{tcp, ap(natIP, 6000), ap(c2, 80)}},
		{"c2 SYN-ACK to nat:6000", Outbound, tcpPkt(t, ap(c2, 80), ap(natIP, 6000), fSYNACK, nil), Translated, Tuple{tcp, ap(natIP, 8080), ap(c1, 6000)}},
		{"c1 ACK", Outbound, tcpPkt(t, ap(c1, 6000), ap(natIP, 8080), fACK, []byte("x")), Translated, Tuple{tcp, ap(natIP, 6000), ap(c2, 80)}},
		{"c2 reaching its own published port", Outbound, tcpPkt(t, ap(c2, 6001), ap(natIP, 8080), fSYN, nil), Translated, Tuple{tcp, ap(natIP, 6001), ap(c2, 80)}},
		{"ping to the nat address from inside", Outbound, echoPkt(t, c1, natIP, 8, 1, 1), NoMatch, Tuple{}},
		{"unpublished port on the nat address", Outbound, tcpPkt(t, ap(c1, 6000), ap(natIP, 9999), fSYN, nil), NoMatch, Tuple{}},
	})
	if cs := tab.Snapshot(0, nil); len(cs) != 2 || cs[0].State != TCPEstablished || !cs[0].Assured {
		t.Fatalf("connections %v", cs)
	}
}

// TestRuleChangeEndsItsFlows is Docker's stale-UDP-conntrack bug: a client
// keeps sending to a published UDP port while the mapping changes; its
// next packet must go to the new target (and, once the rule is gone, not
// be forwarded at all) instead of riding the old entry.
func TestRuleChangeEndsItsFlows(t *testing.T) {
	tab := rulesTable(t)
	udp, tcp := header.ProtoUDP, header.ProtoTCP
	q := func() []byte { return udpPkt(t, ap(cliC, 7777), ap(natIP, 5353), []byte("q")) }
	runSteps(t, tab, []step{
		{"query to c3", Inbound, q(), Translated, Tuple{udp, ap(cliC, 7777), ap(c3, 53)}},
		{"answer from c3", Outbound, udpPkt(t, ap(c3, 53), ap(cliC, 7777), []byte("a")), Translated, Tuple{udp, ap(natIP, 5353), ap(cliC, 7777)}},
		{"masqueraded flow", Outbound, udpPkt(t, ap(c1, 5000), ap(srvS, 53), nil), Translated, Tuple{udp, ap(natIP, 5000), ap(srvS, 53)}},
		{"published TCP flow", Inbound, tcpPkt(t, ap(cliC, 5555), ap(natIP, 8080), fSYN, nil), Translated, Tuple{tcp, ap(cliC, 5555), ap(c2, 80)}},
	})
	moved := []Rule{testRules[0], {Proto: header.ProtoUDP, Port: 5353, To: ap(c4, 53)}}
	if n, err := tab.SetRules(moved); err != nil || n != 1 {
		t.Fatalf("SetRules moving udp/5353: deleted %d, %v; want 1", n, err)
	}
	runSteps(t, tab, []step{
		{"next query goes to c4", Inbound, q(), Translated, Tuple{udp, ap(cliC, 7777), ap(c4, 53)}},
	})
	if n, err := tab.SetRules(testRules[:1]); err != nil || n != 1 {
		t.Fatalf("SetRules removing udp/5353: deleted %d, %v; want 1", n, err)
	}
	runSteps(t, tab, []step{
		{"query after removal", Inbound, q(), NoMatch, Tuple{}},
		{"old answer path is gone", Outbound, udpPkt(t, ap(c4, 53), ap(cliC, 7777), nil), Translated, Tuple{udp, ap(natIP, 53), ap(cliC, 7777)}},
	})
	// The masqueraded and TCP flows are untouched (plus the new
	// masquerade of c4's stray answer).
	if s := tab.Stats(); s.Entries != 3 || s.Deleted != 2 {
		t.Fatalf("stats %+v", s)
	}
	if n := tab.DeleteMatching(0, func(c Conn) bool { return c.Orig.Proto == header.ProtoUDP }); n != 2 {
		t.Fatalf("DeleteMatching udp removed %d, want 2", n)
	}
	if !tab.Delete(Tuple{tcp, ap(c2, 80), ap(cliC, 5555)}) {
		t.Fatal("Delete by reply tuple found nothing")
	}
	if n := tab.Flush(); n != 0 {
		t.Fatalf("Flush of an empty table removed %d", n)
	}
}

func TestSetRulesValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    []Rule
	}{
		{"icmp rule", []Rule{{Proto: header.ProtoICMPv4, Port: 1, To: ap(c1, 1)}}},
		{"port 0", []Rule{{Proto: header.ProtoTCP, Port: 0, To: ap(c1, 80)}}},
		{"target port 0", []Rule{{Proto: header.ProtoTCP, Port: 80, To: ap(c1, 0)}}},
		{"duplicate", []Rule{{Proto: header.ProtoTCP, Port: 80, To: ap(c1, 80)}, {Proto: header.ProtoTCP, Port: 80, To: ap(c2, 80)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := rulesTable(t)
			if _, err := tab.SetRules(tc.r); err == nil {
				t.Fatal("no error")
			}
			if got := tab.Rules(); len(got) != len(testRules) {
				t.Fatalf("rules changed to %v", got)
			}
		})
	}
}
