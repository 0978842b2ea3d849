package rawsock

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/header"
)

// FuzzSplit feeds split, which takes a received datagram apart, arbitrary
// first bytes (as if the kernel had put them in the header scratch), an
// arbitrary rest in the caller's buffer, and an arbitrary truncation flag,
// and checks it against a naive twin: join the two parts and cut at the IHL.
// The kernel never hands over a header with IHL < 5, but split must not
// panic on one.
func FuzzSplit(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 47}, []byte("GRE payload bytes"), false)
	f.Add([]byte{0x46, 0, 0, 44}, []byte{1, 1, 1, 0, 0, 0, 8, 0}, false)
	f.Add([]byte{0x4f}, []byte{1, 2}, true)
	f.Add([]byte{0x41}, []byte{}, false)
	f.Fuzz(func(t *testing.T, head, rest []byte, truncated bool) {
		if len(rest) > 4096 {
			return
		}
		c := &Conn{batch: 1}
		c.allocRx()
		copy(c.heads[0][:header.IPv4MinLen], head)
		h := &c.rxHdrs[0]
		h.len = uint32(header.IPv4MinLen + len(rest))
		if truncated {
			h.hdr.Flags = unix.MSG_TRUNC
		}
		b := bytes.Clone(rest)

		// The naive twin.
		full := append(bytes.Clone(c.heads[0][:header.IPv4MinLen]), rest...)
		hl := max(int(full[0]&0x0f)*4, header.IPv4MinLen)
		wantHead, wantPayload, wantTrunc := full, []byte{}, true
		if hl <= len(full) {
			wantHead, wantPayload, wantTrunc = full[:hl], full[hl:], truncated
		}

		n := c.split(0, b)
		if got := []byte(c.Header(0)); !bytes.Equal(got, wantHead) {
			t.Fatalf("Header = % x, want % x", got, wantHead)
		}
		if !bytes.Equal(b[:n], wantPayload) {
			t.Fatalf("payload = % x, want % x", b[:n], wantPayload)
		}
		if c.Truncated(0) != wantTrunc {
			t.Fatalf("Truncated = %v, want %v", c.Truncated(0), wantTrunc)
		}
	})
}
