package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

var (
	macA  = [6]byte{0x02, 0, 0, 0, 0, 0x0a}
	macB  = [6]byte{0x02, 0, 0, 0, 0, 0x0b}
	macR  = [6]byte{0x02, 0, 0, 0, 0, 0x0c} // behind peer 1
	bcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	peer1 = netip.MustParseAddr("192.168.77.2")
	peer2 = netip.MustParseAddr("192.168.77.3")
)

// frame builds an Ethernet/IPv4/UDP frame of size bytes from src to dst
// with the given UDP source port (the flow).
func frame(dst, src [6]byte, size int, sport uint16) []byte {
	size = max(size, 42)
	b := make([]byte, size)
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	ip[8] = 64
	ip[9] = 17
	copy(ip[12:16], []byte{10, 42, 0, 2})
	copy(ip[16:20], []byte{10, 42, 0, 3})
	binary.BigEndian.PutUint16(ip[20:], sport)
	binary.BigEndian.PutUint16(ip[22:], 5001)
	binary.BigEndian.PutUint16(ip[24:], uint16(size-34))
	for i := 42; i < size; i++ {
		b[i] = byte(i)
	}
	return b
}

// vxlan wraps an inner frame in a VXLAN header with the given VNI.
func vxlan(vni uint32, inner []byte) []byte {
	b := make([]byte, 8+len(inner))
	b[0] = 0x08
	b[4], b[5], b[6] = byte(vni>>16), byte(vni>>8), byte(vni)
	copy(b[8:], inner)
	return b
}

type sent struct {
	src  int
	dst  netip.Addr
	data []byte
}

// rig is one engine with one worker, two local ports (p0, p1) and a
// tunnel to peer1 and peer2, all in-memory.
type rig struct {
	eng    *Engine
	w      *Worker
	ports  [2]*MemPort
	got    [2][][]byte
	tun    *MemTunnel
	tunOut []sent
}

func newRig(t testing.TB, mtu int) *rig {
	t.Helper()
	eng, err := NewEngine([]NetworkSpec{{
		Name: "blue", VNI: 42, MTU: mtu, Ageing: 300 * time.Second,
		Ports: []string{"p0", "p1"}, Peers: []netip.Addr{peer1, peer2},
	}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{eng: eng, w: eng.NewWorker(0, 256, 2048), tun: &MemTunnel{Ports: 4}}
	for i := range r.ports {
		r.ports[i] = &MemPort{Sink: func(f []byte) { r.got[i] = append(r.got[i], bytes.Clone(f)) }}
		r.w.SetPort(uint16(i), r.ports[i])
	}
	r.tun.Sink = func(src int, dst netip.Addr, d []byte) {
		r.tunOut = append(r.tunOut, sent{src, dst, bytes.Clone(d)})
	}
	r.w.SetTunnel(r.tun)
	return r
}

func (r *rig) fromPort(t testing.TB, port uint16, frames ...[]byte) {
	t.Helper()
	r.ports[port].Queue(frames...)
	drain(t, func() (int, error) { return r.w.PollPort(port) })
}

func (r *rig) fromPeer(t testing.TB, peer netip.Addr, datagrams ...[]byte) {
	t.Helper()
	r.tun.Queue(peer, datagrams...)
	drain(t, func() (int, error) { return r.w.PollTunnel() })
}

// drain calls poll until it reads nothing, failing the test on an error:
// one input queued on a fake port or tunnel, run to completion.
func drain(t testing.TB, poll func() (int, error)) {
	t.Helper()
	for {
		n, err := poll()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func (r *rig) reset() {
	r.got = [2][][]byte{}
	r.tunOut = nil
}

func (r *rig) drops(s Stage, reason Reason) uint64 { return r.eng.Drops(s, reason) }

func TestBroadcastFromPortFloodsToPortsAndEveryPeer(t *testing.T) {
	r := newRig(t, 1450)
	f := frame(bcast, macA, 60, 1000)
	r.fromPort(t, 0, f)
	if len(r.got[0]) != 0 {
		t.Errorf("broadcast came back to its ingress port")
	}
	if len(r.got[1]) != 1 || !bytes.Equal(r.got[1][0], f) {
		t.Errorf("port p1 got %d frames, want the broadcast once", len(r.got[1]))
	}
	if len(r.tunOut) != 2 {
		t.Fatalf("tunnel sent %d datagrams, want one per peer (2)", len(r.tunOut))
	}
	seen := map[netip.Addr]bool{}
	for _, d := range r.tunOut {
		seen[d.dst] = true
		if !bytes.Equal(d.data, vxlan(42, f)) {
			t.Errorf("datagram to %s is not VXLAN(VNI 42, frame): % x", d.dst, d.data[:16])
		}
	}
	if !seen[peer1] || !seen[peer2] {
		t.Errorf("head-end replication missed a peer: %v", seen)
	}
}

func TestUnicastLearnedFromPeerGoesOnlyToThatPeer(t *testing.T) {
	r := newRig(t, 1450)
	// macR speaks from behind peer1: learned there.
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1)))
	if len(r.got[0]) != 1 || len(r.got[1]) != 1 {
		t.Fatalf("broadcast from peer reached ports %d,%d times, want 1,1", len(r.got[0]), len(r.got[1]))
	}
	if len(r.tunOut) != 0 {
		t.Fatalf("broadcast from a peer was sent back into the tunnel (split horizon broken): %d", len(r.tunOut))
	}
	r.reset()
	f := frame(macR, macA, 100, 2)
	r.fromPort(t, 0, f)
	if len(r.tunOut) != 1 || r.tunOut[0].dst != peer1 {
		t.Fatalf("unicast to a MAC behind peer1 went to %v, want exactly peer1", r.tunOut)
	}
	if len(r.got[1]) != 0 {
		t.Fatal("known unicast was flooded to a local port")
	}
	if got := r.eng.Peers()[0]; got.TxPackets != 1 || got.RxPackets != 1 || got.LastHeard == nil {
		t.Fatalf("peer1 counters = %+v, want 1 rx (with last-heard) and 1 tx", got)
	}
}

func TestUnicastBetweenLocalPorts(t *testing.T) {
	r := newRig(t, 1450)
	r.fromPort(t, 1, frame(bcast, macB, 60, 1)) // learn macB on p1
	r.reset()
	f := frame(macB, macA, 200, 2)
	r.fromPort(t, 0, f)
	if len(r.got[1]) != 1 || !bytes.Equal(r.got[1][0], f) || len(r.tunOut) != 0 {
		t.Fatalf("unicast to a local MAC: p1 got %d, tunnel %d; want 1, 0", len(r.got[1]), len(r.tunOut))
	}
	ports := r.eng.Ports()
	if ports[0].RxPackets != 1 || ports[1].TxPackets != 1 || ports[1].TxBytes != 200 {
		t.Fatalf("port counters %+v", ports)
	}
}

func TestSplitHorizonAndSameSegmentDrops(t *testing.T) {
	r := newRig(t, 1450)
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1))) // macR at peer1
	r.reset()
	// A unicast from peer2 to macR (behind peer1) must not be relayed.
	r.fromPeer(t, peer2, vxlan(42, frame(macR, macB, 60, 1)))
	if len(r.tunOut) != 0 {
		t.Fatal("frame relayed from one peer to another")
	}
	if got := r.drops(StageBridge, ReasonSplitHorizon); got != 1 {
		t.Fatalf("split-horizon drops = %d, want 1", got)
	}
	// A frame from p0 to a MAC learned on p0 goes nowhere.
	r.fromPort(t, 0, frame(bcast, macA, 60, 1))
	r.reset()
	r.fromPort(t, 0, frame(macA, [6]byte{2, 0, 0, 0, 0, 0xdd}, 60, 1))
	if len(r.got[0])+len(r.got[1])+len(r.tunOut) != 0 {
		t.Fatal("same-segment frame was forwarded")
	}
	if got := r.drops(StageBridge, ReasonSameSegment); got != 1 {
		t.Fatalf("same-segment drops = %d, want 1", got)
	}
}

func TestMACMovesFromPortToPeer(t *testing.T) {
	r := newRig(t, 1450)
	r.fromPort(t, 1, frame(bcast, macB, 60, 1)) // macB on p1
	r.fromPeer(t, peer2, vxlan(42, frame(bcast, macB, 60, 1)))
	r.reset()
	r.fromPort(t, 0, frame(macB, macA, 60, 1))
	if len(r.got[1]) != 0 || len(r.tunOut) != 1 || r.tunOut[0].dst != peer2 {
		t.Fatalf("after macB moved to peer2, unicast went to p1=%d tunnel=%v", len(r.got[1]), r.tunOut)
	}
	fdb, err := r.eng.FDB("blue")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range fdb {
		if e.MAC == "02:00:00:00:00:0b" {
			found = true
			if e.Peer != peer2.String() {
				t.Fatalf("fdb entry for macB = %+v, want peer %s", e, peer2)
			}
		}
	}
	if !found {
		t.Fatal("macB missing from the FDB")
	}
}

func TestBadInputIsCountedNotForwarded(t *testing.T) {
	cases := []struct {
		name   string
		peer   netip.Addr
		data   []byte
		stage  Stage
		reason Reason
	}{
		{"short datagram", peer1, []byte{0x08, 0, 0}, StageVXLANDecap, ReasonVXLANShort},
		{"no room for inner ethernet", peer1, vxlan(42, make([]byte, 10)), StageVXLANDecap, ReasonVXLANShort},
		{"I flag missing", peer1, func() []byte { b := vxlan(42, frame(bcast, macR, 60, 1)); b[0] = 0; return b }(), StageVXLANDecap, ReasonVXLANBadFlags},
		{"unknown VNI", peer1, vxlan(43, frame(bcast, macR, 60, 1)), StageVXLANDecap, ReasonUnknownVNI},
		{"stranger", netip.MustParseAddr("192.168.77.99"), vxlan(42, frame(bcast, macR, 60, 1)), StageVXLANDecap, ReasonUnknownPeer},
		{"multicast inner source", peer1, vxlan(42, frame(bcast, bcast, 60, 1)), StageEthernetInput, ReasonMulticastSource},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 1450)
			r.fromPeer(t, tc.peer, tc.data)
			if len(r.got[0])+len(r.got[1])+len(r.tunOut) != 0 {
				t.Fatal("bad datagram was forwarded")
			}
			if got := r.drops(tc.stage, tc.reason); got != 1 {
				t.Fatalf("drops[%s][%s] = %d, want 1; all: %+v", tc.stage, tc.reason, got, r.eng.Errors())
			}
			// and ferry keeps forwarding afterwards
			r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1)))
			if len(r.got[0]) != 1 {
				t.Fatal("pipeline stopped forwarding after bad input")
			}
		})
	}
	t.Run("port runt and multicast source", func(t *testing.T) {
		r := newRig(t, 1450)
		r.fromPort(t, 0, []byte{1, 2, 3}, frame(bcast, bcast, 60, 1), []byte{})
		if got := r.drops(StageEthernetInput, ReasonRunt); got != 2 {
			t.Errorf("runt drops = %d, want 2", got)
		}
		if got := r.drops(StageEthernetInput, ReasonMulticastSource); got != 1 {
			t.Errorf("multicast-source drops = %d, want 1", got)
		}
	})
	t.Run("truncated datagram", func(t *testing.T) {
		r := newRig(t, 1450)
		r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 4000, 1))) // bigger than 2048 buffers
		if got := r.drops(StageVXLANDecap, ReasonRxTruncated); got != 1 {
			t.Fatalf("rx-truncated drops = %d, want 1", got)
		}
	})
	t.Run("frame too big for the network MTU", func(t *testing.T) {
		r := newRig(t, 1000)
		r.fromPort(t, 0, frame(bcast, macA, 1100, 1))
		if got := r.drops(StageVXLANEncap, ReasonTooBig); got != 2 {
			t.Fatalf("too-big drops = %d, want 2 (one per peer)", got)
		}
		if len(r.got[1]) != 1 {
			t.Fatal("local delivery must not be affected by the tunnel MTU")
		}
	})
}

func TestTxFullIsCounted(t *testing.T) {
	r := newRig(t, 1450)
	r.ports[1].TxCap = 3
	var fs [][]byte
	for i := range 10 {
		fs = append(fs, frame(bcast, macA, 60, uint16(i)))
	}
	r.fromPort(t, 0, fs...)
	if len(r.got[1]) != 3 {
		t.Fatalf("p1 accepted %d frames, want 3", len(r.got[1]))
	}
	if got := r.drops(StagePortTx, ReasonTxFull); got != 7 {
		t.Fatalf("tx-full drops = %d, want 7", got)
	}
	if p := r.eng.Ports()[1]; p.Drops != 7 || p.TxPackets != 3 {
		t.Fatalf("p1 counters = %+v", p)
	}
}

func TestOuterSourcePortFollowsFlow(t *testing.T) {
	r := newRig(t, 1450)
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1)))
	r.reset()
	srcs := map[uint16]map[int]bool{}
	for range 3 {
		for sport := range uint16(32) {
			r.fromPort(t, 0, frame(macR, macA, 60, 1000+sport))
		}
		for i, d := range r.tunOut {
			sport := uint16(1000 + i)
			if srcs[sport] == nil {
				srcs[sport] = map[int]bool{}
			}
			srcs[sport][d.src] = true
		}
		r.reset()
	}
	used := map[int]bool{}
	for sport, m := range srcs {
		if len(m) != 1 {
			t.Fatalf("flow %d left from %d different source ports", sport, len(m))
		}
		for s := range m {
			used[s] = true
		}
	}
	if len(used) < 2 {
		t.Fatalf("32 flows all used one outer source port: no spreading")
	}
}

func TestRuntimeCountsStages(t *testing.T) {
	r := newRig(t, 1450)
	var fs [][]byte
	for i := range 100 {
		fs = append(fs, frame(bcast, macA, 60, uint16(i)))
	}
	r.fromPort(t, 0, fs...)
	st := map[string]StageStats{}
	for _, s := range r.eng.Runtime() {
		st[s.Stage] = s
	}
	if st["port-rx"].Packets != 100 || st["port-rx"].Batches != 2 {
		t.Errorf("port-rx = %+v, want 100 packets in 2 batches", st["port-rx"])
	}
	if st["flood"].Packets != 100 || st["vxlan-encap"].Packets != 100 || st["tunnel-tx"].Packets != 200 {
		t.Errorf("flood/encap/tunnel-tx = %d/%d/%d, want 100/100/200", st["flood"].Packets, st["vxlan-encap"].Packets, st["tunnel-tx"].Packets)
	}
	r.eng.ClearCounters()
	if r.eng.Runtime()[0].Packets != 0 {
		t.Error("ClearCounters left stage counters")
	}
}

// TestWorkerRuntimeSplitsByWorker: two workers, frames through each in
// different numbers; WorkerRuntime shows each worker's own counts, and
// they add up to Runtime's.
func TestWorkerRuntimeSplitsByWorker(t *testing.T) {
	eng, err := NewEngine([]NetworkSpec{{
		Name: "blue", VNI: 42, MTU: 1450, Ageing: 300 * time.Second,
		Ports: []string{"p0"}, Peers: []netip.Addr{peer1},
	}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	sent := []int{30, 70}
	for i, n := range sent {
		w := eng.NewWorker(i, 256, 2048)
		p := &MemPort{}
		w.SetPort(0, p)
		w.SetTunnel(&MemTunnel{Ports: 1})
		for j := range n {
			p.Queue(frame(bcast, macA, 60, uint16(j)))
		}
		drain(t, func() (int, error) { return w.PollPort(0) })
	}
	ws := eng.WorkerRuntime()
	if len(ws) != 2 {
		t.Fatalf("WorkerRuntime has %d workers, want 2", len(ws))
	}
	total := eng.Runtime()
	for s := range NumStages {
		var sum uint64
		for i, w := range ws {
			if w.Worker != i || len(w.Stages) != int(NumStages) || w.Stages[s].Stage != s.String() {
				t.Fatalf("worker %d: %+v", i, w)
			}
			sum += w.Stages[s].Packets
		}
		if sum != total[s].Packets {
			t.Errorf("%s: workers' packets add up to %d, Runtime says %d", s, sum, total[s].Packets)
		}
	}
	for i, n := range sent {
		if got := ws[i].Stages[StagePortRx].Packets; got != uint64(n) {
			t.Errorf("worker %d port-rx = %d packets, want %d", i, got, n)
		}
	}
}

// TestSteadyStateAllocatesNothing proves the zero-allocation claim over the
// whole rx → bridge → encap → tx path, both directions, with fake ports.
func TestSteadyStateAllocatesNothing(t *testing.T) {
	r := newRig(t, 1450)
	r.ports[0].Sink, r.ports[1].Sink, r.tun.Sink = nil, nil, nil
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1)))
	r.fromPort(t, 0, frame(bcast, macA, 60, 1))
	var out, in [][]byte
	for i := range MaxBatch {
		out = append(out, frame(macR, macA, 64, uint16(i)))
		in = append(in, vxlan(42, frame(macA, macR, 64, uint16(i))))
	}
	r.ports[0].Queue(out...)
	r.ports[0].Loop = true
	r.tun.Queue(peer1, in...)
	r.tun.Loop = true
	r.w.PollPort(0)
	r.w.PollTunnel()
	allocs := testing.AllocsPerRun(200, func() {
		r.w.PollPort(0)
		r.w.PollTunnel()
	})
	if allocs != 0 {
		t.Fatalf("port→peer and peer→port batches allocate %v times per run, want 0", allocs)
	}
	if r.tun.TxPackets < 200*MaxBatch || r.ports[0].TxPackets < 200*MaxBatch {
		t.Fatalf("traffic did not flow: tunnel tx %d, p0 tx %d", r.tun.TxPackets, r.ports[0].TxPackets)
	}
}

// BenchmarkPipeline measures the whole in-memory path per 64-byte frame:
// port rx (a 64-byte copy standing in for the device), ethernet-input,
// bridge learn+lookup, VXLAN encap, tunnel tx; and the reverse.
func BenchmarkPipeline(b *testing.B) {
	for _, dir := range []string{"port-to-peer", "peer-to-port"} {
		b.Run(dir, func(b *testing.B) {
			r := newRig(b, 1450)
			r.ports[0].Sink, r.ports[1].Sink, r.tun.Sink = nil, nil, nil
			r.fromPeer(b, peer1, vxlan(42, frame(bcast, macR, 60, 1)))
			r.fromPort(b, 0, frame(bcast, macA, 60, 1))
			var frames [][]byte
			for i := range MaxBatch {
				if dir == "port-to-peer" {
					frames = append(frames, frame(macR, macA, 64, uint16(i)))
				} else {
					frames = append(frames, vxlan(42, frame(macA, macR, 64, uint16(i))))
				}
			}
			poll := func() { r.w.PollPort(0) }
			if dir == "port-to-peer" {
				r.ports[0].Queue(frames...)
				r.ports[0].Loop = true
			} else {
				r.tun.Queue(peer1, frames...)
				r.tun.Loop = true
				poll = func() { r.w.PollTunnel() }
			}
			b.ReportAllocs()
			for b.Loop() {
				poll()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*MaxBatch), "ns/frame")
			b.ReportMetric(float64(b.N*MaxBatch)/b.Elapsed().Seconds()/1e6, "Mpps")
		})
	}
}
