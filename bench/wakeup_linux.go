package bench

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Wakeup is what it costs on this machine to wake a thread that sleeps in
// the kernel: the time from one thread's write to an eventfd until another
// thread, blocked reading it, runs — half the round trip of a two-thread
// ping-pong, each round starting after a pause long enough for the CPU to
// go idle. A userspace dataplane pays it at every hop where a worker
// sleeps in epoll_wait: ferry's path adds four to a request/response round
// trip (a worker on each host, each way), the kernel's path none, so it is
// the floor under the latency ratio the overlay report shows.
type Wakeup struct {
	// P50Us and P99Us are the median and 99th percentile, in µs.
	P50Us float64 `json:"p50_us"`
	P99Us float64 `json:"p99_us"`
	// Samples is the number of round trips measured.
	Samples int `json:"samples"`
}

// MeasureWakeup measures n ping-pong round trips between two OS threads
// over blocking eventfds, pausing gap before each, and returns the
// one-way wake-up times.
func MeasureWakeup(n int, gap time.Duration) (Wakeup, error) {
	if n < 1 {
		return Wakeup{}, fmt.Errorf("wakeup: %d samples: want at least 1", n)
	}
	var fds [2]int
	for i := range fds {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			for _, f := range fds[:i] {
				unix.Close(f)
			}
			return Wakeup{}, fmt.Errorf("wakeup: eventfd: %w", err)
		}
		fds[i] = fd
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	ping, pong := fds[0], fds[1]

	done := make(chan error, 1)
	go func() { // the echo thread: n wake-ups, each answered at once
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var b [8]byte
		for range n {
			if err := eventRead(ping, b[:]); err != nil {
				done <- err
				return
			}
			if err := eventWrite(pong); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	us := make([]float64, 0, n)
	var b [8]byte
	for range n {
		time.Sleep(gap)
		t0 := time.Now()
		if err := eventWrite(ping); err != nil {
			return Wakeup{}, err
		}
		if err := eventRead(pong, b[:]); err != nil {
			return Wakeup{}, err
		}
		us = append(us, float64(time.Since(t0).Nanoseconds())/2e3)
	}
	if err := <-done; err != nil {
		return Wakeup{}, err
	}
	return Wakeup{P50Us: Percentile(us, 50), P99Us: Percentile(us, 99), Samples: n}, nil
}

// eventRead blocks until the eventfd fd has been written, and resets it.
func eventRead(fd int, b []byte) error {
	for {
		_, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wakeup: eventfd read: %w", err)
		}
		return nil
	}
}

// eventWrite adds 1 to the eventfd fd, waking its reader.
func eventWrite(fd int) error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(fd, one[:]); err != nil {
		return fmt.Errorf("wakeup: eventfd write: %w", err)
	}
	return nil
}
