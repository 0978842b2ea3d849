package nat

import (
	"testing"
)

// A masqueraded TCP flow c1:40000 -> S:80 is driven through a sequence of
// segments; after each one the table's state and time left are checked.
func TestTCPStateMachine(t *testing.T) {
	type step struct {
		reply bool // from S (Inbound) instead of c1 (Outbound)
		f     tcpFlags
		state TCPState
		secs  int64
	}
	const est = 5 * 24 * 3600
	cases := []struct {
		name    string
		steps   []step
		assured bool
	}{
		{"three-way handshake", []step{
			{false, fSYN, TCPSynSent, 120},
			{true, fSYNACK, TCPSynRecv, 60},
			{false, fACK, TCPEstablished, est},
		}, true},
		{"close initiated by the client", []step{
			{false, fSYN, TCPSynSent, 120}, {true, fSYNACK, TCPSynRecv, 60}, {false, fACK, TCPEstablished, est},
			{false, fFIN, TCPFinWait, 120},
			{true, fACK, TCPCloseWait, 60},
			{true, fFIN, TCPLastAck, 30},
			{false, fACK, TCPTimeWait, 120},
		}, true},
		{"simultaneous close", []step{
			{false, fSYN, TCPSynSent, 120}, {true, fSYNACK, TCPSynRecv, 60}, {false, fACK, TCPEstablished, est},
			{false, fFIN, TCPFinWait, 120},
			{true, fFIN, TCPLastAck, 30},
			{false, fACK, TCPTimeWait, 120},
			{true, fACK, TCPTimeWait, 120},
		}, true},
		{"RST from the server when established", []step{
			{false, fSYN, TCPSynSent, 120}, {true, fSYNACK, TCPSynRecv, 60}, {false, fACK, TCPEstablished, est},
			{true, fRST, TCPClose, 10},
		}, true},
		{"RST answering the SYN", []step{
			{false, fSYN, TCPSynSent, 120},
			{true, fRST, TCPClose, 10},
		}, false},
		{"simultaneous open", []step{
			{false, fSYN, TCPSynSent, 120},
			{true, fSYN, TCPSynSent2, 120},
			{false, fSYNACK, TCPSynRecv, 60},
			{true, fSYNACK, TCPSynRecv, 58}, // ignored: no refresh
			{false, fACK, TCPEstablished, est},
		}, true},
		{"new SYN reopens a TIME_WAIT connection", []step{
			{false, fSYN, TCPSynSent, 120}, {true, fSYNACK, TCPSynRecv, 60}, {false, fACK, TCPEstablished, est},
			{false, fFIN, TCPFinWait, 120}, {true, fFIN, TCPLastAck, 30}, {false, fACK, TCPTimeWait, 120},
			{false, fSYN, TCPSynSent, 120},
		}, true},
		{"ACK before SYN-ACK is invalid and keeps SYN_SENT", []step{
			{false, fSYN, TCPSynSent, 120},
			{false, fACK, TCPSynSent, 118}, // invalid: no refresh
		}, false},
		{"retransmitted SYN-ACK is ignored", []step{
			{false, fSYN, TCPSynSent, 120}, {true, fSYNACK, TCPSynRecv, 60}, {false, fACK, TCPEstablished, est},
			{true, fSYNACK, TCPEstablished, est - 2}, // ignored: no refresh
		}, true},
		{"mid-stream ACK is picked up as established", []step{
			{false, fACK, TCPEstablished, est},
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab := newTable(t, Options{MaxEntries: 16})
			for i, s := range tc.steps {
				var pkt []byte
				dir := Outbound
				if s.reply {
					pkt, dir = tcpPkt(t, ap(srvS, 80), ap(natIP, 40000), s.f, nil), Inbound
				} else {
					pkt = tcpPkt(t, ap(c1, 40000), ap(srvS, 80), s.f, nil)
				}
				now := int64(i) * 2 * sec // 2 s apart: beyond the refresh slack
				if v := process(tab, now, dir, pkt); v != Translated {
					t.Fatalf("step %d: verdict %v", i, v)
				}
				checkChecksums(t, pkt)
				cs := tab.Snapshot(now, nil)
				if len(cs) != 1 {
					t.Fatalf("step %d: %d connections", i, len(cs))
				}
				if cs[0].State != s.state || cs[0].SecondsLeft != s.secs {
					t.Fatalf("step %d: state %v, %d s left; want %v, %d s", i, cs[0].State, cs[0].SecondsLeft, s.state, s.secs)
				}
			}
			cs := tab.Snapshot(int64(len(tc.steps))*2*sec, nil)
			if cs[0].Assured != tc.assured {
				t.Errorf("assured = %v, want %v", cs[0].Assured, tc.assured)
			}
		})
	}
}

// TestTCPInvalidFirstSegment: only a SYN or an ACK may start a connection.
func TestTCPInvalidFirstSegment(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    tcpFlags
	}{{"RST", fRST}, {"FIN", fFIN}, {"SYN-ACK", fSYNACK}, {"no flags", tcpFlags{}}} {
		t.Run(tc.name, func(t *testing.T) {
			tab := newTable(t, Options{MaxEntries: 16})
			if v := process(tab, 0, Outbound, tcpPkt(t, ap(c1, 40000), ap(srvS, 80), tc.f, nil)); v != DropInvalid {
				t.Fatalf("verdict %v, want %v", v, DropInvalid)
			}
			if n := tab.Stats().Entries; n != 0 {
				t.Fatalf("%d entries", n)
			}
		})
	}
}

// TestTimeouts checks every timeout with a fake clock: a connection is
// alive one nanosecond before its timeout ends and gone at the end, and a
// configured timeout replaces the default.
func TestTimeouts(t *testing.T) {
	type setup func(t *testing.T, tab *Table) // leaves one connection, last touched at 0
	tcpTo := func(flags ...struct {
		reply bool
		f     tcpFlags
	}) setup {
		return func(t *testing.T, tab *Table) {
			for i, s := range flags {
				now := int64(i-len(flags)+1) * 2 * sec // the last at 0
				pkt, dir := tcpPkt(t, ap(c1, 40000), ap(srvS, 80), s.f, nil), Outbound
				if s.reply {
					pkt, dir = tcpPkt(t, ap(srvS, 80), ap(natIP, 40000), s.f, nil), Inbound
				}
				if v := process(tab, now, dir, pkt); v != Translated {
					t.Fatalf("segment %d: %v", i, v)
				}
			}
		}
	}
	type seg = struct {
		reply bool
		f     tcpFlags
	}
	hs := []seg{{false, fSYN}, {true, fSYNACK}, {false, fACK}}
	with := func(a []seg, b ...seg) []seg { return append(append([]seg(nil), a...), b...) }
	cases := []struct {
		name  string
		opts  Options
		setup setup
		want  int64 // seconds
	}{
		{"tcp SYN_SENT default", Options{}, tcpTo(seg{false, fSYN}), 120},
		{"tcp SYN_RECV default", Options{}, tcpTo(seg{false, fSYN}, seg{true, fSYNACK}), 60},
		{"tcp ESTABLISHED default", Options{}, tcpTo(hs...), 5 * 24 * 3600},
		{"tcp FIN_WAIT default", Options{}, tcpTo(with(hs, seg{false, fFIN})...), 120},
		{"tcp CLOSE_WAIT default", Options{}, tcpTo(with(hs, seg{false, fFIN}, seg{true, fACK})...), 60},
		{"tcp LAST_ACK default", Options{}, tcpTo(with(hs, seg{false, fFIN}, seg{true, fFIN})...), 30},
		{"tcp TIME_WAIT default", Options{}, tcpTo(with(hs, seg{false, fFIN}, seg{true, fFIN}, seg{false, fACK})...), 120},
		{"tcp CLOSE default", Options{}, tcpTo(with(hs, seg{true, fRST})...), 10},
		{"tcp ESTABLISHED configured", Options{TCPEstablished: 3600 * 1e9}, tcpTo(hs...), 3600},
		{"tcp CLOSE configured", Options{TCPClose: 2e9}, tcpTo(seg{false, fSYN}, seg{true, fRST}), 2},
		{"udp unreplied default", Options{}, func(t *testing.T, tab *Table) {
			process(tab, 0, Outbound, udpPkt(t, ap(c1, 5000), ap(srvS, 53), []byte("q")))
		}, 30},
		{"udp assured default", Options{}, func(t *testing.T, tab *Table) {
			process(tab, -2*sec, Outbound, udpPkt(t, ap(c1, 5000), ap(srvS, 53), []byte("q")))
			process(tab, 0, Inbound, udpPkt(t, ap(srvS, 53), ap(natIP, 5000), []byte("a")))
		}, 120},
		{"udp configured", Options{UDPUnreplied: 5e9, UDPAssured: 7e9}, func(t *testing.T, tab *Table) {
			process(tab, -2*sec, Outbound, udpPkt(t, ap(c1, 5000), ap(srvS, 53), []byte("q")))
			process(tab, 0, Inbound, udpPkt(t, ap(srvS, 53), ap(natIP, 5000), []byte("a")))
		}, 7},
		{"icmp default", Options{}, func(t *testing.T, tab *Table) {
			process(tab, 0, Outbound, echoPkt(t, c1, srvS, 8, 7, 1))
		}, 30},
		{"icmp configured", Options{ICMP: 4e9}, func(t *testing.T, tab *Table) {
			process(tab, 0, Outbound, echoPkt(t, c1, srvS, 8, 7, 1))
		}, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.MaxEntries = 16
			tab := newTable(t, tc.opts)
			tc.setup(t, tab)
			end := tc.want * sec
			if cs := tab.Snapshot(end-1, nil); len(cs) != 1 || cs[0].SecondsLeft != 1 {
				t.Fatalf("1 ns before the end: %+v", cs)
			}
			if cs := tab.Snapshot(end, nil); len(cs) != 0 {
				t.Fatalf("at the end: still %+v", cs)
			}
			if n := tab.Expire(end-1, 16); n != 0 {
				t.Fatalf("Expire before the end removed %d", n)
			}
			if n := tab.Expire(end, 16); n != 1 {
				t.Fatalf("Expire at the end removed %d, want 1", n)
			}
			if s := tab.Stats(); s.Entries != 0 || s.Expired != 1 {
				t.Fatalf("stats after expiry: %+v", s)
			}
		})
	}
}

// TestUDPUnrepliedToAssured follows one UDP flow: unreplied with 30 s,
// then assured with 120 s after the reply, refreshed by later packets, and
// an expired flow is not translated any more.
func TestUDPUnrepliedToAssured(t *testing.T) {
	tab := newTable(t, Options{MaxEntries: 16})
	out := func() []byte { return udpPkt(t, ap(c1, 5000), ap(srvS, 53), []byte("query")) }
	in := func() []byte { return udpPkt(t, ap(srvS, 53), ap(natIP, 5000), []byte("answer")) }
	if v := process(tab, 0, Outbound, out()); v != Translated {
		t.Fatal(v)
	}
	c := tab.Snapshot(0, nil)[0]
	if c.SeenReply || c.Assured || c.SecondsLeft != 30 {
		t.Fatalf("after the query: %+v", c)
	}
	if got := c.String(); got != "udp 17 30 src=10.42.0.2 dst=192.0.2.7 sport=5000 dport=53 [UNREPLIED] src=192.0.2.7 dst=100.64.0.2 sport=53 dport=5000" {
		t.Fatalf("String() = %q", got)
	}
	pkt := in()
	if v := process(tab, 10*sec, Inbound, pkt); v != Translated {
		t.Fatal(v)
	}
	if got := tupleOf(pkt); got.Dst != ap(c1, 5000) || got.Src != ap(srvS, 53) {
		t.Fatalf("reply translated to %v", got)
	}
	c = tab.Snapshot(10*sec, nil)[0]
	if !c.SeenReply || !c.Assured || c.SecondsLeft != 120 {
		t.Fatalf("after the reply: %+v", c)
	}
	if got := c.String(); got != "udp 17 120 src=10.42.0.2 dst=192.0.2.7 sport=5000 dport=53 src=192.0.2.7 dst=100.64.0.2 sport=53 dport=5000 [ASSURED]" {
		t.Fatalf("String() = %q", got)
	}
	process(tab, 100*sec, Outbound, out())
	if c = tab.Snapshot(100*sec, nil)[0]; c.SecondsLeft != 120 {
		t.Fatalf("refresh: %+v", c)
	}
	if v := process(tab, 220*sec, Inbound, in()); v != NoMatch {
		t.Fatalf("reply after expiry: %v, want %v", v, NoMatch)
	}
}
