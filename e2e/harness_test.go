// Package e2e runs ferry end to end: real ferry processes in network
// namespaces that stand in for hosts, real TAP devices moved into container
// namespaces, real kernel TCP/UDP stacks at both ends, and the kernel's own
// VXLAN device as the interop peer. Tests are named TestE2E*, need root, and
// skip without it.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// ferryBin is the ferry binary under test: $FERRY_BIN (make e2e builds
// it), or one built once for all tests.
var ferryBin string

// raceBuild says ferryBin was built with -race ($FERRY_E2E_RACE, set by
// make e2e-race): several times slower, so a test whose load is paced for
// ferry's own readers (a capture) paces it more gently.
var raceBuild = os.Getenv("FERRY_E2E_RACE") != ""

func TestMain(m *testing.M) {
	if bin := os.Getenv("FERRY_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ferryBin = abs
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "ferry-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ferryBin = filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-o", ferryBin, "../cmd/ferry")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ferry:", err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ferryd is one running ferry daemon in a host namespace.
type ferryd struct {
	host   *nstest.Host
	socket string
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    bytes.Buffer
	done   chan struct{}
}

// syncWriter serialises writes to the daemon log buffer.
type syncWriter struct{ d *ferryd }

func (w syncWriter) Write(p []byte) (int, error) {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	return w.d.log.Write(p)
}

// startFerry writes cfg to a file and runs `ferry run` inside host's
// namespace. It waits until the control socket answers, and stops the
// daemon (SIGTERM, then SIGKILL after 10 s) in t.Cleanup, checking that it
// exited cleanly.
func startFerry(t *testing.T, host *nstest.Host, cfg string) *ferryd {
	t.Helper()
	dir := t.TempDir()
	d := &ferryd{host: host, socket: filepath.Join(dir, "ferry.sock"), done: make(chan struct{})}
	cfg = strings.ReplaceAll(cfg, "SOCKET", d.socket)
	path := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command("ip", "netns", "exec", host.Name, ferryBin, "run", "--config", path)
	d.cmd.Stdout, d.cmd.Stderr = syncWriter{d}, syncWriter{d}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting ferry in %s: %v", host.Name, err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := d.ctl("status"); err == nil {
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("ferry in %s exited during start: %v\n%s", host.Name, d.cmd.ProcessState, d.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry in %s did not answer on its control socket within 15s\n%s", host.Name, d.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *ferryd) logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// stop ends the daemon by its PID and checks it exited with status 0.
func (d *ferryd) stop(t *testing.T) {
	select {
	case <-d.done:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
			t.Errorf("ferry in %s ignored SIGTERM for 10s\n%s", d.host.Name, d.logs())
			return
		}
	}
	if !d.cmd.ProcessState.Success() {
		t.Errorf("ferry in %s exited with %v\n%s", d.host.Name, d.cmd.ProcessState, d.logs())
	}
	if t.Failed() {
		t.Logf("ferry log from %s:\n%s", d.host.Name, d.logs())
	}
}

// ctl runs a ferry CLI command against this daemon and returns its output.
func (d *ferryd) ctl(args ...string) (string, error) {
	args = append([]string{"--socket", d.socket}, args...)
	out, err := exec.Command(ferryBin, args...).CombinedOutput()
	return string(out), err
}

// ctlJSON runs a CLI command with -o json and decodes its output into v.
func (d *ferryd) ctlJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := d.ctl(append(args, "-o", "json")...)
	if err != nil {
		t.Fatalf("ferry %v: %v\n%s", args, err, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("ferry %v -o json: %v\n%s", args, err, out)
	}
}

func (d *ferryd) fdb(t *testing.T) []dataplane.FDBEntry {
	var es []dataplane.FDBEntry
	d.ctlJSON(t, &es, "fdb")
	return es
}

func (d *ferryd) peers(t *testing.T) []dataplane.PeerInfo {
	var ps []dataplane.PeerInfo
	d.ctlJSON(t, &ps, "peers")
	return ps
}

// portSpec is one container port in a generated config.
type portSpec struct {
	name, netns, addr, mac string
}

// l2Config renders a one-network config for a host.
func l2Config(host *nstest.Host, vni uint32, peers []netip.Addr, ports []portSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  name: %s\n  underlay: %s\n  workers: 2\n%scontrol:\n  socket: SOCKET\nmetrics:\n  listen: \"\"\n", host.Name, host.Addr, offloadKey())
	fmt.Fprintf(&b, "networks:\n  - name: blue\n    vni: %d\n    subnet: 10.42.0.0/24\n    peers: [", vni)
	for i, p := range peers {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.String())
	}
	b.WriteString("]\n    ports:\n")
	for _, p := range ports {
		fmt.Fprintf(&b, "      - {name: %s, netns: %s, ifname: eth0, address: %s, mac: \"%s\"}\n", p.name, p.netns, p.addr, p.mac)
	}
	return b.String()
}

// offloadKey returns the node.offload line chosen by the environment
// variable FERRY_E2E_OFFLOAD ("true" or "false"; the Makefile runs the e2e
// tests once with each), or nothing, leaving the config default, when it is
// unset.
func offloadKey() string {
	switch v := os.Getenv("FERRY_E2E_OFFLOAD"); v {
	case "true", "false":
		return "  offload: " + v + "\n"
	default:
		return ""
	}
}

// ferryPair is the end-to-end tests' usual rig: two ferry hosts on one
// underlay, each with one container on an l2 network with VNI 42.
type ferryPair struct {
	ul     *nstest.Underlay
	h1, h2 *nstest.Host
	c1, c2 *nstest.NS
	f1, f2 *ferryd
}

// newFerryPair builds a ferryPair on an underlay of prefix: container c1
// at 10.42.0.2 (macC1a) behind h1, c2 at addr2 (macC2a) behind h2. edit,
// if not nil, rewrites host i's (1 or 2) config before its daemon starts:
// another encapsulation, pinned workers.
func newFerryPair(t *testing.T, prefix, addr2 string, edit func(host int, cfg string) string) *ferryPair {
	t.Helper()
	nstest.RequireRoot(t)
	p := &ferryPair{ul: nstest.NewUnderlay(t, netip.MustParsePrefix(prefix))}
	p.h1, p.h2 = p.ul.AddHost(t, "h1"), p.ul.AddHost(t, "h2")
	p.c1, p.c2 = nstest.NewNS(t, "c1"), nstest.NewNS(t, "c2")
	cfg1 := l2Config(p.h1, 42, []netip.Addr{p.h2.Addr}, []portSpec{{nstest.Name(t, "t1"), p.c1.Name, "10.42.0.2/24", macC1a}})
	cfg2 := l2Config(p.h2, 42, []netip.Addr{p.h1.Addr}, []portSpec{{nstest.Name(t, "t2"), p.c2.Name, addr2 + "/24", macC2a}})
	if edit != nil {
		cfg1, cfg2 = edit(1, cfg1), edit(2, cfg2)
	}
	p.f1, p.f2 = startFerry(t, p.h1, cfg1), startFerry(t, p.h2, cfg2)
	return p
}

// offloadsOn reports whether the daemons run with offloads: the config
// default, unless FERRY_E2E_OFFLOAD is "false".
func offloadsOn() bool { return os.Getenv("FERRY_E2E_OFFLOAD") != "false" }

// clearRuntime zeroes the daemon's per-stage counters (ferry runtime clear).
func (d *ferryd) clearRuntime(t *testing.T) {
	t.Helper()
	if out, err := d.ctl("runtime", "clear"); err != nil {
		t.Fatalf("runtime clear: %v %s", err, out)
	}
}

// stagePackets returns the packets each stage of the daemon counted
// (ferry runtime), by stage name.
func (d *ferryd) stagePackets(t *testing.T) map[string]uint64 {
	t.Helper()
	var st []dataplane.StageStats
	d.ctlJSON(t, &st, "runtime")
	got := map[string]uint64{}
	for _, s := range st {
		got[s.Stage] = s.Packets
	}
	return got
}

// checkNoDrops fails the test for every drop the daemon counted (ferry
// errors) at one of stages.
func (d *ferryd) checkNoDrops(t *testing.T, stages ...string) {
	t.Helper()
	var errs []dataplane.DropStats
	d.ctlJSON(t, &errs, "errors")
	for _, e := range errs {
		if slices.Contains(stages, e.Stage) {
			t.Errorf("%s: drops at %s/%s: %d, want none", d.host.Name, e.Stage, e.Reason, e.Packets)
		}
	}
}

// mustPing pings and fails the test on loss of every reply.
func mustPing(t *testing.T, from *nstest.NS, to string) {
	t.Helper()
	if err := nstest.Ping(t, from, netip.MustParseAddr(to), 3); err != nil {
		t.Fatal(err)
	}
}

// transfer moves size bytes over TCP and fails unless the hashes match.
func transfer(t *testing.T, from, to *nstest.NS, to4 string, size int64) {
	t.Helper()
	transferVia(t, from, to, to4, to4, size)
}

// transferVia is transfer to port 5201 of to4 in to, which the sender
// reaches by dialing port 5201 of dial4 (a published port).
func transferVia(t *testing.T, from, to *nstest.NS, to4, dial4 string, size int64) {
	t.Helper()
	start := time.Now()
	addr := netip.AddrPortFrom(netip.MustParseAddr(to4), 5201)
	dial := netip.AddrPortFrom(netip.MustParseAddr(dial4), 5201)
	sent, got, err := nstest.TCPTransferVia(t, from, to, addr, dial, size, 120*time.Second)
	if err != nil {
		t.Fatalf("TCP transfer of %d bytes to %s: %v", size, dial4, err)
	}
	if sent != got {
		t.Fatalf("TCP transfer to %s: received data hash %x != sent %x", dial4, got, sent)
	}
	el := time.Since(start)
	t.Logf("TCP %d MB to %s intact in %v (%.0f Mbit/s)", size>>20, dial4, el.Round(time.Millisecond), float64(size)*8/el.Seconds()/1e6)
}

// neighbourMAC returns the MAC the namespace's kernel resolved for ip.
func neighbourMAC(t *testing.T, ns *nstest.NS, ip string) string {
	t.Helper()
	out, err := ns.Exec(t, 5*time.Second, "ip", "neigh", "show", ip)
	if err != nil {
		t.Fatalf("ip neigh: %v %s", err, out)
	}
	f := strings.Fields(out)
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}
