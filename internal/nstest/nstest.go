// Package nstest builds simulated hosts and containers out of real Linux
// network namespaces for ferry's end-to-end tests.
//
// Every object the package creates (namespaces, veth pairs, bridges, VXLAN
// devices) gets a name that is unique to the test run, is registered for
// deletion with t.Cleanup — so it is removed even when the test fails — and is
// deleted by that exact name, never by pattern. Cleanups run in reverse order
// of creation, so links inside a namespace are deleted before the namespace.
//
// A nil *NS stands for the namespace the test process is running in (normally
// the host's root namespace); every helper that takes an *NS accepts nil.
// Objects created there are visible to the whole machine, so tests should
// prefer namespaces of their own and give root-namespace links names from
// [Name].
//
// Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); call
// [RequireRoot] first. Helpers report setup failures with t.Fatalf, so they
// must be called from the test's goroutine; the traffic helpers ([Ping],
// [TCPTransfer], [UDPBroadcast]) return errors instead, because their failure
// is usually the outcome the test asserts on.
package nstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ferry-overlay/ferry/internal/uring"
)

// maxIfName is the longest Linux interface name (IFNAMSIZ minus the NUL).
const maxIfName = 15

// suffixLen is the number of random hex characters [Name] appends.
const suffixLen = 6

// netnsDir is where named namespaces are bind-mounted, as by `ip netns add`.
const netnsDir = "/var/run/netns"

// registry remembers what this process created, for [Leftovers].
var registry struct {
	sync.Mutex
	issued    map[string]bool // every name handed out by Name
	netns     []string        // named namespaces created by NewNS
	rootLinks []string        // links created in the process's own namespace
}

// RequireRoot skips the test unless it runs as root, which creating
// namespaces and links requires.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and links")
	}
}

// RequireIOURing skips the test where the kernel refuses io_uring
// (kernel.io_uring_disabled, a seccomp profile), naming the reason.
func RequireIOURing(t testing.TB) {
	t.Helper()
	if err := uring.Available(); err != nil {
		t.Skipf("io_uring is unavailable here: %v", err)
	}
}

// Name returns prefix followed by a random suffix of six hex characters. The
// result is unique within the process and, with high probability, across the
// test binaries that `go test ./...` runs in parallel, and it is a valid Linux
// interface name: prefix may be at most 9 characters, or the test fails.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	n, err := name(prefix)
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	return n
}

// name implements [Name] without a testing.TB, so its failure is testable.
func name(prefix string) (string, error) {
	if len(prefix) > maxIfName-suffixLen {
		return "", fmt.Errorf("name prefix %q is longer than %d characters", prefix, maxIfName-suffixLen)
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.issued == nil {
		registry.issued = make(map[string]bool)
	}
	for {
		var b [suffixLen / 2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("random name suffix: %w", err)
		}
		n := prefix + hex.EncodeToString(b[:])
		if !registry.issued[n] {
			registry.issued[n] = true
			return n, nil
		}
	}
}

// Leftovers returns the namespaces and root-namespace links that this process
// created through the package and that still exist. After every test's
// cleanups have run it should be empty; a TestMain can call it after m.Run to
// catch leaks. It is safe for concurrent use.
func Leftovers() []string {
	nsNames, links := created()
	var left []string
	for _, n := range nsNames {
		if _, err := os.Stat(filepath.Join(netnsDir, n)); err == nil {
			left = append(left, "netns "+n)
		}
	}
	for _, l := range links {
		if _, err := netlink.LinkByName(l); err == nil {
			left = append(left, "link "+l)
		}
	}
	return left
}

// created returns copies of the namespace and root-namespace link names that
// this process created.
func created() (nsNames, rootLinks []string) {
	registry.Lock()
	defer registry.Unlock()
	return append([]string(nil), registry.netns...), append([]string(nil), registry.rootLinks...)
}

// noteRootLink records a link created in the process's own namespace.
func noteRootLink(name string) {
	registry.Lock()
	defer registry.Unlock()
	registry.rootLinks = append(registry.rootLinks, name)
}

// NS is a named network namespace, created by [NewNS] and deleted in the
// creating test's cleanup. A nil *NS means the test process's own namespace.
// An NS holds no open file descriptors; its methods open the namespace by
// Path when they need it, so an NS may be used from any goroutine.
type NS struct {
	// Name is the namespace's name, as shown by `ip netns list`.
	Name string
	// Path is the namespace's bind mount, /var/run/netns/Name.
	Path string
}

// NewNS creates a named network namespace (like `ip netns add`) whose name is
// prefix plus a random suffix (see [Name]), brings its loopback up, and
// registers its deletion with t.Cleanup.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	RequireRoot(t)
	n := &NS{Name: Name(t, prefix)}
	n.Path = filepath.Join(netnsDir, n.Name)
	if err := createNamed(n.Name); err != nil {
		t.Fatalf("nstest: create netns %s: %v", n.Name, err)
	}
	registry.Lock()
	registry.netns = append(registry.netns, n.Name)
	registry.Unlock()
	t.Cleanup(func() {
		if err := netns.DeleteNamed(n.Name); err != nil {
			t.Errorf("nstest: delete netns %s: %v", n.Name, err)
		}
	})
	h := n.handle(t)
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("nstest: netns %s: bring lo up: %v", n.Name, err)
	}
	return n
}

// createNamed creates and bind-mounts a namespace without leaving any thread
// of the process in it.
func createNamed(name string) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current netns: %w", err)
	}
	defer orig.Close()
	nsh, err := netns.NewNamed(name)
	if nsh.IsOpen() {
		nsh.Close()
	}
	// NewNamed may have switched the thread even when it failed later on.
	if rerr := netns.Set(orig); rerr != nil {
		// The thread is stuck in the wrong namespace: keep it locked so the
		// runtime discards it when this goroutine exits.
		return errors.Join(err, fmt.Errorf("restore netns: %w", rerr))
	}
	runtime.UnlockOSThread()
	return err
}

// Do runs fn on the calling goroutine with its OS thread switched into the
// namespace, then switches back. Sockets and links that fn creates belong to
// the namespace and stay there afterwards; they may then be used from any
// goroutine. Goroutines that fn starts do not run in the namespace. If the
// thread cannot be switched back, Do returns an error and leaves the thread
// locked to the goroutine, so the runtime discards it when the goroutine
// exits and no other goroutine runs in the wrong namespace. On a nil *NS, Do
// just calls fn.
func (n *NS) Do(fn func() error) error {
	if n == nil {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: open current netns: %w", n.Name, err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(n.Path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: open: %w", n.Name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: enter: %w", n.Name, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(fnErr, fmt.Errorf("netns %s: restore original netns: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Exec runs the command name with args inside the namespace (through `ip
// netns exec`, or directly for a nil *NS) and returns its combined stdout and
// stderr. The command is killed when timeout passes, and Exec then returns an
// error that says so. It is meant for tools such as ping, tcpdump or iperf3
// in tests; the product itself never shells out to ip.
func (n *NS) Exec(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append([]string{name}, args...)
	if n != nil {
		argv = append([]string{"ip", "netns", "exec", n.Name}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Do not wait forever for grandchildren that keep the output pipe open.
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s: %q timed out after %v: %w", n, argv, timeout, ctx.Err())
	}
	if err != nil {
		return string(out), fmt.Errorf("%s: %q: %w", n, argv, err)
	}
	return string(out), nil
}

// String names the namespace for messages: its name, or "current netns" for
// a nil *NS.
func (n *NS) String() string {
	if n == nil {
		return "current netns"
	}
	return "netns " + n.Name
}

// Handle returns a netlink handle bound to the namespace (for a nil *NS, to
// the namespace of the calling thread). It is closed in t.Cleanup. A Handle
// may be used from any goroutine, but not concurrently.
func (n *NS) Handle(t testing.TB) *netlink.Handle {
	t.Helper()
	h := n.handle(t)
	t.Cleanup(h.Close)
	return h
}

// handle returns a netlink handle for the namespace that the caller must
// close.
func (n *NS) handle(t testing.TB) *netlink.Handle {
	t.Helper()
	if n == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			t.Fatalf("nstest: netlink handle: %v", err)
		}
		return h
	}
	fd, err := netns.GetFromPath(n.Path)
	if err != nil {
		t.Fatalf("nstest: netns %s: open: %v", n.Name, err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		t.Fatalf("nstest: netns %s: netlink handle: %v", n.Name, err)
	}
	return h
}
