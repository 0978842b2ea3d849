// Package netnstest gives tests throwaway network namespaces and unique
// interface names, so tests that create devices never touch the host's own
// namespace and never collide with a parallel run.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/ferry-overlay/ferry/internal/netconf"
)

// SkipMessage is the reason given when a test is skipped for lack of root.
const SkipMessage = "needs root: creates TAP devices and network namespaces"

// RequireRoot skips the test unless it runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip(SkipMessage)
	}
}

// Name returns prefix followed by 8 random hex digits. With a prefix of at
// most 7 bytes it is a valid interface name (at most 15 bytes).
func Name(prefix string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return prefix + hex.EncodeToString(b[:])
}

// New skips the test unless it runs as root, creates a fresh named network
// namespace, and deletes it when the test ends, whatever its outcome. It
// returns the namespace's name (see netconf.NetnsPath).
func New(tb testing.TB) string {
	tb.Helper()
	RequireRoot(tb)
	name := Name("ferry-test-")
	if err := netconf.CreateNetns(name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := netconf.DeleteNetns(name); err != nil {
			tb.Error(err)
		}
	})
	return name
}
