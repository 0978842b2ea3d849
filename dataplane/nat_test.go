package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/nat"
	"github.com/ferry-overlay/ferry/router"
)

// natRig is routedRig with an uplink (a MemPort) that blue masquerades
// through, nat_address 100.64.0.2.
func natRig(t testing.TB, sink func(port int, f []byte), upSink func([]byte)) (*Engine, *Worker, [2]*MemPort, *MemPort) {
	return natRigMTU(t, 1500, sink, upSink)
}

// natRigMTU is natRig with red's MTU.
func natRigMTU(t testing.TB, redMTU int, sink func(port int, f []byte), upSink func([]byte)) (*Engine, *Worker, [2]*MemPort, *MemPort) {
	t.Helper()
	eng, w, ports := routedRig(t, redMTU, sink)
	tbl, err := nat.New(nat.Options{NATAddr: netip.MustParseAddr("100.64.0.2"), MaxEntries: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.SetUplinks([]UplinkSpec{{Name: "up0", NAT: tbl, MTU: 1500, Networks: []string{"blue"}}}); err != nil {
		t.Fatal(err)
	}
	up := &MemPort{Sink: upSink}
	w.SetUplink(0, up)
	return eng, w, ports, up
}

func pollUplink(t testing.TB, w *Worker) {
	t.Helper()
	for {
		n, err := w.PollUplink(0)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// reply turns the IPv4 UDP packet pkt into its answer: addresses and ports
// swapped, checksums recomputed.
func reply(pkt []byte) []byte {
	r := bytes.Clone(pkt)
	copy(r[12:16], pkt[16:20])
	copy(r[16:20], pkt[12:16])
	copy(r[20:22], pkt[22:24])
	copy(r[22:24], pkt[20:22])
	ip := header.IPv4(r)
	ip.SetChecksum(0)
	ip.SetChecksum(ip.CalculateChecksum())
	binary.BigEndian.PutUint16(r[26:28], 0) // UDP checksum off
	return r
}

func TestMasqueradeThroughUplink(t *testing.T) {
	var got [2][][]byte
	var upOut [][]byte
	eng, w, ports, up := natRig(t, func(i int, f []byte) { got[i] = append(got[i], bytes.Clone(f)) }, func(b []byte) { upOut = append(upOut, bytes.Clone(b)) })
	outside := netip.MustParseAddr("198.18.0.2")
	blueHost := netip.MustParseAddr("10.42.0.2")
	// Blue's host is known to the gateway once it has sent something.
	ports[0].Queue(udpTo(outside, 100, 64, false))
	poll(t, w, 0)
	if len(upOut) != 1 {
		t.Fatalf("uplink got %d packets, want 1", len(upOut))
	}
	out := header.IPv4(upOut[0])
	if out.Src() != netip.MustParseAddr("100.64.0.2") || out.Dst() != outside || out.TTL() != 63 || out.CalculateChecksum() != out.Checksum() {
		t.Fatalf("masqueraded packet from %v to %v ttl %d", out.Src(), out.Dst(), out.TTL())
	}
	// The answer comes back to the container, translated.
	up.Queue(reply(upOut[0]))
	pollUplink(t, w)
	if len(got[0]) != 1 {
		t.Fatalf("container got %d frames, want 1 (drops %+v)", len(got[0]), eng.Errors())
	}
	f := got[0][0]
	ip := header.IPv4(f[14:])
	if header.Ethernet(f).Dst() != header.MAC(macBlueHost) || header.Ethernet(f).Src() != router.GatewayMAC("blue") ||
		ip.Src() != outside || ip.Dst() != blueHost || binary.BigEndian.Uint16(f[14+22:]) != 4000 {
		t.Fatalf("reply frame: % x", f[:42])
	}
	// An unsolicited packet to the nat_address is nobody's.
	stray := reply(upOut[0])
	binary.BigEndian.PutUint16(stray[22:24], 9) // another port
	up.Queue(stray)
	pollUplink(t, w)
	if n := eng.Drops(StageNAT, ReasonNATNoMatch); n != 1 {
		t.Fatalf("nat-no-match drops = %d, want 1", n)
	}
	// IPv6 from the uplink is not routed.
	up.Queue(append([]byte{0x60}, make([]byte, 47)...))
	pollUplink(t, w)
	if n := eng.Drops(StageUplinkRx, ReasonUplinkNotIPv4); n != 1 {
		t.Fatalf("uplink-not-ipv4 drops = %d, want 1", n)
	}
	// Without a masquerade, an outside destination is unreachable.
	if err := eng.SetUplinks(nil); err != nil {
		t.Fatal(err)
	}
	got = [2][][]byte{}
	ports[0].Queue(udpTo(outside, 100, 64, false))
	poll(t, w, 0)
	if n := eng.Drops(StageRouter, ReasonNoRoute); n != 1 || len(got[0]) != 1 || got[0][0][14+20] != 3 || got[0][0][14+21] != 0 {
		t.Fatalf("no-route drops = %d, frames back %d; want 1 and one ICMP net unreachable", n, len(got[0]))
	}
}

func TestMasqueradeSteadyStateAllocatesNothing(t *testing.T) {
	frames, upFrames := 0, 0
	var last []byte
	_, w, ports, up := natRig(t, func(int, []byte) { frames++ }, func(b []byte) { upFrames++; last = append(last[:0], b...) })
	outside := netip.MustParseAddr("198.18.0.2")
	batch := make([][]byte, 32)
	for i := range batch {
		batch[i] = udpTo(outside, 200, 64, false)
	}
	ports[0].Queue(batch[0])
	poll(t, w, 0)
	back := make([][]byte, 32)
	for i := range back {
		back[i] = reply(last)
	}
	allocs := testing.AllocsPerRun(100, func() {
		ports[0].Queue(batch...)
		poll(t, w, 0)
		up.Queue(back...)
		pollUplink(t, w)
	})
	if allocs != 0 {
		t.Fatalf("masquerade round trip allocates %.1f times per batch, want 0", allocs)
	}
	if upFrames != 1+101*32 || frames != 101*32 {
		t.Fatalf("uplink got %d, container %d; want %d and %d", upFrames, frames, 1+101*32, 101*32)
	}
}

// BenchmarkMasquerade: batches of 32 packets of one established UDP flow
// out through the uplink and 32 answers back (ns/packet over both ways).
func BenchmarkMasquerade(b *testing.B) {
	var last []byte
	_, w, ports, up := natRig(b, func(int, []byte) {}, func(p []byte) { last = append(last[:0], p...) })
	batch := make([][]byte, 32)
	for i := range batch {
		batch[i] = udpTo(netip.MustParseAddr("198.18.0.2"), 200, 64, false)
	}
	ports[0].Queue(batch[0])
	poll(b, w, 0)
	back := make([][]byte, 32)
	for i := range back {
		back[i] = reply(last)
	}
	b.ReportAllocs()
	for b.Loop() {
		ports[0].Queue(batch...)
		poll(b, w, 0)
		up.Queue(back...)
		pollUplink(b, w)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/packet")
}

// TestInboundFragNeededGoesBackThroughNAT: a DF datagram from outside to a
// published port whose container network has a smaller MTU gets
// fragmentation needed from the nat_address, quoting the datagram as the
// sender sent it (NAT translated the quote back).
func TestInboundFragNeededGoesBackThroughNAT(t *testing.T) {
	var upOut [][]byte
	eng, w, _, up := natRigMTU(t, 576, func(int, []byte) {}, func(b []byte) { upOut = append(upOut, bytes.Clone(b)) })
	tbl, _ := eng.NATTable("up0")
	if _, err := tbl.SetRules([]nat.Rule{{Proto: header.ProtoUDP, Port: 53, To: netip.MustParseAddrPort("10.43.0.2:53")}}); err != nil {
		t.Fatal(err)
	}
	// 198.18.0.2:4000 -> 100.64.0.2:53, 1000 bytes, DF.
	in := udpTo(netip.MustParseAddr("100.64.0.2"), 1014, 64, true)[14:]
	copy(in[12:16], []byte{198, 18, 0, 2})
	binary.BigEndian.PutUint16(in[22:24], 53)
	binary.BigEndian.PutUint16(in[26:28], 0)
	ip := header.IPv4(in)
	ip.SetChecksum(0)
	ip.SetChecksum(ip.CalculateChecksum())
	up.Queue(bytes.Clone(in))
	pollUplink(t, w)
	if n := eng.Drops(StageRouter, ReasonFragNeeded); n != 1 {
		t.Fatalf("frag-needed drops = %d, want 1 (all %+v)", n, eng.Errors())
	}
	if len(upOut) != 1 {
		t.Fatalf("uplink got %d packets, want the ICMP error", len(upOut))
	}
	e := header.IPv4(upOut[0])
	ic := upOut[0][20:]
	if e.Src() != netip.MustParseAddr("100.64.0.2") || e.Dst() != netip.MustParseAddr("198.18.0.2") || ic[0] != 3 || ic[1] != 4 || binary.BigEndian.Uint16(ic[6:]) != 576 {
		t.Fatalf("error from %v to %v type %d code %d mtu %d", e.Src(), e.Dst(), ic[0], ic[1], binary.BigEndian.Uint16(ic[6:]))
	}
	if q := ic[8:]; !bytes.Equal(q[12:20], in[12:20]) || !bytes.Equal(q[20:24], in[20:24]) {
		t.Fatalf("quote addresses/ports % x, want the sender's % x", q[12:24], in[12:24])
	}
	if e.CalculateChecksum() != e.Checksum() || header.ICMPv4(ic).CalculateChecksum() != header.ICMPv4(ic).Checksum() {
		t.Fatal("checksums of the translated error are wrong")
	}
}
