package bench

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine describes where a benchmark ran, so a reader can tell whether
// two reports are comparable.
type Machine struct {
	// CPUs is the number of CPUs the process may use (runtime.NumCPU).
	CPUs int `json:"cpus"`
	// CPUModel is the first "model name" of /proc/cpuinfo, if any.
	CPUModel string `json:"cpu_model,omitempty"`
	// Kernel is the kernel release (uname -r).
	Kernel string `json:"kernel"`
	// Go is the Go version ferry was built with.
	Go string `json:"go"`
	// Load is the one-minute load average when the benchmark started
	// (/proc/loadavg): a busy machine makes every figure noisier.
	Load float64 `json:"load_average"`
}

// Busy reports whether the machine was busy when the benchmark started:
// more runnable tasks on average than it has CPUs.
func (m Machine) Busy() bool { return m.CPUs > 0 && m.Load > float64(m.CPUs) }

// thisMachine describes the running machine. Fields it cannot learn are
// left empty.
func thisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = string(bytes.TrimRight(u.Release[:], "\x00"))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.Load, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
