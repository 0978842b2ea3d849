// Package rawsock is ferry's batched raw IPv4 socket for tunnel protocols
// that have no transport port, GRE (IP protocol 47) first: one recvmmsg(2)
// or sendmmsg(2) moves a whole batch of datagrams, and no call allocates per
// datagram. It is package udpsock's twin and has the same shape: per-Conn
// preallocated mmsghdr, iovec and sockaddr_in arrays, caller-owned buffers
// with headroom, a non-blocking descriptor for the caller's own epoll loop.
//
// # What the kernel does with such a socket
//
// A SOCK_RAW socket for protocol P receives a copy (a clone) of every IPv4
// packet of protocol P that the host accepts for local delivery, IPv4 header
// included, before and independently of any kernel handler for P. Binding it
// to a local address (Options.Local) limits that to packets whose
// destination is that address. Sending without IP_HDRINCL, as this package
// does, lets the kernel build the outer IPv4 header: protocol P, the bound
// address as source (or the route's preferred source when unbound), TTL 64,
// DF set unless the payload must be fragmented to fit the path MTU.
//
// When a packet of protocol P arrives and no raw socket matches it and no
// kernel handler for P exists, the host answers with ICMP protocol
// unreachable (type 3, code 2); when a raw socket matches, it does not. This
// kernel has no GRE module (ip_gre), so ferry's socket is the only consumer
// of GRE packets and a ferry host answers none of them with ICMP; a host not
// running ferry answers each one with protocol unreachable (both tested).
// On a kernel that has ip_gre loaded, its handler would see the same packets
// as well and, finding no GRE device that matches (its fallback gre0 is
// down), answer each with ICMP port unreachable (net/ipv4/ip_gre.c,
// gre_rcv) while ferry still gets its copy: run ferry's GRE only where
// ip_gre is not loaded, or drop those ICMP messages.
//
// ICMP errors about ferry's own datagrams are not reported on the socket:
// the kernel records them only for raw sockets that are connected or have
// IP_RECVERR set (net/ipv4/raw.c, raw_err), and a Conn is neither, so a
// peer's protocol-unreachable never surfaces as an error from ReadBatch or
// WriteBatch. A frag-needed message still lowers the path MTU the kernel
// uses for later datagrams.
//
// Every raw socket for P gets its own copy, so several sockets do not share
// the load the way SO_REUSEPORT UDP sockets do: open one Conn that receives,
// and give any further Conns, used only to send from other workers,
// Options.SendOnly.
//
// Opening a raw socket needs CAP_NET_RAW. IPv4 only.
package rawsock

import (
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/internal/sysraw"

	"github.com/ferry-overlay/ferry/header"
)

// ProtoGRE is the IP protocol number of GRE (RFC 2784).
const ProtoGRE = 47

// DefaultBatch is the batch size used when Options.Batch is 0.
const DefaultBatch = 64

// MaxBatch is the largest batch the kernel takes in one call (UIO_MAXIOV).
const MaxBatch = 1024

// maxHeaderLen is the longest IPv4 header: IHL 15, 40 bytes of options.
const maxHeaderLen = 60

// ErrTxFull is returned by [Conn.WriteBatch] when the kernel refused a
// datagram for lack of buffer space (ENOBUFS, which is what a raw socket
// returns when its send buffer is full; EAGAIN is handled alike). The
// datagrams not handled can be counted as transmit-full drops, or retried
// later.
var ErrTxFull = errors.New("rawsock: send buffer full")

// ErrShortBuffer is returned by [Conn.ReadBatch] when a buffer has no room
// after the offset.
var ErrShortBuffer = errors.New("rawsock: buffer has no room after offset")

// ErrNotIPv4 is the error of a [Skip] whose destination is not an IPv4 (or
// IPv4-mapped IPv6) address.
var ErrNotIPv4 = errors.New("rawsock: destination is not IPv4")

// Options describes the socket to open.
type Options struct {
	// Proto is the IP protocol number to send and receive, 1 to 254
	// (ProtoGRE for GRE). 0 and 255 (IPPROTO_RAW, send-only) are rejected.
	Proto int
	// Local is the local IPv4 (or IPv4-mapped) address to bind: only
	// packets to it are received, and it is the source of every datagram
	// sent. It must be an address of this host in the caller's network
	// namespace. The unspecified address 0.0.0.0 binds none: the socket then
	// receives protocol Proto packets to every local address, and the
	// kernel picks each datagram's source from its route.
	Local netip.Addr
	// RecvBuf and SendBuf set SO_RCVBUF and SO_SNDBUF in bytes; 0 leaves the
	// system default. The FORCE variants are tried first so that root can
	// exceed net.core.rmem_max/wmem_max; without CAP_NET_ADMIN the plain
	// options are used, which the kernel caps silently.
	RecvBuf, SendBuf int
	// Batch is the most datagrams one ReadBatch call returns and one
	// sendmmsg call carries; 0 means DefaultBatch, at most MaxBatch.
	Batch int
	// SendOnly attaches a socket filter that drops every incoming packet, so
	// the socket never queues the copies a raw socket otherwise gets (see
	// the package comment): for workers that send on their own Conn while
	// one Conn receives. ReadBatch on it always returns 0.
	SendOnly bool
}

// Skip records a datagram that [Conn.WriteBatch] dropped because of an error
// that concerns only that datagram or its destination (for example
// ENETUNREACH or EHOSTUNREACH for no route, EMSGSIZE for a payload over
// 65535 bytes, EACCES for a broadcast destination, EPERM from a firewall, or
// ErrNotIPv4), so that the caller can count it with a reason.
type Skip struct {
	// Index is the datagram's index in the bufs given to WriteBatch.
	Index int
	// Err is the reason: a unix.Errno or ErrNotIPv4.
	Err error
}

// mmsghdr mirrors struct mmsghdr. Go's natural alignment gives it the C
// layout on both 32- and 64-bit platforms (trailing padding included).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// Conn is a bound, non-blocking raw IPv4 socket for one IP protocol, with
// batched I/O.
//
// ReadBatch and WriteBatch each use their own preallocated state, so one
// goroutine may read while another writes; two concurrent ReadBatch calls (or
// two WriteBatch calls) on one Conn are not allowed. Close must not run
// concurrently with either.
type Conn struct {
	fd    int
	proto int
	local netip.Addr
	batch int

	// Receive side: datagram i is scattered over rxIovs[2i], the first
	// IPv4MinLen bytes of heads[i], and rxIovs[2i+1], the caller's buffer.
	rxHdrs  []mmsghdr
	rxIovs  []unix.Iovec
	heads   [][maxHeaderLen]byte
	headLen []int
	trunc   []bool

	// Send side: datagram i is txIovs[i] to txNames[i].
	txHdrs  []mmsghdr
	txIovs  []unix.Iovec
	txNames []unix.RawSockaddrInet4
	skips   []Skip
}

// Listen opens a raw IPv4 socket for protocol opts.Proto bound to
// opts.Local. The error names the protocol and address; nothing stays open
// on error.
func Listen(opts Options) (*Conn, error) {
	local := opts.Local.Unmap()
	if !local.Is4() {
		return nil, fmt.Errorf("rawsock: listen proto %d on %s: not an IPv4 address", opts.Proto, opts.Local)
	}
	if opts.Proto < 1 || opts.Proto > 254 {
		return nil, fmt.Errorf("rawsock: listen proto %d on %s: protocol outside 1..254", opts.Proto, local)
	}
	batch := opts.Batch
	if batch == 0 {
		batch = DefaultBatch
	}
	if batch < 1 || batch > MaxBatch {
		return nil, fmt.Errorf("rawsock: listen proto %d on %s: batch %d outside 1..%d", opts.Proto, local, opts.Batch, MaxBatch)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, opts.Proto)
	if err != nil {
		return nil, fmt.Errorf("rawsock: listen proto %d on %s: socket: %w", opts.Proto, local, err)
	}
	c := &Conn{fd: fd, proto: opts.Proto, local: local, batch: batch}
	if err := c.setup(opts); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rawsock: listen proto %d on %s: %w", opts.Proto, local, err)
	}
	c.allocRx()
	c.allocTx()
	return c, nil
}

// setup sets the socket buffers and binds the local address.
func (c *Conn) setup(opts Options) error {
	if err := setBuf(c.fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, opts.RecvBuf); err != nil {
		return fmt.Errorf("receive buffer %d: %w", opts.RecvBuf, err)
	}
	if err := setBuf(c.fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, opts.SendBuf); err != nil {
		return fmt.Errorf("send buffer %d: %w", opts.SendBuf, err)
	}
	if opts.SendOnly {
		// A classic BPF program of one instruction, "return 0": keep no
		// byte of any packet. It runs before the packet is queued.
		drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
		prog := &unix.SockFprog{Len: uint16(len(drop)), Filter: &drop[0]}
		if err := unix.SetsockoptSockFprog(c.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, prog); err != nil {
			return fmt.Errorf("send-only filter: %w", err)
		}
	}
	if err := unix.Bind(c.fd, &unix.SockaddrInet4{Addr: c.local.As4()}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
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

// allocRx preallocates the receive side. No source sockaddr is asked for:
// the source address is read from the IPv4 header itself.
func (c *Conn) allocRx() {
	n := c.batch
	c.rxHdrs = make([]mmsghdr, n)
	c.rxIovs = make([]unix.Iovec, 2*n)
	c.heads = make([][maxHeaderLen]byte, n)
	c.headLen = make([]int, n)
	c.trunc = make([]bool, n)
	for i := range c.rxHdrs {
		c.rxIovs[2*i].Base = &c.heads[i][0]
		c.rxIovs[2*i].SetLen(header.IPv4MinLen)
		h := &c.rxHdrs[i].hdr
		h.Iov = &c.rxIovs[2*i]
		h.SetIovlen(2)
	}
}

// allocTx preallocates the send side.
func (c *Conn) allocTx() {
	n := c.batch
	c.txHdrs = make([]mmsghdr, n)
	c.txIovs = make([]unix.Iovec, n)
	c.txNames = make([]unix.RawSockaddrInet4, n)
	c.skips = make([]Skip, 0, n)
	for i := range c.txHdrs {
		c.txNames[i].Family = unix.AF_INET
		h := &c.txHdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&c.txNames[i]))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Iov = &c.txIovs[i]
		h.SetIovlen(1)
	}
}

// Fd returns the socket's non-blocking descriptor, for the caller's epoll
// loop. It is -1 after Close. The caller must not close it, connect it, or
// set IP_HDRINCL or IP_RECVERR on it (the package relies on neither being
// set); other socket options are allowed.
func (c *Conn) Fd() int { return c.fd }

// LocalAddr returns the bound address (0.0.0.0 when unbound).
func (c *Conn) LocalAddr() netip.Addr { return c.local }

// Proto returns the IP protocol number the socket sends and receives.
func (c *Conn) Proto() int { return c.proto }

// Batch returns the batch size: the most datagrams one ReadBatch returns.
func (c *Conn) Batch() int { return c.batch }

// ReadBatch receives up to min(len(bufs), len(sizes), Batch) datagrams with
// one recvmmsg(2) without blocking. The payload of datagram i (what follows
// its IPv4 header: the bytes the sender's WriteBatch sent) is stored in
// bufs[i][offset:], its length in sizes[i] and, if from is not nil, its
// source address in from[i] (from then also limits the count). Its IPv4
// header, options included, is kept apart and is available from Header(i).
// It returns the number received; when none is waiting it returns 0 and a
// nil error.
//
// A datagram longer than its buffer is cut to fit and Truncated(i) reports
// it, so the caller can drop it with a reason. A datagram whose header
// carries IP options (rare) costs one copy of its payload within the buffer.
// Buffers are only written, never retained past the call. ReadBatch
// allocates nothing.
func (c *Conn) ReadBatch(bufs [][]byte, sizes []int, from []netip.Addr, offset int) (n int, err error) {
	k := min(len(bufs), len(sizes), c.batch)
	if from != nil {
		k = min(k, len(from))
	}
	if k == 0 {
		return 0, nil
	}
	for i := range k {
		b := bufs[i]
		if len(b) <= offset {
			c.clearRxIovs(k)
			return 0, ErrShortBuffer
		}
		iov := &c.rxIovs[2*i+1]
		iov.Base = &b[offset]
		iov.SetLen(len(b) - offset)
		c.rxHdrs[i].hdr.Flags = 0
		c.rxHdrs[i].len = 0
	}
	var r uintptr
	for {
		got, e := sysraw.RecvMmsg(c.fd, unsafe.Pointer(&c.rxHdrs[0]), k)
		r = uintptr(got)
		if e == 0 {
			break
		}
		switch e {
		case unix.EAGAIN:
			c.clearRxIovs(k)
			return 0, nil
		case unix.EINTR:
			continue
		default:
			c.clearRxIovs(k)
			return 0, fmt.Errorf("rawsock: recvmmsg proto %d on %s: %w", c.proto, c.local, e)
		}
	}
	n = int(r)
	for i := range n {
		sizes[i] = c.split(i, bufs[i][offset:])
		if from != nil {
			from[i] = netip.AddrFrom4([4]byte(c.heads[i][12:16]))
		}
	}
	c.clearRxIovs(k)
	return n, nil
}

// split finishes datagram i of the last recvmmsg, whose first IPv4MinLen
// bytes are in heads[i] and the rest at the start of b: it moves the IP
// options, if any, from b to heads[i], moves the payload to the start of b,
// records the header length and truncation, and returns the payload length.
func (c *Conn) split(i int, b []byte) int {
	h := &c.rxHdrs[i]
	c.trunc[i] = h.hdr.Flags&unix.MSG_TRUNC != 0
	// rest is what landed in b; the kernel's ip_rcv checked IHL >= 5 and
	// the length, so neither max changes a value that came from it.
	rest := max(int(h.len)-header.IPv4MinLen, 0)
	opts := max(int(c.heads[i][0]&0x0f)*4-header.IPv4MinLen, 0)
	if opts > rest {
		// The buffer ended inside the options: no payload arrived.
		c.headLen[i] = header.IPv4MinLen + copy(c.heads[i][header.IPv4MinLen:], b[:rest])
		c.trunc[i] = true
		return 0
	}
	c.headLen[i] = header.IPv4MinLen + opts
	if opts == 0 {
		return rest
	}
	copy(c.heads[i][header.IPv4MinLen:], b[:opts])
	return copy(b, b[opts:rest])
}

// clearRxIovs drops the references to the caller's buffers, so a Conn never
// keeps them alive between calls.
func (c *Conn) clearRxIovs(k int) {
	for i := range k {
		c.rxIovs[2*i+1].Base = nil
	}
}

// Header returns the IPv4 header of datagram i of the last ReadBatch, as
// received, options included (for example to read the outer TOS for ECN).
// Valid for i < n of that call; the bytes belong to the Conn and are
// overwritten by the next ReadBatch. Its total length field counts the whole
// datagram even when Truncated(i).
func (c *Conn) Header(i int) header.IPv4 { return c.heads[i][:c.headLen[i]] }

// Truncated reports whether datagram i of the last ReadBatch was longer than
// its buffer (MSG_TRUNC) and was cut. Valid for i < n of that call, until the
// next ReadBatch.
func (c *Conn) Truncated(i int) bool { return c.trunc[i] }

// WriteBatch sends each of bufs[i][offset:] as the payload of one IPv4
// datagram of protocol Proto to to[i], in order, with as few sendmmsg(2)
// calls as the kernel allows (one per Batch datagrams when all goes well);
// the kernel writes the IPv4 header. len(to) must be at least len(bufs), and
// offset at most the length of every buffer.
//
// It returns n, the number of datagrams handled: bufs[:n] were each either
// sent or skipped. A datagram that fails for a reason of its own (see Skip)
// is skipped and the rest of the batch goes on; Skipped lists those. When the
// kernel has no buffer space left (ENOBUFS, EAGAIN) WriteBatch returns n and
// ErrTxFull, and bufs[n:] were not sent. On any other error, bufs[n:] were
// not sent and the error names the socket.
//
// A payload larger than the path MTU allows is fragmented by the kernel. A
// datagram dropped later, by a queue discipline or the network, is not
// reported. Buffers are not retained past the call. WriteBatch allocates
// nothing, unless more than Batch datagrams of one call are skipped.
func (c *Conn) WriteBatch(bufs [][]byte, to []netip.Addr, offset int) (n int, err error) {
	c.skips = c.skips[:0]
	defer clearIovs(c.txIovs)
	for n < len(bufs) {
		// Fill a run of up to Batch datagrams with IPv4 destinations.
		k := 0
		for k < c.batch && n+k < len(bufs) {
			dst := to[n+k]
			if !dst.Is4() && !dst.Is4In6() {
				break
			}
			b := bufs[n+k][offset:]
			if len(b) > 0 {
				c.txIovs[k].Base = &b[0]
			} else {
				c.txIovs[k].Base = nil
			}
			c.txIovs[k].SetLen(len(b))
			c.txNames[k].Addr = dst.As4()
			k++
		}
		if k == 0 {
			c.skips = append(c.skips, Skip{Index: n, Err: ErrNotIPv4})
			n++
			continue
		}
		sent, err := c.sendRun(n, k)
		n += sent
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// sendRun sends the k filled entries of the send side, whose first is
// bufs[base], looping over partial sends and skipping entries that fail on
// their own. It returns how many entries were handled.
func (c *Conn) sendRun(base, k int) (int, error) {
	s := 0
	for s < k {
		r, e := sysraw.SendMmsg(c.fd, unsafe.Pointer(&c.txHdrs[s]), k-s)
		if e == 0 {
			s += int(r)
			continue
		}
		switch {
		case e == unix.ENOBUFS || e == unix.EAGAIN:
			return s, ErrTxFull
		case e == unix.EINTR:
			continue
		case isDatagramErr(e):
			c.skips = append(c.skips, Skip{Index: base + s, Err: e})
			s++
		default:
			return s, fmt.Errorf("rawsock: sendmmsg proto %d on %s: %w", c.proto, c.local, e)
		}
	}
	return s, nil
}

// isDatagramErr reports whether e, returned for one datagram, is about that
// datagram or its destination rather than about the socket.
func isDatagramErr(e unix.Errno) bool {
	switch e {
	case unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.ENETDOWN, unix.EADDRNOTAVAIL,
		unix.EMSGSIZE, unix.EINVAL, unix.EPERM, unix.EACCES:
		return true
	}
	return false
}

// clearIovs drops the references to the caller's buffers.
func clearIovs(iovs []unix.Iovec) {
	for i := range iovs {
		iovs[i].Base = nil
	}
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
		return fmt.Errorf("rawsock: close proto %d on %s: %w", c.proto, c.local, err)
	}
	return nil
}
