package router

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

// TestZeroAllocs proves every fast-path call allocates nothing.
func TestZeroAllocs(t *testing.T) {
	arpReq := arpFrame(t, header.BroadcastMAC, 1, c1MAC, c1IP, gwIP, 0)
	arpOut := make([]byte, 64)
	echo := echoFrame(t, gwMAC, c1IP, gwIP, 8, nil)
	fwd := udpPacket(t, c1IP, redIP, 100, func(ip *layers.IPv4) { ip.TTL = 255 })
	big := udpPacket(t, c1IP, outIP, 1472, func(ip *layers.IPv4) { ip.Flags = 0 })
	errOut := make([]byte, MaxICMPErrorLen)
	frags := buffers(2, 1450)
	rt, err := NewRoutes([]Route{{pfx("0.0.0.0/0"), NextHop{ToUplink, 0}}, {pfx("10.42.0.0/24"), NextHop{ToNetwork, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	nb := newNeighbours(t, NeighbourOptions{})
	bs := []Binding{{c1IP, c1MAC}, {c2IP, c2MAC}}
	nb.Learn(bs, sec)
	ips := []netip.Addr{c1IP, c2IP}
	macs := make([]header.MAC, 2)
	sol := make([]bool, 2)
	cases := []struct {
		name string
		fn   func() bool // reports the call did its job
	}{
		{"GatewayMAC", func() bool { return GatewayMAC("blue") == gwMAC }},
		{"AnswerARP", func() bool { _, ok := AnswerARP(arpReq, gwIP, gwMAC, arpOut); return ok }},
		{"AnswerEcho", func() bool {
			_, ok := AnswerEcho(echo, gwIP, gwMAC)
			restoreEcho(echo)
			return ok
		}},
		{"Forward", func() bool { st := Forward(fwd); setTTL(header.IPv4(fwd), 255); return st == OK }},
		{"NeedsFrag", func() bool { return !NeedsFrag(big, 1450) }},
		{"BuildICMPError", func() bool { _, st := TimeExceeded(errOut, big, gwIP); return st == OK }},
		{"Fragment", func() bool {
			frags[0], frags[1] = frags[0][:cap(frags[0])], frags[1][:cap(frags[1])]
			n, st := Fragment(big, 1450, frags)
			return n == 2 && st == OK
		}},
		{"Routes.Lookup", func() bool { h, ok := rt.Lookup(c2IP); return ok && h.Kind == ToNetwork }},
		{"Neighbours.Learn", func() bool { nb.Learn(bs, 2*sec); return true }},
		{"Neighbours.Resolve", func() bool { return nb.Resolve(ips, macs, sol, 2*sec) == 0 && macs[1] == c2MAC }},
		{"BuildARPRequest", func() bool { return BuildARPRequest(arpOut, gwIP, gwMAC, c2IP) == 42 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok := true
			if a := testing.AllocsPerRun(100, func() { ok = tc.fn() && ok }); a != 0 {
				t.Fatalf("%v allocs per run, want 0", a)
			}
			if !ok {
				t.Fatal("the call did not succeed")
			}
		})
	}
}

// restoreEcho turns an echo reply from AnswerEcho back into the request
// from c1 to the gateway.
func restoreEcho(f []byte) {
	eth := header.Ethernet(f)
	eth.SetDst(gwMAC)
	eth.SetSrc(c1MAC)
	ip := header.IPv4(f[14:])
	ip.SetSrc(c1IP)
	ip.SetDst(gwIP)
	icmp := header.ICMPv4(ip.Payload())
	icmp.SetType(header.ICMPv4EchoRequest)
	icmp.SetChecksum(0)
	icmp.SetChecksum(icmp.CalculateChecksum())
}
