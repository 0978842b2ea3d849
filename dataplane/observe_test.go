package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

// macE speaks from behind peer2 in the trace tests.
var macE = [6]byte{0x02, 0, 0, 0, 0, 0x0e}

// decisions returns "stage: decision" lines of a traced packet.
func decisions(tp TracePacket) []string {
	var out []string
	for _, s := range tp.Steps {
		out = append(out, s.Stage+": "+s.Decision)
	}
	return out
}

func mustStartTrace(t *testing.T, e *Engine, spec TraceSpec) {
	t.Helper()
	if _, err := e.StartTrace(spec); err != nil {
		t.Fatal(err)
	}
}

func TestTraceShowsEveryStageDecision(t *testing.T) {
	r := newRig(t, 1450)
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1))) // macR behind peer1
	r.fromPort(t, 1, frame(bcast, macB, 60, 1))                // macB on p1
	mustStartTrace(t, r.eng, TraceSpec{Count: 10})
	r.fromPort(t, 0, frame(macR, macA, 100, 7))                // to a peer
	r.fromPort(t, 0, frame(bcast, macA, 60, 8))                // flooded
	r.fromPeer(t, peer2, vxlan(42, frame(macB, macE, 80, 9)))  // from a peer to a port
	r.fromPeer(t, peer2, vxlan(42, frame(macR, macE, 60, 10))) // split horizon

	got := r.eng.TraceShow()
	if len(got) != 4 {
		t.Fatalf("traced %d packets, want 4", len(got))
	}
	want := []struct {
		path  string
		lines []string
	}{
		{"port-rx > ethernet-input > bridge > vxlan-encap > tunnel-tx", []string{
			"port-rx: read from port p0: 02:00:00:00:00:0a > 02:00:00:00:00:0c, IPv4 10.42.0.2 > 10.42.0.3 UDP 7 > 5001 ttl 64, length 86",
			"ethernet-input: network blue (VNI 42)",
			"bridge: FDB hit: destination MAC is behind peer 192.168.77.2",
			"vxlan-encap: VXLAN header, VNI 42",
			"tunnel-tx: sent to peer 192.168.77.2",
		}},
		{"port-rx > ethernet-input > bridge > flood > port-tx > vxlan-encap > tunnel-tx", []string{
			"port-rx: read from port p0: 02:00:00:00:00:0a > ff:ff:ff:ff:ff:ff, IPv4 10.42.0.2 > 10.42.0.3 UDP 8 > 5001 ttl 64, length 46",
			"ethernet-input: network blue (VNI 42)",
			"bridge: broadcast/multicast destination, flood",
			"flood: flooded to 1 ports and 2 peers",
			"port-tx: written to port p1",
			"vxlan-encap: VXLAN header, VNI 42",
			"tunnel-tx: sent to peer 192.168.77.2",
			"tunnel-tx: sent to peer 192.168.77.3",
		}},
		{"tunnel-rx > vxlan-decap > ethernet-input > bridge > port-tx", []string{
			"tunnel-rx: datagram from peer 192.168.77.3: 02:00:00:00:00:0e > 02:00:00:00:00:0b, IPv4 10.42.0.2 > 10.42.0.3 UDP 9 > 5001 ttl 64, length 66",
			"vxlan-decap: VXLAN VNI 42 from peer 192.168.77.3: network blue",
			"ethernet-input: network blue (VNI 42)",
			"bridge: FDB hit: destination MAC is at port p1",
			"port-tx: written to port p1",
		}},
		{"tunnel-rx > vxlan-decap > ethernet-input > bridge", []string{
			"tunnel-rx: datagram from peer 192.168.77.3: 02:00:00:00:00:0e > 02:00:00:00:00:0c, IPv4 10.42.0.2 > 10.42.0.3 UDP 10 > 5001 ttl 64, length 46",
			"vxlan-decap: VXLAN VNI 42 from peer 192.168.77.3: network blue",
			"ethernet-input: network blue (VNI 42)",
			"bridge: FDB hit: destination MAC is behind peer 192.168.77.2",
			"bridge: dropped: split-horizon: frame from a peer to a MAC behind another peer (never tunnel to tunnel)",
		}},
	}
	for i, w := range want {
		if got[i].Path != w.path {
			t.Errorf("packet %d path = %q, want %q", i, got[i].Path, w.path)
		}
		if d := decisions(got[i]); !reflect.DeepEqual(d, w.lines) {
			t.Errorf("packet %d decisions:\n%s\nwant:\n%s", i, strings.Join(d, "\n"), strings.Join(w.lines, "\n"))
		}
		if got[i].Seq != uint64(i+1) {
			t.Errorf("packet %d seq = %d", i, got[i].Seq)
		}
	}
	paths := r.eng.TracePaths()
	if len(paths) != 4 || paths[0].Packets != 1 {
		t.Fatalf("paths = %+v, want 4 paths of 1 packet", paths)
	}
}

func TestTraceCountPortAndFilterSelectPackets(t *testing.T) {
	cases := []struct {
		name   string
		spec   TraceSpec
		traced int
	}{
		{"count limits the session", TraceSpec{Count: 3}, 3},
		{"filter on the UDP source port", TraceSpec{Count: 50, Filter: "udp and src port 1004"}, 1},
		{"filter on the VNI", TraceSpec{Count: 50, Filter: "vni 42"}, 10},
		{"filter on another VNI", TraceSpec{Count: 50, Filter: "vni 43"}, 0},
		{"port that sent nothing", TraceSpec{Count: 50, Port: "p1"}, 0},
		{"port that sent all", TraceSpec{Count: 50, Port: "p0", Filter: "not ether host 02:00:00:00:00:0b"}, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 1450)
			mustStartTrace(t, r.eng, tc.spec)
			for i := range 10 {
				r.fromPort(t, 0, frame(bcast, macA, 60, uint16(1000+i)))
			}
			if got := len(r.eng.TraceShow()); got != tc.traced {
				t.Fatalf("traced %d packets, want %d", got, tc.traced)
			}
			st := r.eng.TraceStatus()
			if st.Traced != tc.traced || st.Running != (tc.traced < tc.spec.Count) {
				t.Fatalf("status %+v", st)
			}
			r.eng.ClearTrace()
			if got := len(r.eng.TraceShow()); got != 0 {
				t.Fatalf("after clear %d packets remain", got)
			}
			r.eng.StopTrace()
			r.fromPort(t, 0, frame(bcast, macA, 60, 1004))
			if got := len(r.eng.TraceShow()); got != 0 {
				t.Fatalf("a stopped trace recorded %d packets", got)
			}
		})
	}
}

func TestStartTraceRejectsBadRequests(t *testing.T) {
	r := newRig(t, 1450)
	for _, spec := range []TraceSpec{{Count: MaxTraceCount + 1}, {Count: -1}, {Filter: "host"}, {Port: "nope"}} {
		if _, err := r.eng.StartTrace(spec); err == nil {
			t.Errorf("StartTrace(%+v) succeeded", spec)
		}
	}
}

// snapshot is the engine state a dry run must not change.
type snapshot struct {
	fdb     []FDBEntry
	ports   []PortInfo
	peers   []PeerInfo
	runtime []StageStats
	errors  []DropStats
	sent    int
}

func (r *rig) snapshot(t *testing.T) snapshot {
	fdb, err := r.eng.FDB("")
	if err != nil {
		t.Fatal(err)
	}
	for i := range fdb {
		fdb[i].Age = 0
	}
	peers := r.eng.Peers()
	for i := range peers {
		peers[i].LastHeard = nil
	}
	return snapshot{fdb, r.eng.Ports(), peers, r.eng.Runtime(), r.eng.Errors(), r.ports[0].TxPackets + r.ports[1].TxPackets + r.tun.TxPackets}
}

func TestInjectTellsWithoutChangingState(t *testing.T) {
	r := newRig(t, 1450)
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1)))
	cases := []struct {
		name string
		spec InjectSpec
		path string
		last string
	}{
		{"unknown MAC is flooded", InjectSpec{In: "p0", Packet: "eth src 02:00:00:00:00:0a dst 02:00:00:00:00:99 ip src 10.42.0.2 dst 10.42.0.9 tcp dport 80"},
			"port-rx > ethernet-input > bridge > flood > port-tx > vxlan-encap > tunnel-tx", "tunnel-tx: would be sent to peer 192.168.77.3"},
		{"known MAC names its peer", InjectSpec{In: "p0", Packet: "eth src 02:00:00:00:00:0a dst 02:00:00:00:00:0c ip src 10.42.0.2 dst 10.42.0.3 udp dport 53"},
			"port-rx > ethernet-input > bridge > vxlan-encap > tunnel-tx", "tunnel-tx: would be sent to peer 192.168.77.2"},
		{"from a peer to a MAC behind another peer", InjectSpec{In: "peer:192.168.77.3", Packet: "eth src 02:00:00:00:00:0b dst 02:00:00:00:00:0c ip src 10.42.0.2 dst 10.42.0.3 icmp"},
			"tunnel-rx > vxlan-decap > ethernet-input > bridge", "bridge: would be dropped: split-horizon: frame from a peer to a MAC behind another peer (never tunnel to tunnel)"},
		{"from a stranger", InjectSpec{In: "peer:192.168.77.99", VNI: 42, Hex: "ffffffffffff02000000000b0806"},
			"tunnel-rx > vxlan-decap", "vxlan-decap: would be dropped: unknown-peer: datagram from an address that is not a peer of the VNI's network"},
		{"with the wrong VNI", InjectSpec{In: "peer:192.168.77.2", VNI: 7, Packet: "eth arp who-has 10.42.0.3 tell 10.42.0.2"},
			"tunnel-rx > vxlan-decap", "vxlan-decap: would be dropped: unknown-vni: VXLAN VNI matches no network on this node"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := r.snapshot(t)
			tp, err := r.eng.Inject(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			d := decisions(tp)
			if tp.Path != tc.path || d[len(d)-1] != tc.last || !tp.DryRun {
				t.Fatalf("inject: path %q, decisions:\n%s\nwant path %q ending %q", tp.Path, strings.Join(d, "\n"), tc.path, tc.last)
			}
			if after := r.snapshot(t); !reflect.DeepEqual(before, after) {
				t.Fatalf("dry run changed state:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
	for _, bad := range []InjectSpec{{In: "nope", Packet: "eth"}, {In: "p0", Packet: "tcp dport 80"}, {In: "p0", Hex: "zz"}, {In: "p0", Packet: "eth", Hex: "00"}, {In: "p0", VNI: 4, Packet: "eth"}} {
		if _, err := r.eng.Inject(bad); err == nil {
			t.Errorf("Inject(%+v) succeeded", bad)
		}
	}
}

func TestBuildFrameMatchesGopacketDecode(t *testing.T) {
	f, err := BuildFrame("eth src 02:42:0a:2a:00:02 dst 02:42:0a:2a:00:03 ip src 10.42.0.2 dst 10.42.0.3 ttl 9 tcp sport 4000 dport 80 flags SA payload 10")
	if err != nil {
		t.Fatal(err)
	}
	pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if tcp == nil || ip == nil || tcp.SrcPort != 4000 || tcp.DstPort != 80 || !tcp.SYN || !tcp.ACK || ip.TTL != 9 || len(tcp.Payload) != 10 || len(f) != 14+20+20+10 {
		t.Fatalf("frame %x decodes as %v", f, pkt)
	}
	if got := DescribeFrame(f); got != "02:42:0a:2a:00:02 > 02:42:0a:2a:00:03, IPv4 10.42.0.2 > 10.42.0.3 TCP 4000 > 80 flags SA ttl 9, length 50" {
		t.Fatalf("DescribeFrame = %q", got)
	}
}

func TestCaptureTunnelTxSynthesizesOuterHeaders(t *testing.T) {
	r := newRig(t, 1450)
	r.tun.Sink = nil
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1)))
	c, err := r.eng.StartCapture(CaptureSpec{Point: "tunnel-tx:" + peer1.String(), Filter: "udp"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	inner := frame(macR, macA, 120, 77)
	r.fromPort(t, 0, inner, frame(bcast, macA, 60, 78)) // one unicast, one flood to both peers
	got := c.Read(nil, 0)
	if len(got) != 2 {
		t.Fatalf("captured %d packets at tunnel-tx to peer1, want 2", len(got))
	}
	if len(got[0].Data) != 14+20+8+8+len(inner) { // the flood was sent first
		got[0] = got[1]
	}
	pkt := gopacket.NewPacket(got[0].Data, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	vx, _ := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
	if ip == nil || udp == nil || vx == nil {
		t.Fatalf("captured packet does not decode as IPv4/UDP/VXLAN: %v", pkt)
	}
	if netip.AddrFrom4([4]byte(ip.DstIP.To4())) != peer1 || udp.DstPort != 4789 || vx.VNI != 42 || !bytes.Equal(vx.Payload, inner) {
		t.Fatalf("outer dst %s:%d VNI %d inner %x; want %s:4789 VNI 42 and the frame sent", ip.DstIP, udp.DstPort, vx.VNI, vx.Payload, peer1)
	}
	if got[0].Length != len(got[0].Data) || int(ip.Length) != 20+8+8+len(inner) || pkt.ErrorLayer() != nil {
		t.Fatalf("length %d, data %d, ip length %d", got[0].Length, len(got[0].Data), ip.Length)
	}
}

func TestCaptureDropsAndPortPointsAndSlowReader(t *testing.T) {
	r := newRig(t, 1450)
	drops, err := r.eng.StartCapture(CaptureSpec{Point: "drop"})
	if err != nil {
		t.Fatal(err)
	}
	rx, err := r.eng.StartCapture(CaptureSpec{Point: "rx:p0", Snaplen: 40})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := r.eng.StartCapture(CaptureSpec{Point: "tx:p1", Snaplen: MaxSnaplen})
	if err != nil {
		t.Fatal(err)
	}
	bad := vxlan(43, frame(bcast, macR, 60, 1))
	r.fromPeer(t, peer1, bad)
	got := drops.Read(nil, 0)
	// A datagram dropped at decap is written whole: synthesized outer
	// Ethernet/IPv4/UDP from the peer to the VXLAN port, then the
	// datagram as received.
	const outerLen = 14 + 20 + 8
	if len(got) != 1 || len(got[0].Data) != outerLen+len(bad) || !bytes.Equal(got[0].Data[outerLen:], bad) ||
		got[0].Comment != "dropped at vxlan-decap: unknown-vni (VXLAN VNI matches no network on this node)" {
		t.Fatalf("drop capture = %+v", got)
	}
	ip := header.IPv4(got[0].Data[14:])
	if ip.Src() != peer1 || ip.Protocol() != header.ProtoUDP || binary.BigEndian.Uint16(got[0].Data[outerLen-6:]) != 4789 {
		t.Errorf("drop capture outer headers: %x, want IPv4/UDP from %s to port 4789", got[0].Data[:outerLen], peer1)
	}
	// 300 frames: rx keeps the first 40 bytes of each; tx (64 KiB slots
	// in a 4 MiB ring) has room for 63, and counts the rest as capture
	// drops.
	for i := range 300 {
		r.fromPort(t, 0, frame(bcast, macA, 60, uint16(i)))
	}
	rxGot := rx.Read(nil, 0)
	if len(rxGot) != 300 || len(rxGot[0].Data) != 40 || rxGot[0].Length != 60 || rx.Dropped() != 0 {
		t.Fatalf("rx capture: %d packets (first %d of %d bytes), %d dropped; want 300, 40 of 60 bytes, 0", len(rxGot), len(rxGot[0].Data), rxGot[0].Length, rx.Dropped())
	}
	txGot := tx.Read(nil, 0)
	if len(txGot) != 63 || tx.Dropped() != 300-63 {
		t.Fatalf("tx capture: %d packets, %d dropped; want 63 and 237", len(txGot), tx.Dropped())
	}
	drops.Stop()
	rx.Stop()
	tx.Stop()
	if r.eng.obs.Load() != nil {
		t.Fatal("observer left behind after every capture stopped")
	}
}

func TestStartCaptureRejectsBadPoints(t *testing.T) {
	r := newRig(t, 1450)
	for _, spec := range []CaptureSpec{{Point: "rx:nope"}, {Point: "tunnel-tx:notanip"}, {Point: "drop:x"}, {Point: "mid"}, {Point: "drop", Filter: "port x"}, {Point: "drop", Snaplen: -1}} {
		if _, err := r.eng.StartCapture(spec); err == nil {
			t.Errorf("StartCapture(%+v) succeeded", spec)
		}
	}
}

// TestObservedPipelineAllocatesNothing: with a trace and captures running,
// the worker still allocates nothing per packet.
func TestObservedPipelineAllocatesNothing(t *testing.T) {
	r := newRig(t, 1450)
	r.ports[0].Sink, r.ports[1].Sink, r.tun.Sink = nil, nil, nil
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1)))
	mustStartTrace(t, r.eng, TraceSpec{Count: MaxTraceCount, Filter: "udp and not port 9"})
	for _, pt := range []string{"rx:p0", "tunnel-tx", "tunnel-rx", "drop"} {
		c, err := r.eng.StartCapture(CaptureSpec{Point: pt, Filter: "vni 42"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
	}
	var out, in [][]byte
	for i := range MaxBatch {
		out = append(out, frame(macR, macA, 64, uint16(i)))
		in = append(in, vxlan(42, frame(macA, macR, 64, uint16(i))))
	}
	r.ports[0].Queue(out...)
	r.ports[0].Loop = true
	r.tun.Queue(peer1, in...)
	r.tun.Loop = true
	allocs := testing.AllocsPerRun(50, func() {
		r.w.PollPort(0)
		r.w.PollTunnel()
	})
	if allocs != 0 {
		t.Fatalf("observed batches allocate %v times per run, want 0", allocs)
	}
	if got := len(r.eng.TraceShow()); got != MaxTraceCount {
		t.Fatalf("traced %d, want %d", got, MaxTraceCount)
	}
}

func TestFDBControl(t *testing.T) {
	r := newRig(t, 1450)
	r.fromPort(t, 1, frame(bcast, macB, 60, 1)) // learned on p1
	if err := r.eng.AddStaticFDB("blue", macR, "", peer2); err != nil {
		t.Fatal(err)
	}
	r.reset()
	r.fromPort(t, 0, frame(macR, macA, 60, 1))
	if len(r.tunOut) != 1 || r.tunOut[0].dst != peer2 {
		t.Fatalf("frame to a static MAC went to %v, want peer2", r.tunOut)
	}
	n, err := r.eng.FlushFDB("blue")
	if err != nil || n != 2 { // macB and macA were learned
		t.Fatalf("flush removed %d (%v), want 2 learned entries", n, err)
	}
	fdb, _ := r.eng.FDB("blue")
	if len(fdb) != 1 || !fdb[0].Static || fdb[0].Peer != peer2.String() {
		t.Fatalf("after flush FDB = %+v, want only the static entry", fdb)
	}
	if err := r.eng.DeleteFDB("blue", macR); err != nil {
		t.Fatal(err)
	}
	errCases := []struct {
		name string
		err  error
	}{
		{"delete missing", r.eng.DeleteFDB("blue", macR)},
		{"add to unknown network", r.eng.AddStaticFDB("red", macR, "p0", netip.Addr{})},
		{"add to unknown port", r.eng.AddStaticFDB("blue", macR, "p9", netip.Addr{})},
		{"add with port and peer", r.eng.AddStaticFDB("blue", macR, "p0", peer1)},
		{"add multicast", r.eng.AddStaticFDB("blue", bcast, "p0", netip.Addr{})},
	}
	for _, c := range errCases {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func TestPeerAddAndRemove(t *testing.T) {
	r := newRig(t, 1450)
	peer3 := netip.MustParseAddr("192.168.77.4")
	if err := r.eng.AddPeer("blue", peer3); err != nil {
		t.Fatal(err)
	}
	r.fromPort(t, 0, frame(bcast, macA, 60, 1))
	if len(r.tunOut) != 3 || r.tunOut[2].dst != peer3 {
		t.Fatalf("broadcast after adding peer3 went to %v, want 3 peers", r.tunOut)
	}
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1))) // macR at peer1
	if err := r.eng.RemovePeer("blue", peer1); err != nil {
		t.Fatal(err)
	}
	if fdb, _ := r.eng.FDB("blue"); len(fdb) != 1 || fdb[0].MAC != "02:00:00:00:00:0a" {
		t.Fatalf("FDB after removing peer1 = %+v, want only macA", fdb)
	}
	r.reset()
	r.fromPeer(t, peer1, vxlan(42, frame(bcast, macR, 60, 1)))
	if got := r.drops(StageVXLANDecap, ReasonUnknownPeer); got != 1 || len(r.got[0]) != 0 {
		t.Fatalf("datagram from a removed peer: %d unknown-peer drops, %d delivered", got, len(r.got[0]))
	}
	if err := r.eng.AddPeer("blue", peer1); err != nil {
		t.Fatal(err)
	}
	peers := r.eng.Peers()
	var addrs []netip.Addr
	for _, p := range peers {
		addrs = append(addrs, p.Address)
	}
	if !reflect.DeepEqual(addrs, []netip.Addr{peer2, peer3, peer1}) || peers[2].RxPackets != 0 {
		t.Fatalf("peers = %+v; want peer2, peer3, and peer1 anew with fresh counters", peers)
	}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"duplicate", r.eng.AddPeer("blue", peer2)},
		{"unknown network", r.eng.AddPeer("red", peer3)},
		{"multicast", r.eng.AddPeer("blue", netip.MustParseAddr("239.1.1.1"))},
		{"remove missing", r.eng.RemovePeer("blue", netip.MustParseAddr("192.168.77.50"))},
	} {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func TestPeerIDsRunOut(t *testing.T) {
	eng, err := NewEngine([]NetworkSpec{{Name: "blue", VNI: 42}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("10.0.0.1")
	for i := range MaxPeers {
		if err := eng.AddPeer("blue", a); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		if err := eng.removePeer("blue", a, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := eng.AddPeer("blue", a); err == nil || !strings.Contains(err.Error(), "peer ids are used") {
		t.Fatalf("add beyond MaxPeers: %v", err)
	}
}

// TestTrafficFlowsDuringPeerAdd runs a worker on its own goroutine while
// peers are added and removed: every frame is still forwarded (to peer1,
// whose MAC is static) and nothing is dropped.
func TestTrafficFlowsDuringPeerAdd(t *testing.T) {
	r := newRig(t, 1450)
	r.ports[0].Sink, r.ports[1].Sink, r.tun.Sink = nil, nil, nil
	if err := r.eng.AddStaticFDB("blue", macR, "", peer1); err != nil {
		t.Fatal(err)
	}
	var fs [][]byte
	for i := range MaxBatch {
		fs = append(fs, frame(macR, macA, 64, uint16(i)))
	}
	r.ports[0].Queue(fs...)
	r.ports[0].Loop = true
	stop, started := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	batches := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				r.w.PollPort(0)
				if batches++; batches == 1 {
					close(started)
				}
			}
		}
	}()
	<-started
	for i := range 50 {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if err := r.eng.AddPeer("blue", a); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := r.eng.removePeer("blue", a, time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	if len(r.eng.Errors()) != 0 {
		t.Fatalf("drops during peer changes: %+v", r.eng.Errors())
	}
	if r.tun.TxPackets != batches*MaxBatch || batches == 0 {
		t.Fatalf("tunnel sent %d datagrams in %d batches, want %d", r.tun.TxPackets, batches, batches*MaxBatch)
	}
	if n := len(r.eng.Peers()); n != 2+25 {
		t.Fatalf("%d peers, want 27", n)
	}
}
