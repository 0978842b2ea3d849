package uring

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// newRing makes a ring of size, skipping the test where the kernel refuses
// io_uring.
func newRing(t *testing.T, size int) *Ring {
	t.Helper()
	r, err := New(size)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// pipe returns a non-blocking pipe's read and write ends.
func pipe(t *testing.T) (rd, wr int) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// TestWritesThenReads writes three messages into a pipe in one batch and
// reads them back in one batch of four: the writes land in order behind
// the offset, and the read that finds nothing completes with EAGAIN.
func TestWritesThenReads(t *testing.T) {
	r := newRing(t, 8)
	rd, wr := pipe(t)
	res := make([]int32, 8)
	msgs := [][]byte{[]byte("xxhello"), []byte("xx, "), []byte("xxworld")}
	if err := r.Do(Write, wr, msgs, 2, res, true); err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if int(res[i]) != len(m)-2 {
			t.Errorf("write %d: %d, want %d", i, res[i], len(m)-2)
		}
	}
	// One read takes all the pipe holds; the next finds it empty.
	bufs := [][]byte{make([]byte, 64), make([]byte, 64), make([]byte, 64), make([]byte, 64)}
	if err := r.Do(Read, rd, bufs[:2], 1, res, false); err != nil {
		t.Fatal(err)
	}
	if got := string(bufs[0][1 : 1+max(res[0], 0)]); got != "hello, world" || res[1] != -int32(unix.EAGAIN) {
		t.Errorf("reads: %q (%d), then %d; want \"hello, world\", then -EAGAIN", got, res[0], res[1])
	}
	if bufs[0][0] != 0 {
		t.Errorf("read wrote in front of the offset: %q", bufs[0][:1])
	}
}

// TestLinkedWritesStopAtTheFirstFailure writes into a pipe whose reader
// is closed: the first write fails (EPIPE) and the linked ones behind it
// are never tried (ECANCELED).
func TestLinkedWritesStopAtTheFirstFailure(t *testing.T) {
	r := newRing(t, 4)
	rd, wr := pipe(t)
	unix.Close(rd)
	res := make([]int32, 4)
	bufs := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	if err := r.Do(Write, wr, bufs, 0, res, true); err != nil {
		t.Fatal(err)
	}
	want := []int32{-int32(unix.EPIPE), -int32(unix.ECANCELED), -int32(unix.ECANCELED)}
	for i := range want {
		if res[i] != want[i] {
			t.Errorf("write %d: %d, want %d", i, res[i], want[i])
		}
	}
}

func TestBadArguments(t *testing.T) {
	for _, size := range []int{0, 3, 8192} {
		if r, err := New(size); err == nil {
			r.Close()
			t.Errorf("New(%d) made a ring; want an error", size)
		}
	}
	r := newRing(t, 2)
	_, wr := pipe(t)
	res := make([]int32, 4)
	three := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	if err := r.Do(Write, wr, three, 0, res, false); err == nil {
		t.Error("a batch of 3 on a ring of 2 went through; want an error")
	}
	if err := r.Do(Write, wr, three[:2], 1, res, false); err == nil {
		t.Error("buffers with nothing after the offset went through; want an error")
	}
}

func TestDoAllocatesNothing(t *testing.T) {
	r := newRing(t, 4)
	rd, wr := pipe(t)
	res := make([]int32, 4)
	out := [][]byte{[]byte("ping")}
	in := [][]byte{make([]byte, 16), make([]byte, 16)}
	allocs := testing.AllocsPerRun(100, func() {
		if err := r.Do(Write, wr, out, 0, res, true); err != nil {
			t.Fatal(err)
		}
		if err := r.Do(Read, rd, in, 0, res, false); err != nil || res[0] != 4 {
			t.Fatalf("read %d, %v", res[0], err)
		}
	})
	if allocs != 0 {
		t.Errorf("Do allocates %v times per write and read, want 0", allocs)
	}
}

// TestAvailableAgreesWithNew checks that Available says what making a
// ring says: nil where one can be made, else an error wrapping
// ErrUnavailable.
func TestAvailableAgreesWithNew(t *testing.T) {
	err := Available()
	r, nerr := New(1)
	if nerr == nil {
		r.Close()
	}
	if (err == nil) != (nerr == nil) {
		t.Fatalf("Available() = %v, but New(1) = %v", err, nerr)
	}
	if err != nil && !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Available() = %v, want an error wrapping ErrUnavailable", err)
	}
}
