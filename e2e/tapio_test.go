package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// ioURings counts the io_uring instances process pid holds open.
func ioURings(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(dir + "/" + fd.Name()); err == nil && target == "anon_inode:[io_uring]" {
			n++
		}
	}
	return n
}

// TestE2ETAPIOModes: a host whose TAP queues go through io_uring (the
// default) and a host with node.io_uring off carry traffic between their
// containers both ways; each says in its status how it does TAP I/O, and
// only the first holds io_urings: one for reads and one for writes on
// each of its port's two queues.
func TestE2ETAPIOModes(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireIOURing(t)
	// Host 2's daemon does its TAP I/O with a system call per frame.
	p := newFerryPair(t, "192.168.77.0/24", "10.42.0.4", func(host int, cfg string) string {
		if host == 2 {
			return strings.Replace(cfg, "  workers: 2\n", "  workers: 2\n  io_uring: false\n", 1)
		}
		return cfg
	})
	c1, c2, f1, f2 := p.c1, p.c2, p.f1, p.f2

	for _, tc := range []struct {
		d     *ferryd
		tapIO string
		rings int
	}{{f1, ctl.TAPIOURing, 4}, {f2, ctl.TAPIOSyscalls, 0}} {
		var st ctl.Status
		tc.d.ctlJSON(t, &st, "status")
		if st.TAPIO != tc.tapIO {
			t.Errorf("%s: status tap_io %q, want %q", tc.d.host.Name, st.TAPIO, tc.tapIO)
		}
		// `ip netns exec` execs ferry, so the command's PID is ferry's.
		if got := ioURings(t, tc.d.cmd.Process.Pid); got != tc.rings {
			t.Errorf("%s: holds %d io_urings, want %d", tc.d.host.Name, got, tc.rings)
		}
	}
	mustPing(t, c1, "10.42.0.4")
	mustPing(t, c2, "10.42.0.2")
	transfer(t, c1, c2, "10.42.0.4", 20<<20)
	transfer(t, c2, c1, "10.42.0.2", 20<<20)
}
