package metrics

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/ctl/ctltest"
)

var testNode = ctl.NodeInfo{Name: "node-1", Version: "v1.2.3-test"}

// wantFake is the exposition of ctltest.New() with testNode.
const wantFake = `
# HELP ferry_drop_packets_total Packets dropped, by pipeline stage and reason.
# TYPE ferry_drop_packets_total counter
ferry_drop_packets_total{reason="runt",stage="port-rx"} 2
ferry_drop_packets_total{reason="same-segment",stage="bridge"} 8
# HELP ferry_fdb_entries MAC table entries of a network.
# TYPE ferry_fdb_entries gauge
ferry_fdb_entries{network="blue"} 2
ferry_fdb_entries{network="red"} 1
# HELP ferry_info Build and node information; always 1.
# TYPE ferry_info gauge
ferry_info{node="node-1",version="v1.2.3-test"} 1
# HELP ferry_peer_last_heard_seconds Seconds since the last datagram from a remote peer; absent if none ever arrived.
# TYPE ferry_peer_last_heard_seconds gauge
ferry_peer_last_heard_seconds{network="blue",peer="192.0.2.10"} 12
# HELP ferry_peer_rx_bytes_total Bytes received from a remote peer.
# TYPE ferry_peer_rx_bytes_total counter
ferry_peer_rx_bytes_total{network="blue",peer="192.0.2.10"} 40100
ferry_peer_rx_bytes_total{network="red",peer="192.0.2.11"} 0
# HELP ferry_peer_rx_packets_total Packets received from a remote peer.
# TYPE ferry_peer_rx_packets_total counter
ferry_peer_rx_packets_total{network="blue",peer="192.0.2.10"} 401
ferry_peer_rx_packets_total{network="red",peer="192.0.2.11"} 0
# HELP ferry_peer_tx_bytes_total Bytes sent to a remote peer.
# TYPE ferry_peer_tx_bytes_total counter
ferry_peer_tx_bytes_total{network="blue",peer="192.0.2.10"} 40200
ferry_peer_tx_bytes_total{network="red",peer="192.0.2.11"} 50200
# HELP ferry_peer_tx_packets_total Packets sent to a remote peer.
# TYPE ferry_peer_tx_packets_total counter
ferry_peer_tx_packets_total{network="blue",peer="192.0.2.10"} 402
ferry_peer_tx_packets_total{network="red",peer="192.0.2.11"} 502
# HELP ferry_port_drops_total Packets dropped on a local port.
# TYPE ferry_port_drops_total counter
ferry_port_drops_total{network="blue",port="tap-a"} 3
ferry_port_drops_total{network="blue",port="tap-b"} 0
ferry_port_drops_total{network="red",port="tap-c"} 5
# HELP ferry_port_kernel_drops_total Packets the kernel dropped on a local port's device: direction tx, sent by the container but not read by ferry in time (queue full); rx, written by ferry and dropped by the kernel.
# TYPE ferry_port_kernel_drops_total counter
ferry_port_kernel_drops_total{direction="rx",network="blue",port="tap-a"} 0
ferry_port_kernel_drops_total{direction="tx",network="blue",port="tap-a"} 7
# HELP ferry_port_rx_bytes_total Bytes received from a local port.
# TYPE ferry_port_rx_bytes_total counter
ferry_port_rx_bytes_total{network="blue",port="tap-a"} 10100
ferry_port_rx_bytes_total{network="blue",port="tap-b"} 20100
ferry_port_rx_bytes_total{network="red",port="tap-c"} 1.234567e+06
# HELP ferry_port_rx_packets_total Packets received from a local port.
# TYPE ferry_port_rx_packets_total counter
ferry_port_rx_packets_total{network="blue",port="tap-a"} 101
ferry_port_rx_packets_total{network="blue",port="tap-b"} 201
ferry_port_rx_packets_total{network="red",port="tap-c"} 301
# HELP ferry_port_tx_bytes_total Bytes sent to a local port.
# TYPE ferry_port_tx_bytes_total counter
ferry_port_tx_bytes_total{network="blue",port="tap-a"} 10200
ferry_port_tx_bytes_total{network="blue",port="tap-b"} 20200
ferry_port_tx_bytes_total{network="red",port="tap-c"} 30200
# HELP ferry_port_tx_packets_total Packets sent to a local port.
# TYPE ferry_port_tx_packets_total counter
ferry_port_tx_packets_total{network="blue",port="tap-a"} 102
ferry_port_tx_packets_total{network="blue",port="tap-b"} 202
ferry_port_tx_packets_total{network="red",port="tap-c"} 302
# HELP ferry_stage_batches_total Batches processed by a pipeline stage.
# TYPE ferry_stage_batches_total counter
ferry_stage_batches_total{stage="bridge"} 10
ferry_stage_batches_total{stage="port-rx"} 10
# HELP ferry_stage_packets_total Packets processed by a pipeline stage.
# TYPE ferry_stage_packets_total counter
ferry_stage_packets_total{stage="bridge"} 990
ferry_stage_packets_total{stage="port-rx"} 1000
# HELP ferry_stage_seconds_total Time spent in a pipeline stage.
# TYPE ferry_stage_seconds_total counter
ferry_stage_seconds_total{stage="bridge"} 4.95e-05
ferry_stage_seconds_total{stage="port-rx"} 0.00025
# HELP ferry_uptime_seconds Seconds since the dataplane engine started.
# TYPE ferry_uptime_seconds gauge
ferry_uptime_seconds 5405
`

func TestCollectorMatchesBackend(t *testing.T) {
	c := NewCollector(ctltest.New(), testNode)
	if err := testutil.CollectAndCompare(c, strings.NewReader(wantFake)); err != nil {
		t.Error(err)
	}
}

func TestCollectorReadsBackendAtEachScrape(t *testing.T) {
	fake := ctltest.New()
	c := NewCollector(fake, testNode)
	if got := testutil.CollectAndCount(c, "ferry_drop_packets_total"); got != 2 {
		t.Fatalf("%d drop series, want 2", got)
	}
	fake.DropList = nil
	fake.Up = 2 * time.Hour
	if got := testutil.CollectAndCount(c, "ferry_drop_packets_total"); got != 0 {
		t.Errorf("%d drop series after the backend's drops went away, want 0", got)
	}
	const want = `
# HELP ferry_uptime_seconds Seconds since the dataplane engine started.
# TYPE ferry_uptime_seconds gauge
ferry_uptime_seconds 7200
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "ferry_uptime_seconds"); err != nil {
		t.Error(err)
	}
}

// A pedantic registry checks that every collected metric was described and
// that no series is duplicated; the linter checks Prometheus naming rules.
func TestCollectorIsConsistentAndLintClean(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(ctltest.New(), testNode)); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("pedantic gather: %v", err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// serve starts Serve on a free loopback port and returns its base URL.
func serve(t *testing.T, pprof bool, ready func() bool) string {
	t.Helper()
	srv, err := Serve("127.0.0.1:0", ctltest.New(), testNode, pprof, ready)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return "http://" + srv.Addr
}

func TestServeEndpoints(t *testing.T) {
	var ready atomic.Bool
	base := serve(t, false, ready.Load)

	status, body := get(t, base+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics status %d", status)
	}
	for _, want := range []string{
		`ferry_info{node="node-1",version="v1.2.3-test"} 1`,
		`ferry_port_rx_packets_total{network="blue",port="tap-a"} 101`,
		`ferry_drop_packets_total{reason="same-segment",stage="bridge"} 8`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	tests := []struct {
		name   string
		ready  bool
		path   string
		status int
		body   string
	}{
		{"healthz is ok before ready", false, "/healthz", http.StatusOK, "ok\n"},
		{"readyz is 503 before ready", false, "/readyz", http.StatusServiceUnavailable, "not ready\n"},
		{"readyz is 200 once ready", true, "/readyz", http.StatusOK, "ready\n"},
		{"healthz is ok when ready", true, "/healthz", http.StatusOK, "ok\n"},
		{"pprof is absent unless asked for", true, "/debug/pprof/", http.StatusNotFound, "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			status, body := get(t, base+tt.path)
			if status != tt.status || body != tt.body {
				t.Errorf("got %d %q, want %d %q", status, body, tt.status, tt.body)
			}
		})
	}
}

func TestServeNilReadyMeansReady(t *testing.T) {
	base := serve(t, false, nil)
	if status, body := get(t, base+"/readyz"); status != http.StatusOK || body != "ready\n" {
		t.Errorf("got %d %q, want 200 ready", status, body)
	}
}

func TestServePprofOnLoopback(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0"} {
		t.Run(listen, func(t *testing.T) {
			srv, err := Serve(listen, ctltest.New(), testNode, true, nil)
			if err != nil {
				if strings.Contains(listen, "::1") && !strings.Contains(err.Error(), "pprof") {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			status, body := get(t, "http://"+srv.Addr+"/debug/pprof/")
			if status != http.StatusOK || !strings.Contains(body, "goroutine") {
				t.Errorf("pprof index: %d %.80q", status, body)
			}
		})
	}
}

func TestServeRefusesPprofOffLoopback(t *testing.T) {
	srv, err := Serve("0.0.0.0:0", ctltest.New(), testNode, true, nil)
	if err == nil {
		srv.Close()
		t.Fatalf("Serve with pprof on %s succeeded", srv.Addr)
	}
	if !strings.Contains(err.Error(), "loopback") {
		t.Errorf("error %q does not explain the loopback rule", err)
	}
}

func TestServeBadListenAddress(t *testing.T) {
	if _, err := Serve("not an address", ctltest.New(), testNode, false, nil); err == nil {
		t.Fatal("Serve on a bad address succeeded")
	}
}
