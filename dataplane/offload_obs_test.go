package dataplane

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// groTunnel is a MemTunnel that reads like a UDP tunnel with UDP_GRO: each
// queued buffer is a train of datagrams cut every seg bytes, from the
// source port given for it, and it knows its addresses, so tunnel captures
// show the outer ports the kernel reported.
type groTunnel struct {
	MemTunnel
	seg    int
	max    int      // buffers per read, if positive
	sports []uint16 // by queued buffer
	last   []uint16 // source ports of the last ReadBatch, by index
}

var (
	groLocal  = netip.MustParseAddrPort("192.168.77.1:4789")
	groSports = []uint16{40001, 40002, 40003, 40004}
)

// queueFrom adds one UDP_GRO buffer, datagrams back to back, from peer's
// source port sport.
func (g *groTunnel) queueFrom(peer netip.Addr, sport uint16, datagrams ...[]byte) {
	g.Queue(peer, bytes.Join(datagrams, nil))
	g.sports = append(g.sports, sport)
}

// ReadBatch implements TunnelIO.
func (g *groTunnel) ReadBatch(pkts []*Packet) (int, error) {
	g.last = g.last[:0]
	if g.max > 0 {
		pkts = pkts[:min(len(pkts), g.max)]
	}
	n := 0
	for n < len(pkts) {
		i := g.next
		if i == len(g.frames) {
			i = 0
		}
		if g.read(pkts[n:n+1]) == 0 {
			break
		}
		pkts[n].groSize = g.seg
		g.last = append(g.last, g.sports[i])
		n++
	}
	return n, nil
}

func (g *groTunnel) LocalAddr() netip.AddrPort { return groLocal }
func (g *groTunnel) SourcePorts() []uint16     { return groSports }
func (g *groTunnel) RxSourcePort(i int) uint16 { return g.last[i] }

// superDatagrams has rig a send a TCP superpacket of payload bytes cut
// every mss from port 0 and returns the superpacket's frame and the VXLAN
// datagrams it went out as.
func superDatagrams(t *testing.T, a *offRig, payload, mss int) ([]byte, [][]byte) {
	t.Helper()
	h, f := tcpSuper(payload, mss)
	a.fromPort(t, 0, withVnet(h, f))
	var ds [][]byte
	for _, s := range a.tunOut {
		ds = append(ds, s.data)
	}
	a.tunOut = nil
	return f, ds
}

// slowPort is a MemVnetPort that hands over one frame per read.
type slowPort struct{ *MemVnetPort }

// ReadBatch implements PortIO.
func (s slowPort) ReadBatch(pkts []*Packet) (int, error) { return s.MemVnetPort.ReadBatch(pkts[:1]) }

// groRig returns a receiving host (macR on p0) whose tunnel is a
// groTunnel with segment size seg.
func groRig(t *testing.T, seg int) (*offRig, *groTunnel) {
	b := newOffRig(t, 1450)
	b.mirror(t)
	g := &groTunnel{seg: seg, last: make([]uint16, 0, 4*MaxBatch)}
	b.w.SetTunnel(g)
	return b, g
}

func mustCapture(t *testing.T, e *Engine, point string) *Capture {
	t.Helper()
	c, err := e.StartCapture(CaptureSpec{Point: point, Snaplen: MaxSnaplen})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// TestCoalescedPathIsCapturedAndTraced receives a TCP superpacket's five
// VXLAN datagrams as two UDP_GRO buffers from two outer source ports, with
// captures at tunnel-rx and tx:p0 and a trace running: tunnel-rx holds the
// five datagrams as the wire carried them, each with the source port of
// its own buffer; tx:p0 holds the one coalesced superpacket the container
// receives; the trace says which datagram became the superpacket and that
// the other four were merged into it.
func TestCoalescedPathIsCapturedAndTraced(t *testing.T) {
	const mss = 1410
	payload := 4*mss + 700
	a := newOffRig(t, 1450)
	rx := mustCapture(t, a.eng, "rx:p0")
	f, ds := superDatagrams(t, a, payload, mss)
	if len(ds) != 5 {
		t.Fatalf("superpacket went out as %d datagrams, want 5", len(ds))
	}
	if got := rx.Read(nil, 0); len(got) != 1 || !bytes.Equal(got[0].Data, f) || got[0].Length != len(f) {
		t.Fatalf("rx:p0 captured %d packets, want the superpacket of %d bytes as the container sent it", len(got), len(f))
	}

	b, g := groRig(t, len(ds[0]))
	tunRx := mustCapture(t, b.eng, "tunnel-rx")
	tx := mustCapture(t, b.eng, "tx:p0")
	mustStartTrace(t, b.eng, TraceSpec{Count: 5})
	g.queueFrom(peer1, 50001, ds[:3]...)
	g.queueFrom(peer1, 50002, ds[3:]...)
	drain(t, b.w.PollTunnel)

	got := tunRx.Read(nil, 0)
	if len(got) != 5 {
		t.Fatalf("tunnel-rx captured %d packets, want 5 datagrams", len(got))
	}
	for i, cp := range got {
		pkt := gopacket.NewPacket(cp.Data, layers.LayerTypeEthernet, gopacket.Default)
		udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if udp == nil || ip == nil || pkt.ErrorLayer() != nil {
			t.Fatalf("datagram %d does not decode: %v", i, pkt)
		}
		wantSport := layers.UDPPort(50001)
		if i >= 3 {
			wantSport = 50002
		}
		if udp.SrcPort != wantSport || udp.DstPort != 4789 || !ip.SrcIP.Equal(peer1.AsSlice()) || !ip.DstIP.Equal(groLocal.Addr().AsSlice()) {
			t.Fatalf("datagram %d: %v:%d > %v:%d, want %v:%d > %v", i, ip.SrcIP, udp.SrcPort, ip.DstIP, udp.DstPort, peer1, wantSport, groLocal)
		}
		if !bytes.Equal(udp.Payload, ds[i]) {
			t.Fatalf("datagram %d: captured payload differs from the datagram sent", i)
		}
	}

	sp := tx.Read(nil, 0)
	if len(sp) != 1 || len(sp[0].Data) != 54+payload || !bytes.Equal(sp[0].Data[54:], f[54:]) {
		t.Fatalf("tx:p0 captured %d packets, want one superpacket of %d bytes carrying the payload", len(sp), 54+payload)
	}

	var merged, super int
	wantSuper := fmt.Sprintf("gro-coalesce: superpacket of %d bytes for port p0, gso tcp mss %d ← 5 segments coalesced", 54+payload, mss)
	for _, tp := range b.eng.TraceShow() {
		var lines []string
		for _, s := range tp.Steps {
			lines = append(lines, s.Stage+": "+s.Decision)
		}
		story := strings.Join(lines, "\n")
		switch {
		case lines[len(lines)-1] == "gro-coalesce: merged into the superpacket of its flow ahead of it, for port p0":
			merged++
		case len(lines) >= 2 && lines[len(lines)-2] == wantSuper && lines[len(lines)-1] == "port-tx: written to port p0":
			super++
		default:
			t.Fatalf("trace of a datagram:\n%s\nwant it to end merged, or with %q and port-tx", story, wantSuper)
		}
	}
	if merged != 4 || super != 1 {
		t.Fatalf("traces: %d merged, %d superpackets; want 4 and 1", merged, super)
	}
}

// TestCaptureOfOffloadPathAllocatesNothing runs superpackets both ways, as
// TestOffloadPathAllocatesNothing does, with captures running at every
// point they pass (rx:p0 and tunnel-tx on the sender, tunnel-rx and tx:p0
// on the receiver, which reads the datagrams as UDP_GRO buffers of 23 and
// coalesces each into a superpacket) and the rings large enough to take
// every packet: the workers copy every packet into a capture and allocate
// nothing.
func TestCaptureOfOffloadPathAllocatesNothing(t *testing.T) {
	const runs = 20
	a := newOffRig(t, 1450)
	_, ds := superDatagrams(t, a, 64000, 1410)
	h, f := tcpSuper(64000, 1410)
	b, g := groRig(t, len(ds[0]))
	a.ports[0].Sink, b.ports[0].Sink, a.tun.Sink = nil, nil, nil
	// One superpacket per poll each way, so the rings hold all of them.
	a.ports[0].Queue(withVnet(h, f))
	a.ports[0].Loop = true
	a.w.SetPort(0, slowPort{a.ports[0]})
	// A UDP_GRO buffer holds at most 64 KiB: the datagrams come in two.
	half := len(ds) / 2
	g.queueFrom(peer1, 50001, ds[:half]...)
	g.queueFrom(peer1, 50001, ds[half:]...)
	g.Loop, g.max = true, 1

	spec := func(point string) CaptureSpec { return CaptureSpec{Point: point, Snaplen: 128} }
	var caps []*Capture
	for _, s := range []struct {
		e     *Engine
		point string
	}{{a.eng, "rx:p0"}, {a.eng, "tunnel-tx"}, {b.eng, "tunnel-rx"}, {b.eng, "tx:p0"}} {
		c, err := s.e.StartCapture(spec(s.point))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		caps = append(caps, c)
	}
	if slots := len(caps[1].s.rings[0].slots); slots < (runs+1)*len(ds) {
		t.Fatalf("capture ring of %d slots cannot take %d datagrams", slots, (runs+1)*len(ds))
	}
	if len(ds) != 2*half {
		t.Fatalf("%d datagrams do not make two equal UDP_GRO buffers", len(ds))
	}
	allocs := testing.AllocsPerRun(runs, func() {
		a.w.PollPort(0)
		b.w.PollTunnel()
	})
	if allocs != 0 {
		t.Fatalf("offload path with captures allocates %v times per run, want 0", allocs)
	}
	// AllocsPerRun runs the function once more to warm up.
	for i, want := range []int{runs + 1, (runs + 1) * len(ds), (runs + 1) * half, runs + 1} {
		if got := len(caps[i].Read(nil, 0)); got != want || caps[i].Dropped() != 0 {
			t.Fatalf("%s captured %d packets (%d dropped), want %d", caps[i].Spec().Point, got, caps[i].Dropped(), want)
		}
	}
}
