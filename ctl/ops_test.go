//go:build unix

package ctl

import (
	"bytes"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ferry-overlay/ferry/ctl/ctltest"
	"github.com/ferry-overlay/ferry/dataplane"
)

var (
	opPeer1 = netip.MustParseAddr("192.0.2.1")
	opPeer2 = netip.MustParseAddr("192.0.2.2")
)

// startEngine serves a real in-memory engine (network blue, VNI 42, ports
// p0 and p1, two peers) and returns a client, the engine and a worker with
// fake ports for the test to drive.
func startEngine(t *testing.T) (*Client, *dataplane.Engine, *dataplane.Worker, *dataplane.MemPort) {
	t.Helper()
	eng, err := dataplane.NewEngine([]dataplane.NetworkSpec{{
		Name: "blue", VNI: 42, MTU: 1450, Ports: []string{"p0", "p1"}, Peers: []netip.Addr{opPeer1, opPeer2},
	}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := eng.NewWorker(0, 256, 2048)
	p0 := &dataplane.MemPort{}
	w.SetPort(0, p0)
	w.SetPort(1, &dataplane.MemPort{})
	w.SetTunnel(&dataplane.MemTunnel{})
	return serveEngine(t, eng), eng, w, p0
}

// serveEngine serves eng's control API on a socket of the test's own
// until the test ends, and returns a client of it.
func serveEngine(t *testing.T, eng *dataplane.Engine) *Client {
	t.Helper()
	path := socketPath(t)
	ln := listen(t, path)
	srv := &http.Server{Handler: NewServer(eng, testInfo), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := NewClient(path)
	t.Cleanup(c.hc.CloseIdleConnections)
	return c
}

func mustBuild(t *testing.T, desc string) []byte {
	t.Helper()
	f, err := dataplane.BuildFrame(desc)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFDBAndPeerChangesOverTheSocket(t *testing.T) {
	c, eng, _, _ := startEngine(t)
	ctx := testContext(t)
	done, err := c.AddFDB(ctx, FDBRequest{Network: "blue", MAC: "02:00:00:00:00:09", Peer: "192.0.2.2"})
	if err != nil || done.Message != "static entry 02:00:00:00:00:09 at peer 192.0.2.2 added to network blue" {
		t.Fatalf("add: %+v %v", done, err)
	}
	fdb, _ := eng.FDB("blue")
	if len(fdb) != 1 || fdb[0].Peer != "192.0.2.2" || !fdb[0].Static {
		t.Fatalf("fdb = %+v", fdb)
	}
	if _, err := c.AddPeer(ctx, PeerRequest{Network: "blue", Address: netip.MustParseAddr("192.0.2.3")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemovePeer(ctx, PeerRequest{Network: "blue", Address: opPeer2}); err != nil {
		t.Fatal(err)
	}
	if fdb, _ := eng.FDB("blue"); len(fdb) != 0 {
		t.Fatalf("removing the peer left its static entry: %+v", fdb)
	}
	if n := len(eng.Peers()); n != 2 {
		t.Fatalf("%d peers, want 2", n)
	}
	fl, err := c.FlushFDB(ctx, "")
	if err != nil || fl.Removed != 0 {
		t.Fatalf("flush: %+v %v", fl, err)
	}
	cases := []struct {
		name   string
		call   func() error
		status int
		msg    string
	}{
		{"unknown network", func() error {
			_, err := c.AddFDB(ctx, FDBRequest{Network: "red", MAC: "02:00:00:00:00:09", Port: "p0"})
			return err
		}, 404, `no network "red": not found`},
		{"bad MAC", func() error {
			_, err := c.AddFDB(ctx, FDBRequest{Network: "blue", MAC: "zz", Port: "p0"})
			return err
		}, 400, `mac "zz": not a MAC address like 02:42:0a:2a:00:02`},
		{"delete missing entry", func() error {
			_, err := c.DeleteFDB(ctx, FDBRequest{Network: "blue", MAC: "02:00:00:00:00:09"})
			return err
		}, 404, `no FDB entry 02:00:00:00:00:09 in network "blue": not found`},
		{"duplicate peer", func() error {
			_, err := c.AddPeer(ctx, PeerRequest{Network: "blue", Address: opPeer1})
			return err
		}, 400, `peer 192.0.2.1 is already in network "blue": invalid request`},
		{"unknown body field", func() error {
			return c.doBody(ctx, http.MethodPost, "/v1/peers/add", nil, map[string]string{"net": "blue"}, &Done{})
		}, 400, `bad request body: json: unknown field "net"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			ae, ok := errors.AsType[*APIError](err)
			if !ok || ae.Status != tc.status || ae.Message != tc.msg {
				t.Fatalf("err = %v, want %d %q", err, tc.status, tc.msg)
			}
		})
	}
}

func TestReadOnlyBackendAnswers501(t *testing.T) {
	c := startDaemon(t, ctltest.New())
	_, err := c.StartTrace(testContext(t), dataplane.TraceSpec{})
	if ae, ok := errors.AsType[*APIError](err); !ok || ae.Status != http.StatusNotImplemented {
		t.Fatalf("err = %v, want a 501", err)
	}
}

func TestTraceAndInjectOverTheSocket(t *testing.T) {
	c, _, w, p0 := startEngine(t)
	ctx := testContext(t)
	st, err := c.StartTrace(ctx, dataplane.TraceSpec{Count: 2, Port: "p0", Filter: "icmp"})
	if err != nil || !st.Running || st.Count != 2 || st.Port != "p0" {
		t.Fatalf("start: %+v %v", st, err)
	}
	ping := mustBuild(t, "eth src 02:00:00:00:00:0a dst ff:ff:ff:ff:ff:ff ip src 10.0.0.1 dst 10.0.0.2 icmp")
	p0.Queue(ping, ping, ping)
	w.PollPort(0)
	pkts, err := c.TraceShow(ctx)
	if err != nil || len(pkts) != 2 {
		t.Fatalf("show: %d packets, %v", len(pkts), err)
	}
	if pkts[0].Steps[3].Decision != "flooded to 1 ports and 2 peers" {
		t.Fatalf("flood step = %+v", pkts[0].Steps[3])
	}
	paths, err := c.TracePaths(ctx)
	if err != nil || len(paths) != 1 || paths[0].Packets != 2 {
		t.Fatalf("paths: %+v %v", paths, err)
	}
	if st, err := c.StopTrace(ctx); err != nil || st.Running || st.Traced != 2 {
		t.Fatalf("stop: %+v %v", st, err)
	}
	if st, err := c.ClearTrace(ctx); err != nil || st.Traced != 0 {
		t.Fatalf("clear: %+v %v", st, err)
	}
	tp, err := c.Inject(ctx, dataplane.InjectSpec{In: "p1", Packet: "eth src 02:00:00:00:00:0b dst 02:00:00:00:00:0a ip src 10.0.0.2 dst 10.0.0.1 udp dport 53"})
	if err != nil {
		t.Fatal(err)
	}
	// the trace above taught the FDB where 02:..:0a is
	if last := tp.Steps[len(tp.Steps)-1]; last.Decision != "would be written to port p0" || !tp.DryRun {
		t.Fatalf("inject: %+v", tp)
	}
	_, err = c.Inject(ctx, dataplane.InjectSpec{In: "p9", Packet: "eth"})
	if ae, ok := errors.AsType[*APIError](err); !ok || ae.Status != 404 {
		t.Fatalf("inject at an unknown port: %v", err)
	}
}

func TestPcapStreamsPcapng(t *testing.T) {
	c, eng, w, p0 := startEngine(t)
	ctx := testContext(t)
	frames := [][]byte{
		mustBuild(t, "eth src 02:00:00:00:00:0a ip src 10.0.0.1 dst 10.0.0.2 udp dport 7 payload 100"),
		mustBuild(t, "eth src 02:00:00:00:00:0a ip src 10.0.0.1 dst 10.0.0.2 tcp dport 80"),
		mustBuild(t, "eth src 02:00:00:00:00:0a ip src 10.0.0.1 dst 10.0.0.2 udp dport 8 payload 200"),
	}
	// Feed the worker once the capture is running (it is started by the
	// request, so poll until the observer is there).
	stop, fed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(fed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				p0.Queue(frames...)
				w.PollPort(0)
			}
		}
	}()
	var out bytes.Buffer
	sum, err := c.Pcap(ctx, PcapRequest{CaptureSpec: dataplane.CaptureSpec{Point: "tunnel-tx:192.0.2.2", Filter: "udp"}, Count: 4}, &out)
	close(stop)
	<-fed
	if err != nil {
		t.Fatal(err)
	}
	if sum.Packets != 4 || sum.Dropped != 0 {
		t.Fatalf("summary %+v, want 4 packets, 0 dropped", sum)
	}
	r, err := pcapgo.NewNgReader(&out, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var got int
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		vx, _ := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if vx == nil || vx.VNI != 42 || udp.DstPort != 4789 {
			t.Fatalf("packet %d: %v", got, pkt)
		}
		if !bytes.Equal(vx.Payload, frames[0]) && !bytes.Equal(vx.Payload, frames[2]) {
			t.Fatalf("packet %d carries %x, not a UDP frame that was sent", got, vx.Payload)
		}
		got++
	}
	if got != 4 {
		t.Fatalf("read %d packets back, want 4", got)
	}
	if eng.Drops(dataplane.StageTunnelTx, dataplane.ReasonTxError) != 0 {
		t.Fatal("capture disturbed forwarding")
	}
	_, err = c.Pcap(ctx, PcapRequest{CaptureSpec: dataplane.CaptureSpec{Point: "sideways"}}, &out)
	if ae, ok := errors.AsType[*APIError](err); !ok || ae.Status != 400 || !strings.HasPrefix(ae.Message, `capture point "sideways"`) {
		t.Fatalf("bad point: %v", err)
	}
}
