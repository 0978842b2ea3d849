package dataplane

import (
	"bytes"
	"encoding/binary"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"net/netip"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/header"
)

var (
	vtepLocal = [6]byte{0x02, 0x66, 0, 0, 0, 0x01}
	vtepPeer1 = [6]byte{0x02, 0x66, 0, 0, 0, 0x02}
	vtepPeer2 = [6]byte{0x02, 0x66, 0, 0, 0, 0x03}
)

// ipPacket builds an IPv4/UDP packet of size bytes from src to dst with the
// given TTL and UDP source port, with a correct header checksum.
func ipPacket(src, dst string, ttl uint8, size int, sport uint16) []byte {
	size = max(size, 28)
	b := make([]byte, size)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(size))
	b[8], b[9] = ttl, 17
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	header.IPv4(b).SetChecksum(header.IPv4(b).CalculateChecksum())
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], 5001)
	binary.BigEndian.PutUint16(b[24:], uint16(size-20))
	for i := 28; i < size; i++ {
		b[i] = byte(i)
	}
	return b
}

// ttlMinusOne returns a copy of an IPv4 packet with its TTL one lower and
// its checksum recomputed from scratch (the reference for the pipeline's
// incremental update).
func ttlMinusOne(p []byte) []byte {
	c := bytes.Clone(p)
	c[8]--
	header.IPv4(c).SetChecksum(header.IPv4(c).CalculateChecksum())
	return c
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// l3Rig is an engine with an l3 network "pods" of one encapsulation (TUN
// port 0, subnet 10.244.1.0/24 of 10.244.0.0/16; peer1 owns
// 10.244.2.0/24, peer2 10.244.4.0/22) and an l2 GRE network "blue" (VNI
// 42, port 1, peer1), all in memory.
type l3Rig struct {
	eng    *Engine
	w      *Worker
	tunDev *MemPort // the l3 network's TUN
	l2Port *MemPort
	tuns   [NumTunnelKinds]*MemTunnel
	toTUN  [][]byte
	toL2   [][]byte
	out    []sent
}

func newL3Rig(t testing.TB, kind TunnelKind) *l3Rig {
	t.Helper()
	eng, err := NewEngine([]NetworkSpec{{
		Name: "pods", VNI: 1, MTU: 1400, Encap: kind,
		Ports: []string{"ferry0"}, Peers: []netip.Addr{peer1, peer2},
		L3: &L3Spec{
			Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24"),
			VTEPMAC:     vtepLocal,
			PeerSubnets: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24"), netip.MustParsePrefix("10.244.4.0/22")},
			PeerMACs:    [][6]byte{vtepPeer1, vtepPeer2},
		},
	}, {
		Name: "blue", VNI: 42, MTU: 1400, Encap: TunnelGRE, Ageing: 300 * time.Second,
		Ports: []string{"p0"}, Peers: []netip.Addr{peer1},
	}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := &l3Rig{eng: eng, w: eng.NewWorker(0, 256, 2048)}
	r.tunDev = &MemPort{Sink: func(f []byte) { r.toTUN = append(r.toTUN, bytes.Clone(f)) }}
	r.l2Port = &MemPort{Sink: func(f []byte) { r.toL2 = append(r.toL2, bytes.Clone(f)) }}
	r.w.SetPort(0, r.tunDev)
	r.w.SetPort(1, r.l2Port)
	for k := range r.tuns {
		r.tuns[k] = &MemTunnel{Sink: func(src int, dst netip.Addr, d []byte) {
			r.out = append(r.out, sent{src, dst, bytes.Clone(d)})
		}}
		r.w.SetTunnelKind(TunnelKind(k), r.tuns[k])
	}
	return r
}

func (r *l3Rig) fromPort(t testing.TB, port uint16, pkts ...[]byte) {
	t.Helper()
	p := r.tunDev
	if port == 1 {
		p = r.l2Port
	}
	p.Queue(pkts...)
	drain(t, func() (int, error) { return r.w.PollPort(port) })
}

func (r *l3Rig) fromPeer(t testing.TB, k TunnelKind, peer netip.Addr, datagrams ...[]byte) {
	t.Helper()
	r.tuns[k].Queue(peer, datagrams...)
	drain(t, func() (int, error) { return r.w.PollTunnelKind(k) })
}

func (r *l3Rig) reset() { r.toTUN, r.toL2, r.out = nil, nil, nil }

// encapsulated returns what the wire carries for inner packet pkt sent by
// this host to the peer with VTEP MAC dstMAC, per kind (the outer IP and
// UDP headers are the socket's).
func encapsulated(k TunnelKind, pkt []byte, dstMAC, srcMAC [6]byte) []byte {
	switch k {
	case TunnelFlannelUDP:
		return ttlMinusOne(pkt)
	case TunnelGRE:
		return cat([]byte{0, 0, 0x08, 0x00}, pkt)
	}
	return cat(vxlan(1, nil), dstMAC[:], srcMAC[:], []byte{0x08, 0x00}, pkt)
}

func TestL3TUNToPeer(t *testing.T) {
	for _, k := range []TunnelKind{TunnelFlannelUDP, TunnelGRE, TunnelVXLAN} {
		t.Run(k.String(), func(t *testing.T) {
			r := newL3Rig(t, k)
			to2 := ipPacket("10.244.1.2", "10.244.2.2", 64, 100, 1)
			to4 := ipPacket("10.244.1.2", "10.244.7.9", 64, 100, 2) // inside peer2's /22
			r.fromPort(t, 0, to2, to4)
			if len(r.out) != 2 {
				t.Fatalf("sent %d datagrams, want 2 (drops %+v)", len(r.out), r.eng.Errors())
			}
			for i, want := range []struct {
				dst netip.Addr
				pkt []byte
				mac [6]byte
			}{{peer1, to2, vtepPeer1}, {peer2, to4, vtepPeer2}} {
				got := r.out[i]
				if got.dst != want.dst {
					t.Errorf("datagram %d to %s, want %s", i, got.dst, want.dst)
				}
				if exp := encapsulated(k, want.pkt, want.mac, vtepLocal); !bytes.Equal(got.data, exp) {
					t.Errorf("datagram %d:\n got %x\nwant %x", i, got.data, exp)
				}
			}
			if n := totalDrops(r.eng); n != 0 {
				t.Errorf("%d drops: %+v", n, r.eng.Errors())
			}
		})
	}
}

func TestL3PeerToTUN(t *testing.T) {
	for _, k := range []TunnelKind{TunnelFlannelUDP, TunnelGRE, TunnelVXLAN} {
		t.Run(k.String(), func(t *testing.T) {
			r := newL3Rig(t, k)
			pkt := ipPacket("10.244.2.2", "10.244.1.2", 63, 100, 1)
			// What peer1 puts on the wire for pkt (flannel-UDP: its
			// TTL already decremented once by the sender).
			wire := encapsulated(k, pkt, vtepLocal, vtepPeer1)
			r.fromPeer(t, k, peer1, wire)
			want := pkt
			if k == TunnelFlannelUDP {
				want = ttlMinusOne(ttlMinusOne(pkt))
			}
			if len(r.toTUN) != 1 || !bytes.Equal(r.toTUN[0], want) {
				t.Fatalf("TUN got %x, want [%x] (drops %+v)", r.toTUN, want, r.eng.Errors())
			}
		})
	}
}

func TestL2GRE(t *testing.T) {
	r := newL3Rig(t, TunnelFlannelUDP)
	inner := frame(macA, macR, 60, 1)
	keyed := cat([]byte{0x20, 0, 0x65, 0x58, 0, 0, 0, 42}, inner)
	r.fromPeer(t, TunnelGRE, peer1, keyed)
	if len(r.toL2) != 1 || !bytes.Equal(r.toL2[0], inner) {
		t.Fatalf("l2 port got %x, want [%x] (drops %+v)", r.toL2, inner, r.eng.Errors())
	}
	blue := 0
	for _, p := range r.eng.Peers() {
		if p.Network != "blue" {
			continue
		}
		blue++
		if p.RxPackets != 1 || p.RxBytes != uint64(len(keyed)) {
			t.Fatalf("blue's peer counted %d packets / %d bytes, want 1 / %d (the whole GRE packet, key included)", p.RxPackets, p.RxBytes, len(keyed))
		}
	}
	if blue != 1 {
		t.Fatalf("network blue has %d peers in Peers(), want 1", blue)
	}
	reply := frame(macR, macA, 60, 1)
	r.fromPort(t, 1, reply)
	if len(r.out) != 1 || r.out[0].dst != peer1 || !bytes.Equal(r.out[0].data, cat([]byte{0x20, 0, 0x65, 0x58, 0, 0, 0, 42}, reply)) {
		t.Fatalf("sent %+v, want the reply in keyed TEB GRE to %s", r.out, peer1)
	}
}

func TestL3BadInputIsCounted(t *testing.T) {
	good := ipPacket("10.244.1.2", "10.244.2.2", 64, 100, 1)
	fromPeer := ipPacket("10.244.2.2", "10.244.1.2", 64, 100, 1)
	badVersion := bytes.Clone(good)
	badVersion[0] = 0x55
	tooLong := bytes.Clone(good)
	binary.BigEndian.PutUint16(tooLong[2:], 200)
	ipv6 := make([]byte, 60)
	ipv6[0] = 0x60
	greHdr := func(flags uint16, proto uint16) []byte {
		return []byte{byte(flags >> 8), byte(flags), byte(proto >> 8), byte(proto)}
	}
	teb := cat(greHdr(0x2000, 0x6558), []byte{0, 0, 0, 42}, frame(macA, macR, 60, 1))
	cases := []struct {
		name   string
		kind   TunnelKind // network's encap
		port   bool       // from the TUN rather than a peer
		rxKind TunnelKind // socket it arrives on
		from   netip.Addr
		data   []byte
		stage  Stage
		reason Reason
	}{
		{"runt from TUN", TunnelGRE, true, 0, netip.Addr{}, good[:10], StageIPInput, ReasonBadIPv4},
		{"version 5 from TUN", TunnelGRE, true, 0, netip.Addr{}, badVersion, StageIPInput, ReasonBadIPv4},
		{"total length beyond packet", TunnelGRE, true, 0, netip.Addr{}, tooLong, StageIPInput, ReasonBadIPv4},
		{"IPv6 from TUN", TunnelGRE, true, 0, netip.Addr{}, ipv6, StageIPInput, ReasonNotIPv4},
		{"outside the network", TunnelGRE, true, 0, netip.Addr{}, ipPacket("10.244.1.2", "8.8.8.8", 64, 60, 1), StageRoute, ReasonNotInNetwork},
		{"to own subnet (loop)", TunnelGRE, true, 0, netip.Addr{}, ipPacket("10.244.1.2", "10.244.1.9", 64, 60, 1), StageRoute, ReasonLocalSubnet},
		{"subnet with no peer", TunnelGRE, true, 0, netip.Addr{}, ipPacket("10.244.1.2", "10.244.9.1", 64, 60, 1), StageRoute, ReasonNoRoute},
		{"TTL 1 on flannel-UDP tx", TunnelFlannelUDP, true, 0, netip.Addr{}, ipPacket("10.244.1.2", "10.244.2.2", 1, 60, 1), StageUDPEncap, ReasonTTLExpired},
		{"too big", TunnelGRE, true, 0, netip.Addr{}, ipPacket("10.244.1.2", "10.244.2.2", 64, 1401, 1), StageGREEncap, ReasonTooBig},
		{"GRE from a stranger", TunnelGRE, false, TunnelGRE, stranger4, cat(greHdr(0, 0x0800), fromPeer), StageGREDecap, ReasonUnknownPeer},
		{"GRE unsupported flags (sequence)", TunnelGRE, false, TunnelGRE, peer1, cat(greHdr(0x1000, 0x0800), []byte{0, 0, 0, 1}, fromPeer), StageGREDecap, ReasonGREUnsupportedFlags},
		{"GRE routing present", TunnelGRE, false, TunnelGRE, peer1, cat(greHdr(0x4000, 0x0800), fromPeer), StageGREDecap, ReasonGRERouting},
		{"GRE checksum wrong", TunnelGRE, false, TunnelGRE, peer1, cat(greHdr(0x8000, 0x0800), []byte{0xde, 0xad, 0, 0}, fromPeer), StageGREDecap, ReasonGREBadChecksum},
		{"GRE version 1", TunnelGRE, false, TunnelGRE, peer1, cat(greHdr(0x0001, 0x0800), fromPeer), StageGREDecap, ReasonGREBadVersion},
		{"GRE protocol IPv6", TunnelGRE, false, TunnelGRE, peer1, cat(greHdr(0, 0x86dd), ipv6), StageGREDecap, ReasonGREUnknownProtocol},
		{"GRE short", TunnelGRE, false, TunnelGRE, peer1, []byte{0, 0}, StageGREDecap, ReasonGREShort},
		{"GRE Ethernet without key", TunnelGRE, false, TunnelGRE, peer1, cat(greHdr(0, 0x6558), frame(macA, macR, 60, 1)), StageGREDecap, ReasonGRENoKey},
		{"GRE Ethernet unknown key", TunnelGRE, false, TunnelGRE, peer1, cat(greHdr(0x2000, 0x6558), []byte{0, 0, 0, 43}, frame(macA, macR, 60, 1)), StageGREDecap, ReasonUnknownGREKey},
		{"GRE Ethernet from a stranger", TunnelGRE, false, TunnelGRE, stranger4, teb, StageGREDecap, ReasonUnknownPeer},
		{"GRE IPv4 not for this host", TunnelGRE, false, TunnelGRE, peer1, cat(greHdr(0, 0x0800), ipPacket("10.244.2.2", "10.244.4.1", 64, 60, 1)), StageGREDecap, ReasonNotLocalSubnet},
		{"flannel-UDP not IPv4", TunnelFlannelUDP, false, TunnelFlannelUDP, peer1, ipv6, StageUDPDecap, ReasonFlannelUDPNotIPv4},
		{"flannel-UDP short", TunnelFlannelUDP, false, TunnelFlannelUDP, peer1, fromPeer[:12], StageUDPDecap, ReasonFlannelUDPShort},
		{"flannel-UDP trailing bytes", TunnelFlannelUDP, false, TunnelFlannelUDP, peer1, cat(fromPeer, []byte{0}), StageUDPDecap, ReasonFlannelUDPBadLength},
		{"flannel-UDP from a stranger", TunnelFlannelUDP, false, TunnelFlannelUDP, stranger4, fromPeer, StageUDPDecap, ReasonUnknownPeer},
		{"flannel-UDP TTL 1", TunnelFlannelUDP, false, TunnelFlannelUDP, peer1, ipPacket("10.244.2.2", "10.244.1.2", 1, 60, 1), StageIPInput, ReasonTTLExpired},
		{"VXLAN to another VTEP MAC", TunnelVXLAN, false, TunnelVXLAN, peer1, cat(vxlan(1, nil), vtepPeer2[:], vtepPeer1[:], []byte{8, 0}, fromPeer), StageL3VXLANDecap, ReasonVTEPMACMismatch},
		{"VXLAN inner ARP", TunnelVXLAN, false, TunnelVXLAN, peer1, cat(vxlan(1, nil), vtepLocal[:], vtepPeer1[:], []byte{8, 6}, fromPeer), StageL3VXLANDecap, ReasonNotIPv4},
		{"VXLAN inner bad IPv4", TunnelVXLAN, false, TunnelVXLAN, peer1, cat(vxlan(1, nil), vtepLocal[:], vtepPeer1[:], []byte{8, 0}, badVersion), StageIPInput, ReasonBadIPv4},
		{"VXLAN l3 from a stranger", TunnelVXLAN, false, TunnelVXLAN, stranger4, encapsulated(TunnelVXLAN, fromPeer, vtepLocal, vtepPeer1), StageVXLANDecap, ReasonUnknownPeer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newL3Rig(t, c.kind)
			if c.port {
				r.fromPort(t, 0, c.data)
			} else {
				r.fromPeer(t, c.rxKind, c.from, c.data)
			}
			if got := r.eng.Drops(c.stage, c.reason); got != 1 {
				t.Errorf("drops[%s][%s] = %d, want 1; all: %+v", c.stage, c.reason, got, r.eng.Errors())
			}
			if n := totalDrops(r.eng); n != 1 {
				t.Errorf("%d drops in all, want 1: %+v", n, r.eng.Errors())
			}
			answered := 0
			if c.reason == ReasonNoRoute {
				answered = 1 // the ICMP net-unreachable, see TestL3NoRouteAnswersNetUnreachable
			}
			if len(r.out)+len(r.toTUN)+len(r.toL2) != answered {
				t.Errorf("forwarded: tunnel %d, TUN %d, l2 %d", len(r.out), len(r.toTUN), len(r.toL2))
			}
		})
	}
}

func TestL3SteadyStateAllocatesNothing(t *testing.T) {
	for _, k := range []TunnelKind{TunnelFlannelUDP, TunnelGRE, TunnelVXLAN} {
		t.Run(k.String(), func(t *testing.T) {
			r := newL3Rig(t, k)
			r.tunDev.Sink, r.tuns[k].Sink = nil, nil
			var out, in [][]byte
			for i := range MaxBatch {
				out = append(out, ipPacket("10.244.1.2", "10.244.2.2", 64, 100, uint16(i)))
				in = append(in, encapsulated(k, ipPacket("10.244.2.2", "10.244.1.2", 64, 100, uint16(i)), vtepLocal, vtepPeer1))
			}
			r.tunDev.Queue(out...)
			r.tunDev.Loop = true
			r.tuns[k].Queue(peer1, in...)
			r.tuns[k].Loop = true
			r.w.PollPort(0)
			r.w.PollTunnelKind(k)
			if a := testing.AllocsPerRun(100, func() { r.w.PollPort(0); r.w.PollTunnelKind(k) }); a != 0 {
				t.Errorf("%v allocations per round, want 0", a)
			}
			if n := totalDrops(r.eng); n != 0 {
				t.Errorf("%d drops: %+v", n, r.eng.Errors())
			}
		})
	}
}

// BenchmarkEncap runs batches of 64 small packets through each
// encapsulation: "encap" from the local port (TUN or TAP) to a peer,
// "decap" from a peer to the local port.
func BenchmarkEncap(b *testing.B) {
	type kase struct {
		name string
		kind TunnelKind
		l2   bool
	}
	for _, c := range []kase{{"l3-udp", TunnelFlannelUDP, false}, {"l3-gre", TunnelGRE, false}, {"l3-vxlan", TunnelVXLAN, false}, {"l2-gre", TunnelGRE, true}} {
		for _, dir := range []string{"encap", "decap"} {
			b.Run(c.name+"/"+dir, func(b *testing.B) {
				r := newL3Rig(b, c.kind)
				r.tunDev.Sink, r.l2Port.Sink = nil, nil
				for _, t := range r.tuns {
					t.Sink = nil
				}
				port := uint16(0)
				if c.l2 {
					port = 1
					// Teach the FDB both MACs, so the frames are unicast.
					r.fromPeer(b, TunnelGRE, peer1, cat([]byte{0x20, 0, 0x65, 0x58, 0, 0, 0, 42}, frame(bcast, macR, 60, 1)))
					r.fromPort(b, 1, frame(bcast, macA, 60, 1))
				}
				var pkts [][]byte
				for i := range MaxBatch {
					switch {
					case c.l2 && dir == "encap":
						pkts = append(pkts, frame(macR, macA, 64, uint16(i)))
					case c.l2:
						pkts = append(pkts, cat([]byte{0x20, 0, 0x65, 0x58, 0, 0, 0, 42}, frame(macA, macR, 64, uint16(i))))
					case dir == "encap":
						pkts = append(pkts, ipPacket("10.244.1.2", "10.244.2.2", 64, 64, uint16(i)))
					default:
						pkts = append(pkts, encapsulated(c.kind, ipPacket("10.244.2.2", "10.244.1.2", 64, 64, uint16(i)), vtepLocal, vtepPeer1))
					}
				}
				var poll func()
				if dir == "encap" {
					p := r.tunDev
					if c.l2 {
						p = r.l2Port
					}
					p.Queue(pkts...)
					p.Loop = true
					poll = func() { r.w.PollPort(port) }
				} else {
					r.tuns[c.kind].Queue(peer1, pkts...)
					r.tuns[c.kind].Loop = true
					poll = func() { r.w.PollTunnelKind(c.kind) }
				}
				b.ReportAllocs()
				for b.Loop() {
					poll()
				}
				if n := totalDrops(r.eng); n != 0 {
					b.Fatalf("%d drops: %+v", n, r.eng.Errors())
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*MaxBatch), "ns/pkt")
			})
		}
	}
}

// FuzzL3TunnelRx feeds arbitrary GRE, flannel-UDP and VXLAN payloads from a
// peer (or a stranger) into rigs with an l3 network of each encapsulation.
// Invariants: no panic; each datagram is delivered (to the TUN or the l2
// GRE port) or counted as exactly one drop; nothing goes back to a peer.
func FuzzL3TunnelRx(f *testing.F) {
	f.Add(uint8(TunnelGRE), cat([]byte{0, 0, 8, 0}, ipPacket("10.244.2.2", "10.244.1.2", 64, 60, 1)), false)
	f.Add(uint8(TunnelGRE), cat([]byte{0x20, 0, 0x65, 0x58, 0, 0, 0, 42}, frame(bcast, macR, 60, 1)), false)
	f.Add(uint8(TunnelFlannelUDP), ipPacket("10.244.2.2", "10.244.1.2", 64, 60, 1), false)
	f.Add(uint8(TunnelVXLAN), encapsulated(TunnelVXLAN, ipPacket("10.244.2.2", "10.244.1.2", 64, 60, 1), vtepLocal, vtepPeer1), true)
	var rigs [NumTunnelKinds]*l3Rig
	f.Fuzz(func(t *testing.T, kind uint8, data []byte, stranger bool) {
		k := TunnelKind(kind % uint8(NumTunnelKinds))
		if rigs[k] == nil {
			rigs[k] = newL3Rig(t, k)
		}
		r := rigs[k]
		from := peer1
		if stranger {
			from = stranger4
		}
		r.reset()
		before := totalDrops(r.eng)
		r.fromPeer(t, k, from, data)
		drops := int(totalDrops(r.eng) - before)
		delivered := len(r.toTUN) + len(r.toL2)
		if len(r.out) != 0 {
			t.Fatalf("datagram %x from a peer was sent back into the tunnel", data)
		}
		if (delivered > 0) == (drops > 0) || drops > 1 {
			t.Fatalf("datagram %x: delivered %d times and dropped %d times; want exactly one outcome (%+v)", data, delivered, drops, r.eng.Errors())
		}
	})
}

// TestL3NoRouteAnswersNetUnreachable: a packet to an overlay address that no
// peer owns is dropped as no-route and answered, back into the TUN, with an
// ICMP net-unreachable from this host's overlay address quoting it.
func TestL3NoRouteAnswersNetUnreachable(t *testing.T) {
	r := newL3Rig(t, TunnelGRE)
	orig := ipPacket("10.244.1.2", "10.244.9.1", 64, 60, 1)
	r.fromPort(t, 0, orig)
	if got := r.eng.Drops(StageRoute, ReasonNoRoute); got != 1 {
		t.Fatalf("no-route drops = %d, want 1", got)
	}
	if len(r.toTUN) != 1 || len(r.out) != 0 {
		t.Fatalf("TUN got %d packets and the tunnel %d, want one ICMP error back into the TUN", len(r.toTUN), len(r.out))
	}
	pkt := gopacket.NewPacket(r.toTUN[0], layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip == nil || icmp == nil {
		t.Fatalf("answer does not decode as IPv4/ICMP: %v", pkt)
	}
	if ip.SrcIP.String() != "10.244.1.0" || ip.DstIP.String() != "10.244.1.2" {
		t.Errorf("ICMP error %s -> %s, want 10.244.1.0 -> 10.244.1.2", ip.SrcIP, ip.DstIP)
	}
	if icmp.TypeCode != layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeNet) {
		t.Errorf("ICMP %v, want destination unreachable / net", icmp.TypeCode)
	}
	if !bytes.Equal(icmp.Payload, orig[:min(len(orig), len(icmp.Payload))]) || len(icmp.Payload) < 28 {
		t.Errorf("ICMP error does not quote the original packet's header and first 8 bytes")
	}
	if a := testing.AllocsPerRun(100, func() { r.tunDev.Sink = nil; r.fromPort(t, 0, orig) }); a != 0 {
		t.Errorf("answering no-route allocates %v times per packet", a)
	}
}
