package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchOverlaySmoke runs the overlay scenario for real, briefly: both
// paths are built, every workload yields a figure on both, and nothing of
// the run is left behind.
func TestBenchOverlaySmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, links and TAP devices")
	}
	if err := CheckTools(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-o", bin, "../cmd/ferry")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building ferry: %v\n%s", err, out)
	}
	before := benchNamespaces(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var log strings.Builder
	rep, err := Overlay(ctx, OverlayOptions{FerryBin: bin, Duration: time.Second, Reps: 1, Size: 64, Log: &log})
	if err != nil {
		t.Fatalf("overlay: %v\nlog:\n%s", err, log.String())
	}
	if len(rep.Metrics) != len(metricDefs) || len(rep.Errors) != 0 {
		t.Fatalf("report has %d metrics and errors %v", len(rep.Metrics), rep.Errors)
	}
	for _, m := range rep.Metrics {
		if len(m.Ferry.Samples) != 1 || len(m.Kernel.Samples) != 1 || m.Ferry.Median <= 0 || m.Kernel.Median <= 0 || m.Ratio == nil {
			t.Errorf("%s: ferry %+v kernel %+v ratio %v: want one positive sample per path and a ratio", m.Name, m.Ferry, m.Kernel, m.Ratio)
		}
	}
	if after := benchNamespaces(t); len(after) != len(before) {
		t.Errorf("namespaces left behind: before %v, after %v", before, after)
	}
	t.Logf("\n%s", log.String())
}

// benchNamespaces lists the named namespaces of overlay runs.
func benchNamespaces(t *testing.T) []string {
	t.Helper()
	es, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "ferrybench-") {
			out = append(out, e.Name())
		}
	}
	return out
}
