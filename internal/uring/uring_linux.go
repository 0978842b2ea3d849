// Package uring is the smallest io_uring the dataplane needs: a batch of
// reads or writes on one file descriptor in one system call.
//
// Why: a TAP or TUN device has no batched read or write (no recvmmsg for
// character devices), so each small frame a container sends or receives
// costs a system call of its own, about 1 µs of entry and exit on this
// kind of machine before any work. io_uring submits many reads or writes
// with one io_uring_enter; on a non-blocking descriptor with RWF_NOWAIT the
// kernel performs each inline during that call, in order, and a read that
// finds nothing completes with EAGAIN instead of waiting. Nothing is left
// in flight when Do returns, so the buffers are the caller's again, as
// with read(2) and write(2).
//
// It is written here rather than taken from a library because it is on
// the per-packet path (no allocation, no locks, no scheduler bookkeeping:
// io_uring_enter is made as a raw system call, see internal/sysraw), and
// because it needs four operations of the interface and nothing else.
//
// A Ring belongs to one goroutine at a time; it is not safe for
// concurrent use.
package uring

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Op is what a batch does with each buffer.
type Op uint8

// The operations of a batch (the kernel's IORING_OP_READ and
// IORING_OP_WRITE).
const (
	Read  Op = 22
	Write Op = 23
)

// The kernel's constants this package uses (include/uapi/linux/io_uring.h).
const (
	offSQRing      = 0
	offCQRing      = 0x8000000
	offSQEs        = 0x10000000
	featSingleMmap = 1 << 0
	enterGetEvents = 1 << 0
	sqeIOLink      = 1 << 2
	rwfNoWait      = 0x8
)

// params is struct io_uring_params.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
}

// sqe is struct io_uring_sqe, as a read or write uses it.
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	rwFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is struct io_uring_cqe.
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Ring is one io_uring instance with room for Size operations per batch.
type Ring struct {
	fd            int
	sqMem, cqMem  []byte // the rings' mappings; cqMem is sqMem with a single mapping
	separateCQ    bool
	sqeMem        []byte
	sqHead        *uint32
	sqTail        *uint32
	sqMask        uint32
	sqArray       []uint32
	sqes          []sqe
	cqHead        *uint32
	cqTail        *uint32
	cqMask        uint32
	cqes          []cqe
	size          int
	submittedTail uint32
}

// ErrUnavailable wraps the reason a Ring cannot be made: io_uring
// disabled (kernel.io_uring_disabled), refused by a seccomp filter (as
// container runtimes' default profiles do), or not in the kernel. Callers
// fall back to one system call per operation.
var ErrUnavailable = errors.New("io_uring unavailable")

// Available returns nil if the kernel lets this process make an io_uring,
// or an error wrapping ErrUnavailable that says why not.
func Available() error {
	r, err := New(1)
	if err != nil {
		return err
	}
	return r.Close()
}

// New makes a Ring for batches of up to size operations (a power of two,
// at most 4096).
func New(size int) (*Ring, error) {
	if size < 1 || size > 4096 || size&(size-1) != 0 {
		return nil, fmt.Errorf("uring: size %d is not a power of two in 1..4096", size)
	}
	var p params
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(size), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("uring: io_uring_setup: %w: %w", ErrUnavailable, e)
	}
	r := &Ring{fd: int(fd), size: size}
	if err := r.mmap(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Ring) mmap(p *params) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(cqe{}))
	single := p.features&featSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	prot, flags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE
	var err error
	if r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("uring: mmap of the submission ring: %w", err)
	}
	r.cqMem = r.sqMem
	if !single {
		cq, err := unix.Mmap(r.fd, offCQRing, cqSize, prot, flags)
		if err != nil {
			return fmt.Errorf("uring: mmap of the completion ring: %w", err)
		}
		r.cqMem, r.separateCQ = cq, true
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), prot, flags); err != nil {
		return fmt.Errorf("uring: mmap of the submission entries: %w", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead = u32(r.sqMem, p.sqOff.head)
	r.sqTail = u32(r.sqMem, p.sqOff.tail)
	r.sqMask = *u32(r.sqMem, p.sqOff.ringMask)
	r.sqArray = unsafe.Slice(u32(r.sqMem, p.sqOff.array), p.sqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead = u32(r.cqMem, p.cqOff.head)
	r.cqTail = u32(r.cqMem, p.cqOff.tail)
	r.cqMask = *u32(r.cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&r.cqMem[p.cqOff.cqes])), p.cqEntries)
	r.submittedTail = atomic.LoadUint32(r.sqTail)
	return nil
}

// Size is the most operations one batch may hold.
func (r *Ring) Size() int { return r.size }

// Do performs op on fd for each of bufs[i][offset:], in order, in one
// system call, and stores each result in res[i]: the bytes read or
// written, or the negated errno (-EAGAIN: a read found nothing waiting).
// Every operation passes RWF_NOWAIT, so fd must be a descriptor whose
// reads and writes can complete without blocking (a non-blocking TAP or
// TUN queue); all of them have completed when Do returns.
//
// With link, each operation runs only if the one before it transferred
// all its bytes; the rest complete with -ECANCELED. That keeps a batch of
// writes in order: the first write that fails is the last one tried.
//
// len(bufs) must be at most Size and len(res) at least len(bufs). Do
// allocates nothing.
func (r *Ring) Do(op Op, fd int, bufs [][]byte, offset int, res []int32, link bool) error {
	n := len(bufs)
	if n == 0 {
		return nil
	}
	if n > r.size || len(res) < n {
		return fmt.Errorf("uring: batch of %d with room for %d results on a ring of %d", n, len(res), r.size)
	}
	tail := r.submittedTail
	for i, b := range bufs {
		if len(b) <= offset {
			return fmt.Errorf("uring: buffer %d holds %d bytes, not more than the offset %d", i, len(b), offset)
		}
		idx := (tail + uint32(i)) & r.sqMask
		s := &r.sqes[idx]
		*s = sqe{
			opcode:   uint8(op),
			fd:       int32(fd),
			off:      ^uint64(0), // the file's position: a stream, as read(2) and write(2)
			addr:     uint64(uintptr(unsafe.Pointer(&b[offset]))),
			len:      uint32(len(b) - offset),
			rwFlags:  rwfNoWait,
			userData: uint64(i),
		}
		if link && i < n-1 {
			s.flags = sqeIOLink
		}
		r.sqArray[idx] = idx
		res[i] = 0
	}
	tail += uint32(n)
	atomic.StoreUint32(r.sqTail, tail)
	r.submittedTail = tail
	for toSubmit, waiting := n, n; waiting > 0; {
		sub, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(waiting), enterGetEvents, 0, 0)
		switch e {
		case 0:
			toSubmit -= int(sub)
		case unix.EINTR:
			// A signal cut the wait short; what was submitted is
			// still counted in the ring. Wait again.
			toSubmit = int(tail - atomic.LoadUint32(r.sqHead))
		default:
			runtime.KeepAlive(bufs)
			return fmt.Errorf("uring: io_uring_enter: %w", e)
		}
		waiting -= r.reap(res)
	}
	runtime.KeepAlive(bufs)
	return nil
}

// reap copies the completions waiting in the ring into res and returns
// how many there were.
func (r *Ring) reap(res []int32) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	k := 0
	for ; head != tail; head++ {
		c := &r.cqes[head&r.cqMask]
		res[c.userData] = c.res
		k++
	}
	atomic.StoreUint32(r.cqHead, head)
	return k
}

// Close unmaps the rings and closes the io_uring.
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.separateCQ && r.cqMem != nil {
		unix.Munmap(r.cqMem)
	}
	if r.sqMem != nil {
		unix.Munmap(r.sqMem)
	}
	r.sqeMem, r.cqMem, r.sqMem = nil, nil, nil
	return unix.Close(r.fd)
}
