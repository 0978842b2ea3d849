package bench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBenchOverlaySmoke runs the overlay scenario for real, briefly, with
// ferry's path as the default l2 VXLAN network, as an l3 GRE one (a
// Linux bridge, routing through ferry's TUN device, raw IP sockets, two
// CUBIC streams, and the same build as a baseline, on a jumbo-frame
// underlay), and as l2 VXLAN with the containers talking IPv6 (every
// path's workloads between fd42::1 and fd42::2) beside the userspace
// floor (two `ferry bench relay`s): every path is built, with the
// containers' MTU that the underlay's and the path's encapsulation make,
// every workload yields a figure on each, the report records the network
// type, the binaries measured and their version, when it started, the TCP workload's
// streams and congestion control (the kernel's default when none is
// asked for), and nothing of the run is left behind.
func TestBenchOverlaySmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, links and TAP devices")
	}
	if err := CheckTools(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ferry")
	const version = "v9.9.9-smoke"
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", bin, "../cmd/ferry")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building ferry: %v\n%s", err, out)
	}
	def, err := os.ReadFile(ccDefaultFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, encap, mode string
		streams, flows    int
		cc, wantCC        string
		wantUDP           string
		reps              int
		workloads         []string
		underlayMTU       int
		wantMTU           map[string]int
		ipv6              bool
	}{
		{"l2 vxlan (default), two repetitions", "", "", 0, 0, "", strings.TrimSpace(string(def)), "UDP delivered (4 flows)", 2, nil,
			0, map[string]int{PathFerry: 1450, PathKernel: 1450}, false},
		{"l3 gre, two cubic streams, one UDP flow, one worker, no offloads, a baseline, no latency, jumbo frames", EncapGRE, ModeL3, 2, 1, "cubic", "cubic", "UDP delivered (1 flow)", 1, []string{"udp-rate", "tcp"},
			9000, map[string]int{PathFerry: 9000 - 24, PathKernel: 9000 - 50, PathBaseline: 9000 - 24}, false},
		{"l2 vxlan, containers over IPv6 (again after a restart), every workload, the userspace floor", "", "", 0, 0, "", strings.TrimSpace(string(def)), "UDP delivered (4 flows)", 2, nil,
			0, map[string]int{PathFerry: 1450, PathKernel: 1450, PathFloor: 1450}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := benchNamespaces(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var log strings.Builder
			_, floor := tc.wantMTU[PathFloor]
			opts := OverlayOptions{FerryBin: bin, Duration: time.Second, Reps: tc.reps, Size: 64, Encap: tc.encap, Mode: tc.mode, Streams: tc.streams, Flows: tc.flows, TCPCC: tc.cc, Workloads: tc.workloads, UnderlayMTU: tc.underlayMTU, IPv6: tc.ipv6, Floor: floor, Log: &log}
			if tc.flows == 1 {
				off := false
				opts.Workers, opts.Offload = 1, &off
				opts.Baseline = bin // the same build as its own baseline
			}
			rep, err := Overlay(ctx, opts)
			if err != nil {
				t.Fatalf("overlay: %v\nlog:\n%s", err, log.String())
			}
			want := opts.withDefaults()
			if rep.Options.UnderlayMTU != want.UnderlayMTU || !maps.Equal(rep.ContainerMTU, tc.wantMTU) {
				t.Errorf("report underlay MTU %d, container MTUs %v; want %d, %v", rep.Options.UnderlayMTU, rep.ContainerMTU, want.UnderlayMTU, tc.wantMTU)
			}
			// Every path's workloads ran between the addresses of the
			// family asked for.
			for path := range tc.wantMTU {
				mode := want.Mode
				if path == PathKernel || path == PathFloor {
					mode = ModeL2 // one l2 subnet whatever ferry's mode
				}
				a1, a2 := containerAddr(mode, 1), containerAddr(mode, 2)
				if tc.ipv6 {
					a1, a2 = containerAddr6(1), containerAddr6(2)
				}
				if line := fmt.Sprintf("the %s path's containers: %s → %s,", path, a1, a2); !strings.Contains(log.String(), line) {
					t.Errorf("log lacks %q:\n%s", line, log.String())
				}
			}
			if rep.Options.IPv6 != tc.ipv6 {
				t.Errorf("report options ipv6 %v, want %v", rep.Options.IPv6, tc.ipv6)
			}
			if rep.Options.Encap != want.Encap || rep.Options.Mode != want.Mode || rep.FerryPath != ferryPathDesc(want.Mode, want.Encap) {
				t.Errorf("report options encap %q mode %q ferry path %q, want %s %s", rep.Options.Encap, rep.Options.Mode, rep.FerryPath, want.Encap, want.Mode)
			}
			// The metrics of the workloads asked for (all by default), in
			// report order, and no step of another.
			var wantMetrics []string
			for _, d := range metricDefs {
				if w := workloadOf(d.Name); tc.workloads == nil || slices.Contains(tc.workloads, w) {
					wantMetrics = append(wantMetrics, d.Name)
				}
			}
			var gotMetrics []string
			for _, m := range rep.Metrics {
				gotMetrics = append(gotMetrics, m.Name)
			}
			if !slices.Equal(gotMetrics, wantMetrics) || len(rep.Errors) != 0 {
				t.Fatalf("report has metrics %v and errors %v, want %v and none", gotMetrics, rep.Errors, wantMetrics)
			}
			for _, w := range WorkloadNames() {
				ran := strings.Contains(log.String(), " ferry "+w+" (")
				if want := tc.workloads == nil || slices.Contains(tc.workloads, w); ran != want {
					t.Errorf("workload %s ran on ferry's path: %v, want %v:\n%s", w, ran, want, log.String())
				}
			}
			if len(rep.Options.Workloads) == 0 {
				t.Errorf("report options name no workloads, want those run")
			}
			if rep.Options.TCPCC != tc.wantCC || rep.Options.Streams != want.Streams || rep.Metrics[0].Title != tcpTitle(want.Streams, tc.wantCC) {
				t.Errorf("report TCP: cc %q, %d streams, title %q; want %q, %d", rep.Options.TCPCC, rep.Options.Streams, rep.Metrics[0].Title, tc.wantCC, want.Streams)
			}
			if rep.Options.Workers != want.Workers || *rep.Options.Offload != *want.Offload || rep.Options.Flows != want.Flows {
				t.Errorf("report workers %d offload %v flows %d, want %d %v %d", rep.Options.Workers, *rep.Options.Offload, rep.Options.Flows, want.Workers, *want.Offload, want.Flows)
			}
			for _, m := range rep.Metrics {
				if m.Name == MetricUDPRx && m.Title != tc.wantUDP {
					t.Errorf("UDP row titled %q, want %q", m.Title, tc.wantUDP)
				}
				if m.Name == MetricTCPRetrans {
					// A count that may well be 0 on either path.
					if len(m.Ferry.Samples) != tc.reps || len(m.Kernel.Samples) != tc.reps || m.Ferry.Median < 0 || m.Kernel.Median < 0 {
						t.Errorf("%s: ferry %+v kernel %+v: want %d counts per path", m.Name, m.Ferry, m.Kernel, tc.reps)
					}
					continue
				}
				if len(m.Ferry.Samples) != tc.reps || len(m.Kernel.Samples) != tc.reps || m.Ferry.Min <= 0 || m.Kernel.Min <= 0 || m.Ratio == nil ||
					m.RatioByRep == nil || len(m.RatioByRep.Samples) != tc.reps {
					t.Errorf("%s: ferry %+v kernel %+v ratio %v by repetition %+v: want %d positive samples per path and the ratios", m.Name, m.Ferry, m.Kernel, m.Ratio, m.RatioByRep, tc.reps)
				}
				switch {
				case !floor && (m.Floor != nil || rep.FloorPath != ""):
					t.Errorf("%s: a floor %+v (%q) in a run without one", m.Name, m.Floor, rep.FloorPath)
				case floor && (m.Floor == nil || len(m.Floor.Samples) != tc.reps || m.Floor.Min <= 0 || m.FloorRatio == nil || rep.FloorPath != floorPathDesc):
					t.Errorf("%s: floor %+v ratio %v path %q: want %d positive samples and ferry's ratio to them", m.Name, m.Floor, m.FloorRatio, rep.FloorPath, tc.reps)
				}
				switch {
				case opts.Baseline == "" && (m.Baseline != nil || rep.BaselinePath != ""):
					t.Errorf("%s: a baseline %+v (%q) in a run without one", m.Name, m.Baseline, rep.BaselinePath)
				case opts.Baseline != "" && (m.Baseline == nil || len(m.Baseline.Samples) != 1 || m.Baseline.Median <= 0 || m.BaselineRatio == nil):
					t.Errorf("%s: baseline %+v ratio %v: want one positive sample and ferry's ratio to it", m.Name, m.Baseline, m.BaselineRatio)
				}
			}
			described := "ferry at " + bin + " (" + version + ", go"
			if opts.Baseline != "" && !strings.HasPrefix(rep.BaselinePath, described) {
				t.Errorf("baseline path %q, want the binary and its version: %q…", rep.BaselinePath, described)
			}
			if !strings.HasPrefix(rep.FerryBinary, described) {
				t.Errorf("ferry binary %q, want %q…", rep.FerryBinary, described)
			}
			if age := time.Since(rep.Started); age < 2*time.Second || age > time.Minute {
				t.Errorf("report started %v ago (%v), want the start of this run", age, rep.Started)
			}
			// Ferry's daemons restart before each repetition after the
			// first (the default), the kernel's path has none.
			restarts := strings.Count(log.String(), "restarting the ferry path's daemons")
			if restarts != tc.reps-1 || strings.Contains(log.String(), "restarting the kernel path") || !*rep.Options.Restart {
				t.Errorf("%d restarts of ferry's path in %d repetitions (options restart %v), want %d and none of the kernel's:\n%s", restarts, tc.reps, *rep.Options.Restart, tc.reps-1, log.String())
			}
			if after := benchNamespaces(t); len(after) != len(before) {
				t.Errorf("namespaces left behind: before %v, after %v", before, after)
			}
			t.Logf("\n%s", log.String())
		})
	}
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

// TestBenchOverlayInterrupted interrupts `ferry bench overlay` (SIGINT)
// while a workload runs: it must exit with an error saying so, and leave
// nothing behind — no namespace of the run, no process still in one of
// its namespaces (a daemon or iperf3 holding a deleted namespace alive),
// no temporary directory.
func TestBenchOverlayInterrupted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, links and TAP devices")
	}
	if err := CheckTools(); err != nil {
		t.Skip(err)
	}
	bin := filepath.Join(t.TempDir(), "ferry")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ferry").CombinedOutput(); err != nil {
		t.Fatalf("building ferry: %v\n%s", err, out)
	}
	before := benchNamespaces(t)
	tmpBefore, _ := filepath.Glob(filepath.Join(os.TempDir(), "ferry-bench-*"))
	cmd := exec.Command(bin, "bench", "overlay", "--duration", "5s", "--reps", "2")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second // Wait gives up on the output pipe after the process ends
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	done := make(chan struct{}) // closed when the bench has exited, waitErr set
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})

	// Wait until both paths are built and the first workload runs, and
	// note the inodes of the run's namespaces meanwhile.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stderr.String(), "rep 1/2: ferry tcp") {
		if time.Now().After(deadline) {
			t.Fatalf("the first workload did not start within 60s:\n%s", stderr.String())
		}
		select {
		case <-done:
			t.Fatalf("bench exited before the workloads: %v\n%s", waitErr, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	inodes := map[uint64]string{}
	for _, name := range benchNamespaces(t) {
		if slices.Contains(before, name) {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(netnsDir, name), &st); err == nil {
			inodes[st.Ino] = name
		}
	}
	if len(inodes) < 8 {
		t.Fatalf("found %d namespaces of the run, want its 8: %v", len(inodes), inodes)
	}
	time.Sleep(time.Second) // into the TCP workload
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr == nil {
			t.Errorf("interrupted bench exited 0:\n%s", stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("bench did not exit within 60s of SIGINT:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "bench overlay: interrupted") {
		t.Errorf("the error does not say the run was interrupted:\n%s", stderr.String())
	}
	if after := benchNamespaces(t); len(after) != len(before) {
		t.Errorf("namespaces left behind: before %v, after %v", before, after)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range procs {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && inodes[st.Ino] != "" {
			cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(p)), "cmdline"))
			t.Errorf("process %s (%q) still runs in the run's namespace %s", filepath.Dir(filepath.Dir(p)), strings.ReplaceAll(string(cmdline), "\x00", " "), inodes[st.Ino])
		}
	}
	tmpAfter, _ := filepath.Glob(filepath.Join(os.TempDir(), "ferry-bench-*"))
	if len(tmpAfter) != len(tmpBefore) {
		t.Errorf("temporary directories before %v, after %v", tmpBefore, tmpAfter)
	}
	t.Logf("\n%s", stderr.String())
}
