package tuntap

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/internal/sysraw"
)

// Kind selects the layer a device works at.
type Kind int

const (
	// TAP is a layer-2 device: each frame is an Ethernet frame (IFF_TAP).
	TAP Kind = iota + 1
	// TUN is a layer-3 device: each frame is a bare IPv4 or IPv6 packet
	// (IFF_TUN).
	TUN
)

// String returns "tap" or "tun", the names used in ferry's config and CLI.
func (k Kind) String() string {
	switch k {
	case TAP:
		return "tap"
	case TUN:
		return "tun"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// VnetHdrLen is the length of the struct virtio_net_hdr that leads every
// frame read from or written to a device opened with Options.VnetHdr.
const VnetHdrLen = 10

// ErrTxFull is returned by [Queue.Write] when the kernel cannot take another
// frame now (EAGAIN). The frames not written can be counted by the caller as
// transmit-full drops, or retried when the descriptor is writable again.
var ErrTxFull = errors.New("tuntap: transmit queue full")

// ErrLinkDown is returned by [Queue.Write] when the interface is down (the
// kernel refuses frames with EIO then, for example before a container's eth0
// is brought up). The frames not written can be counted as port-down drops.
var ErrLinkDown = errors.New("tuntap: link is down")

// ErrShortBuffer is returned by [Queue.Read] and [Queue.Write] when a buffer
// has no room after the offset.
var ErrShortBuffer = errors.New("tuntap: buffer has no room after offset")

// Options describes the device to create.
type Options struct {
	// Name is the interface name, at most 15 bytes. Empty lets the kernel
	// choose one ("tap0", "tun0", ...); Device.Name reports it.
	Name string
	// Kind is TAP or TUN; the zero value is rejected.
	Kind Kind
	// Queues is the number of queues (file descriptors) to open, at least 1.
	// More than one sets IFF_MULTI_QUEUE; the kernel then spreads the frames
	// it sends to the device over the queues by flow.
	Queues int
	// VnetHdr sets IFF_VNET_HDR: every frame read or written is preceded by a
	// VnetHdrLen-byte struct virtio_net_hdr. No offloads are enabled, so the
	// kernel sends plain frames with a header saying "no GSO, no checksum
	// offload", and frames written need such a header (all zeros) too.
	VnetHdr bool
	// IOURing makes each queue read and write its frames in batches, one
	// io_uring_enter per batch instead of a system call per frame (see
	// internal/uring). Where the kernel refuses io_uring the queues fall
	// back to a system call per frame; Device.IOURing says which it is.
	IOURing bool
}

// Device is an open TAP or TUN device: its name and its queues.
//
// A Device is not persistent: closing every queue (Close) deletes the
// interface. Name and Queues may be called from any goroutine; Close must not
// run concurrently with a Read or Write on any of its queues.
type Device struct {
	name    string
	kind    Kind
	queues  []*Queue
	ringErr error // why Options.IOURing could not be honoured
}

// Queue is one queue of a device: one non-blocking file descriptor.
//
// A Queue may be read by one goroutine and written by another at the same
// time; two concurrent Reads (or two concurrent Writes) on the same Queue are
// safe for the kernel but interleave frames unpredictably, so a worker should
// own a queue.
type Queue struct {
	fd      int
	index   int
	name    string
	offload int // the device's TUNSETOFFLOAD flags (offload_linux.go)
	// With Options.IOURing: one ring for reads and one for writes, so a
	// reader and a writer may still use the queue at the same time.
	rd, wr *ringIO
}

// Create creates (or attaches to) the device described by opts and opens its
// queues. The device is left down: bring it up with package netconf.
//
// On error nothing stays open, and the error names the device.
func Create(opts Options) (*Device, error) {
	var flags uint16
	switch opts.Kind {
	case TAP:
		flags = unix.IFF_TAP
	case TUN:
		flags = unix.IFF_TUN
	default:
		return nil, fmt.Errorf("tuntap: create %q: invalid kind %v", opts.Name, opts.Kind)
	}
	if opts.Queues < 1 {
		return nil, fmt.Errorf("tuntap: create %q: queues = %d, need at least 1", opts.Name, opts.Queues)
	}
	flags |= unix.IFF_NO_PI
	if opts.Queues > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}
	if opts.VnetHdr {
		flags |= unix.IFF_VNET_HDR
	}

	d := &Device{name: opts.Name, kind: opts.Kind, queues: make([]*Queue, 0, opts.Queues)}
	for i := range opts.Queues {
		// The first TUNSETIFF creates the device (and fixes its name when the
		// kernel chose it); the later ones attach more queues to it.
		fd, name, err := openQueue(d.name, flags)
		if err != nil {
			_ = d.Close() // already failing: the open error is the one to report
			return nil, fmt.Errorf("tuntap: create %s %q queue %d: %w", opts.Kind, displayName(d.name), i, err)
		}
		d.name = name
		q := &Queue{fd: fd, index: i, name: name}
		d.queues = append(d.queues, q)
		if opts.IOURing && d.ringErr == nil {
			d.ringErr = q.openRings()
		}
	}
	if d.ringErr != nil {
		// All queues alike: a system call per frame.
		for _, q := range d.queues {
			q.closeRings()
		}
	}
	return d, nil
}

// IOURing reports whether the queues read and write through io_uring
// (Options.IOURing), and if they were asked to but do not, why.
func (d *Device) IOURing() (bool, error) {
	return len(d.queues) > 0 && d.queues[0].rd != nil, d.ringErr
}

// displayName is the name to show in an error before the kernel chose one.
func displayName(name string) string {
	if name == "" {
		return "(kernel-chosen)"
	}
	return name
}

// openQueue opens /dev/net/tun non-blocking and binds it to the device name
// with TUNSETIFF, returning the descriptor and the device's actual name.
func openQueue(name string, flags uint16) (int, string, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("interface name: %w", err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("TUNSETIFF: %w", err)
	}
	return fd, ifr.Name(), nil
}

// Name returns the interface name as the kernel knows it at creation time.
// (If the link is later renamed, for example to eth0 inside a container's
// namespace, this still returns the original name.)
func (d *Device) Name() string { return d.name }

// Kind returns TAP or TUN.
func (d *Device) Kind() Kind { return d.kind }

// Queues returns the device's queues, in creation order. The slice is shared:
// do not modify it.
func (d *Device) Queues() []*Queue { return d.queues }

// Close closes every queue's descriptor. Because the device is not
// persistent, the kernel deletes the interface when the last descriptor is
// closed. Close must not run concurrently with Read or Write on the queues;
// calling it again is a no-op.
func (d *Device) Close() error {
	var errs []error
	for _, q := range d.queues {
		if q.fd < 0 {
			continue
		}
		q.closeRings()
		if err := unix.Close(q.fd); err != nil {
			errs = append(errs, fmt.Errorf("tuntap: close %s queue %d: %w", d.name, q.index, err))
		}
		q.fd = -1
	}
	return errors.Join(errs...)
}

// Fd returns the queue's non-blocking file descriptor, for the caller's epoll
// loop (EPOLLIN when frames wait, EPOLLOUT when writable). It is -1 after the
// device is closed. The caller must not close it or change its flags.
func (q *Queue) Fd() int { return q.fd }

// Index returns the queue's position in Device.Queues.
func (q *Queue) Index() int { return q.index }

// Read reads up to len(bufs) frames without blocking: frame i is stored in
// bufs[i][offset:] and its length in sizes[i]. It returns the number of
// frames read, n, and stops early, with a nil error, when no frame waits
// (EAGAIN); n may be 0. The offset leaves headroom in front of every frame
// for outer headers.
//
// Each buffer must hold a whole frame after the offset (the device MTU plus
// 14 bytes of Ethernet header for a TAP, plus VnetHdrLen with VnetHdr): the
// kernel cuts a frame that does not fit without saying so, and the size
// reported is then the buffer's room. sizes must be at least as long as bufs.
// On any other error, n frames were read and the error names the device and
// queue. Read allocates nothing unless it returns such an error.
func (q *Queue) Read(bufs [][]byte, sizes []int, offset int) (n int, err error) {
	if q.rd != nil {
		return q.readRing(bufs, sizes, offset)
	}
	for n < len(bufs) {
		b := bufs[n]
		if len(b) <= offset {
			return n, ErrShortBuffer
		}
		m, err := sysraw.Read(q.fd, b[offset:])
		switch {
		case err == 0:
			sizes[n] = m
			n++
		case err == unix.EAGAIN:
			return n, nil
		case err == unix.EINTR:
			// Retry the same frame.
		default:
			return n, q.ioErr("read", err)
		}
	}
	return n, nil
}

// Write writes each of bufs[i][offset:] as one frame, in order, and returns
// how many were written. If the kernel cannot take more now (EAGAIN) it
// returns the count and ErrTxFull, and if the interface is down, ErrLinkDown;
// either way frames bufs[n:] were not written. On any other error frame
// bufs[n] was refused (for example EINVAL for a TAP frame shorter than an
// Ethernet header; the error names the device and queue); the caller may
// drop it and go on with bufs[n+1:]. The kernel copies each frame, so the
// buffers are free again when Write returns. Write allocates nothing unless
// it returns an error other than the sentinels.
func (q *Queue) Write(bufs [][]byte, offset int) (n int, err error) {
	if q.wr != nil {
		return q.writeRing(bufs, offset)
	}
	for n < len(bufs) {
		b := bufs[n]
		if len(b) <= offset {
			return n, ErrShortBuffer
		}
		_, err := sysraw.Write(q.fd, b[offset:])
		switch {
		case err == 0:
			n++
		case err == unix.EINTR:
			// Retry the same frame.
		default:
			return n, q.writeErr(err)
		}
	}
	return n, nil
}

// writeErr is Write's error for a frame the kernel refused with e: the
// sentinel for a full queue or a link that is down, else e naming the
// device and queue.
func (q *Queue) writeErr(e unix.Errno) error {
	switch e {
	case unix.EAGAIN:
		return ErrTxFull
	case unix.EIO:
		return ErrLinkDown
	}
	return q.ioErr("write", e)
}

// ioErr wraps err, from a read or write (op) of the queue, naming the
// device and queue.
func (q *Queue) ioErr(op string, err error) error {
	return fmt.Errorf("tuntap: %s %s queue %d: %w", op, q.name, q.index, err)
}
