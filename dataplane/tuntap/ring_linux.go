package tuntap

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/internal/uring"
)

// ringSize is the most reads or writes one io_uring_enter carries: a
// dataplane batch.
const ringSize = 64

// ringIO is one direction of a queue's batched I/O: the ring and its
// results.
type ringIO struct {
	r   *uring.Ring
	res []int32
	// last is how many frames the last Read returned: the next one asks
	// for one more (at least two), so a lone frame is read with the
	// attempt that finds the queue empty in one system call, and a busy
	// queue in batches its size.
	last int
}

func newRingIO() (*ringIO, error) {
	r, err := uring.New(ringSize)
	if err != nil {
		return nil, err
	}
	return &ringIO{r: r, res: make([]int32, ringSize)}, nil
}

// openRings gives q its read and write rings, and checks that the kernel
// does non-blocking reads of this device through them: a read of the new,
// empty queue must find nothing (EAGAIN). A kernel whose TUN driver does
// not take RWF_NOWAIT answers EOPNOTSUPP, and q must then go on with a
// system call per frame.
func (q *Queue) openRings() error {
	var err error
	if q.rd, err = newRingIO(); err != nil {
		return err
	}
	if q.wr, err = newRingIO(); err != nil {
		return err
	}
	probe := [][]byte{make([]byte, 64*1024+VnetHdrLen)}
	if err := q.rd.r.Do(uring.Read, q.fd, probe, 0, q.rd.res, false); err != nil {
		return err
	}
	switch res := q.rd.res[0]; {
	case res == -int32(unix.EAGAIN):
		return nil
	case res < 0:
		return fmt.Errorf("tuntap: io_uring read of %s: %w", q.name, unix.Errno(-res))
	default:
		return fmt.Errorf("tuntap: io_uring read of the new queue of %s returned %d bytes, want none", q.name, res)
	}
}

func (q *Queue) closeRings() {
	for _, r := range []*ringIO{q.rd, q.wr} {
		if r != nil {
			r.r.Close()
		}
	}
	q.rd, q.wr = nil, nil
}

// readRing is Read through io_uring: it asks for one frame more than the
// last call got (at least two), and for twice as many again while every
// read finds one, until one finds nothing (EAGAIN) or bufs are full.
func (q *Queue) readRing(bufs [][]byte, sizes []int, offset int) (int, error) {
	for _, b := range bufs {
		if len(b) <= offset {
			return 0, ErrShortBuffer
		}
	}
	rd := q.rd
	n, want := 0, max(rd.last+1, 2)
	var firstErr error
	for n < len(bufs) && firstErr == nil {
		k := min(want, len(bufs)-n, ringSize)
		if err := rd.r.Do(uring.Read, q.fd, bufs[n:n+k], offset, rd.res, false); err != nil {
			firstErr = q.ioErr("read", err)
			break
		}
		got, empty := 0, false
		for i, res := range rd.res[:k] {
			switch {
			case res >= 0:
				if i != got {
					// A frame came in behind a read that found
					// nothing: close the gap, so frames stay in
					// order at the front. Rare (it needs a frame
					// to arrive within the batch), hence a copy.
					res = int32(copy(bufs[n+got][offset:], bufs[n+i][offset:offset+int(res)]))
				}
				sizes[n+got] = int(res)
				got++
			case res == -int32(unix.EAGAIN):
				empty = true
			case res == -int32(unix.EINTR):
				// Try again in the next round.
			case firstErr == nil:
				firstErr = q.ioErr("read", unix.Errno(-res))
			}
		}
		n += got
		if empty {
			break
		}
		want = 2 * k
	}
	rd.last = n
	return n, firstErr
}

// writeRing is Write through io_uring: the writes of a batch are linked,
// so the first that fails is the last one tried, as with one write(2)
// after another.
func (q *Queue) writeRing(bufs [][]byte, offset int) (int, error) {
	n := 0
	for n < len(bufs) {
		k := min(len(bufs)-n, ringSize)
		chunk := bufs[n : n+k]
		for _, b := range chunk {
			if len(b) <= offset {
				return n, ErrShortBuffer
			}
		}
		if err := q.wr.r.Do(uring.Write, q.fd, chunk, offset, q.wr.res, true); err != nil {
			return n, q.ioErr("write", err)
		}
		for i, res := range q.wr.res[:k] {
			switch e := unix.Errno(-res); {
			case int(res) == len(chunk[i])-offset:
				n++
				continue
			case res >= 0:
				return n, q.ioErr("write", fmt.Errorf("%d of %d bytes written", res, len(chunk[i])-offset))
			case e == unix.EINTR || e == unix.ECANCELED:
				// Not tried, or cut short: write it again.
			default:
				return n, q.writeErr(e)
			}
			break // resubmit from frame n
		}
	}
	return n, nil
}
