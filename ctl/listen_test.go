//go:build unix

package ctl

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// socketPath returns a socket path in a fresh directory, kept short because
// unix socket paths are limited to 107 bytes.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ferryctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "f.sock")
}

func listen(t *testing.T, path string) net.Listener {
	t.Helper()
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen(%s): %v", path, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// accepts reports whether a connection to path reaches ln.
func accepts(t *testing.T, ln net.Listener, path string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dialing %s: %v", path, err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("accept: %v", err)
	}
}

func TestListenSocketIsMode0600(t *testing.T) {
	path := socketPath(t)
	listen(t, path)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		t.Errorf("%s is %v, want a socket", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %#o, want 0600", perm)
	}
}

func TestListenCreatesMissingDirectory(t *testing.T) {
	path := filepath.Join(filepath.Dir(socketPath(t)), "run", "ferry", "f.sock")
	ln := listen(t, path)
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o700 != 0o700 {
		t.Errorf("directory mode %v, want a directory the owner can use", fi.Mode())
	}
	accepts(t, ln, path)
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := socketPath(t)
	// A daemon that died leaves its socket file behind.
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false)
	dead.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	ln := listen(t, path)
	accepts(t, ln, path)
}

func TestListenRefusesLiveSocket(t *testing.T) {
	path := socketPath(t)
	first := listen(t, path)

	_, err := Listen(path)
	if !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second Listen error %v, want ErrSocketInUse", err)
	}
	if want := "another ferry is running on " + path; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// The running daemon's socket is untouched.
	accepts(t, first, path)
}

func TestListenRefusesToReplaceNonSocket(t *testing.T) {
	path := socketPath(t)
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(path)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: error %v, want \"not a socket\"", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Errorf("regular file changed: %q, %v", b, err)
	}
}

func TestListenEmptyPath(t *testing.T) {
	if _, err := Listen(""); err == nil {
		t.Fatal("Listen(\"\") succeeded")
	}
}

func TestCloseRemovesSocket(t *testing.T) {
	path := socketPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Close: %v, want it gone", err)
	}
}
