package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/nat"
	"github.com/ferry-overlay/ferry/offload"
	"github.com/ferry-overlay/ferry/router"
)

var (
	natAddr = netip.MustParseAddr("100.64.0.2")
	redHost = netip.MustParseAddr("10.43.0.2")
)

// gwRig is routedRig with offloads: blue (p0) and red (p1, MTU redMTU)
// are TAPs with virtio-net headers, the worker has room for superpackets,
// and blue masquerades through uplink up0 (a MemPort, MTU 1500) as
// 100.64.0.2. red's host is in red's neighbour table.
type gwRig struct {
	eng   *Engine
	w     *Worker
	ports [2]*MemVnetPort
	up    *MemPort
	got   [2][][]byte
	upOut [][]byte
}

func newGWRig(t testing.TB, redMTU int) *gwRig {
	t.Helper()
	eng, err := NewEngine(routedSpecs(redMTU), 1)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := nat.New(nat.Options{NATAddr: natAddr, MaxEntries: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.SetUplinks([]UplinkSpec{{Name: "up0", NAT: tbl, MTU: 1500, Networks: []string{"blue"}}}); err != nil {
		t.Fatal(err)
	}
	r := &gwRig{eng: eng, w: eng.NewWorker(0, 4*MaxBatch, 0)}
	r.w.EnableOffload()
	for i := range r.ports {
		r.ports[i] = &MemVnetPort{}
		r.ports[i].Sink = func(f []byte) { r.got[i] = append(r.got[i], bytes.Clone(f)) }
		r.w.SetPort(uint16(i), r.ports[i])
	}
	r.up = &MemPort{Sink: func(b []byte) { r.upOut = append(r.upOut, bytes.Clone(b)) }}
	r.w.SetUplink(0, r.up)
	redMAC := router.GatewayMAC("red")
	r.ports[1].Queue(withVnet(offload.VirtioNetHdr{}, arpFrame(header.ARPReply, [6]byte(redMAC), macRedHost, redHost, redGW, [6]byte(redMAC))))
	poll(t, r.w, 1)
	r.got, r.upOut = [2][][]byte{}, nil
	return r
}

// gwSuper is tcpSuper from blue's host through blue's gateway to dst.
func gwSuper(dst netip.Addr, payload, mss int) (offload.VirtioNetHdr, []byte) {
	h, f := tcpSuper(payload, mss)
	gw := router.GatewayMAC("blue")
	copy(f[0:6], gw[:])
	copy(f[6:12], macBlueHost[:])
	ip := header.IPv4(f[14:])
	copy(f[14+16:14+20], dst.AsSlice())
	ip.SetChecksum(0)
	ip.SetChecksum(ip.CalculateChecksum())
	pseudo := header.PseudoHeaderChecksum(header.ProtoTCP, ip.Src(), ip.Dst(), uint16(len(f)-34))
	binary.BigEndian.PutUint16(f[34+16:], header.FoldChecksum(pseudo))
	return h, f
}

// decodeTCP decodes a bare IPv4/TCP packet with gopacket.
func decodeTCP(t *testing.T, i int, b []byte) (*layers.IPv4, *layers.TCP) {
	t.Helper()
	pk := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil || pk.ErrorLayer() != nil {
		t.Fatalf("segment %d does not decode as IPv4/TCP: %v", i, pk.ErrorLayer())
	}
	return ip, tcp
}

func TestSuperpacketThroughNATIsCutForTheUplink(t *testing.T) {
	const mss, payload = 1448, 6*1448 + 500
	r := newGWRig(t, 1500)
	h, f := gwSuper(outside, payload, mss)
	r.ports[0].Queue(withVnet(h, f))
	poll(t, r.w, 0)
	if len(r.upOut) != 7 {
		t.Fatalf("uplink got %d packets, want 7 segments (drops %+v)", len(r.upOut), r.eng.Errors())
	}
	var stream []byte
	var sport layers.TCPPort
	for i, s := range r.upOut {
		if len(s) > 1500 {
			t.Fatalf("segment %d: %d bytes, over the uplink MTU", i, len(s))
		}
		seq, p := checkSegment(t, i, append(make([]byte, 14), s...))
		ip, tcp := decodeTCP(t, i, s)
		if i == 0 {
			sport = tcp.SrcPort
		}
		last := i == len(r.upOut)-1
		if ip.SrcIP.String() != natAddr.String() || ip.DstIP.String() != outside.String() || ip.TTL != 63 || ip.Id != 7+uint16(i) ||
			tcp.SrcPort != sport || tcp.DstPort != 5201 || seq != superSeq+uint32(i*mss) || tcp.Seq != seq || tcp.PSH != last || !tcp.ACK {
			t.Fatalf("segment %d: %v:%d > %v:%d ttl %d id %d seq %d psh %v; want %v > %v:5201 ttl 63 id %d seq %d psh %v",
				i, ip.SrcIP, tcp.SrcPort, ip.DstIP, tcp.DstPort, ip.TTL, ip.Id, tcp.Seq, tcp.PSH, natAddr, outside, 7+i, superSeq+i*mss, last)
		}
		stream = append(stream, p...)
	}
	if !bytes.Equal(stream, f[54:]) {
		t.Fatal("the segments do not carry the superpacket's payload")
	}
	if n := r.eng.Drops(StageGSOSegment, ReasonVnetBadCsumOffset); n != 0 {
		t.Fatalf("unexpected drops %+v", r.eng.Errors())
	}
	// The answer to a segment comes back through NAT to the container.
	back := bytes.Clone(r.upOut[0])
	copy(back[12:16], r.upOut[0][16:20])
	copy(back[16:20], r.upOut[0][12:16])
	copy(back[20:22], r.upOut[0][22:24])
	copy(back[22:24], r.upOut[0][20:22])
	r.up.Queue(back)
	pollUplink(t, r.w)
	if len(r.got[0]) != 1 {
		t.Fatalf("container got %d frames back, want 1 (drops %+v)", len(r.got[0]), r.eng.Errors())
	}
	in := r.got[0][0][offload.VirtioNetHdrLen:]
	if ip := header.IPv4(in[14:]); ip.Dst() != netip.MustParseAddr("10.42.0.2") || binary.BigEndian.Uint16(in[36:]) != 40000 {
		t.Fatalf("answer reached the container as % x", in[:54])
	}
}

// A superpacket cut for an uplink without offloads is traced as one
// packet: its cut, and how many of its segments went out.
func TestTraceSuperpacketCutForTheUplink(t *testing.T) {
	const mss, payload = 1448, 6*1448 + 500
	r := newGWRig(t, 1500)
	h, f := gwSuper(outside, payload, mss)
	got := traceOne(t, r.eng, "host "+outside.String(), 1, func() {
		r.ports[0].Queue(withVnet(h, f))
		poll(t, r.w, 0)
	})
	if len(got) != 1 || len(r.upOut) != 7 {
		t.Fatalf("traced %d packets, uplink got %d; want 1 and 7 segments (drops %+v)", len(got), len(r.upOut), r.eng.Errors())
	}
	lines := got[0]
	sameLines(t, "the superpacket's last stages", lines[len(lines)-2:], []string{
		"gso-segment: superpacket of 9228 bytes, gso tcp mss 1448 → 7 segments",
		"uplink-tx: written to uplink up0 as 7 segments",
	})
}

func TestSuperpacketIsRoutedWholeWithItsPartialChecksum(t *testing.T) {
	const mss, payload = 1448, 20000
	r := newGWRig(t, 1500)
	h, f := gwSuper(redHost, payload, mss)
	r.ports[0].Queue(withVnet(h, f))
	poll(t, r.w, 0)
	if len(r.got[1]) != 1 {
		t.Fatalf("red's port got %d writes, want the superpacket (drops %+v)", len(r.got[1]), r.eng.Errors())
	}
	var gh offload.VirtioNetHdr
	if st := gh.Decode(r.got[1][0]); st != offload.StatusOK || gh != h {
		t.Fatalf("virtio-net header %+v (%v), want %+v as it came", gh, st, h)
	}
	out := bytes.Clone(r.got[1][0][offload.VirtioNetHdrLen:])
	if len(out) != len(f) || header.Ethernet(out).Dst() != header.MAC(macRedHost) || header.IPv4(out[14:]).TTL() != 63 ||
		header.IPv4(out[14:]).CalculateChecksum() != header.IPv4(out[14:]).Checksum() || !bytes.Equal(out[34:], f[34:]) {
		t.Fatalf("routed superpacket: % x", out[:54])
	}
	// The kernel completes the partial checksum the header asks for.
	if st := offload.FinishChecksum(out, gh); st != offload.StatusOK {
		t.Fatal(st)
	}
	tcp := out[34:]
	pseudo := header.PseudoHeaderChecksum(header.ProtoTCP, header.IPv4(out[14:]).Src(), redHost, uint16(len(tcp)))
	if c := header.FoldChecksum(header.Checksum(tcp, pseudo)); c != 0xffff {
		t.Fatalf("completed TCP checksum does not verify (sum %#x)", c)
	}

	// Segments too big for the egress MTU, with DF: frag-needed back.
	r = newGWRig(t, 1200)
	r.ports[0].Queue(withVnet(h, f))
	poll(t, r.w, 0)
	if n := r.eng.Drops(StageRouter, ReasonFragNeeded); n != 1 || len(r.got[1]) != 0 || len(r.got[0]) != 1 {
		t.Fatalf("frag-needed drops %d, red got %d, blue got %d; want 1, 0 and one ICMP error", n, len(r.got[1]), len(r.got[0]))
	}
	icmp := r.got[0][0][offload.VirtioNetHdrLen+34:]
	if icmp[0] != 3 || icmp[1] != 4 || binary.BigEndian.Uint16(icmp[6:]) != 1200 {
		t.Fatalf("ICMP error type %d code %d mtu %d, want 3/4 mtu 1200", icmp[0], icmp[1], binary.BigEndian.Uint16(icmp[6:]))
	}
}

// TestNATKeepsThePartialChecksum runs superpackets through a real NAT
// table: the checksum field must hold the pseudo-header sum for the new
// addresses (NAT's port change is not part of it), so completing it gives
// a checksum that verifies.
func TestNATKeepsThePartialChecksum(t *testing.T) {
	tests := []struct {
		name string
		csum bool // FlagNeedsCsum set
	}{
		{name: "partial checksum is moved to the new addresses", csum: true},
		{name: "complete checksum is left to NAT", csum: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tbl, err := nat.New(nat.Options{NATAddr: natAddr, MaxEntries: 16})
			if err != nil {
				t.Fatal(err)
			}
			verd := make([]nat.Verdict, 1)
			// Another host's flow takes source port 40000 first, so
			// NAT must change this one's port as well as its address.
			_, other := gwSuper(outside, 100, 1448)
			copy(other[14+12:14+16], []byte{10, 42, 0, 9})
			tbl.Process(1, [][]byte{other[14:]}, []nat.Dir{nat.Outbound}, verd)
			h, f := gwSuper(outside, 5000, 1448)
			ip := f[14:]
			if !tc.csum {
				h.Flags = 0
				binary.BigEndian.PutUint16(ip[36:], 0)
				pseudo := header.PseudoHeaderChecksum(header.ProtoTCP, header.IPv4(ip).Src(), outside, uint16(len(ip)-20))
				binary.BigEndian.PutUint16(ip[36:], ^header.FoldChecksum(header.Checksum(ip[20:], pseudo)))
			}
			p := &Packet{vnet: h}
			var s partialSum
			s.save(p, ip, header.EthernetLen)
			tbl.Process(1, [][]byte{ip}, []nat.Dir{nat.Outbound}, verd)
			if verd[0] != nat.Translated || header.IPv4(ip).Src() != natAddr || binary.BigEndian.Uint16(ip[20:]) == 40000 {
				t.Fatalf("NAT verdict %v, source %v:%d; want translated to %v and another port", verd[0], header.IPv4(ip).Src(), binary.BigEndian.Uint16(ip[20:]), natAddr)
			}
			s.restore(ip)
			if st := offload.FinishChecksum(f, h); st != offload.StatusOK {
				t.Fatal(st)
			}
			pseudo := header.PseudoHeaderChecksum(header.ProtoTCP, natAddr, outside, uint16(len(ip)-20))
			if c := header.FoldChecksum(header.Checksum(ip[20:], pseudo)); c != 0xffff {
				t.Fatalf("TCP checksum after NAT does not verify (sum %#x)", c)
			}
		})
	}
}

func TestBadSuperpacketForTheUplinkIsCounted(t *testing.T) {
	r := newGWRig(t, 1500)
	h, f := gwSuper(outside, 5000, 1448)
	h.CsumOffset = 10
	r.ports[0].Queue(withVnet(h, f))
	poll(t, r.w, 0)
	if n := r.eng.Drops(StageGSOSegment, ReasonVnetBadCsumOffset); n != 1 || len(r.upOut) != 0 {
		t.Fatalf("vnet-bad-csum-offset drops at gso-segment %d, uplink got %d; want 1 and 0 (drops %+v)", n, len(r.upOut), r.eng.Errors())
	}
}

func TestSuperpacketThroughNATAllocatesNothing(t *testing.T) {
	r := newGWRig(t, 1500)
	h, f := gwSuper(outside, 30000, 1448)
	r.ports[0].Sink, r.up.Sink = nil, nil
	r.ports[0].Queue(withVnet(h, f))
	r.ports[0].Loop = true
	r.w.PollPort(0)
	const runs = 100
	if a := testing.AllocsPerRun(runs, func() { r.w.PollPort(0) }); a != 0 {
		t.Fatalf("a superpacket through NAT to the uplink allocates %v times", a)
	}
	if want := (runs + 2) * 21; r.up.TxPackets < want {
		t.Fatalf("uplink wrote %d segments, want at least %d", r.up.TxPackets, want)
	}
}

// addSuperSeeds adds to f's corpus the superpacket b (a virtio-net header
// and a packet), and two of its variants: a checksum start that points
// into the IP header, and the header of a UDP superpacket.
func addSuperSeeds(f *testing.F, b []byte) {
	f.Add(b)
	var h offload.VirtioNetHdr
	h.Decode(b)
	for _, mangle := range []func(*offload.VirtioNetHdr){
		func(h *offload.VirtioNetHdr) { h.CsumStart = 3 },
		func(h *offload.VirtioNetHdr) { h.GSOType, h.GSOSize = offload.GSOUDPL4, 1400 },
	} {
		mangle(&h)
		v := bytes.Clone(b)
		h.Encode(v)
		f.Add(v)
	}
}

// FuzzGatewayOffload feeds arbitrary virtio-net headers and frames from a
// TAP with offloads to the gateway of a masquerading network: superpackets
// routed, translated and cut for the uplink, or into the other network.
// One rig serves the whole run. Invariants: no panic, and the worker's
// pool gets every buffer back.
func FuzzGatewayOffload(f *testing.F) {
	for _, dst := range []netip.Addr{outside, redHost} {
		addSuperSeeds(f, withVnet(gwSuper(dst, 5000, 1448)))
	}
	f.Add(withVnet(offload.VirtioNetHdr{}, udpTo(outside, 100, 64, true)))
	var r *gwRig
	f.Fuzz(func(t *testing.T, data []byte) {
		if r == nil {
			r = newGWRig(t, 1200)
			r.ports[0].Sink, r.ports[1].Sink, r.up.Sink = nil, nil, nil
		}
		r.ports[0].Queue(data)
		poll(t, r.w, 0)
		if r.w.pool.Free() != r.w.pool.Cap() {
			t.Fatalf("pool has %d of %d buffers back", r.w.pool.Free(), r.w.pool.Cap())
		}
	})
}

// FuzzUplinkOffload feeds arbitrary virtio-net headers and packets from an
// uplink with offloads (what the host's stack hands ferry) to nat
// (inbound) and the router, with a flow for them to answer. One rig
// serves the whole run. Invariants: no panic, and the worker's pool gets
// every buffer back.
func FuzzUplinkOffload(f *testing.F) {
	const natPort = 40000 // NAT keeps the container's port when it is free
	addSuperSeeds(f, withVnet(upSuper(natPort, 5000, 1448)))
	h, sp := upSuper(natPort, 100, 1448)
	h.GSOType, h.GSOSize = offload.GSONone, 0
	f.Add(withVnet(h, sp))
	var r *gwRig
	f.Fuzz(func(t *testing.T, data []byte) {
		if r == nil {
			r = newGWRig(t, 1200)
			r.vnetUplink(false)
			h, f := gwSuper(outside, 3000, 1448)
			r.ports[0].Queue(withVnet(h, f))
			poll(t, r.w, 0)
			r.ports[0].Sink, r.ports[1].Sink, r.up.Sink = nil, nil, nil
		}
		r.up.Queue(data)
		pollUplink(t, r.w)
		if r.w.pool.Free() != r.w.pool.Cap() {
			t.Fatalf("pool has %d of %d buffers back", r.w.pool.Free(), r.w.pool.Cap())
		}
	})
}

// TestSuperpacketFromTheUplinkAllocatesNothing: the host's superpackets
// through nat (inbound) and the router into the container's TAP.
func TestSuperpacketFromTheUplinkAllocatesNothing(t *testing.T) {
	r := newGWRig(t, 1500)
	r.vnetUplink(false)
	h, f := gwSuper(outside, 3000, 1448)
	r.ports[0].Queue(withVnet(h, f))
	poll(t, r.w, 0)
	natPort := binary.BigEndian.Uint16(r.upOut[0][offload.VirtioNetHdrLen+20:])
	r.ports[0].Sink = nil
	bh, back := upSuper(natPort, 30000, 1448)
	r.up.Queue(withVnet(bh, back))
	r.up.Loop = true
	r.w.PollUplink(0)
	const runs = 100
	if a := testing.AllocsPerRun(runs, func() { r.w.PollUplink(0) }); a != 0 {
		t.Fatalf("a superpacket from the uplink allocates %v times", a)
	}
	if want := runs + 2; r.ports[0].TxPackets < want {
		t.Fatalf("the container's port took %d superpackets, want at least %d (drops %+v)", r.ports[0].TxPackets, want, r.eng.Errors())
	}
}

// BenchmarkSuperpacketThroughNAT measures 30000-byte TCP superpackets
// through the gateway, the router and NAT, one op a batch of MaxBatch of
// them (MB/s counts TCP payload): out to an uplink without offloads, which
// gets each cut into 21 segments; out to an uplink with them, which gets
// it whole; and in from an uplink with them, whole to the container's TAP.
func BenchmarkSuperpacketThroughNAT(b *testing.B) {
	const payload, segs = 30000, 21
	run := func(b *testing.B, poll func(), writes func() int, want int) {
		poll()
		b.ReportAllocs()
		b.SetBytes(payload * MaxBatch)
		b.ResetTimer()
		for range b.N {
			poll()
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*MaxBatch), "ns/superpacket")
		if got := writes(); got != want*MaxBatch*(b.N+1) {
			b.Fatalf("%d writes, want %d", got, want*MaxBatch*(b.N+1))
		}
	}
	for _, tc := range []struct {
		name   string
		vnet   bool
		writes int
	}{{"out-cut", false, segs}, {"out-whole", true, 1}} {
		b.Run(tc.name, func(b *testing.B) {
			r := newGWRig(b, 1500)
			if tc.vnet {
				r.vnetUplink(false)
			}
			h, f := gwSuper(outside, payload, 1448)
			r.ports[0].Sink, r.up.Sink = nil, nil
			r.ports[0].Queue(withVnet(h, f))
			r.ports[0].Loop = true
			run(b, func() { r.w.PollPort(0) }, func() int { return r.up.TxPackets }, tc.writes)
		})
	}
	b.Run("in-whole", func(b *testing.B) {
		r := newGWRig(b, 1500)
		r.vnetUplink(false)
		h, f := gwSuper(outside, 3000, 1448)
		r.ports[0].Queue(withVnet(h, f))
		r.w.PollPort(0)
		natPort := binary.BigEndian.Uint16(r.upOut[0][offload.VirtioNetHdrLen+20:])
		r.ports[0].Sink, r.up.Sink = nil, nil
		r.ports[0].TxPackets = 0
		bh, back := upSuper(natPort, payload, 1448)
		r.up.Queue(withVnet(bh, back))
		r.up.Loop = true
		run(b, func() { r.w.PollUplink(0) }, func() int { return r.ports[0].TxPackets }, 1)
	})
}

// vnetUplink replaces the rig's uplink with one that has a virtio-net
// header, as the daemon makes it with offloads: it takes superpackets
// whole (UDP ones unless noUSO) and hands them to ferry.
func (r *gwRig) vnetUplink(noUSO bool) {
	v := &MemVnetPort{NoUSO: noUSO}
	v.Sink = func(b []byte) { r.upOut = append(r.upOut, bytes.Clone(b)) }
	r.w.SetUplink(0, v)
	r.up = &v.MemPort
}

// upSuper is a TCP superpacket as the host's stack hands it to an uplink
// with offloads: bare IPv4 from outside:5201 to the nat address at dport,
// payload bytes cut every mss, with a partial checksum whose offsets count
// from the IP header.
func upSuper(dport uint16, payload, mss int) (offload.VirtioNetHdr, []byte) {
	h, f := tcpSuper(payload, mss)
	ip := f[14:]
	copy(ip[12:16], outside.AsSlice())
	copy(ip[16:20], natAddr.AsSlice())
	v4 := header.IPv4(ip)
	v4.SetChecksum(0)
	v4.SetChecksum(v4.CalculateChecksum())
	binary.BigEndian.PutUint16(ip[20:], 5201)
	binary.BigEndian.PutUint16(ip[22:], dport)
	pseudo := header.PseudoHeaderChecksum(header.ProtoTCP, outside, natAddr, uint16(len(ip)-20))
	binary.BigEndian.PutUint16(ip[36:], header.FoldChecksum(pseudo))
	h.CsumStart -= header.EthernetLen
	h.HdrLen -= header.EthernetLen
	return h, ip
}

// cutAll cuts the bare IPv4 superpacket pkt as hdr describes at mtu, the
// way the host's stack would, and returns the segments.
func cutAll(t *testing.T, pkt []byte, hdr offload.VirtioNetHdr, mtu int) [][]byte {
	t.Helper()
	out := make([][]byte, 64)
	for i := range out {
		out[i] = make([]byte, mtu)
	}
	sizes := make([]int, len(out))
	n, st := offload.Segment(pkt, 0, hdr, mtu, out, sizes)
	if st != offload.StatusOK {
		t.Fatalf("cutting the superpacket: %v", st)
	}
	for i := range n {
		out[i] = out[i][:sizes[i]]
	}
	return out[:n]
}

// TestSuperpacketGoesWholeToAVnetUplink: with a virtio-net header on the
// uplink, a container's superpacket is translated and written once, with
// its partial checksum moved to the new addresses; cut by the host's
// stack, it gives byte for byte the segments ferry cuts for an uplink
// without one. The answer the host hands back as a superpacket reaches
// the container whole, translated back, with a checksum that verifies.
func TestSuperpacketGoesWholeToAVnetUplink(t *testing.T) {
	const mss, payload = 1448, 6*1448 + 500
	cut := newGWRig(t, 1500)
	h, f := gwSuper(outside, payload, mss)
	cut.ports[0].Queue(withVnet(h, f))
	poll(t, cut.w, 0)

	r := newGWRig(t, 1500)
	r.vnetUplink(false)
	r.ports[0].Queue(withVnet(h, f))
	poll(t, r.w, 0)
	if len(r.upOut) != 1 {
		t.Fatalf("uplink got %d writes, want the superpacket whole (drops %+v)", len(r.upOut), r.eng.Errors())
	}
	var gh offload.VirtioNetHdr
	if st := gh.Decode(r.upOut[0]); st != offload.StatusOK {
		t.Fatal(st)
	}
	want := h
	want.CsumStart, want.HdrLen = h.CsumStart-header.EthernetLen, h.HdrLen-header.EthernetLen
	if gh != want {
		t.Fatalf("virtio-net header %+v, want %+v: the frame's, counted from the IP header", gh, want)
	}
	whole := r.upOut[0][offload.VirtioNetHdrLen:]
	if ip := header.IPv4(whole); len(whole) != len(f)-14 || ip.Src() != natAddr || ip.TTL() != 63 || ip.CalculateChecksum() != ip.Checksum() {
		t.Fatalf("superpacket at the uplink: %d bytes, % x", len(whole), whole[:40])
	}
	segs := cutAll(t, whole, gh, 1500)
	if len(segs) != len(cut.upOut) {
		t.Fatalf("cut by the host: %d segments; ferry cuts %d", len(segs), len(cut.upOut))
	}
	for i := range segs {
		if !bytes.Equal(segs[i], cut.upOut[i]) {
			t.Fatalf("segment %d differs from ferry's own cut:\n% x\n% x", i, segs[i][:40], cut.upOut[i][:40])
		}
	}
	if n := r.w.c.stage[StageGSOSegment].packets.Load(); n != 0 {
		t.Fatalf("gso-segment counted %d packets, want nothing cut", n)
	}

	// The answer, a superpacket from the host, goes back whole.
	natPort := binary.BigEndian.Uint16(whole[20:])
	bh, back := upSuper(natPort, 20000, 1448)
	r.up.Queue(withVnet(bh, back))
	pollUplink(t, r.w)
	if len(r.got[0]) != 1 {
		t.Fatalf("container got %d writes, want the superpacket whole (drops %+v)", len(r.got[0]), r.eng.Errors())
	}
	if st := gh.Decode(r.got[0][0]); st != offload.StatusOK {
		t.Fatal(st)
	}
	want = bh
	want.CsumStart, want.HdrLen = bh.CsumStart+header.EthernetLen, bh.HdrLen+header.EthernetLen
	if gh != want {
		t.Fatalf("virtio-net header %+v, want %+v: counted from the Ethernet header", gh, want)
	}
	in := bytes.Clone(r.got[0][0][offload.VirtioNetHdrLen:])
	ip := header.IPv4(in[14:])
	if len(in) != len(back)+14 || ip.Dst() != netip.MustParseAddr("10.42.0.2") || binary.BigEndian.Uint16(in[36:]) != 40000 ||
		ip.TTL() != 63 || ip.CalculateChecksum() != ip.Checksum() || !bytes.Equal(in[54:], back[40:]) {
		t.Fatalf("answer at the container: %d bytes, % x", len(in), in[:54])
	}
	if st := offload.FinishChecksum(in, gh); st != offload.StatusOK {
		t.Fatal(st)
	}
	pseudo := header.PseudoHeaderChecksum(header.ProtoTCP, outside, ip.Dst(), uint16(len(in)-34))
	if c := header.FoldChecksum(header.Checksum(in[34:], pseudo)); c != 0xffff {
		t.Fatalf("completed TCP checksum does not verify (sum %#x)", c)
	}
}

// TestUplinkOffloadEdges: what a vnet uplink does not take whole is cut;
// what the host hands over unfinished is finished or refused with a
// counted reason.
func TestUplinkOffloadEdges(t *testing.T) {
	t.Run("UDP superpacket to an uplink without USO is cut", func(t *testing.T) {
		r := newGWRig(t, 1500)
		r.vnetUplink(true)
		f := udpTo(outside, 4000, 64, true)
		ip := header.IPv4(f[14:])
		pseudo := header.PseudoHeaderChecksum(header.ProtoUDP, ip.Src(), ip.Dst(), uint16(len(f)-34))
		binary.BigEndian.PutUint16(f[34+6:], header.FoldChecksum(pseudo))
		h := offload.VirtioNetHdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOUDPL4, HdrLen: 42, GSOSize: 1000, CsumStart: 34, CsumOffset: 6}
		r.ports[0].Queue(withVnet(h, f))
		poll(t, r.w, 0)
		payload := len(f) - 42
		if want := (payload + 999) / 1000; len(r.upOut) != want {
			t.Fatalf("uplink got %d writes, want %d datagrams (drops %+v)", len(r.upOut), want, r.eng.Errors())
		}
		for i, d := range r.upOut {
			var gh offload.VirtioNetHdr
			if st := gh.Decode(d); st != offload.StatusOK || gh != (offload.VirtioNetHdr{}) {
				t.Fatalf("datagram %d: virtio-net header %+v (%v), want none", i, gh, st)
			}
			u := d[offload.VirtioNetHdrLen:]
			if header.IPv4(u).Src() != natAddr || len(u) != 20+8+min(1000, payload-i*1000) {
				t.Fatalf("datagram %d: % x", i, u[:28])
			}
			pseudo := header.PseudoHeaderChecksum(header.ProtoUDP, natAddr, outside, uint16(len(u)-20))
			if c := header.FoldChecksum(header.Checksum(u[20:], pseudo)); c != 0xffff {
				t.Fatalf("datagram %d: UDP checksum does not verify", i)
			}
		}
	})
	// A flow for the inbound cases to answer.
	r := newGWRig(t, 1500)
	r.vnetUplink(false)
	h, f := gwSuper(outside, 3000, 1448)
	r.ports[0].Queue(withVnet(h, f))
	poll(t, r.w, 0)
	if len(r.upOut) != 1 {
		t.Fatalf("uplink got %d writes, want 1 (drops %+v)", len(r.upOut), r.eng.Errors())
	}
	natPort := binary.BigEndian.Uint16(r.upOut[0][offload.VirtioNetHdrLen+20:])
	t.Run("partial checksum of a plain packet is finished", func(t *testing.T) {
		r.got[0] = nil
		bh, back := upSuper(natPort, 600, 1448)
		bh.GSOType, bh.GSOSize, bh.HdrLen = offload.GSONone, 0, 0
		r.up.Queue(withVnet(bh, back))
		pollUplink(t, r.w)
		if len(r.got[0]) != 1 {
			t.Fatalf("container got %d writes, want 1 (drops %+v)", len(r.got[0]), r.eng.Errors())
		}
		var gh offload.VirtioNetHdr
		if st := gh.Decode(r.got[0][0]); st != offload.StatusOK || gh.Flags != 0 || gh.GSOType != offload.GSONone {
			t.Fatalf("virtio-net header %+v (%v), want no flags: the checksum finished", gh, st)
		}
		in := r.got[0][0][offload.VirtioNetHdrLen:]
		pseudo := header.PseudoHeaderChecksum(header.ProtoTCP, outside, netip.MustParseAddr("10.42.0.2"), uint16(len(in)-34))
		if c := header.FoldChecksum(header.Checksum(in[34:], pseudo)); c != 0xffff || len(in) != len(back)+14 {
			t.Fatalf("packet at the container: %d bytes, TCP sum %#x; want %d bytes and a checksum that verifies", len(in), c, len(back)+14)
		}
	})
	t.Run("superpacket whose segments are too big gets frag-needed", func(t *testing.T) {
		r.got[0], r.upOut = nil, nil
		bh, back := upSuper(natPort, 9000, 1470) // segments of 20+20+1470 bytes: over blue's 1500
		r.up.Queue(withVnet(bh, back))
		pollUplink(t, r.w)
		if n := r.eng.Drops(StageRouter, ReasonFragNeeded); n != 1 || len(r.got[0]) != 0 || len(r.upOut) != 1 {
			t.Fatalf("frag-needed drops %d, container got %d, uplink got %d; want 1, 0 and one ICMP error", n, len(r.got[0]), len(r.upOut))
		}
		icmp := r.upOut[0][offload.VirtioNetHdrLen+20:]
		if icmp[0] != 3 || icmp[1] != 4 || binary.BigEndian.Uint16(icmp[6:]) != 1500 {
			t.Fatalf("ICMP error type %d code %d mtu %d, want 3/4 mtu 1500", icmp[0], icmp[1], binary.BigEndian.Uint16(icmp[6:]))
		}
	})
	for _, tc := range []struct {
		name   string
		mangle func(*offload.VirtioNetHdr)
		reason Reason
	}{
		{"superpacket without a GSO size", func(h *offload.VirtioNetHdr) { h.GSOSize = 0 }, ReasonVnetBadGSOSize},
		{"partial checksum past the end", func(h *offload.VirtioNetHdr) {
			h.GSOType, h.GSOSize, h.HdrLen, h.CsumStart = offload.GSONone, 0, 0, 5000
		}, ReasonVnetBadCsumStart},
	} {
		t.Run(tc.name+" is a counted drop at uplink-rx", func(t *testing.T) {
			r.got[0] = nil
			before := r.eng.Drops(StageUplinkRx, tc.reason)
			bh, back := upSuper(natPort, 3000, 1448)
			tc.mangle(&bh)
			r.up.Queue(withVnet(bh, back))
			pollUplink(t, r.w)
			if n := r.eng.Drops(StageUplinkRx, tc.reason) - before; n != 1 || len(r.got[0]) != 0 {
				t.Fatalf("%v drops at uplink-rx %d, container got %d; want 1 and 0 (drops %+v)", tc.reason, n, len(r.got[0]), r.eng.Errors())
			}
		})
	}
	if r.w.pool.Free() != r.w.pool.Cap() {
		t.Fatalf("pool has %d of %d buffers back", r.w.pool.Free(), r.w.pool.Cap())
	}
}
