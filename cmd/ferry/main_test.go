package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/ctl/ctltest"
	"github.com/ferry-overlay/ferry/dataplane"
)

var testInfo = ctl.NodeInfo{Name: "node-1", Version: "v1.2.3-test", WorkerCPUs: []int{1, 0}, TAPIO: ctl.TAPIOURing}

// startDaemon serves the control API over fake on a unix socket in a fresh
// directory and returns the socket path.
func startDaemon(t *testing.T, fake *ctltest.Backend) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ferrycli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "f.sock")
	ln, err := ctl.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ctl.NewServer(fake, testInfo), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

// ferry runs the CLI with args and returns its standard output and error.
func ferry(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// fields splits table output into rows of whitespace-separated cells.
func fields(out string) [][]string {
	var rows [][]string
	for line := range strings.Lines(out) {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func TestTables(t *testing.T) {
	sock := startDaemon(t, ctltest.New())
	tests := []struct {
		name string
		args []string
		// want are rows, as cells, that must appear in the output.
		want [][]string
	}{
		{"status", []string{"status"}, [][]string{
			{"node:", "node-1"}, {"version:", "v1.2.3-test"}, {"uptime:", "1h30m"}, {"workers:", "2"}, {"worker", "CPUs:", "1,0"}, {"TAP/TUN", "I/O:", "io_uring"},
			{"NETWORK", "VNI", "MTU", "PORTS", "PEERS", "FDB"},
			{"blue", "42", "1450", "2", "1", "2"},
			{"red", "7", "1400", "1", "1", "1"},
		}},
		{"ports with humanized bytes", []string{"ports"}, [][]string{
			{"PORT", "NETWORK", "RX", "PACKETS", "RX", "BYTES", "TX", "PACKETS", "TX", "BYTES", "DROPS", "KERNEL", "DROPS", "IN/OUT"},
			{"tap-a", "blue", "101", "10.1", "kB", "102", "10.2", "kB", "3", "7/0"},
			{"tap-c", "red", "301", "1.2", "MB", "302", "30.2", "kB", "5", "-"},
		}},
		{"peers with last heard", []string{"peers"}, [][]string{
			{"blue", "192.0.2.10", "401", "40.1", "kB", "402", "40.2", "kB", "0", "12s", "ago"},
			{"red", "192.0.2.11", "0", "0", "B", "502", "50.2", "kB", "0", "never"},
		}},
		{"fdb of all networks", []string{"fdb"}, [][]string{
			{"NETWORK", "MAC", "LOCATION", "TYPE", "AGE"},
			{"blue", "02:00:00:00:00:01", "port", "tap-a", "learned", "3s"},
			{"blue", "02:00:00:00:00:02", "peer", "192.0.2.10", "learned", "1m30s"},
			{"red", "02:00:00:00:00:03", "port", "tap-c", "static", "-"},
		}},
		{"runtime with one-decimal ratios", []string{"runtime"}, [][]string{
			{"STAGE", "PACKETS", "BATCHES", "PACKETS/BATCH", "NS/PACKET"},
			{"port-rx", "1000", "10", "100.0", "250.0"},
			{"bridge", "990", "10", "99.0", "50.0"},
		}},
		{"errors with help text", []string{"errors"}, [][]string{
			{"STAGE", "REASON", "PACKETS", "MEANING"},
			append([]string{"bridge", "same-segment", "8"}, strings.Fields("destination MAC was learned on the port the frame came from")...),
			append([]string{"port-rx", "runt", "2"}, strings.Fields("frame shorter than an Ethernet header")...),
		}},
		{"runtime per worker", []string{"runtime", "--per-worker"}, [][]string{
			{"WORKER", "STAGE", "PACKETS", "BATCHES", "PACKETS/BATCH", "NS/PACKET"},
			{"0", "port-rx", "600", "6", "100.0", "250.0"},
			{"1", "bridge", "396", "4", "99.0", "50.0"},
		}},
		{"runtime clear", []string{"runtime", "clear"}, [][]string{{"cleared", "counters:", "runtime", "and", "errors"}}},
		{"errors clear", []string{"errors", "clear"}, [][]string{{"cleared", "counters:", "runtime", "and", "errors"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := ferry(t, append([]string{"--socket", sock}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			got := fields(out)
			for _, want := range tt.want {
				if !slicesContain(got, want) {
					t.Errorf("output lacks row %q:\n%s", want, out)
				}
			}
		})
	}
}

func slicesContain(rows [][]string, want []string) bool {
	for _, r := range rows {
		if reflect.DeepEqual(r, want) {
			return true
		}
	}
	return false
}

// TestRuntimePerWorkerShowsIdleWorker: a worker that saw no packets gets
// one row saying so, not none, so an idle worker stands out.
func TestRuntimePerWorkerShowsIdleWorker(t *testing.T) {
	fake := ctltest.New()
	fake.WorkerList[1].Stages = []dataplane.StageStats{{Stage: "port-rx"}, {Stage: "bridge"}}
	sock := startDaemon(t, fake)
	out, err := ferry(t, "--socket", sock, "runtime", "--per-worker")
	if err != nil {
		t.Fatal(err)
	}
	rows := fields(out)
	if !slicesContain(rows, []string{"1", "(idle)", "0", "0", "-", "-"}) || !slicesContain(rows, []string{"0", "bridge", "594", "6", "99.0", "50.0"}) {
		t.Errorf("want worker 0's stages and worker 1 idle:\n%s", out)
	}
	for _, r := range rows {
		if len(r) > 1 && r[0] == "1" && r[1] != "(idle)" {
			t.Errorf("idle worker 1 has a stage row %q:\n%s", r, out)
		}
	}
}

func TestFDBOfOneNetwork(t *testing.T) {
	sock := startDaemon(t, ctltest.New())
	out, err := ferry(t, "--socket", sock, "fdb", "red")
	if err != nil {
		t.Fatal(err)
	}
	if rows := fields(out); len(rows) != 2 || rows[1][0] != "red" {
		t.Errorf("fdb red printed\n%s\nwant a header and one red entry", out)
	}
}

func TestErrorsTableWhenNothingDropped(t *testing.T) {
	fake := ctltest.New()
	fake.DropList = nil
	out, err := ferry(t, "--socket", startDaemon(t, fake), "errors")
	if err != nil {
		t.Fatal(err)
	}
	if out != "no packets dropped\n" {
		t.Errorf("got %q, want \"no packets dropped\\n\"", out)
	}
}

// -o json prints exactly what the API returned, so it decodes back into the
// shared types with the daemon's values.
func TestJSONOutputIsTheAPIStruct(t *testing.T) {
	fake := ctltest.New()
	sock := startDaemon(t, fake)
	tests := []struct {
		args []string
		want any
	}{
		{[]string{"status"}, ctl.Status{Version: testInfo.Version, Node: testInfo.Name, UptimeSeconds: fake.Up.Seconds(), Workers: 2, WorkerCPUs: []int{1, 0}, TAPIO: ctl.TAPIOURing, Networks: fake.NetworkList}},
		{[]string{"ports"}, fake.PortList},
		{[]string{"peers"}, fake.PeerList},
		{[]string{"fdb", "blue"}, fake.FDBEntries[:2]},
		{[]string{"runtime"}, fake.StageList},
		{[]string{"runtime", "--per-worker"}, fake.WorkerList},
		{[]string{"errors"}, fake.DropList},
		{[]string{"runtime", "clear"}, ctl.Cleared{Counters: []string{"runtime", "errors"}}},
		{[]string{"errors", "clear"}, ctl.Cleared{Counters: []string{"runtime", "errors"}}},
		{[]string{"version"}, versionInfo{Version: "dev", GoVersion: goVersion(), Platform: platform()}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := ferry(t, append([]string{"--socket", sock, "-o", "json"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(out, "{\n  \"") && !strings.HasPrefix(out, "[\n  {") {
				t.Errorf("output is not indented JSON:\n%s", out)
			}
			got := reflect.New(reflect.TypeOf(tt.want))
			dec := json.NewDecoder(strings.NewReader(out))
			dec.DisallowUnknownFields()
			if err := dec.Decode(got.Interface()); err != nil {
				t.Fatalf("decoding %s: %v", out, err)
			}
			if !reflect.DeepEqual(got.Elem().Interface(), tt.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got.Elem().Interface(), tt.want)
			}
		})
	}
}

func TestFailures(t *testing.T) {
	sock := startDaemon(t, ctltest.New())
	missing := filepath.Join(t.TempDir(), "none.sock")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"daemon not running", []string{"--socket", missing, "status"}, "cannot reach ferry at " + missing + ": is `ferry run` running?"},
		{"unknown network", []string{"--socket", sock, "fdb", "green"}, `no network "green"`},
		{"bad output format", []string{"--socket", sock, "-o", "yaml", "ports"}, `unknown output format "yaml" (want table or json)`},
		{"too many arguments", []string{"--socket", sock, "fdb", "a", "b"}, "accepts at most 1 arg(s), received 2"},
		{"unknown subcommand of runtime", []string{"--socket", sock, "runtime", "reset"}, `unknown command "reset" for "ferry runtime"`},
		{"missing config file", []string{"run", "--config", filepath.Join(t.TempDir(), "absent.yaml")}, "absent.yaml"},
		{"relay without an address", []string{"bench", "relay", "--local", "10.0.0.1", "--peer", "10.0.0.2"}, "relay: --address: "},
		{"relay with a bad peer", []string{"bench", "relay", "--address", "10.42.0.1/24", "--local", "10.0.0.1", "--peer", "host2"}, "relay: --peer: "},
		{"relay over IPv6", []string{"bench", "relay", "--address", "10.42.0.1/24", "--local", "fd00::1", "--peer", "fd00::2"}, "relay: the underlay addresses must be IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ferry(t, tt.args...)
			if err == nil {
				t.Fatal("succeeded")
			}
			if got := err.Error(); got != tt.want && !strings.Contains(got, tt.want) {
				t.Errorf("error %q, want %q", got, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestSocketDefaultFromEnvironment(t *testing.T) {
	tests := []struct {
		name, env, want string
	}{
		{"unset uses the daemon default", "", "/run/ferry/ferry.sock"},
		{"FERRY_SOCKET overrides", "/tmp/other.sock", "/tmp/other.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("FERRY_SOCKET", tt.env)
			if got := newRootCmd().PersistentFlags().Lookup("socket").DefValue; got != tt.want {
				t.Errorf("--socket default %q, want %q", got, tt.want)
			}
		})
	}
}

func TestVersionTable(t *testing.T) {
	out, err := ferry(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"ferry", "dev"}, {"go", goVersion(), platform()}}
	if got := fields(out); !reflect.DeepEqual(got, want) {
		t.Errorf("version printed %q, want rows %q", got, want)
	}
}
