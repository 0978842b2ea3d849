package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestContainerOf(t *testing.T) {
	// FLANNEL_SUBNET is the bridge's address, the subnet's first.
	if got := containerOf(netip.MustParsePrefix("10.42.82.1/24")); got != netip.MustParseAddr("10.42.82.2") {
		t.Errorf("container address %s, want 10.42.82.2", got)
	}
}

func TestFlannelNetConfigIsFlannelJSON(t *testing.T) {
	var cfg struct {
		Network   string
		SubnetLen int
		Backend   struct{ Type string }
	}
	if err := json.Unmarshal([]byte(flannelNetConfig()), &cfg); err != nil {
		t.Fatalf("%s: %v", flannelNetConfig(), err)
	}
	if cfg.Network != l3Network.String() || cfg.SubnetLen != 24 || cfg.Backend.Type != "udp" {
		t.Errorf("config %+v, want network %s, /24 per host, udp backend", cfg, l3Network)
	}
}

// TestFlannelToolsNameWhatIsMissing checks that a flanneld path that is not
// an executable, and a missing etcd, are each named before anything is
// built.
func TestFlannelToolsNameWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "flanneld")
	if err := flannelTools(missing); err == nil || !strings.Contains(err.Error(), "flanneld "+missing) {
		t.Errorf("missing flanneld: error %v, want it named", err)
	}
	if err := os.WriteFile(missing, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir) // no etcd here
	var mt *MissingTool
	if err := flannelTools(missing); !errors.As(err, &mt) || mt.Tool != "etcd" || !strings.Contains(err.Error(), "apt-get install -y etcd-server") {
		t.Errorf("missing etcd: error %v, want a MissingTool naming etcd-server", err)
	}
}

func TestPathOrderRotates(t *testing.T) {
	names := []string{PathFerry, PathKernel, PathFlannel}
	first := map[string]int{}
	for rep := range 6 {
		o := pathOrder(names, rep)
		if len(o) != 3 || !slices.Contains(o, PathFerry) || !slices.Contains(o, PathKernel) || !slices.Contains(o, PathFlannel) {
			t.Fatalf("rep %d order %v: want every path once", rep, o)
		}
		first[o[0]]++
	}
	for _, n := range names {
		if first[n] != 2 {
			t.Errorf("%s went first %d times in 6 reps, want 2 (%v)", n, first[n], first)
		}
	}
	if o := pathOrder([]string{PathFerry, PathKernel}, 1); !slices.Equal(o, []string{PathKernel, PathFerry}) {
		t.Errorf("two paths, rep 1: %v, want them alternated", o)
	}
	if !slices.Equal(names, []string{PathFerry, PathKernel, PathFlannel}) {
		t.Errorf("pathOrder changed its argument: %v", names)
	}
}

// TestBenchOverlayFlannel runs the overlay scenario with flannel's udp
// backend as the third path, when FERRY_FLANNELD names a flanneld binary
// (flannel is not something ferry ships or CI installs): every workload
// yields a figure on all three paths, the report says what the flannel path
// is, and nothing of the run is left behind.
func TestBenchOverlayFlannel(t *testing.T) {
	flanneld := os.Getenv("FERRY_FLANNELD")
	if flanneld == "" {
		t.Skip("set FERRY_FLANNELD to a flanneld binary (built from github.com/flannel-io/flannel) to run flannel's udp backend beside ferry")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, links and TAP devices")
	}
	if err := CheckTools(); err != nil {
		t.Skip(err)
	}
	if err := flannelTools(flanneld); err != nil {
		t.Skip(err)
	}
	bin := filepath.Join(t.TempDir(), "ferry")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ferry").CombinedOutput(); err != nil {
		t.Fatalf("building ferry: %v\n%s", err, out)
	}
	before := benchNamespaces(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var log strings.Builder
	rep, err := Overlay(ctx, OverlayOptions{FerryBin: bin, Duration: time.Second, Reps: 1, Size: 64, Mode: ModeL3, Encap: EncapUDP, Flanneld: flanneld, Log: &log})
	if err != nil {
		t.Fatalf("overlay: %v\nlog:\n%s", err, log.String())
	}
	if rep.FlannelPath != flannelPathDesc || len(rep.Errors) != 0 {
		t.Errorf("flannel path %q, errors %v", rep.FlannelPath, rep.Errors)
	}
	for _, m := range rep.Metrics {
		if m.Flannel == nil || len(m.Flannel.Samples) != 1 {
			t.Errorf("%s: flannel %+v, want one sample", m.Name, m.Flannel)
			continue
		}
		if m.Name != MetricTCPRetrans && (m.Flannel.Median <= 0 || m.FlannelRatio == nil) {
			t.Errorf("%s: flannel %+v ratio %v, want a positive figure and ferry's ratio to it", m.Name, *m.Flannel, m.FlannelRatio)
		}
	}
	if after := benchNamespaces(t); len(after) != len(before) {
		t.Errorf("namespaces left behind: before %v, after %v", before, after)
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	t.Logf("\n%s\n%s", table.String(), log.String())
}

func TestDescribeFerry(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "ferry")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nprintf 'ferry  v0.9.1\\ngo     go1.26.8 linux/amd64\\n'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := describeFerry(t.Context(), fake)
	if err != nil {
		t.Fatal(err)
	}
	if want := "ferry at " + fake + " (v0.9.1, go1.26.8 linux/amd64)"; got != want {
		t.Errorf("describeFerry = %q, want %q", got, want)
	}
	broken := filepath.Join(dir, "broken")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho no such command >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := describeFerry(t.Context(), broken); err == nil || !strings.Contains(err.Error(), "no such command") {
		t.Errorf("a binary whose version command fails: error %v, want its output", err)
	}
}
