package bench

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
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
}

// thisMachine describes the running machine. Fields it cannot learn are
// left empty.
func thisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = string(bytes.TrimRight(u.Release[:], "\x00"))
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
