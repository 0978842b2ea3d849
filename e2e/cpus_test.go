package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// threadCPUs returns, for each thread of process pid, the CPUs it may run
// on as the kernel lists them (Cpus_allowed_list, such as "0-1" or "1").
func threadCPUs(t *testing.T, pid int) []string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var lists []string
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				lists = append(lists, strings.TrimSpace(v))
			}
		}
	}
	return lists
}

// TestE2EWorkersPinned: with node.cpus, each worker thread runs on the CPU
// the list gives it (worker i on cpus[i mod len]) and every other thread of
// the daemon keeps the whole set; traffic between two hosts flows as
// before. A CPU ferry may not run on is refused at start, naming the entry,
// before any device exists.
func TestE2EWorkersPinned(t *testing.T) {
	nstest.RequireRoot(t)
	allowed, err := dataplane.AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(allowed) < 2 {
		t.Skipf("needs two CPUs to tell pinned workers apart; this process may run on %v", allowed)
	}
	first, last := allowed[0], allowed[len(allowed)-1]
	pin := func(cfg string) string {
		return strings.Replace(cfg, "  workers: 2\n", fmt.Sprintf("  workers: 2\n  cpus: [%d, %d]\n", last, first), 1)
	}
	p := newFerryPair(t, "192.168.77.0/24", "10.42.0.4", func(_ int, cfg string) string { return pin(cfg) })
	c1, c2, f1 := p.c1, p.c2, p.f1

	// `ip netns exec` execs ferry, so the command's PID is ferry's.
	lists := threadCPUs(t, f1.cmd.Process.Pid)
	whole := threadCPUs(t, os.Getpid())[0] // this test's own threads are not pinned
	pinned := map[string]int{}
	for _, l := range lists {
		if l != whole {
			pinned[l]++
		}
	}
	want := map[string]int{fmt.Sprint(last): 1, fmt.Sprint(first): 1}
	if fmt.Sprint(pinned) != fmt.Sprint(want) {
		t.Errorf("threads of ferry by CPUs allowed: %v; want one thread pinned to each of CPU %d and %d, the rest on %s", lists, last, first, whole)
	}
	var st ctl.Status
	f1.ctlJSON(t, &st, "status")
	if !slices.Equal(st.WorkerCPUs, []int{last, first}) {
		t.Errorf("status worker_cpus = %v, want [%d %d]", st.WorkerCPUs, last, first)
	}
	mustPing(t, c1, "10.42.0.4")
	transfer(t, c1, c2, "10.42.0.4", 20<<20)

	// A CPU outside this process's set: refused before anything exists.
	var outside int
	for outside = 0; slices.Contains(allowed, outside); outside++ {
	}
	host := nstest.NewNS(t, "cpu")
	tap := nstest.Name(t, "tcpu")
	dir := t.TempDir()
	sock := filepath.Join(dir, "ferry.sock")
	cfg := fmt.Sprintf(`node: {name: h, workers: 2, cpus: [%d, %d]}
control: {socket: %s}
metrics: {listen: "off"}
networks:
  - {name: blue, vni: 42, ports: [{name: %s}]}
`, first, outside, sock, tap)
	path := filepath.Join(dir, "cpus.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", host.Name, ferryBin, "run", "--config", path).CombinedOutput()
	if err == nil {
		t.Fatalf("ferry started with node.cpus naming CPU %d, which it may not run on:\n%s", outside, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, fmt.Sprintf("node.cpus[1]: CPU %d is not one ferry may run on", outside)) {
		t.Errorf("error does not name node.cpus[1]:\n%s", out)
	}
	if linkIn(t, host, tap) {
		t.Errorf("ferry created its port despite the bad CPU")
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("ferry created its control socket despite the bad CPU")
	}
}
