// Package udpsock is ferry's batched UDP socket for tunnel traffic (VXLAN,
// flannel-UDP): one recvmmsg(2) or sendmmsg(2) moves a whole batch of
// datagrams, and no call allocates per datagram.
//
// x/net's ipv4.PacketConn.ReadBatch allocates a net.Addr per datagram; this
// package instead keeps, per Conn, arrays of mmsghdr, iovec and sockaddr_in
// sized to the largest batch, fills them in place on every call, and turns
// the raw sockaddr bytes into netip.AddrPort values directly.
//
// Like package tuntap it works at the []byte level: the caller owns the
// buffers and chooses an offset (headroom) into each, so package dataplane
// adapts it. The descriptor is non-blocking and meant for the caller's own
// epoll loop, not Go's netpoller. A Conn is of one address family, the one
// of the address it is bound to: IPv4, or IPv6 only (IPV6_V6ONLY).
package udpsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/internal/sysraw"
)

// DefaultBatch is the batch size used when Options.Batch is 0.
const DefaultBatch = 64

// MaxBatch is the largest batch the kernel takes in one call (UIO_MAXIOV).
const MaxBatch = 1024

// ErrTxFull is returned by [Conn.WriteBatch] when the socket's send buffer
// is full (EAGAIN) or the kernel dropped for lack of buffers (ENOBUFS). The
// datagrams not handled can be counted as transmit-full drops, or retried when
// the descriptor is writable again.
var ErrTxFull = errors.New("udpsock: send buffer full")

// ErrShortBuffer is returned by [Conn.ReadBatch] when a buffer has no room
// after the offset.
var ErrShortBuffer = errors.New("udpsock: buffer has no room after offset")

// ErrNotIPv4 is the error of a [Skip] whose destination is not an IPv4
// (or IPv4-mapped IPv6) address with a port, on an IPv4 socket.
var ErrNotIPv4 = errors.New("udpsock: destination is not IPv4")

// ErrNotIPv6 is the error of a [Skip] whose destination is not an IPv6
// address (IPv4-mapped ones excluded) with a port, on an IPv6 socket.
var ErrNotIPv6 = errors.New("udpsock: destination is not IPv6")

// Options describes the socket to open.
type Options struct {
	// Addr is the local address to bind; port 0 picks an ephemeral port,
	// and 0.0.0.0 (or ::) binds every address. An IPv4 (or IPv4-mapped)
	// address makes an IPv4 socket, any other IPv6 address an IPv6-only
	// one; the socket sends to and receives from its own family alone.
	Addr netip.AddrPort
	// ReusePort sets SO_REUSEPORT, so one socket per worker can bind the same
	// address and the kernel spreads incoming flows over them. With port 0
	// it is set after the bind: the kernel then picks a port no other
	// socket uses (it would otherwise offer one already bound with
	// SO_REUSEPORT by the same user), and further sockets may join it.
	ReusePort bool
	// RecvBuf and SendBuf set SO_RCVBUF and SO_SNDBUF in bytes; 0 leaves the
	// system default. The FORCE variants are tried first so that root can
	// exceed net.core.rmem_max/wmem_max; without CAP_NET_ADMIN the plain
	// options are used, which the kernel caps silently.
	RecvBuf, SendBuf int
	// Batch is the most datagrams one ReadBatch call returns and one
	// sendmmsg call carries; 0 means DefaultBatch, at most MaxBatch.
	Batch int
}

// Skip records a datagram that [Conn.WriteBatch] dropped because of an error
// that concerns only that datagram or its destination (for example
// EHOSTUNREACH, ENETUNREACH, EMSGSIZE, EINVAL for port 0, EPERM from a
// firewall, or ErrNotIPv4 and ErrNotIPv6 for a destination of the other
// family), so that the caller can count it with a reason.
type Skip struct {
	// Index is the datagram's index in the bufs given to WriteBatch.
	Index int
	// Err is the reason: a unix.Errno, ErrNotIPv4 or ErrNotIPv6.
	Err error
}

// mmsghdr mirrors struct mmsghdr. Go's natural alignment gives it the C
// layout on both 32- and 64-bit platforms (trailing padding included).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// msgs is one direction's preallocated syscall arguments: entry i of each
// array describes datagram i of the batch. names has room for either
// family's address; an IPv4 socket's sit in it as sockaddr_in.
type msgs struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	v6    bool
}

// setIov points iov at b (nil for an empty b).
func setIov(iov *unix.Iovec, b []byte) {
	if len(b) > 0 {
		iov.Base = &b[0]
	} else {
		iov.Base = nil
	}
	iov.SetLen(len(b))
}

// setDst sets entry k's destination to dst, an address of the socket's
// family (fits).
func (m *msgs) setDst(k int, dst netip.AddrPort) {
	sa := &m.names[k]
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], dst.Port())
	if m.v6 {
		sa.Addr = dst.Addr().As16()
		return
	}
	(*unix.RawSockaddrInet4)(unsafe.Pointer(sa)).Addr = dst.Addr().As4()
}

// name returns entry i's address, as the kernel left it after a receive.
func (m *msgs) name(i int) netip.AddrPort {
	sa := &m.names[i]
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	if m.v6 {
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(sa)).Addr), port)
}

// nameLen is the length of one address of the family.
func (m *msgs) nameLen() uint32 {
	if m.v6 {
		return unix.SizeofSockaddrInet6
	}
	return unix.SizeofSockaddrInet4
}

func newMsgs(n int, v6 bool) msgs {
	m := msgs{
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		v6:    v6,
	}
	family := uint16(unix.AF_INET)
	if v6 {
		family = unix.AF_INET6
	}
	for i := range m.hdrs {
		m.names[i].Family = family
		h := &m.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		h.Namelen = m.nameLen()
		h.Iov = &m.iovs[i]
		h.SetIovlen(1)
	}
	return m
}

// Conn is a bound, non-blocking UDP socket with batched I/O, of one
// address family.
//
// ReadBatch and WriteBatch each use their own preallocated state, so one
// goroutine may read while another writes; two concurrent ReadBatch calls (or
// two WriteBatch calls) on one Conn are not allowed. Close must not run
// concurrently with either.
type Conn struct {
	fd    int
	local netip.AddrPort
	batch int
	v6    bool

	rx    msgs
	trunc []bool
	// groSize[i] is datagram i's UDP_GRO segment size; nil until
	// EnableGRO (offload_linux.go).
	groSize []int
	rxCtrl  []byte

	tx    msgs
	skips []Skip
	// gtx is the segmented-send state (UDP_SEGMENT); empty until
	// EnableGSO (offload_linux.go).
	gtx    msgs
	txCtrl []byte
	// grp and runs are WriteGrouped's state, allocated with gtx.
	grp     msgs
	grpCtrl []byte
	runs    []run
}

// Listen opens a UDP socket bound to opts.Addr, IPv4 or IPv6 after it.
// The error names the address; nothing stays open on error.
func Listen(opts Options) (*Conn, error) {
	addr := netip.AddrPortFrom(opts.Addr.Addr().Unmap(), opts.Addr.Port())
	if !addr.Addr().IsValid() {
		return nil, fmt.Errorf("udpsock: listen %s: not an IP address", opts.Addr)
	}
	v6 := addr.Addr().Is6()
	batch := opts.Batch
	if batch == 0 {
		batch = DefaultBatch
	}
	if batch < 1 || batch > MaxBatch {
		return nil, fmt.Errorf("udpsock: listen %s: batch %d outside 1..%d", addr, opts.Batch, MaxBatch)
	}
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("udpsock: listen %s: socket: %w", addr, err)
	}
	c := &Conn{fd: fd, batch: batch, v6: v6}
	if err := c.setup(addr, opts); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("udpsock: listen %s: %w", addr, err)
	}
	c.rx = newMsgs(batch, v6)
	c.trunc = make([]bool, batch)
	c.tx = newMsgs(batch, v6)
	c.skips = make([]Skip, 0, batch)
	return c, nil
}

// setup sets the socket options, binds, and records the local address.
func (c *Conn) setup(addr netip.AddrPort, opts Options) error {
	reusePort := func() error {
		if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("SO_REUSEPORT: %w", err)
		}
		return nil
	}
	if opts.ReusePort && addr.Port() != 0 {
		if err := reusePort(); err != nil {
			return err
		}
	}
	if err := setBuf(c.fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, opts.RecvBuf); err != nil {
		return fmt.Errorf("receive buffer %d: %w", opts.RecvBuf, err)
	}
	if err := setBuf(c.fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, opts.SendBuf); err != nil {
		return fmt.Errorf("send buffer %d: %w", opts.SendBuf, err)
	}
	var sa unix.Sockaddr
	if c.v6 {
		// One family per socket: an IPv4 peer is another socket's.
		if err := unix.SetsockoptInt(c.fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fmt.Errorf("IPV6_V6ONLY: %w", err)
		}
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	}
	if err := unix.Bind(c.fd, sa); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if opts.ReusePort && addr.Port() == 0 {
		if err := reusePort(); err != nil {
			return err
		}
	}
	bound, err := unix.Getsockname(c.fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		c.local = netip.AddrPortFrom(netip.AddrFrom4(b.Addr), uint16(b.Port))
	case *unix.SockaddrInet6:
		c.local = netip.AddrPortFrom(netip.AddrFrom16(b.Addr), uint16(b.Port))
	default:
		return fmt.Errorf("getsockname: unexpected address type %T", bound)
	}
	return nil
}

// fits reports whether a is an address of the socket's family, one it can
// send to.
func (c *Conn) fits(a netip.Addr) bool {
	if c.v6 {
		return a.Is6() && !a.Is4In6()
	}
	return a.Is4() || a.Is4In6()
}

// errFamily is the Skip error of a destination that does not fit.
func (c *Conn) errFamily() error {
	if c.v6 {
		return ErrNotIPv6
	}
	return ErrNotIPv4
}

// setBuf sets a socket buffer size with the FORCE option, falling back to the
// plain one when the process may not force (EPERM). size 0 does nothing.
func setBuf(fd, force, plain, size int) error {
	if size == 0 {
		return nil
	}
	if size < 0 {
		return fmt.Errorf("negative size")
	}
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size)
	if err == unix.EPERM {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
	}
	return err
}

// Fd returns the socket's non-blocking descriptor, for the caller's epoll
// loop. It is -1 after Close. The caller must not close it; setting further
// socket options on it is allowed.
func (c *Conn) Fd() int { return c.fd }

// LocalAddr returns the bound address, with the port the kernel chose when
// Options.Addr had port 0.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// Batch returns the batch size: the most datagrams one ReadBatch returns.
func (c *Conn) Batch() int { return c.batch }

// ReadBatch receives up to min(len(bufs), len(sizes), Batch) datagrams with
// one recvmmsg(2) without blocking. Datagram i is stored in bufs[i][offset:],
// its length in sizes[i] and, if from is not nil, its source in from[i] (from
// then also limits the count). It returns the number received; when none is
// waiting it returns 0 and a nil error.
//
// A datagram longer than its buffer is cut to fit and Truncated(i) reports
// it, so the caller can drop it with a reason. Buffers are only written, never
// retained past the call. ReadBatch allocates nothing.
func (c *Conn) ReadBatch(bufs [][]byte, sizes []int, from []netip.AddrPort, offset int) (n int, err error) {
	k := min(len(bufs), len(sizes), c.batch)
	if from != nil {
		k = min(k, len(from))
	}
	if k == 0 {
		return 0, nil
	}
	m := &c.rx
	for i := range k {
		b := bufs[i]
		if len(b) <= offset {
			return 0, ErrShortBuffer
		}
		m.iovs[i].Base = &b[offset]
		m.iovs[i].SetLen(len(b) - offset)
		m.hdrs[i].hdr.Namelen = m.nameLen()
		m.hdrs[i].hdr.Flags = 0
		m.hdrs[i].len = 0
		if c.groSize != nil {
			m.hdrs[i].hdr.SetControllen(groCmsgSpace) // UDP_GRO (offload_linux.go)
		}
	}
	var r uintptr
	for {
		got, e := sysraw.RecvMmsg(c.fd, unsafe.Pointer(&m.hdrs[0]), k)
		r = uintptr(got)
		if e == 0 {
			break
		}
		switch {
		case e == unix.EAGAIN:
			clearIovs(m.iovs[:k])
			return 0, nil
		case e == unix.EINTR || isPeerErr(e):
			// A signal, or a pending error from an ICMP message about an
			// earlier send that the kernel has now cleared: try again.
			continue
		default:
			clearIovs(m.iovs[:k])
			return 0, fmt.Errorf("udpsock: recvmmsg on %s: %w", c.local, e)
		}
	}
	n = int(r)
	for i := range n {
		h := &m.hdrs[i]
		sizes[i] = int(h.len)
		c.trunc[i] = h.hdr.Flags&unix.MSG_TRUNC != 0
		if c.groSize != nil {
			c.groSize[i] = c.parseGRO(i) // UDP_GRO (offload_linux.go)
		}
		if from != nil {
			from[i] = m.name(i)
		}
	}
	clearIovs(m.iovs[:k])
	return n, nil
}

// clearIovs drops the references to the caller's buffers, so a Conn never
// keeps them alive between calls.
func clearIovs(iovs []unix.Iovec) {
	for i := range iovs {
		iovs[i].Base = nil
	}
}

// Truncated reports whether datagram i of the last ReadBatch was longer than
// its buffer (MSG_TRUNC) and was cut. Valid for i < n of that call, until the
// next ReadBatch.
func (c *Conn) Truncated(i int) bool { return c.trunc[i] }

// WriteBatch sends each of bufs[i][offset:] as one datagram to to[i], in
// order, with as few sendmmsg(2) calls as the kernel allows (one per Batch
// datagrams when all goes well). len(to) must be at least len(bufs), and
// offset at most the length of every buffer.
//
// It returns n, the number of datagrams handled: bufs[:n] were each either
// sent or skipped. A datagram that fails for a reason of its own (see Skip)
// is skipped and the rest of the batch goes on; Skipped lists those. When the
// socket cannot take more (EAGAIN, ENOBUFS) WriteBatch returns n and
// ErrTxFull, and bufs[n:] were not sent. On any other error, bufs[n:] were
// not sent and the error names the socket.
//
// Buffers are not retained past the call. WriteBatch allocates nothing,
// unless more than Batch datagrams of one call are skipped.
func (c *Conn) WriteBatch(bufs [][]byte, to []netip.AddrPort, offset int) (n int, err error) {
	c.skips = c.skips[:0]
	m := &c.tx
	defer clearIovs(m.iovs)
	for n < len(bufs) {
		// Fill a run of up to Batch datagrams with destinations of the
		// socket's family.
		k := 0
		for k < c.batch && n+k < len(bufs) {
			dst := to[n+k]
			if !c.fits(dst.Addr()) {
				break
			}
			b := bufs[n+k][offset:]
			setIov(&m.iovs[k], b)
			m.setDst(k, dst)
			k++
		}
		if k == 0 {
			c.skips = append(c.skips, Skip{Index: n, Err: c.errFamily()})
			n++
			continue
		}
		sent, err := c.sendRun(&c.tx, n, k, nil)
		n += sent
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// sendRun sends the k filled entries of m (c.tx, c.gtx for segmented
// sends, c.grp for grouped ones), whose first is bufs[base], looping over
// partial sends and skipping entries that fail on their own. It returns how
// many entries were handled. With runs, entry s carries the datagrams
// runs[s] (each skipped with it), and a grouped entry the kernel refuses as
// a whole (EINVAL, EMSGSIZE: a segment it would not cut) stops the run
// with errSplit so the caller can send its datagrams one by one.
func (c *Conn) sendRun(m *msgs, base, k int, runs []run) (int, error) {
	s := 0
	retried := -1 // the entry already retried after ECONNREFUSED
	for s < k {
		r, e := sysraw.SendMmsg(c.fd, unsafe.Pointer(&m.hdrs[s]), k-s)
		if e == 0 {
			s += int(r)
			continue
		}
		switch {
		case e == unix.EAGAIN || e == unix.ENOBUFS:
			return s, ErrTxFull
		case e == unix.EINTR:
			continue
		case e == unix.ECONNREFUSED && retried != s:
			// The socket held an error from an ICMP message about an earlier
			// datagram; the kernel reported and cleared it on this one, which
			// was not sent. Send it again once.
			retried = s
			continue
		case runs != nil && runs[s].count > 1 && (e == unix.EMSGSIZE || e == unix.EINVAL):
			return s, errSplit
		case isPeerErr(e) || e == unix.EMSGSIZE || e == unix.EINVAL || e == unix.EPERM || e == unix.EACCES:
			if runs == nil {
				c.skips = append(c.skips, Skip{Index: base + s, Err: e})
			} else {
				for j := range runs[s].count {
					c.skips = append(c.skips, Skip{Index: runs[s].first + j, Err: e})
				}
			}
			s++
		default:
			return s, fmt.Errorf("udpsock: sendmmsg on %s: %w", c.local, e)
		}
	}
	return s, nil
}

// isPeerErr reports whether e is about reaching one particular destination
// (a route or an ICMP report), not about the socket.
func isPeerErr(e unix.Errno) bool {
	switch e {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.ENETDOWN, unix.EADDRNOTAVAIL:
		return true
	}
	return false
}

// Skipped lists the datagrams the last WriteBatch skipped, in index order.
// The slice is reused by the next WriteBatch.
func (c *Conn) Skipped() []Skip { return c.skips }

// Close closes the socket. It must not run concurrently with ReadBatch or
// WriteBatch; calling it again is a no-op.
func (c *Conn) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	if err != nil {
		return fmt.Errorf("udpsock: close %s: %w", c.local, err)
	}
	return nil
}
