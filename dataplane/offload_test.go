package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/offload"
)

// offRig is a rig whose ports are TAPs with offloads (MemVnetPort) and
// whose worker runs the offload path.
type offRig struct {
	eng    *Engine
	w      *Worker
	ports  [2]*MemVnetPort
	got    [2][][]byte
	tun    *MemTunnel
	tunOut []sent
}

func newOffRig(t testing.TB, mtu int) *offRig {
	t.Helper()
	eng, err := NewEngine([]NetworkSpec{{
		Name: "blue", VNI: 42, MTU: mtu, Ageing: 300 * time.Second,
		Ports: []string{"p0", "p1"}, Peers: []netip.Addr{peer1, peer2},
	}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := &offRig{eng: eng, w: eng.NewWorker(0, 4*MaxBatch, 0), tun: &MemTunnel{Ports: 4}}
	r.w.EnableOffload()
	for i := range r.ports {
		r.ports[i] = &MemVnetPort{}
		r.ports[i].Sink = func(f []byte) { r.got[i] = append(r.got[i], bytes.Clone(f)) }
		r.w.SetPort(uint16(i), r.ports[i])
	}
	r.tun.Sink = func(src int, dst netip.Addr, d []byte) {
		r.tunOut = append(r.tunOut, sent{src, dst, bytes.Clone(d)})
	}
	r.w.SetTunnel(r.tun)
	// Learn macA on p0 and macR behind peer1.
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1)))
	r.fromPort(t, 0, withVnet(offload.VirtioNetHdr{}, frame(bcast, macA, 60, 1)))
	r.got, r.tunOut = [2][][]byte{}, nil
	return r
}

func (r *offRig) fromPort(t testing.TB, port uint16, frames ...[]byte) {
	t.Helper()
	r.ports[port].Queue(frames...)
	drain(t, func() (int, error) { return r.w.PollPort(port) })
}

func (r *offRig) fromPeer(t testing.TB, peer netip.Addr, datagrams ...[]byte) {
	t.Helper()
	r.tun.Queue(peer, datagrams...)
	drain(t, func() (int, error) { return r.w.PollTunnel() })
}

// mirror makes r the receiving host of traffic from macA to macR: macR is
// learned on p0 (macA moves behind the peer with the first datagram).
func (r *offRig) mirror(t testing.TB) {
	r.fromPort(t, 0, withVnet(offload.VirtioNetHdr{}, frame(bcast, macR, 60, 1)))
	r.got, r.tunOut = [2][][]byte{}, nil
}

// withVnet prefixes frame with the encoded header h.
func withVnet(h offload.VirtioNetHdr, frame []byte) []byte {
	b := make([]byte, offload.VirtioNetHdrLen+len(frame))
	h.Encode(b)
	copy(b[offload.VirtioNetHdrLen:], frame)
	return b
}

const superSeq = 1_000_000

// tcpSuper builds an Ethernet/IPv4/TCP frame from macA (10.42.0.2:40000)
// to macR (10.42.0.3:5201) with payload bytes of data, and the virtio-net
// header of a TSO superpacket cut every mss bytes with a partial checksum,
// as a container's kernel hands it to a TAP with offloads.
func tcpSuper(payload, mss int) (offload.VirtioNetHdr, []byte) {
	b := make([]byte, 14+20+20+payload)
	copy(b[0:6], macR[:])
	copy(b[6:12], macA[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[4:], 7)
	ip[6] = 0x40 // DF
	ip[8], ip[9] = 64, 6
	copy(ip[12:16], []byte{10, 42, 0, 2})
	copy(ip[16:20], []byte{10, 42, 0, 3})
	v4 := header.IPv4(ip)
	v4.SetChecksum(v4.CalculateChecksum())
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], superSeq)
	binary.BigEndian.PutUint32(tcp[8:], 77)
	tcp[12] = 5 << 4
	tcp[13] = header.TCPFlagACK | header.TCPFlagPSH
	binary.BigEndian.PutUint16(tcp[14:], 512)
	for i := range payload {
		tcp[20+i] = byte(i*7 + i>>8)
	}
	pseudo := header.PseudoHeaderChecksum(header.ProtoTCP, v4.Src(), v4.Dst(), uint16(20+payload))
	binary.BigEndian.PutUint16(tcp[16:], header.FoldChecksum(pseudo))
	h := offload.VirtioNetHdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOTCPv4, HdrLen: 54, GSOSize: uint16(mss), CsumStart: 34, CsumOffset: 16}
	return h, b
}

// checkSegment verifies one inner TCP/IPv4 frame's checksums and returns
// its sequence number and payload.
func checkSegment(t *testing.T, i int, f []byte) (uint32, []byte) {
	t.Helper()
	ip := header.IPv4(f[14:])
	if int(ip.TotalLength()) != len(f)-14 {
		t.Fatalf("segment %d: IP total length %d, frame carries %d", i, ip.TotalLength(), len(f)-14)
	}
	if c := header.FoldChecksum(header.Checksum(f[14:34], 0)); c != 0xffff {
		t.Fatalf("segment %d: IPv4 header checksum does not verify (sum %#x)", i, c)
	}
	tcp := f[34:]
	pseudo := header.PseudoHeaderChecksum(header.ProtoTCP, ip.Src(), ip.Dst(), uint16(len(tcp)))
	if c := header.FoldChecksum(header.Checksum(tcp, pseudo)); c != 0xffff {
		t.Fatalf("segment %d: TCP checksum does not verify (sum %#x)", i, c)
	}
	return binary.BigEndian.Uint32(tcp[4:]), tcp[20:]
}

func TestSuperpacketToPeerIsSegmentedAndCoalescedBack(t *testing.T) {
	const payload, mss, mtu = 64000, 1410, 1450
	h, f := tcpSuper(payload, mss)
	want := bytes.Clone(f[54:])
	a := newOffRig(t, mtu)
	before := a.eng.Ports()[0]
	a.fromPort(t, 0, withVnet(h, f))

	nseg := (payload + mss - 1) / mss // 46
	// The port counts the segments the container's stack handed over in
	// one superpacket, each with its own headers.
	after := a.eng.Ports()[0]
	if got := after.RxPackets - before.RxPackets; got != uint64(nseg) {
		t.Fatalf("p0 rx packets += %d, want %d", got, nseg)
	}
	if got, want := after.RxBytes-before.RxBytes, uint64(payload+nseg*54); got != want {
		t.Fatalf("p0 rx bytes += %d, want %d", got, want)
	}
	if len(a.tunOut) != nseg {
		t.Fatalf("peer got %d datagrams, want %d", len(a.tunOut), nseg)
	}
	var got []byte
	var datagrams [][]byte
	for i, s := range a.tunOut {
		if s.dst != peer1 || s.src != a.tunOut[0].src {
			t.Fatalf("datagram %d: to %v from source %d, want %v from %d", i, s.dst, s.src, peer1, a.tunOut[0].src)
		}
		wantLen := 8 + 14 + mtu
		if i == nseg-1 {
			wantLen = 8 + 54 + payload - (nseg-1)*mss
		}
		if len(s.data) != wantLen {
			t.Fatalf("datagram %d: %d bytes, want %d", i, len(s.data), wantLen)
		}
		if !bytes.Equal(s.data[:8], vxlan(42, nil)) {
			t.Fatalf("datagram %d: VXLAN header % x", i, s.data[:8])
		}
		seq, p := checkSegment(t, i, s.data[8:])
		if seq != superSeq+uint32(i*mss) {
			t.Fatalf("segment %d: seq %d, want %d", i, seq, superSeq+i*mss)
		}
		if psh := s.data[8+34+13]&header.TCPFlagPSH != 0; psh != (i == nseg-1) {
			t.Fatalf("segment %d: PSH %v", i, psh)
		}
		got = append(got, p...)
		datagrams = append(datagrams, s.data)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("segments' payloads do not add up to the superpacket's")
	}
	if d := a.eng.Drops(StageGSOSegment, ReasonNone); d != 0 {
		t.Fatalf("drops: %d", d)
	}

	// The other host: the datagrams coalesce into one superpacket for p0.
	b := newOffRig(t, mtu)
	b.mirror(t)
	b.fromPeer(t, peer1, datagrams...)
	if len(b.got[0]) != 1 {
		t.Fatalf("p0 got %d writes, want 1 superpacket", len(b.got[0]))
	}
	var gh offload.VirtioNetHdr
	if st := gh.Decode(b.got[0][0]); st != offload.StatusOK {
		t.Fatal(st)
	}
	wantHdr := offload.VirtioNetHdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOTCPv4, HdrLen: 54, GSOSize: mss, CsumStart: 34, CsumOffset: 16}
	if gh != wantHdr {
		t.Fatalf("virtio-net header %+v, want %+v", gh, wantHdr)
	}
	sp := b.got[0][0][offload.VirtioNetHdrLen:]
	if !bytes.Equal(sp[54:], want) {
		t.Fatal("coalesced payload differs from the original")
	}
	// Segmenting the coalesced superpacket again gives the same segments.
	out := make([][]byte, nseg)
	for i := range out {
		out[i] = make([]byte, 14+mtu)
	}
	sizes := make([]int, nseg)
	n, st := offload.Segment(sp, 14, gh, mtu, out, sizes)
	if st != offload.StatusOK || n != nseg {
		t.Fatalf("re-segment: %d segments, %v", n, st)
	}
	for i := range n {
		if !bytes.Equal(out[i][:sizes[i]], datagrams[i][8:]) {
			t.Fatalf("re-segmented segment %d differs from the one on the wire", i)
		}
	}
}

// TestTaggedSuperpacketIsCutToFitTheMTU: a superpacket from a container's
// VLAN device (one 802.1Q tag, or an 802.1ad and an 802.1Q tag) is cut
// behind its tags, which every segment repeats, and its segments are
// smaller by the tags' bytes, so each frame fits where an untagged frame
// of the network's MTU does; headers and checksums as without tags.
func TestTaggedSuperpacketIsCutToFitTheMTU(t *testing.T) {
	const payload, mss, mtu = 20000, 1410, 1450
	for _, tags := range [][]byte{
		{0x81, 0x00, 0x00, 0x64},
		{0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x64},
	} {
		t.Run(fmt.Sprintf("%d tags", len(tags)/4), func(t *testing.T) {
			h, plain := tcpSuper(payload, mss)
			// The tags go between the MACs and the EtherType; the
			// virtio-net header's offsets count them.
			f := slices.Concat(plain[:12], tags, plain[12:])
			h.HdrLen += uint16(len(tags))
			h.CsumStart += uint16(len(tags))
			r := newOffRig(t, mtu)
			r.fromPort(t, 0, withVnet(h, f))
			segMSS := mtu - 40 - len(tags)
			nseg := (payload + segMSS - 1) / segMSS
			if len(r.tunOut) != nseg {
				t.Fatalf("peer got %d datagrams, want %d of at most %d payload bytes", len(r.tunOut), nseg, segMSS)
			}
			var got []byte
			for i, d := range r.tunOut {
				inner := d.data[8:]
				if len(inner) > 14+mtu {
					t.Fatalf("segment %d: a frame of %d bytes, more than the %d of an untagged one at MTU %d", i, len(inner), 14+mtu, mtu)
				}
				if !bytes.Equal(inner[12:12+len(tags)], tags) {
					t.Fatalf("segment %d: tags % x, want % x", i, inner[12:12+len(tags)], tags)
				}
				// gopacket reads Ethernet, the tags, IPv4, TCP and the payload.
				pkt := gopacket.NewPacket(inner, layers.LayerTypeEthernet, gopacket.Default)
				if q := pkt.Layers(); len(q) != 4+len(tags)/4 || pkt.ErrorLayer() != nil {
					t.Fatalf("segment %d decodes as %v", i, pkt)
				}
				if q, _ := pkt.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q); q == nil || (len(tags) == 4 && q.VLANIdentifier != 100) {
					t.Fatalf("segment %d: 802.1Q layer %v", i, q)
				}
				if ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ip == nil || int(ip.Length) != len(inner)-12-len(tags)-2 {
					t.Fatalf("segment %d: IPv4 layer %v in a frame of %d bytes", i, ip, len(inner))
				}
				seq, p := checkSegment(t, i, slices.Concat(inner[:12], inner[12+len(tags):]))
				if seq != superSeq+uint32(i*segMSS) {
					t.Fatalf("segment %d: seq %d, want %d", i, seq, superSeq+i*segMSS)
				}
				got = append(got, p...)
			}
			if !bytes.Equal(got, plain[54:]) {
				t.Fatal("segments' payloads do not add up to the superpacket's")
			}
		})
	}
}

func TestOffloadBadInputIsCounted(t *testing.T) {
	good, f := tcpSuper(3000, 1410)
	badLen := bytes.Clone(f)
	binary.BigEndian.PutUint16(badLen[14+2:], 1000) // IP length disagrees
	for _, tc := range []struct {
		name   string
		frame  []byte
		stage  Stage
		reason Reason
	}{
		{"shorter than a virtio-net header", []byte{1, 2, 3}, StagePortRx, ReasonVnetShort},
		{"unknown flag bits", withVnet(offload.VirtioNetHdr{Flags: 0x80}, f), StagePortRx, ReasonVnetBadFlags},
		{"UFO gso type", withVnet(offload.VirtioNetHdr{GSOType: offload.GSOUDP, GSOSize: 1000}, f), StagePortRx, ReasonVnetBadGSOType},
		{"superpacket with gso size 0", withVnet(offload.VirtioNetHdr{GSOType: offload.GSOTCPv4}, f), StagePortRx, ReasonVnetBadGSOSize},
		{"superpacket with a bad IP length", withVnet(good, badLen), StageGSOSegment, ReasonSuperpacketBadLength},
		{"hdr_len past the end", withVnet(offload.VirtioNetHdr{GSOType: offload.GSOTCPv4, GSOSize: 1410, HdrLen: 9000}, f), StageGSOSegment, ReasonVnetBadHdrLen},
		{"IPv6 gso type on IPv4", withVnet(offload.VirtioNetHdr{GSOType: offload.GSOTCPv6, GSOSize: 1410}, f), StageGSOSegment, ReasonVnetBadGSOType},
		{"csum_start past the end", withVnet(offload.VirtioNetHdr{Flags: offload.FlagNeedsCsum, CsumStart: 60000, CsumOffset: 16}, frame(macR, macA, 200, 1)), StageVXLANEncap, ReasonVnetBadCsumStart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newOffRig(t, 1450)
			r.fromPort(t, 0, tc.frame)
			if d := r.eng.Drops(tc.stage, tc.reason); d != 1 {
				t.Fatalf("drops at %v/%v = %d, want 1", tc.stage, tc.reason, d)
			}
			if len(r.tunOut) != 0 {
				t.Fatalf("%d datagrams sent", len(r.tunOut))
			}
		})
	}
}

func TestGROBufferIsSplitIntoDatagrams(t *testing.T) {
	for _, tc := range []struct {
		name      string
		seg       int
		wantPorts int // frames written to p0
		wantDrop  uint64
	}{
		{"equal segments coalesce", 8 + 14 + 1450, 1, 0},
		{"segment size too small for VXLAN", 10, 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newOffRig(t, 1450)
			h, f := tcpSuper(5*1410, 1410)
			a.fromPort(t, 0, withVnet(h, f))
			var train []byte
			for _, s := range a.tunOut {
				train = append(train, s.data...)
			}
			b := newOffRig(t, 1450)
			b.mirror(t)
			gp := b.w.pool.Get()
			gp.SetBytes(train[:min(len(train), 5*tc.seg)])
			gp.Peer, gp.groSize = peer1, tc.seg
			tbl := b.eng.tables.Load()
			b.w.tbl = tbl
			b.w.splitGRO(tbl, TunnelVXLAN, gp)
			if b.w.rx.Len > 0 {
				b.w.runTunnelBatch(tbl, TunnelVXLAN)
			}
			if len(b.got[0]) != tc.wantPorts {
				t.Fatalf("p0 got %d frames, want %d", len(b.got[0]), tc.wantPorts)
			}
			if d := b.eng.Drops(StageTunnelRx, ReasonGROBadSize); d != tc.wantDrop {
				t.Fatalf("gro-bad-size drops %d, want %d", d, tc.wantDrop)
			}
			if b.w.pool.Free() != b.w.pool.Cap() {
				t.Fatalf("pool leaks: %d of %d free", b.w.pool.Free(), b.w.pool.Cap())
			}
		})
	}
}

func TestOffloadPathAllocatesNothing(t *testing.T) {
	a, b := newOffRig(t, 1450), newOffRig(t, 1450)
	b.mirror(t)
	a.ports[0].Sink, b.ports[0].Sink = nil, nil
	h, f := tcpSuper(64000, 1410)
	var segs [][]byte
	a.tun.Sink = func(_ int, _ netip.Addr, d []byte) { segs = append(segs, bytes.Clone(d)) }
	a.fromPort(t, 0, withVnet(h, f))
	a.tun.Sink = nil
	a.ports[0].Queue(withVnet(h, f))
	a.ports[0].Loop = true
	b.tun.Queue(peer1, segs...)
	b.tun.Loop = true
	a.w.PollPort(0)
	b.w.PollTunnel()
	allocs := testing.AllocsPerRun(100, func() {
		a.w.PollPort(0)
		b.w.PollTunnel()
	})
	if allocs != 0 {
		t.Fatalf("offload path allocates %v times per run, want 0", allocs)
	}
	if a.tun.TxPackets < 100*len(segs) || b.ports[0].TxPackets < 100 {
		t.Fatalf("traffic did not flow: %d datagrams sent, p0 wrote %d superpackets", a.tun.TxPackets, b.ports[0].TxPackets)
	}
}

// BenchmarkOffload measures the offload path per 64000-byte TCP
// superpacket (ns/superpacket; MB/s counts TCP payload):
// port-to-peer (vnet header, bridge, encap, segmentation into 46 VXLAN
// datagrams, one segmented send) and peer-to-port (46 datagrams decapped
// and coalesced into one superpacket).
func BenchmarkOffload(b *testing.B) {
	for _, dir := range []string{"port-to-peer", "peer-to-port"} {
		b.Run(dir, func(b *testing.B) {
			a := newOffRig(b, 1450)
			a.ports[0].Sink = nil
			h, f := tcpSuper(64000, 1410)
			var segs [][]byte
			a.tun.Sink = func(_ int, _ netip.Addr, d []byte) { segs = append(segs, bytes.Clone(d)) }
			a.fromPort(b, 0, withVnet(h, f))
			a.tun.Sink = nil
			if dir == "peer-to-port" {
				a = newOffRig(b, 1450)
				a.mirror(b)
				a.ports[0].Sink = nil
			}
			poll := func() { a.w.PollPort(0) }
			if dir == "port-to-peer" {
				a.ports[0].Queue(withVnet(h, f))
				a.ports[0].Loop = true
			} else {
				a.tun.Queue(peer1, segs...)
				a.tun.Loop = true
				poll = func() { a.w.PollTunnel() }
			}
			// A poll moves MaxBatch superpackets port-to-peer, and MaxBatch
			// datagrams (MaxBatch/len(segs) superpackets) peer-to-port.
			perPoll := float64(MaxBatch)
			if dir == "peer-to-port" {
				perPoll = float64(MaxBatch) / float64(len(segs))
			}
			b.ReportAllocs()
			b.SetBytes(int64(perPoll * 64000))
			for b.Loop() {
				poll()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(b.N)*perPoll), "ns/superpacket")
		})
	}
}

// udpDatagrams returns n Ethernet/IPv4/UDP frames of one flow from macA to
// macR with payload bytes each, DF set and valid checksums, as a
// container's stack sends them, each wrapped in VXLAN for VNI 42.
func udpDatagrams(n, payload int) [][]byte {
	var out [][]byte
	for i := range n {
		f := frame(macR, macA, 42+payload, 4000)
		ip := header.IPv4(f[14:])
		f[14+6] = 0x40 // DF
		binary.BigEndian.PutUint16(f[14+4:], uint16(i))
		for j := 42; j < len(f); j++ {
			f[j] = byte(i + j)
		}
		ip.SetChecksum(ip.CalculateChecksum())
		u := header.UDP(f[34:])
		u.SetChecksum(^header.FoldChecksum(header.Checksum(f[34:], header.PseudoHeaderChecksum(header.ProtoUDP, ip.Src(), ip.Dst(), uint16(len(f)-34)))))
		out = append(out, vxlan(42, f))
	}
	return out
}

func TestUDPDatagramsFromPeerAreCoalescedForUSO(t *testing.T) {
	const n, payload = 10, 100
	for _, tc := range []struct {
		name       string
		noUSO      bool
		wantWrites int
	}{
		{"TAP with USO gets one superpacket", false, 1},
		{"TAP without USO gets every datagram", true, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newOffRig(t, 1450)
			r.ports[0].NoUSO = tc.noUSO
			r.mirror(t)
			before := r.eng.Ports()[0]
			in := udpDatagrams(n, payload)
			r.fromPeer(t, peer1, in...)
			// The port counts the datagrams the container receives, merged
			// or not.
			after := r.eng.Ports()[0]
			if got := after.TxPackets - before.TxPackets; got != n {
				t.Fatalf("p0 tx packets += %d, want %d", got, n)
			}
			if got, want := after.TxBytes-before.TxBytes, uint64(n*(len(in[0])-8)); got != want {
				t.Fatalf("p0 tx bytes += %d, want %d", got, want)
			}
			if len(r.got[0]) != tc.wantWrites {
				t.Fatalf("p0 got %d writes, want %d", len(r.got[0]), tc.wantWrites)
			}
			var payloads []byte
			for _, w := range r.got[0] {
				var h offload.VirtioNetHdr
				if st := h.Decode(w); st != offload.StatusOK {
					t.Fatal(st)
				}
				f := w[offload.VirtioNetHdrLen:]
				if tc.noUSO {
					if h != (offload.VirtioNetHdr{}) {
						t.Fatalf("plain datagram written with header %+v", h)
					}
					payloads = append(payloads, f[42:]...)
					continue
				}
				want := offload.VirtioNetHdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOUDPL4, HdrLen: 42, GSOSize: payload, CsumStart: 34, CsumOffset: 6}
				if h != want {
					t.Fatalf("virtio-net header %+v, want %+v", h, want)
				}
				segs := make([][]byte, n)
				for i := range segs {
					segs[i] = make([]byte, 2048)
				}
				sizes := make([]int, n)
				k, st := offload.Segment(f, 14, h, 1450, segs, sizes)
				if st != offload.StatusOK || k != n {
					t.Fatalf("Segment = %d, %v; want %d datagrams", k, st, n)
				}
				for i := range k {
					s := segs[i][:sizes[i]]
					ip := header.IPv4(s[14:])
					if c := header.FoldChecksum(header.Checksum(s[34:], header.PseudoHeaderChecksum(header.ProtoUDP, ip.Src(), ip.Dst(), uint16(len(s)-34)))); c != 0xffff {
						t.Fatalf("datagram %d: UDP checksum does not verify", i)
					}
					payloads = append(payloads, s[42:]...)
				}
			}
			var want []byte
			for _, d := range in {
				want = append(want, d[8+42:]...)
			}
			if !bytes.Equal(payloads, want) {
				t.Fatal("payloads written differ from the datagrams sent")
			}
		})
	}
}

// TestSuperpacketIsCapturedAndTracedAsOnTheWire sends a TCP superpacket of
// three segments from a port to a peer with a tunnel-tx capture and a trace
// running: the capture holds the three VXLAN datagrams as the wire carries
// them (gopacket decodes each, the inner TCP sequence numbers advance by
// the MSS and the checksums verify), and the trace says how it was cut.
func TestSuperpacketIsCapturedAndTracedAsOnTheWire(t *testing.T) {
	const mss, mtu = 1410, 1450
	payload := 2*mss + 500
	r := newOffRig(t, mtu)
	c, err := r.eng.StartCapture(CaptureSpec{Point: "tunnel-tx", Snaplen: MaxSnaplen, Filter: "tcp and dst port 5201"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	mustStartTrace(t, r.eng, TraceSpec{Count: 1})
	h, f := tcpSuper(payload, mss)
	r.fromPort(t, 0, withVnet(h, f))

	got := c.Read(nil, 0)
	if len(got) != 3 {
		t.Fatalf("captured %d packets at tunnel-tx, want 3", len(got))
	}
	var stream []byte
	for i, cp := range got {
		pkt := gopacket.NewPacket(cp.Data, layers.LayerTypeEthernet, gopacket.Default)
		vx, _ := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if vx == nil || vx.VNI != 42 || pkt.ErrorLayer() != nil {
			t.Fatalf("packet %d does not decode as VXLAN VNI 42: %v", i, pkt)
		}
		if len(cp.Data) > 14+mtu+50 {
			t.Fatalf("packet %d: %d bytes, more than the wire carries at MTU %d", i, len(cp.Data), mtu)
		}
		seq, p := checkSegment(t, i, vx.Payload)
		if seq != superSeq+uint32(i*mss) {
			t.Fatalf("segment %d: seq %d, want %d", i, seq, superSeq+i*mss)
		}
		stream = append(stream, p...)
	}
	if !bytes.Equal(stream, f[54:]) {
		t.Fatal("captured segments do not carry the superpacket's payload")
	}
	tr := r.eng.TraceShow()
	if len(tr) != 1 {
		t.Fatalf("traced %d packets, want 1", len(tr))
	}
	var lines []string
	for _, s := range tr[0].Steps {
		lines = append(lines, s.Stage+": "+s.Decision)
	}
	want := fmt.Sprintf("gso-segment: superpacket of %d bytes, gso tcp mss %d → 3 segments", len(f), mss)
	if !slices.Contains(lines, want) || !strings.HasPrefix(lines[len(lines)-1], "tunnel-tx: sent to peer "+peer1.String()) {
		t.Fatalf("trace:\n%s\nwant a line %q and a last line sending to %s", strings.Join(lines, "\n"), want, peer1)
	}
}

// tunSuper is tcpSuper as the TUN of an l3 network hands it over: a bare
// IPv4/TCP superpacket from 10.244.1.5 to 10.244.2.5, the virtio-net
// offsets counted from the IP header.
func tunSuper(payload, mss int) (offload.VirtioNetHdr, []byte) {
	h, f := tcpSuper(payload, mss)
	ip := f[14:]
	copy(ip[12:16], []byte{10, 244, 1, 5})
	copy(ip[16:20], []byte{10, 244, 2, 5})
	v4 := header.IPv4(ip)
	v4.SetChecksum(0)
	v4.SetChecksum(v4.CalculateChecksum())
	pseudo := header.PseudoHeaderChecksum(header.ProtoTCP, v4.Src(), v4.Dst(), uint16(len(ip)-20))
	binary.BigEndian.PutUint16(ip[20+16:], header.FoldChecksum(pseudo))
	h.CsumStart -= 14
	h.HdrLen -= 14
	return h, ip
}

// TestL3SuperpacketIsCutForEveryEncapAndCoalescedBack reads a TCP
// superpacket from the TUN of an l3 network with offloads, for each
// encapsulation: the peer gets MTU-sized datagrams whose inner TCP
// segments verify and carry the stream in order. The same segments, sent
// back from the peer, reach the TUN as one superpacket again.
func TestL3SuperpacketIsCutForEveryEncapAndCoalescedBack(t *testing.T) {
	const mss, payload = 1360, 3*1360 + 100
	for _, k := range []TunnelKind{TunnelFlannelUDP, TunnelGRE, TunnelVXLAN} {
		t.Run(k.String(), func(t *testing.T) {
			r := newL3Rig(t, k)
			// A worker with room for superpackets, on the rig's devices.
			r.w = r.eng.NewWorker(0, 4*MaxBatch, 0)
			tun := &MemVnetPort{}
			tun.Sink = func(f []byte) { r.toTUN = append(r.toTUN, bytes.Clone(f)) }
			r.w.SetPort(0, tun)
			r.w.SetPort(1, r.l2Port)
			for i, mt := range r.tuns {
				r.w.SetTunnelKind(TunnelKind(i), mt)
			}
			r.w.EnableOffload()
			h, sp := tunSuper(payload, mss)
			tun.Queue(withVnet(h, sp))
			drain(t, func() (int, error) { return r.w.PollPort(0) })

			hdrLen := map[TunnelKind]int{TunnelFlannelUDP: 0, TunnelGRE: 4, TunnelVXLAN: 8 + 14}[k]
			if len(r.out) != 4 {
				t.Fatalf("peer got %d datagrams, want 4 (drops %+v)", len(r.out), r.eng.Errors())
			}
			var stream []byte
			var segs [][]byte
			for i, s := range r.out {
				ip := s.data[hdrLen:]
				if s.dst != peer1 || len(ip) > 1400 {
					t.Fatalf("datagram %d: to %v, inner packet of %d bytes (MTU 1400)", i, s.dst, len(ip))
				}
				seq, p := checkSegment(t, i, append(make([]byte, 14), ip...))
				if seq != superSeq+uint32(i*mss) {
					t.Fatalf("segment %d: seq %d, want %d", i, seq, superSeq+i*mss)
				}
				stream = append(stream, p...)
				segs = append(segs, bytes.Clone(ip))
			}
			if !bytes.Equal(stream, sp[40:]) {
				t.Fatal("the segments do not carry the superpacket's payload")
			}

			// Back from the peer: addresses swapped (checksums still
			// hold), wrapped as the peer wraps them.
			var back [][]byte
			for _, s := range segs {
				ip := bytes.Clone(s)
				var a [4]byte
				copy(a[:], ip[12:16])
				copy(ip[12:16], ip[16:20])
				copy(ip[16:20], a[:])
				if k == TunnelFlannelUDP {
					ip[8]++ // the receiving hop takes one off again
					v4 := header.IPv4(ip)
					v4.SetChecksum(0)
					v4.SetChecksum(v4.CalculateChecksum())
				}
				back = append(back, encapsulated(k, ip, vtepLocal, vtepPeer1))
			}
			r.reset()
			r.fromPeer(t, k, peer1, back...)
			if len(r.toTUN) != 1 {
				t.Fatalf("TUN got %d writes, want 1 superpacket (drops %+v)", len(r.toTUN), r.eng.Errors())
			}
			var gh offload.VirtioNetHdr
			if st := gh.Decode(r.toTUN[0]); st != offload.StatusOK || gh.GSOType != offload.GSOTCPv4 || gh.GSOSize != mss || gh.HdrLen != 40 {
				t.Fatalf("virtio-net header %+v (%v), want a TCP/IPv4 superpacket of MSS %d", gh, st, mss)
			}
			if got := r.toTUN[0][offload.VirtioNetHdrLen+40:]; !bytes.Equal(got, stream) {
				t.Fatal("the coalesced superpacket does not carry the stream")
			}
			if k != TunnelGRE { // UDP tunnels: the same datagrams as one UDP_GRO train
				want := r.toTUN[0]
				r.reset()
				if n := feedTrain(r.w, r.eng, k, bytes.Join(back, nil), len(back[0]), true); n != 1 {
					t.Fatalf("the train became %d packets, want 1 superpacket", n)
				}
				if len(r.toTUN) != 1 || !bytes.Equal(r.toTUN[0], want) {
					t.Fatalf("TUN got %d writes from the merged train, want the same superpacket as above (drops %+v)", len(r.toTUN), r.eng.Errors())
				}
			}

			// Steady state: cutting and sending allocates nothing.
			const runs = 50
			tun.Sink, r.tuns[k].Sink = nil, nil
			for range runs + 1 {
				tun.Queue(withVnet(h, sp))
			}
			if a := testing.AllocsPerRun(runs, func() { r.w.PollPort(0) }); a != 0 {
				t.Fatalf("a superpacket from the TUN allocates %v times", a)
			}
		})
	}
}

// feedTrain hands worker w of eng one UDP_GRO buffer, train, of datagrams
// of seg bytes from peer1 over a tunnel of kind k, with whole-train
// merging on or off, and runs it through the pipeline. It returns how many
// packets the train became (those still in the batch when splitGRO
// returned, which is all of them unless the batch filled).
func feedTrain(w *Worker, eng *Engine, k TunnelKind, train []byte, seg int, trains bool) int {
	gp := w.pool.Get()
	gp.SetBytes(train)
	gp.Peer, gp.groSize = peer1, seg
	tbl := eng.tables.Load()
	w.tbl = tbl
	w.off.trains = trains
	w.splitGRO(tbl, k, gp)
	w.off.trains = false
	n := w.rx.Len
	if n > 0 {
		w.runTunnelBatch(tbl, k)
	}
	return n
}

// trainRun feeds train, UDP_GRO datagrams of seg bytes from peer1, to a
// receiving rig's tunnel rx with or without whole-train merging, and
// returns what p0 got and the rig.
func trainRun(t *testing.T, train []byte, seg int, trains bool) ([][]byte, *offRig) {
	t.Helper()
	b := newOffRig(t, 1450)
	b.mirror(t)
	feedTrain(b.w, b.eng, TunnelVXLAN, train, seg, trains)
	if b.w.pool.Free() != b.w.pool.Cap() {
		t.Fatalf("pool leaks: %d of %d free", b.w.pool.Free(), b.w.pool.Cap())
	}
	return b.got[0], b
}

// TestGROTrainIsMergedWhole checks that a UDP_GRO train of one TCP flow's
// segments, merged at tunnel rx before the pipeline, reaches the port as
// exactly the superpacket the split-and-coalesce path makes, and that the
// peer and port counters count the datagrams and bytes on the wire either
// way; a train with a bad segment takes the split path and comes out the
// same as there.
func TestGROTrainIsMergedWhole(t *testing.T) {
	const payload, mss = 40 * 1410, 1410 // 40 datagrams: a train within 64 KiB
	a := newOffRig(t, 1450)
	h, f := tcpSuper(payload, mss)
	a.fromPort(t, 0, withVnet(h, f))
	var train []byte
	for _, s := range a.tunOut {
		train = append(train, s.data...)
	}
	seg := len(a.tunOut[0].data)
	bad := bytes.Clone(train)
	bad[20*seg+100] ^= 0xff // segment 20's payload: its TCP checksum fails

	for _, tc := range []struct {
		name      string
		train     []byte
		wantWrite int
		wantDecap uint64 // packets through vxlan-decap with merging on
	}{
		{"one flow's segments", train, 1, 1},
		{"a corrupted segment", bad, 3, 40}, // 0-19 merged, 20 alone, 21-39 merged
	} {
		t.Run(tc.name, func(t *testing.T) {
			split, sb := trainRun(t, bytes.Clone(tc.train), seg, false)
			merged, mb := trainRun(t, bytes.Clone(tc.train), seg, true)
			if len(merged) != tc.wantWrite || len(split) != tc.wantWrite {
				t.Fatalf("p0 got %d writes merged, %d split; want %d", len(merged), len(split), tc.wantWrite)
			}
			for i := range merged {
				if !bytes.Equal(merged[i], split[i]) {
					t.Fatalf("write %d differs between the merged and the split path", i)
				}
			}
			decap := func(r *offRig) uint64 { return r.eng.Runtime()[StageVXLANDecap].Packets }
			// newOffRig's and mirror's frames: one datagram from peer1.
			if got := decap(mb) - 1; got != tc.wantDecap {
				t.Fatalf("vxlan-decap saw %d packets with trains merged, want %d", got, tc.wantDecap)
			}
			if got := decap(sb) - 1; got != 40 {
				t.Fatalf("vxlan-decap saw %d packets split, want 40", got)
			}
			for _, r := range []*offRig{sb, mb} {
				var p PeerInfo
				for _, pi := range r.eng.Peers() {
					if pi.Address == peer1 {
						p = pi
					}
				}
				// newOffRig's and mirror's frames: one datagram of 8+60 bytes from peer1.
				if p.RxPackets != uint64(len(a.tunOut))+1 || p.RxBytes != uint64(len(tc.train))+68 {
					t.Fatalf("peer1 rx %d packets %d bytes, want %d and %d", p.RxPackets, p.RxBytes, len(a.tunOut)+1, len(tc.train)+68)
				}
			}
			if s, m := sb.eng.Ports()[0], mb.eng.Ports()[0]; s.TxPackets != m.TxPackets || s.TxBytes != m.TxBytes || m.TxPackets == 0 {
				t.Fatalf("p0 tx: split %d packets %d bytes, merged %d packets %d bytes", s.TxPackets, s.TxBytes, m.TxPackets, m.TxBytes)
			}
		})
	}
}
