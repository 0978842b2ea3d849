package nat

import (
	"bytes"
	"reflect"
	"testing"
)

// planTable returns a table with the test rules and, at time 0, a
// masqueraded TCP connection c1:40000 > S:80 (SYN sent) and a published
// UDP one C:7777 > nat:5353 (to c3:53).
func planTable(tb testing.TB) *Table {
	tab := rulesTable(tb)
	for _, s := range []struct {
		d Dir
		b []byte
	}{
		{Outbound, tcpPkt(tb, ap(c1, 40000), ap(srvS, 80), fSYN, nil)},
		{Inbound, udpPkt(tb, ap(cliC, 7777), ap(natIP, 5353), []byte("q"))},
	} {
		if v := process(tab, 0, s.d, s.b); v != Translated {
			tb.Fatalf("seed flow: %v", v)
		}
	}
	return tab
}

// tableState is everything Plan must leave alone.
type tableState struct {
	conns []Conn
	stats Stats
}

func stateOf(tab *Table, now int64) tableState {
	return tableState{conns: tab.Snapshot(now, nil), stats: tab.Stats()}
}

// TestPlanForeseesProcess plans each packet on a table, checks the table
// did not change, then runs the packet through Process on the same table:
// the verdict and the rewritten bytes must be Plan's, and the connection
// the packet created or advanced must be the one Plan described.
func TestPlanForeseesProcess(t *testing.T) {
	const now = 2 * sec
	tcpOut := tcpPkt(t, ap(natIP, 40000), ap(srvS, 80), fSYN, []byte("0123"))
	for _, tc := range []struct {
		name  string
		dir   Dir
		pkt   []byte
		v     Verdict
		kind  PlanKind
		reply bool
		want  Tuple // the packet's tuple after translation
	}{
		{"new masqueraded connection keeps its port", Outbound, tcpPkt(t, ap(c2, 41000), ap(srvS, 80), fSYN, nil),
			Translated, PlanNew, false, Tuple{Proto: 6, Src: ap(natIP, 41000), Dst: ap(srvS, 80)}},
		{"new UDP connection", Outbound, udpPkt(t, ap(c2, 4000), ap(srvS, 53), []byte("q")),
			Translated, PlanNew, false, Tuple{Proto: 17, Src: ap(natIP, 4000), Dst: ap(srvS, 53)}},
		{"new echo request", Outbound, echoPkt(t, c1, srvS, 8, 9, 1),
			Translated, PlanNew, false, Tuple{Proto: 1, Src: ap(natIP, 9), Dst: ap(srvS, 9)}},
		{"tracked connection, from its originator", Outbound, tcpPkt(t, ap(c1, 40000), ap(srvS, 80), fACK, nil),
			Translated, PlanTracked, false, Tuple{Proto: 6, Src: ap(natIP, 40000), Dst: ap(srvS, 80)}},
		{"reply of a masqueraded connection", Inbound, tcpPkt(t, ap(srvS, 80), ap(natIP, 40000), fSYNACK, nil),
			Translated, PlanTracked, true, Tuple{Proto: 6, Src: ap(srvS, 80), Dst: ap(c1, 40000)}},
		{"new published connection", Inbound, tcpPkt(t, ap(cliC, 7000), ap(natIP, 8080), fSYN, nil),
			Translated, PlanNew, false, Tuple{Proto: 6, Src: ap(cliC, 7000), Dst: ap(c2, 80)}},
		{"reply of a published connection", Outbound, udpPkt(t, ap(c3, 53), ap(cliC, 7777), []byte("a")),
			Translated, PlanTracked, true, Tuple{Proto: 17, Src: ap(natIP, 5353), Dst: ap(cliC, 7777)}},
		{"new hairpin connection", Outbound, tcpPkt(t, ap(c1, 6000), ap(natIP, 8080), fSYN, nil),
			Translated, PlanNew, false, Tuple{Proto: 6, Src: ap(natIP, 6000), Dst: ap(c2, 80)}},
		{"ICMP error about a tracked connection", Inbound, icmpErrPkt(t, rtrR, natIP, 3, 4, 1400, tcpOut[:28]),
			Translated, PlanICMPError, false, Tuple{}},
		{"unpublished port", Inbound, tcpPkt(t, ap(cliC, 7000), ap(natIP, 9999), fSYN, nil),
			NoMatch, PlanNone, false, Tuple{}},
		{"inbound, not to the nat_address", Inbound, udpPkt(t, ap(cliC, 7000), ap(c1, 53), nil),
			NoMatch, PlanNone, false, Tuple{}},
		{"a FIN cannot start a connection", Outbound, tcpPkt(t, ap(c2, 42000), ap(srvS, 80), tcpFlags{fin: true}, nil),
			DropInvalid, PlanNone, false, Tuple{}},
		{"reply tuple from the wrong side", Outbound, tcpPkt(t, ap(srvS, 80), ap(natIP, 40000), fACK, nil),
			DropInvalid, PlanNone, false, Tuple{}},
		{"cut-off packet", Outbound, tcpPkt(t, ap(c2, 41000), ap(srvS, 80), fSYN, nil)[:30],
			DropMalformed, PlanNone, false, Tuple{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := planTable(t)
			before := stateOf(tab, now)
			planned := bytes.Clone(tc.pkt)
			pl := tab.Plan(now, planned, tc.dir)
			if after := stateOf(tab, now); !reflect.DeepEqual(after, before) {
				t.Fatalf("Plan changed the table:\nbefore %+v\nafter  %+v", before, after)
			}
			if pl.Verdict != tc.v || pl.Kind != tc.kind || pl.Reply != tc.reply {
				t.Fatalf("plan %v kind %d reply %v, want %v kind %d reply %v", pl.Verdict, pl.Kind, pl.Reply, tc.v, tc.kind, tc.reply)
			}
			if tc.want != (Tuple{}) {
				if got := tupleOf(planned); got != tc.want {
					t.Fatalf("planned packet is %v, want %v", got, tc.want)
				}
			}
			processed := bytes.Clone(tc.pkt)
			if v := process(tab, now, tc.dir, processed); v != pl.Verdict {
				t.Fatalf("Process says %v, Plan said %v", v, pl.Verdict)
			}
			if !bytes.Equal(processed, planned) {
				t.Fatalf("Process wrote\n%x\nPlan wrote\n%x", processed, planned)
			}
			if pl.Kind == PlanNone {
				return
			}
			c, _, ok := tab.Lookup(now, pl.Conn.Orig)
			if !ok || c != pl.Conn {
				t.Fatalf("after Process the connection is %+v (found %v), Plan said %+v", c, ok, pl.Conn)
			}
		})
	}
}

// TestPlanTakesTheFreePort: a new connection whose own port is taken on
// the nat_address gets, in the plan, the port Process then picks.
func TestPlanTakesTheFreePort(t *testing.T) {
	tab := planTable(t)
	pkt := tcpPkt(t, ap(c2, 40000), ap(srvS, 80), fSYN, nil) // c1 holds 40000 towards S:80
	planned := bytes.Clone(pkt)
	pl := tab.Plan(0, planned, Outbound)
	if pl.Kind != PlanNew || pl.Conn.Reply.Dst.Port() == 40000 {
		t.Fatalf("plan %+v: want a new connection on another port than 40000", pl)
	}
	if v := process(tab, 0, Outbound, pkt); v != Translated || !bytes.Equal(pkt, planned) {
		t.Fatalf("Process: %v, packet %v; plan: %v", v, tupleOf(pkt), tupleOf(planned))
	}
}

func TestPlanAllocatesNothing(t *testing.T) {
	tab := planTable(t)
	pkt := tcpPkt(t, ap(c2, 41000), ap(srvS, 80), fSYN, nil)
	b := make([]byte, len(pkt))
	if n := testing.AllocsPerRun(100, func() {
		copy(b, pkt)
		tab.Plan(0, b, Outbound)
	}); n != 0 {
		t.Fatalf("Plan allocates %.1f times a call", n)
	}
}
