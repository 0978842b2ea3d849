package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/router"
)

var (
	macBlueHost = [6]byte{0x02, 0x42, 0x0a, 0x2a, 0, 2}
	macRedHost  = [6]byte{0x02, 0x42, 0x0a, 0x2b, 0, 2}
	blueGW      = netip.MustParseAddr("10.42.0.1")
	redGW       = netip.MustParseAddr("10.43.0.1")
)

// routedSpecs are the two networks of the routed rigs: blue (port p0,
// 10.42.0.0/24) and red (port p1, 10.43.0.0/24, MTU redMTU), each with a
// gateway.
func routedSpecs(redMTU int) []NetworkSpec {
	return []NetworkSpec{
		{Name: "blue", VNI: 42, MTU: 1500, Ageing: 300 * time.Second, Ports: []string{"p0"}, Gateway: blueGW, Subnet: netip.MustParsePrefix("10.42.0.0/24")},
		{Name: "red", VNI: 43, MTU: redMTU, Ageing: 300 * time.Second, Ports: []string{"p1"}, Gateway: redGW, Subnet: netip.MustParsePrefix("10.43.0.0/24")},
	}
}

// routedRig has routedSpecs' networks on MemPorts 0 and 1.
func routedRig(t testing.TB, redMTU int, sink func(port int, f []byte)) (*Engine, *Worker, [2]*MemPort) {
	t.Helper()
	eng, err := NewEngine(routedSpecs(redMTU), 1)
	if err != nil {
		t.Fatal(err)
	}
	w := eng.NewWorker(0, 256, 2048)
	var ports [2]*MemPort
	for i := range ports {
		ports[i] = &MemPort{Sink: func(f []byte) { sink(i, f) }}
		w.SetPort(uint16(i), ports[i])
	}
	return eng, w, ports
}

// udpTo returns a UDP frame of size bytes from the blue host to dst
// through blue's gateway, with a valid IP header checksum.
func udpTo(dst netip.Addr, size int, ttl uint8, df bool) []byte {
	f := frame(router.GatewayMAC("blue"), macBlueHost, size, 4000)
	ip := header.IPv4(f[14:])
	copy(f[14+16:14+20], dst.AsSlice())
	f[14+8] = ttl
	if df {
		f[14+6] = 0x40
	}
	ip.SetChecksum(0)
	ip.SetChecksum(ip.CalculateChecksum())
	return f
}

func arpFrame(op uint16, dst, srcMAC [6]byte, srcIP, target netip.Addr, targetMAC [6]byte) []byte {
	f := make([]byte, 42)
	header.Ethernet(f).Encode(header.MAC(dst), header.MAC(srcMAC), header.EtherTypeARP)
	header.ARP(f[14:]).Encode(&header.ARPFields{Op: op, SenderMAC: header.MAC(srcMAC), SenderIP: srcIP, TargetMAC: header.MAC(targetMAC), TargetIP: target})
	return f
}

func poll(t testing.TB, w *Worker, port uint16) {
	t.Helper()
	for {
		n, err := w.PollPort(port)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func TestRouterBetweenNetworks(t *testing.T) {
	var got [2][][]byte
	eng, w, ports := routedRig(t, 576, func(i int, f []byte) { got[i] = append(got[i], bytes.Clone(f)) })
	blueMAC, redMAC := router.GatewayMAC("blue"), router.GatewayMAC("red")
	redHost := netip.MustParseAddr("10.43.0.2")
	blueHost := netip.MustParseAddr("10.42.0.2")

	// ARP for blue's gateway is answered out of the ingress port.
	ports[0].Queue(arpFrame(header.ARPRequest, bcast, macBlueHost, blueHost, blueGW, [6]byte{}))
	poll(t, w, 0)
	if len(got[0]) != 1 || len(got[1]) != 0 {
		t.Fatalf("ARP for the gateway: got %d frames on p0, %d on p1, want 1 and 0", len(got[0]), len(got[1]))
	}
	a := header.ARP(got[0][0][14:])
	if a.Op() != header.ARPReply || a.SenderMAC() != blueMAC || a.SenderIP() != blueGW || header.Ethernet(got[0][0]).Dst() != header.MAC(macBlueHost) {
		t.Fatalf("ARP reply wrong: % x", got[0][0])
	}
	got = [2][][]byte{}

	// The first packet to red misses the neighbour table: dropped, and an
	// ARP request from red's gateway goes out of red's port.
	ports[0].Queue(udpTo(redHost, 100, 64, false))
	poll(t, w, 0)
	if n := eng.Drops(StageNeighbour, ReasonNeighbourUnresolved); n != 1 {
		t.Fatalf("neighbour-unresolved drops = %d, want 1", n)
	}
	if len(got[1]) != 1 || header.ARP(got[1][0][14:]).TargetIP() != redHost || header.ARP(got[1][0][14:]).SenderMAC() != redMAC {
		t.Fatalf("want one ARP request for %s from red's gateway on p1, got %d frames", redHost, len(got[1]))
	}
	got = [2][][]byte{}
	// The reply teaches the table and is consumed.
	ports[1].Queue(arpFrame(header.ARPReply, [6]byte(redMAC), macRedHost, redHost, redGW, [6]byte(redMAC)))
	poll(t, w, 1)
	if n := eng.Drops(StageGateway, ReasonGatewayConsumed); n != 1 {
		t.Fatalf("gateway-consumed = %d, want 1", n)
	}

	// Now it is routed: MACs rewritten, TTL 63, checksum still right.
	in := udpTo(redHost, 100, 64, false)
	ports[0].Queue(in)
	poll(t, w, 0)
	if len(got[1]) != 1 {
		t.Fatalf("routed packet: %d frames on p1, want 1", len(got[1]))
	}
	out := got[1][0]
	ip := header.IPv4(out[14:])
	if header.Ethernet(out).Dst() != header.MAC(macRedHost) || header.Ethernet(out).Src() != redMAC || ip.TTL() != 63 || ip.CalculateChecksum() != ip.Checksum() {
		t.Fatalf("routed frame: dst %v src %v ttl %d checksum %04x (want %04x)", header.Ethernet(out).Dst(), header.Ethernet(out).Src(), ip.TTL(), ip.Checksum(), ip.CalculateChecksum())
	}
	if !bytes.Equal(out[14+20:], in[14+20:]) {
		t.Fatal("routed payload changed")
	}
	got = [2][][]byte{}

	for _, tc := range []struct {
		name      string
		pkt       []byte
		reason    Reason
		typ, code uint8
		mtu       uint16
	}{
		{"ttl 1 expires at the gateway", udpTo(redHost, 100, 1, false), ReasonTTLExpired, 11, 0, 0},
		{"DF larger than red's MTU", udpTo(redHost, 600, 64, true), ReasonFragNeeded, 3, 4, 576},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = [2][][]byte{}
			before := eng.Drops(StageRouter, tc.reason)
			ports[0].Queue(tc.pkt)
			poll(t, w, 0)
			if n := eng.Drops(StageRouter, tc.reason) - before; n != 1 {
				t.Fatalf("drops %s = %d, want 1", tc.reason, n)
			}
			if len(got[0]) != 1 || len(got[1]) != 0 {
				t.Fatalf("want the ICMP error on p0 only, got %d and %d frames", len(got[0]), len(got[1]))
			}
			e := got[0][0]
			ip := header.IPv4(e[14:])
			ic := e[14+20:]
			if ip.Src() != blueGW || ip.Dst() != blueHost || ic[0] != tc.typ || ic[1] != tc.code || binary.BigEndian.Uint16(ic[6:]) != tc.mtu {
				t.Fatalf("ICMP error from %v to %v type %d code %d mtu %d, want from %v to %v type %d code %d mtu %d",
					ip.Src(), ip.Dst(), ic[0], ic[1], binary.BigEndian.Uint16(ic[6:]), blueGW, blueHost, tc.typ, tc.code, tc.mtu)
			}
			// The quote is the packet as it arrived (TTL not decremented).
			if !bytes.Equal(ic[8:8+28], tc.pkt[14:14+28]) {
				t.Fatalf("quoted header % x, want % x", ic[8:36], tc.pkt[14:42])
			}
		})
	}
}

func TestRoutedSteadyStateAllocatesNothing(t *testing.T) {
	frames := 0
	_, w, ports := routedRig(t, 1500, func(int, []byte) { frames++ })
	redHost := netip.MustParseAddr("10.43.0.2")
	ports[1].Queue(arpFrame(header.ARPReply, [6]byte(router.GatewayMAC("red")), macRedHost, redHost, redGW, [6]byte(router.GatewayMAC("red"))))
	poll(t, w, 1)
	batch := make([][]byte, 32)
	for i := range batch {
		batch[i] = udpTo(redHost, 200, 64, false)
	}
	allocs := testing.AllocsPerRun(100, func() {
		ports[0].Queue(batch...)
		poll(t, w, 0)
	})
	if allocs != 0 {
		t.Fatalf("routed batch allocates %.1f times, want 0", allocs)
	}
	if frames != 101*32 {
		t.Fatalf("frames routed = %d, want %d", frames, 101*32)
	}
}

// BenchmarkRouted: batches of 32 UDP packets routed from blue to red,
// neighbour known (ns/op is per batch; ns/packet is reported).
func BenchmarkRouted(b *testing.B) {
	_, w, ports := routedRig(b, 1500, func(int, []byte) {})
	redHost := netip.MustParseAddr("10.43.0.2")
	ports[1].Queue(arpFrame(header.ARPReply, [6]byte(router.GatewayMAC("red")), macRedHost, redHost, redGW, [6]byte(router.GatewayMAC("red"))))
	poll(b, w, 1)
	batch := make([][]byte, 32)
	for i := range batch {
		batch[i] = udpTo(redHost, 200, 64, false)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ports[0].Queue(batch...)
		poll(b, w, 0)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/packet")
}
