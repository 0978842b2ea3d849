//go:build unix

package ctl

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrSocketInUse is returned (wrapped) by Listen when a live daemon already
// answers on the socket path.
var ErrSocketInUse = errors.New("another ferry is running")

// staleDialTimeout bounds the probe of an existing socket file. A live
// daemon accepts at once; a dead socket refuses at once.
const staleDialTimeout = time.Second

// Listen opens the control socket at path for NewServer's handler.
//
// It creates path's directory (mode 0755) if missing. If a socket file is
// already there, Listen dials it: when a daemon answers it refuses with an
// error wrapping ErrSocketInUse ("another ferry is running on PATH"); when
// the connection is refused the file is left over from a daemon that died,
// and Listen removes it. A path that exists but is not a socket is never
// removed.
//
// The socket is mode 0600 from the moment it exists: it is bound under a
// umask of 0177. The umask is per process, so a file that another goroutine
// creates during that instant is also created without group and other
// permissions; call Listen during startup.
//
// Closing the listener removes the socket file.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("control socket path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating control socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on control socket: %w", err)
	}
	return ln, nil
}

// removeStale removes path if it is a socket that no process listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s exists and is not a socket; not replacing it", path)
	}
	c, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w on %s", ErrSocketInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("checking control socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale control socket: %w", err)
	}
	slog.Info("removed stale control socket", "path", path)
	return nil
}
