package dataplane

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

// traceOne starts a trace of count packets with filter, runs send, and
// returns the "stage: decision" lines of every traced packet.
func traceOne(t *testing.T, e *Engine, filter string, count int, send func()) [][]string {
	t.Helper()
	mustStartTrace(t, e, TraceSpec{Count: count, Filter: filter})
	send()
	var out [][]string
	for _, tp := range e.TraceShow() {
		out = append(out, decisions(tp))
	}
	e.StopTrace()
	return out
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got %s\nwant %s", what, strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}

func TestTraceL3TUNToPeerAndBack(t *testing.T) {
	for _, tc := range []struct {
		kind         TunnelKind
		encap, decap []string
		rxWords      string
	}{
		{
			kind:  TunnelFlannelUDP,
			encap: []string{"udp-encap: TTL 64 → 63 (flannel-UDP hop)", "udp-encap: flannel-UDP: the IPv4 packet is the whole payload of a datagram to UDP port 8285"},
			// The sender decremented the TTL once already (63 → 62).
			rxWords: "tunnel-rx: flannel-UDP datagram from peer 192.168.77.2: IPv4 10.244.2.2 > 10.244.1.2 UDP 1 > 5001 ttl 62, length 100",
			decap:   []string{"udp-decap: flannel-UDP from peer 192.168.77.2: network pods", "ip-input: TTL 62 → 61 (flannel-UDP hop)"},
		},
		{
			kind:    TunnelGRE,
			encap:   []string{"gre-encap: GRE header, protocol 0x0800, no key"},
			rxWords: "tunnel-rx: GRE packet from peer 192.168.77.2, IPv4: IPv4 10.244.2.2 > 10.244.1.2 UDP 1 > 5001 ttl 63, length 100",
			decap:   []string{"gre-decap: GRE protocol 0x0800, no key, from peer 192.168.77.2: network pods"},
		},
		{
			kind:    TunnelVXLAN,
			encap:   []string{"l3-vxlan-encap: VXLAN header, VNI 1, inner Ethernet to VTEP MAC 02:66:00:00:00:02"},
			rxWords: "tunnel-rx: datagram from peer 192.168.77.2: 02:66:00:00:00:02 > 02:66:00:00:00:01, IPv4 10.244.2.2 > 10.244.1.2 UDP 1 > 5001 ttl 63, length 100",
			decap:   []string{"vxlan-decap: VXLAN VNI 1 from peer 192.168.77.2: network pods", "l3-vxlan-decap: inner Ethernet to this host's VTEP MAC 02:66:00:00:00:01: IPv4 packet"},
		},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			r := newL3Rig(t, tc.kind)
			got := traceOne(t, r.eng, "udp and host 10.244.2.2", 1, func() {
				r.fromPort(t, 0, ipPacket("10.244.1.2", "10.244.2.2", 64, 100, 1))
			})
			if len(got) != 1 {
				t.Fatalf("traced %d packets, want 1", len(got))
			}
			want := append([]string{
				"port-rx: read from TUN port ferry0: IPv4 10.244.1.2 > 10.244.2.2 UDP 1 > 5001 ttl 64, length 100",
				"route: route: destination in 10.244.2.0/24, next hop peer 192.168.77.2",
			}, tc.encap...)
			want = append(want, "tunnel-tx: sent to peer 192.168.77.2")
			sameLines(t, "TUN → peer", got[0], want)

			back := encapsulated(tc.kind, ipPacket("10.244.2.2", "10.244.1.2", 63, 100, 1), vtepLocal, vtepPeer1)
			got = traceOne(t, r.eng, "vni 1 and udp", 1, func() { r.fromPeer(t, tc.kind, peer1, back) })
			if len(got) != 1 {
				t.Fatalf("traced %d packets from the peer, want 1", len(got))
			}
			want = append([]string{tc.rxWords}, tc.decap...)
			want = append(want, "port-tx: written to port ferry0")
			sameLines(t, "peer → TUN", got[0], want)
		})
	}
}

func TestTraceL3NoRouteShowsDropAndICMPError(t *testing.T) {
	r := newL3Rig(t, TunnelFlannelUDP)
	got := traceOne(t, r.eng, "", 1, func() {
		r.fromPort(t, 0, ipPacket("10.244.1.2", "10.244.9.9", 64, 100, 1))
	})
	want := []string{
		"port-rx: read from TUN port ferry0: IPv4 10.244.1.2 > 10.244.9.9 UDP 1 > 5001 ttl 64, length 100",
		"route: dropped: no-route: " + ReasonNoRoute.Help(),
		"route: ICMP net unreachable sent back to 10.244.1.2",
	}
	if len(got) != 1 {
		t.Fatalf("traced %d packets, want 1", len(got))
	}
	sameLines(t, "no route", got[0], want)
}

func TestTraceMasqueradeAndReply(t *testing.T) {
	var upOut [][]byte
	eng, w, ports, up := natRig(t, func(int, []byte) {}, func(b []byte) { upOut = append(upOut, bytes.Clone(b)) })
	outside := netip.MustParseAddr("198.18.0.2")
	got := traceOne(t, eng, "host 198.18.0.2", 1, func() {
		ports[0].Queue(udpTo(outside, 100, 64, false))
		poll(t, w, 0)
	})
	if len(got) != 1 || len(upOut) != 1 {
		t.Fatalf("traced %d packets, sent %d to the uplink; want 1 and 1", len(got), len(upOut))
	}
	sport := header.UDP(upOut[0][20:]).SrcPort()
	sameLines(t, "masquerade", got[0][2:], []string{
		"bridge: destination MAC is the gateway of network blue: to the router",
		"router: route: destination in no local network, default route out of uplink up0; TTL 64 → 63",
		"nat: masquerade (SNAT) on uplink up0, outbound: udp 10.42.0.2:4000 > 198.18.0.2:5001 → 100.64.0.2:" + itoa(sport) + " > 198.18.0.2:5001, conntrack NEW",
		"uplink-tx: written to uplink up0",
	})
	got = traceOne(t, eng, "src host 198.18.0.2", 1, func() {
		up.Queue(reply(upOut[0]))
		pollUplink(t, w)
	})
	if len(got) != 1 {
		t.Fatalf("traced %d replies, want 1", len(got))
	}
	sameLines(t, "reply", got[0], []string{
		"uplink-rx: read from uplink up0",
		"nat: reply of a masqueraded connection, translated back on uplink up0, inbound: udp 198.18.0.2:5001 > 100.64.0.2:" + itoa(sport) + " → 198.18.0.2:5001 > 10.42.0.2:4000, conntrack ESTABLISHED",
		"router: route: destination in 10.42.0.0/24, directly connected network blue; TTL 63 → 62",
		"neighbour: next hop 10.42.0.2 is at " + header.MAC(macBlueHost).String(),
		"port-tx: written to port p0",
	})
}

func itoa(n uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), n).String()[len("0.0.0.0:"):]
}

func TestCapturePreAndPostNAT(t *testing.T) {
	var upOut [][]byte
	eng, w, ports, _ := natRig(t, func(int, []byte) {}, func(b []byte) { upOut = append(upOut, bytes.Clone(b)) })
	pre, err := eng.StartCapture(CaptureSpec{Point: "pre-nat", Filter: "udp and vni 42 and not ether host 02:00:00:00:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	post, err := eng.StartCapture(CaptureSpec{Point: "post-nat", Filter: "src host 100.64.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	if pre.LinkType() != layers.LinkTypeRaw || post.LinkType() != layers.LinkTypeRaw {
		t.Fatalf("NAT points' link types %v %v, want RAW", pre.LinkType(), post.LinkType())
	}
	ports[0].Queue(udpTo(netip.MustParseAddr("198.18.0.2"), 100, 64, false))
	poll(t, w, 0)
	a, b := pre.Read(nil, 0), post.Read(nil, 0)
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("captured %d pre-nat and %d post-nat packets, want 1 and 1", len(a), len(b))
	}
	for _, tc := range []struct {
		name     string
		data     []byte
		src, dst string
		ttl      uint8
	}{
		{"pre-nat", a[0].Data, "10.42.0.2", "198.18.0.2", 63},
		{"post-nat", b[0].Data, "100.64.0.2", "198.18.0.2", 63},
	} {
		pkt := gopacket.NewPacket(tc.data, layers.LayerTypeIPv4, gopacket.Default)
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || ip.SrcIP.String() != tc.src || ip.DstIP.String() != tc.dst || ip.TTL != tc.ttl || pkt.Layer(layers.LayerTypeUDP) == nil {
			t.Errorf("%s: %v, want IPv4/UDP %s > %s ttl %d", tc.name, pkt, tc.src, tc.dst, tc.ttl)
		}
	}
	if !bytes.Equal(b[0].Data, upOut[0]) {
		t.Errorf("post-nat capture differs from what left the uplink:\n%x\n%x", b[0].Data, upOut[0])
	}
	pre.Stop()
	post.Stop()
}

func TestCaptureL3TunnelPointsHaveRealOuterHeaders(t *testing.T) {
	for _, tc := range []struct {
		kind  TunnelKind
		outer gopacket.LayerType
	}{
		{TunnelFlannelUDP, layers.LayerTypeUDP},
		{TunnelGRE, layers.LayerTypeGRE},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			r := newL3Rig(t, tc.kind)
			tx, err := r.eng.StartCapture(CaptureSpec{Point: "tunnel-tx:" + peer1.String(), Filter: "host 10.244.2.2 and not ether host 00:00:00:00:00:00"})
			if err != nil {
				t.Fatal(err)
			}
			rx, err := r.eng.StartCapture(CaptureSpec{Point: "tunnel-rx", Filter: "dst net 10.244.1.0/24"})
			if err != nil {
				t.Fatal(err)
			}
			tun, err := r.eng.StartCapture(CaptureSpec{Point: "rx:ferry0", Filter: "port 5001"})
			if err != nil {
				t.Fatal(err)
			}
			pkt := ipPacket("10.244.1.2", "10.244.2.2", 64, 100, 1)
			r.fromPort(t, 0, pkt, ipPacket("10.244.1.2", "10.244.7.9", 64, 100, 2))
			r.fromPeer(t, tc.kind, peer1, encapsulated(tc.kind, ipPacket("10.244.2.2", "10.244.1.2", 63, 100, 1), vtepLocal, vtepPeer1))
			txGot, rxGot, tunGot := tx.Read(nil, 0), rx.Read(nil, 0), tun.Read(nil, 0)
			if len(txGot) != 1 || len(rxGot) != 1 || len(tunGot) != 2 {
				t.Fatalf("captured %d at tunnel-tx, %d at tunnel-rx, %d at rx:ferry0; want 1, 1, 2", len(txGot), len(rxGot), len(tunGot))
			}
			if tun.LinkType() != layers.LinkTypeRaw || !bytes.Equal(tunGot[0].Data, pkt) {
				t.Errorf("rx:ferry0: link type %v, first packet %x; want RAW and %x", tun.LinkType(), tunGot[0].Data, pkt)
			}
			for _, c := range []struct {
				name     string
				data     []byte
				src, dst string
				inner    string
			}{
				{"tunnel-tx", txGot[0].Data, "0.0.0.0", peer1.String(), "10.244.2.2"},
				{"tunnel-rx", rxGot[0].Data, peer1.String(), "0.0.0.0", "10.244.1.2"},
			} {
				p := gopacket.NewPacket(c.data, layers.LayerTypeEthernet, gopacket.Default)
				if el := p.ErrorLayer(); el != nil {
					t.Fatalf("%s: gopacket: %v", c.name, el.Error())
				}
				var ips []*layers.IPv4
				for _, l := range p.Layers() {
					if ip, ok := l.(*layers.IPv4); ok {
						ips = append(ips, ip)
					}
				}
				if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && len(ips) == 1 {
					// gopacket knows no decoder for port 8285: the
					// payload is the inner IPv4 packet.
					inner := gopacket.NewPacket(u.Payload, layers.LayerTypeIPv4, gopacket.Default)
					if ip, ok := inner.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
						ips = append(ips, ip)
					}
				}
				if len(ips) != 2 || ips[0].SrcIP.String() != c.src || ips[0].DstIP.String() != c.dst || p.Layer(tc.outer) == nil || ips[1].DstIP.String() != c.inner {
					t.Errorf("%s: %v\nwant outer IPv4 %s > %s, %v, inner IPv4 to %s", c.name, p, c.src, c.dst, tc.outer, c.inner)
				}
				if tc.kind == TunnelFlannelUDP {
					if u := p.Layer(layers.LayerTypeUDP).(*layers.UDP); u.DstPort != 8285 && u.SrcPort != 8285 {
						t.Errorf("%s: UDP ports %d > %d, want 8285 on one side", c.name, u.SrcPort, u.DstPort)
					}
				}
			}
		})
	}
}

func TestInjectIntoTUNPort(t *testing.T) {
	r := newL3Rig(t, TunnelGRE)
	tp, err := r.eng.Inject(InjectSpec{In: "ferry0", Packet: "ip src 10.244.1.2 dst 10.244.4.9 udp dport 53"})
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "inject", decisions(tp), []string{
		"port-rx: read from TUN port ferry0: IPv4 10.244.1.2 > 10.244.4.9 UDP 12345 > 53 ttl 64, length 28",
		"route: route: destination in 10.244.4.0/22, next hop peer 192.168.77.3",
		"gre-encap: GRE header, protocol 0x0800, no key",
		"tunnel-tx: would be sent to peer 192.168.77.3",
	})
	if len(r.out) != 0 || totalDrops(r.eng) != 0 {
		t.Errorf("inject sent %d datagrams and counted %d drops, want none", len(r.out), totalDrops(r.eng))
	}
}
