//go:build unix

package ctl

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/ctl/ctltest"
)

// startDaemon serves a server over fake on a real unix socket and returns
// a client for it.
func startDaemon(t *testing.T, fake *ctltest.Backend) *Client {
	t.Helper()
	path := socketPath(t)
	ln := listen(t, path)
	srv := &http.Server{Handler: NewServer(fake, testInfo), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	c := NewClient(path)
	t.Cleanup(c.hc.CloseIdleConnections)
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientRoundTrip(t *testing.T) {
	fake := ctltest.New()
	c := startDaemon(t, fake)
	ctx := testContext(t)
	both := Cleared{Counters: []string{"runtime", "errors"}}
	tests := []struct {
		name string
		call func() (any, error)
		want any
	}{
		{"Status", func() (any, error) { return c.Status(ctx) }, Status{
			Version: testInfo.Version, Node: testInfo.Name, UptimeSeconds: fake.Up.Seconds(),
			Workers: fake.NumWorkers, Networks: fake.NetworkList,
		}},
		{"Ports", func() (any, error) { return c.Ports(ctx) }, fake.PortList},
		{"Peers", func() (any, error) { return c.Peers(ctx) }, fake.PeerList},
		{"FDB of all networks", func() (any, error) { return c.FDB(ctx, "") }, fake.FDBEntries},
		{"FDB of one network", func() (any, error) { return c.FDB(ctx, "blue") }, fake.FDBEntries[:2]},
		{"Runtime", func() (any, error) { return c.Runtime(ctx) }, fake.StageList},
		{"WorkerRuntime", func() (any, error) { return c.WorkerRuntime(ctx) }, fake.WorkerList},
		{"Errors", func() (any, error) { return c.Errors(ctx) }, fake.DropList},
		{"ClearRuntime", func() (any, error) { return c.ClearRuntime(ctx) }, both},
		{"ClearErrors", func() (any, error) { return c.ClearErrors(ctx) }, both},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
	if n := fake.Clears(); n != 2 {
		t.Errorf("ClearCounters called %d times, want 2", n)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Uptime() != fake.Up {
		t.Errorf("Status.Uptime() = %v, want %v", st.Uptime(), fake.Up)
	}
}

func TestClientUnknownNetworkIsAPIError(t *testing.T) {
	c := startDaemon(t, ctltest.New())
	_, err := c.FDB(testContext(t), "green")
	apiErr, ok := errors.AsType[*APIError](err)
	if !ok {
		t.Fatalf("error %v (%T), want *APIError", err, err)
	}
	if apiErr.Status != http.StatusNotFound || apiErr.Message != `no network "green"` {
		t.Errorf("got %d %q, want 404 \"no network \\\"green\\\"\"", apiErr.Status, apiErr.Message)
	}
}

func TestClientDaemonNotRunning(t *testing.T) {
	stale := socketPath(t)
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false)
	dead.Close()
	t.Cleanup(func() { os.Remove(stale) })

	tests := []struct {
		name   string
		socket string
		errno  syscall.Errno
		why    string
	}{
		{"no socket file", socketPath(t), syscall.ENOENT, "is `ferry run` running?"},
		{"socket left by a dead daemon", stale, syscall.ECONNREFUSED, "stale socket, no daemon listens on it (is `ferry run` running?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.socket).Status(testContext(t))
			if _, ok := errors.AsType[*UnreachableError](err); !ok {
				t.Fatalf("error %v (%T), want *UnreachableError", err, err)
			}
			if want := "cannot reach ferry at " + tt.socket + ": " + tt.why; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if !errors.Is(err, tt.errno) {
				t.Errorf("error does not wrap %v", tt.errno)
			}
		})
	}
}

func TestUnreachableErrorExplainsPermission(t *testing.T) {
	err := &UnreachableError{Socket: "/run/ferry/ferry.sock", Err: &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}}
	want := "cannot reach ferry at /run/ferry/ferry.sock: permission denied (the socket is mode 0600; run as its owner, usually root)"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}
