// Package sysraw makes the dataplane's non-blocking I/O system calls
// without the Go scheduler's system-call bookkeeping.
//
// Why: syscall.Syscall brackets every call with entersyscall/exitsyscall,
// and when a call runs longer than 20 µs (a TAP write runs the container's
// whole receive path; on a paravirtualised VM any syscall can) the
// runtime's sysmon takes the worker's P away and hands it to another
// thread, which the worker must then get back: futex wakeups and context
// switches on every slow call, and sysmon itself polling every 20 µs while
// it happens. The dataplane's reads and writes never block (their file
// descriptors are non-blocking, or the call passes MSG_DONTWAIT), so they
// may run as raw system calls, as syscall.RawSyscall documents. Measured
// with strace on a ferry daemon forwarding a UDP ping-pong: sysmon's
// sleeps went from 2.06 to 0.53 per forwarded packet.
//
// EpollWait is the one blocking call here; see its comment for the terms.
//
// Only use Read, Write, RecvMmsg and SendMmsg on file descriptors that
// cannot block.
package sysraw

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read is read(2) on a non-blocking fd: the byte count, or the errno
// (0 on success; unix.EAGAIN when nothing is queued).
func Read(fd int, b []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(bufPtr(b)), uintptr(len(b)))
	return int(r), e
}

// Write is write(2) on a non-blocking fd: the byte count, or the errno
// (0 on success; unix.EAGAIN when the kernel queue is full).
func Write(fd int, b []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(bufPtr(b)), uintptr(len(b)))
	return int(r), e
}

// RecvMmsg is recvmmsg(2) of up to n messages into hdrs (an array of
// struct mmsghdr) with MSG_DONTWAIT, and no timeout: the number of
// messages received, or the errno.
func RecvMmsg(fd int, hdrs unsafe.Pointer, n int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(hdrs), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	return int(r), e
}

// SendMmsg is sendmmsg(2) of up to n messages from hdrs (an array of
// struct mmsghdr) with MSG_DONTWAIT: the number of messages sent, or the
// errno.
func SendMmsg(fd int, hdrs unsafe.Pointer, n int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(hdrs), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	return int(r), e
}

// EpollWait is epoll_wait(2) for a worker that owns its OS thread and its
// P: the thread sleeps in the kernel without giving the P back. With the
// ordinary call, every wait longer than 20 µs had sysmon take the P away
// and keep itself polling every 20 µs while packets trickle in, and every
// wake-up had the worker get a P back — on a request/response workload
// that is most of what a forwarded packet costs (see docs/performance.md).
//
// The terms: the caller must hold one of GOMAXPROCS Ps that the rest of
// the program can spare for as long as it waits (the daemon sets
// GOMAXPROCS above its worker count), and must let the runtime preempt it
// when a signal interrupts the wait: EpollWait returns EINTR then, and the
// caller should call runtime.Gosched before waiting again, so a
// stop-the-world (GC) that signalled it is not held up.
func EpollWait(epfd int, events []unix.EpollEvent, msec int) (int, unix.Errno) {
	var p unsafe.Pointer
	if len(events) > 0 {
		p = unsafe.Pointer(&events[0])
	}
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(p), uintptr(len(events)), uintptr(msec), 0, 0)
	return int(r), e
}

func bufPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}
