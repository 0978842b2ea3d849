package dataplane

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/internal/sysraw"
)

// MinGOMAXPROCS is the least GOMAXPROCS a program running workers Runners
// needs: each Runner holds a P even while it waits for traffic, and the
// control plane, the metrics server and the garbage collector need Ps of
// their own.
func MinGOMAXPROCS(workers int) int { return workers + 2 }

// Poller is a PortIO or TunnelIO backed by a file descriptor that the
// worker's epoll set can wait on.
type Poller interface {
	Fd() int
}

const (
	tagStop = 0xFFFF_FFFF
	// tagTunnel - k tags the tunnel of kind k.
	tagTunnel = 0xFFFF_FFFE
	tagUplink = 0xFFFE_0000 // | uplink id
)

// Runner drives a Worker from its own OS thread: one epoll set holds the
// worker's queue of every port and its tunnel socket, level-triggered; each
// wakeup reads one batch from every ready source and runs it to completion,
// so a busy source cannot starve the others and one epoll_wait is paid per
// round of batches, not per packet. This is the DPDK/VPP polling model with
// the kernel doing the waiting when there is nothing to do.
type Runner struct {
	w      *Worker
	epfd   int
	stopfd int
	cpu    int // the CPU Run pins its thread to, or -1
}

// NewRunner prepares the epoll set for w. Every attached port queue and the
// tunnel must implement Poller.
func NewRunner(w *Worker) (*Runner, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("worker %d: epoll_create: %w", w.id, err)
	}
	stopfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("worker %d: eventfd: %w", w.id, err)
	}
	r := &Runner{w: w, epfd: epfd, stopfd: stopfd, cpu: -1}
	add := func(fd int, tag uint32) error {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(tag)}
		return unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	if err := add(stopfd, tagStop); err != nil {
		r.close()
		return nil, fmt.Errorf("worker %d: epoll add: %w", w.id, err)
	}
	for id, io := range w.ports {
		if io == nil {
			continue
		}
		p, ok := io.(Poller)
		if !ok {
			r.close()
			return nil, fmt.Errorf("worker %d: port %d has no file descriptor to poll", w.id, id)
		}
		if err := add(p.Fd(), uint32(id)); err != nil {
			r.close()
			return nil, fmt.Errorf("worker %d: epoll add port %d: %w", w.id, id, err)
		}
	}
	for id, io := range w.nt.ios { // uplinks (nat.go)
		if p, ok := io.(Poller); ok {
			if err := add(p.Fd(), tagUplink|uint32(id)); err != nil {
				r.close()
				return nil, fmt.Errorf("worker %d: epoll add uplink %d: %w", w.id, id, err)
			}
		}
	}
	for k, t := range w.tunnels { // one epoll tag per tunnel kind
		if t == nil {
			continue
		}
		p, ok := t.(Poller)
		if !ok {
			r.close()
			return nil, fmt.Errorf("worker %d: %s tunnel has no file descriptor to poll", w.id, TunnelKind(k))
		}
		if err := add(p.Fd(), tagTunnel-uint32(k)); err != nil {
			r.close()
			return nil, fmt.Errorf("worker %d: epoll add %s tunnel: %w", w.id, TunnelKind(k), err)
		}
	}
	return r, nil
}

// PinTo makes Run pin its thread to CPU cpu (node.cpus); call it before
// Run. A cpu the process may not run on makes Run fail.
func (r *Runner) PinTo(cpu int) { r.cpu = cpu }

// Run processes traffic until Stop is called. It locks its goroutine to an
// OS thread for its whole life, and keeps its P while it waits for traffic
// (sysraw.EpollWait): the program must leave GOMAXPROCS room for its other
// goroutines beyond the running Runners (see MinGOMAXPROCS). A pinned
// Runner (PinTo) never unlocks its thread, so the thread, whose affinity
// no other goroutine should inherit, ends with Run.
func (r *Runner) Run() error {
	runtime.LockOSThread()
	if r.cpu >= 0 {
		if err := PinThread(r.cpu); err != nil {
			return fmt.Errorf("worker %d: %w", r.w.id, err)
		}
	} else {
		defer runtime.UnlockOSThread()
	}
	events := make([]unix.EpollEvent, 64)
	for {
		n, e := sysraw.EpollWait(r.epfd, events, -1)
		if e != 0 {
			if e == unix.EINTR {
				// A signal: maybe the runtime asking every thread to
				// stop (GC); let it.
				runtime.Gosched()
				continue
			}
			return fmt.Errorf("worker %d: epoll_wait: %w", r.w.id, e)
		}
		for _, ev := range events[:n] {
			var err error
			var fd int
			switch tag := uint32(ev.Fd); tag {
			case tagStop:
				return nil
			case tagTunnel - uint32(TunnelVXLAN), tagTunnel - uint32(TunnelFlannelUDP), tagTunnel - uint32(TunnelGRE):
				k := TunnelKind(tagTunnel - tag)
				_, err = r.w.PollTunnelKind(k)
				fd = r.w.tunnels[k].(Poller).Fd()
			default:
				if tag&^0xFFFF == tagUplink { // uplinks (nat.go)
					_, err = r.w.PollUplink(uint16(tag))
					fd = r.w.nt.ios[uint16(tag)].(Poller).Fd()
					break
				}
				_, err = r.w.PollPort(uint16(tag))
				fd = r.w.ports[tag].(Poller).Fd()
			}
			if err != nil {
				// A source that fails (its device went away) must not
				// stop the others, nor spin: stop polling it.
				slog.Error("read failed; no longer polling this source", "worker", r.w.id, "err", err)
				unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, fd, nil)
			}
		}
	}
}

// PinThread sets the calling thread's CPU affinity to cpu alone; the
// caller must hold its OS thread (runtime.LockOSThread) and not give it
// back.
func PinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return nil
}

// AllowedCPUs returns the CPUs the calling process may run on, in order:
// what node.cpus may name.
func AllowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for c := 0; len(cpus) < set.Count(); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// Stop makes Run return. It is safe to call from any goroutine, before
// Close.
func (r *Runner) Stop() {
	var one [8]byte // an eventfd counter increment of 1, native byte order
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(r.stopfd, one[:])
}

// Close releases the epoll set; call it after Run has returned.
func (r *Runner) Close() { r.close() }

func (r *Runner) close() {
	unix.Close(r.epfd)
	unix.Close(r.stopfd)
}
