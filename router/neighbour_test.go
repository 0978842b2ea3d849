package router

import (
	"bytes"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

const sec = int64(time.Second)

func newNeighbours(tb testing.TB, o NeighbourOptions) *Neighbours {
	tb.Helper()
	t, err := NewNeighbours(o)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func resolve1(t *Neighbours, ip netip.Addr, now int64) (header.MAC, bool, bool) {
	macs := make([]header.MAC, 1)
	sol := make([]bool, 1)
	miss := t.Resolve([]netip.Addr{ip}, macs, sol, now)
	return macs[0], miss == 0, sol[0]
}

func TestNeighboursLearnAndAge(t *testing.T) {
	n := newNeighbours(t, NeighbourOptions{Ageing: 60 * time.Second})
	n.Learn([]Binding{{c1IP, c1MAC}, {c2IP, c2MAC}}, 10*sec)
	cases := []struct {
		name string
		ip   netip.Addr
		now  int64
		mac  header.MAC
		ok   bool
	}{
		{"c1 right after learning", c1IP, 10 * sec, c1MAC, true},
		{"c2 just before ageing out", c2IP, 70*sec - 1, c2MAC, true},
		{"c2 aged out", c2IP, 70 * sec, header.MAC{}, false},
		{"unknown address", redIP, 10 * sec, header.MAC{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mac, ok := n.Lookup(tc.ip, tc.now)
			if mac != tc.mac || ok != tc.ok {
				t.Fatalf("Lookup = %s %v, want %s %v", mac, ok, tc.mac, tc.ok)
			}
			if rmac, rok, _ := resolve1(n, tc.ip, tc.now); rmac != tc.mac || rok != tc.ok {
				t.Fatalf("Resolve = %s %v, want %s %v", rmac, rok, tc.mac, tc.ok)
			}
		})
	}
	// A refresh (past the grain) extends the life; a new MAC replaces.
	n.Learn([]Binding{{c1IP, c1MAC}}, 50*sec)
	if _, ok := n.Lookup(c1IP, 100*sec); !ok {
		t.Error("refreshed entry aged out")
	}
	n.Learn([]Binding{{c1IP, c2MAC}}, 60*sec)
	if mac, _ := n.Lookup(c1IP, 60*sec); mac != c2MAC {
		t.Errorf("MAC after change %s, want %s", mac, c2MAC)
	}
	st := n.Stats()
	if st.Learned != 2 || st.Changed != 1 || st.Invalid != 0 {
		t.Errorf("stats %+v, want learned 2 changed 1", st)
	}
}

func TestNeighboursInvalidBindings(t *testing.T) {
	n := newNeighbours(t, NeighbourOptions{})
	n.Learn([]Binding{
		{netip.MustParseAddr("0.0.0.0"), c1MAC},
		{netip.MustParseAddr("255.255.255.255"), c1MAC},
		{netip.MustParseAddr("224.0.0.1"), c1MAC},
		{netip.MustParseAddr("fd00::1"), c1MAC},
		{c1IP, header.MAC{}},
		{c1IP, header.BroadcastMAC},
		{c1IP, header.MAC{0x01, 0x00, 0x5e, 0, 0, 1}},
	}, sec)
	if st := n.Stats(); st.Invalid != 7 || st.Learned != 0 || n.Len() != 0 {
		t.Fatalf("stats %+v len %d, want 7 invalid and nothing learned", st, n.Len())
	}
}

func TestNeighboursSolicit(t *testing.T) {
	n := newNeighbours(t, NeighbourOptions{RetransmitInterval: time.Second})
	steps := []struct {
		name        string
		now         int64
		learn       bool
		wantOK      bool
		wantSolicit bool
	}{
		{"first miss solicits", 1 * sec, false, false, true},
		{"miss within the retransmit interval does not", 1*sec + sec/2, false, false, false},
		{"miss after the interval solicits again", 2 * sec, false, false, true},
		{"the reply resolves", 2*sec + 1, true, true, false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.learn {
				n.Learn([]Binding{{c2IP, c2MAC}}, s.now)
			}
			mac, ok, sol := resolve1(n, c2IP, s.now)
			if ok != s.wantOK || sol != s.wantSolicit || (ok && mac != c2MAC) {
				t.Fatalf("Resolve = %s ok %v solicit %v; want ok %v solicit %v", mac, ok, sol, s.wantOK, s.wantSolicit)
			}
		})
	}
	if st := n.Stats(); st.Requests != 2 || st.Learned != 1 {
		t.Errorf("stats %+v, want 2 requests, 1 learned", st)
	}
	// One batch naming an unknown address three times solicits it once.
	ips := []netip.Addr{redIP, c2IP, redIP, redIP}
	macs := make([]header.MAC, 4)
	sol := make([]bool, 4)
	if miss := n.Resolve(ips, macs, sol, 3*sec); miss != 3 {
		t.Fatalf("misses %d, want 3", miss)
	}
	if want := []bool{true, false, false, false}; !equalBools(sol, want) || macs[1] != c2MAC || !macs[0].IsZero() {
		t.Fatalf("solicit %v macs %v", sol, macs)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNeighboursCapAndEviction(t *testing.T) {
	// Max 8 allocates 16 slots (two buckets of 8); the cap is 8 entries.
	n := newNeighbours(t, NeighbourOptions{Max: 8})
	var bs []Binding
	for i := range 20 {
		bs = append(bs, Binding{u32Addr(0x0a2a0000 | uint32(i+2)), header.MAC{2, 0, 0, 0, 0, byte(i + 2)}})
	}
	for i, b := range bs {
		n.Learn([]Binding{b}, int64(i+1)*sec)
	}
	if n.Len() != 8 {
		t.Fatalf("Len %d, want the cap 8", n.Len())
	}
	st := n.Stats()
	if st.Evictions != 12 {
		t.Fatalf("evictions %d, want 12 (20 bindings, cap 8)", st.Evictions)
	}
	// The most recent binding is always kept.
	if _, ok := n.Lookup(bs[19].IP, 20*sec); !ok {
		t.Error("newest binding not in the table")
	}
	// Incomplete entries never evict complete ones.
	n2 := newNeighbours(t, NeighbourOptions{Max: 1})
	n2.Learn([]Binding{{c1IP, c1MAC}}, sec)
	if _, _, sol := resolve1(n2, c2IP, sec); !sol {
		t.Error("request not solicited")
	}
	if _, ok := n2.Lookup(c1IP, sec); !ok || n2.Len() != 1 {
		t.Error("a request evicted a complete entry")
	}
}

func TestNeighboursExpireAndSnapshot(t *testing.T) {
	n := newNeighbours(t, NeighbourOptions{Ageing: 10 * time.Second, RetransmitInterval: time.Second})
	n.Learn([]Binding{{c1IP, c1MAC}}, 0)
	n.Learn([]Binding{{c2IP, c2MAC}}, 5*sec)
	resolve1(n, redIP, 5*sec) // incomplete
	snap := n.Snapshot(5 * sec)
	if len(snap) != 3 {
		t.Fatalf("snapshot %+v, want 3 entries", snap)
	}
	var incomplete int
	for _, e := range snap {
		if e.Incomplete {
			incomplete++
			if e.IP != redIP || !e.MAC.IsZero() {
				t.Errorf("incomplete entry %+v", e)
			}
		}
		if e.IP == c1IP && (e.MAC != c1MAC || e.Age != 5*time.Second) {
			t.Errorf("c1 entry %+v", e)
		}
	}
	if incomplete != 1 {
		t.Errorf("%d incomplete entries, want 1", incomplete)
	}
	if got := n.Expire(10 * sec); got != 2 { // c1 aged out, the request lapsed
		t.Fatalf("Expire removed %d, want 2", got)
	}
	if n.Len() != 1 || n.Stats().Expired != 2 {
		t.Fatalf("Len %d expired %d", n.Len(), n.Stats().Expired)
	}
	if got := n.Expire(10 * sec); got != 0 {
		t.Fatalf("second Expire removed %d", got)
	}
}

func TestNewNeighboursOptions(t *testing.T) {
	for _, o := range []NeighbourOptions{{Ageing: -1}, {Max: -1}, {Max: MaxNeighbourMax + 1}, {RetransmitInterval: -1}} {
		if _, err := NewNeighbours(o); !errors.Is(err, ErrBadNeighbourOptions) {
			t.Errorf("%+v: err %v", o, err)
		}
	}
}

// TestNeighboursConcurrent runs learners, resolvers and Expire at once;
// with -race it checks the locking, and at the end every address is known.
func TestNeighboursConcurrent(t *testing.T) {
	n := newNeighbours(t, NeighbourOptions{Max: 1024})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			bs := make([]Binding, 64)
			ips := make([]netip.Addr, 64)
			macs := make([]header.MAC, 64)
			sol := make([]bool, 64)
			for round := range 200 {
				for i := range bs {
					a := uint32(0x0a2a0000 | (w*64+i)%512 + 2)
					bs[i] = Binding{u32Addr(a), header.MAC{2, 0, 0, 0, byte(a >> 8), byte(a)}}
					ips[i] = u32Addr(a ^ 1)
				}
				n.Learn(bs, int64(round)*sec/100)
				n.Resolve(ips, macs, sol, int64(round)*sec/100)
				if w == 0 && round%50 == 0 {
					n.Expire(int64(round) * sec / 100)
				}
			}
		})
	}
	wg.Wait()
	for w := range 4 {
		for i := range 64 {
			a := uint32(0x0a2a0000 | (w*64+i)%512 + 2)
			if mac, ok := n.Lookup(u32Addr(a), 2*sec); !ok || mac != (header.MAC{2, 0, 0, 0, byte(a >> 8), byte(a)}) {
				t.Fatalf("%v: %s %v", u32Addr(a), mac, ok)
			}
		}
	}
}

func TestBuildARPRequest(t *testing.T) {
	out := make([]byte, 60)
	if n := BuildARPRequest(out, gwIP, gwMAC, c2IP); n != 42 {
		t.Fatalf("n = %d", n)
	}
	p := gopacket.NewPacket(out[:42], layers.LayerTypeEthernet, gopacket.Default)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if !bytes.Equal(eth.DstMAC, header.BroadcastMAC[:]) || !bytes.Equal(eth.SrcMAC, gwMAC[:]) ||
		arp.Operation != layers.ARPRequest || !bytes.Equal(arp.SourceHwAddress, gwMAC[:]) ||
		!bytes.Equal(arp.SourceProtAddress, gwIP.AsSlice()) || !bytes.Equal(arp.DstHwAddress, make([]byte, 6)) ||
		!bytes.Equal(arp.DstProtAddress, c2IP.AsSlice()) {
		t.Fatalf("request %+v %+v", eth, arp)
	}
	// Another ferry's gateway would not answer it (it is not for the
	// gateway) and the container's answer teaches the table.
	if _, ok := AnswerARP(out[:42], gwIP, gwMAC, make([]byte, 42)); ok {
		t.Fatal("the gateway answered its own request")
	}
}
