package udpsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP offloads: UDP_SEGMENT (GSO) sends many equal-size datagrams to one
// destination with one message, and UDP_GRO receives many datagrams of one
// flow in one buffer. The control-message buffers both need are allocated
// once, by EnableGSO and EnableGRO, so the batched calls stay free of
// allocation.

// MaxGSOSegments is the most datagrams one segmented message may carry
// (the kernel's UDP_MAX_SEGMENTS).
const MaxGSOSegments = 64

// MaxGSOBytes is the most payload one segmented message may carry: what
// fits in one IPv4 packet's length field after the IPv4 and UDP headers
// (an IPv6 socket, whose limit is 20 bytes higher, keeps to it too).
const MaxGSOBytes = 65535 - 20 - 8

var (
	groCmsgSpace = unix.CmsgSpace(4) // UDP_GRO: an int
	gsoCmsgSpace = unix.CmsgSpace(2) // UDP_SEGMENT: a uint16
)

// EnableGRO turns on UDP_GRO: the kernel may then deliver several
// datagrams of one flow, all of one size but the last (which may be
// shorter), concatenated in one buffer, and GROSize reports that size.
// Buffers given to ReadBatch should then hold 64 KiB after the offset. Call
// it before the first ReadBatch; not concurrently with one.
func (c *Conn) EnableGRO() error {
	if err := unix.SetsockoptInt(c.fd, unix.SOL_UDP, unix.UDP_GRO, 1); err != nil {
		return fmt.Errorf("udpsock: UDP_GRO on %s: %w", c.local, err)
	}
	c.rxCtrl = make([]byte, c.batch*groCmsgSpace)
	for i := range c.rx.hdrs {
		c.rx.hdrs[i].hdr.Control = &c.rxCtrl[i*groCmsgSpace]
	}
	c.groSize = make([]int, c.batch)
	return nil
}

// GROSize returns the segment size of datagram i of the last ReadBatch when
// the kernel coalesced several datagrams into it (UDP_GRO): every segment
// but the last has exactly that size. It returns 0 for a plain datagram, or
// when GRO is not enabled. Valid for i < n of that call, until the next
// ReadBatch.
func (c *Conn) GROSize(i int) int {
	if c.groSize == nil {
		return 0
	}
	return c.groSize[i]
}

// parseGRO returns the UDP_GRO segment size carried by the control message
// of received entry i, or 0 when there is none.
func (c *Conn) parseGRO(i int) int {
	h := &c.rx.hdrs[i].hdr
	ctl := c.rxCtrl[i*groCmsgSpace : i*groCmsgSpace+int(h.Controllen)]
	for len(ctl) >= unix.SizeofCmsghdr {
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(cm.Len)
		if l < unix.SizeofCmsghdr || l > len(ctl) {
			return 0
		}
		if cm.Level == unix.SOL_UDP && cm.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(binary.NativeEndian.Uint32(ctl[unix.CmsgLen(0):]))
		}
		ctl = ctl[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(ctl)):]
	}
	return 0
}

// EnableGSO checks that the kernel supports UDP_SEGMENT on this socket and
// prepares the state WriteSegmented needs. It returns an error naming the
// socket when segmentation is not available; WriteBatch still works then.
func (c *Conn) EnableGSO() error {
	if _, err := unix.GetsockoptInt(c.fd, unix.SOL_UDP, unix.UDP_SEGMENT); err != nil {
		return fmt.Errorf("udpsock: UDP_SEGMENT on %s: %w", c.local, err)
	}
	c.gtx, c.txCtrl = newGSOMsgs(c.batch, c.v6)
	c.grp, c.grpCtrl = newGSOMsgs(c.batch, c.v6)
	c.runs = make([]run, c.batch)
	return nil
}

// newGSOMsgs returns n messages, each with a UDP_SEGMENT control message
// in ctl for the sender to fill with the segment size.
func newGSOMsgs(n int, v6 bool) (m msgs, ctl []byte) {
	m = newMsgs(n, v6)
	ctl = make([]byte, n*gsoCmsgSpace)
	for i := range m.hdrs {
		b := ctl[i*gsoCmsgSpace:]
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		cm.SetLen(unix.CmsgLen(2))
		m.hdrs[i].hdr.Control = &b[0]
		m.hdrs[i].hdr.SetControllen(gsoCmsgSpace)
	}
	return m, ctl
}

// WriteSegmented sends bufs[i] to to[i] as datagrams of segSize[i] bytes
// each (the last may be shorter), one UDP_SEGMENT message per buffer, with
// as few sendmmsg(2) calls as the kernel allows. A buffer no longer than
// its segment size is sent as one plain datagram. Each buffer must hold at
// most MaxGSOSegments segments and MaxGSOBytes bytes. EnableGSO must have
// succeeded.
//
// Results are as for WriteBatch, counted in buffers (messages): n buffers
// were handled, Skipped lists those refused on their own, and ErrTxFull
// means bufs[n:] were not sent. It allocates nothing, unless more than
// Batch messages of one call are skipped.
func (c *Conn) WriteSegmented(bufs [][]byte, segSize []int, to []netip.AddrPort) (n int, err error) {
	c.skips = c.skips[:0]
	m := &c.gtx
	defer clearIovs(m.iovs)
	for n < len(bufs) {
		k := 0
		for k < c.batch && n+k < len(bufs) {
			dst := to[n+k]
			if !c.fits(dst.Addr()) {
				break
			}
			b := bufs[n+k]
			setIov(&m.iovs[k], b)
			seg := segSize[n+k]
			if seg >= len(b) {
				seg = 0 // one datagram: no segmentation
			}
			ctl := c.txCtrl[k*gsoCmsgSpace:]
			binary.NativeEndian.PutUint16(ctl[unix.CmsgLen(0):], uint16(seg))
			m.setDst(k, dst)
			k++
		}
		if k == 0 {
			c.skips = append(c.skips, Skip{Index: n, Err: c.errFamily()})
			n++
			continue
		}
		sent, err := c.sendRun(m, n, k, nil)
		n += sent
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// run is the datagrams one grouped message carries: bufs[first:first+count]
// of the WriteGrouped call.
type run struct{ first, count int }

// errSplit is sendRun's word that a grouped message must be sent as single
// datagrams.
var errSplit = errors.New("udpsock: grouped message refused as a whole")

// WriteGrouped is WriteBatch for a socket with EnableGSO: each run of
// consecutive datagrams to one destination, all of one size but the last
// (which may be shorter), goes out as one UDP_SEGMENT message whose iovecs
// point at the datagrams where they are, with no copy. The kernel builds
// one GSO packet per run and cuts it as late as it can (on a veth underlay
// not at all: a peer with UDP_GRO gets the run in one read), which costs a
// fraction of sending each datagram on its own. Peers see exactly the
// datagrams WriteBatch would have sent. A run the kernel refuses as a
// whole (EINVAL or EMSGSIZE: a segment over the path MTU, which it would
// fragment if sent alone) is sent datagram by datagram. Results and
// allocations are as for WriteBatch, counted in datagrams.
func (c *Conn) WriteGrouped(bufs [][]byte, to []netip.AddrPort, offset int) (n int, err error) {
	c.skips = c.skips[:0]
	m := &c.grp
	defer clearIovs(m.iovs)
	for n < len(bufs) {
		k := c.group(bufs, to, offset, n)
		if k == 0 {
			c.skips = append(c.skips, Skip{Index: n, Err: c.errFamily()})
			n++
			continue
		}
		sent, err := c.sendRun(m, n, k, c.runs[:k])
		if sent > 0 {
			n = c.runs[sent-1].first + c.runs[sent-1].count
		}
		if err == errSplit {
			r := c.runs[sent]
			done, err := c.sendSingles(bufs, to, offset, r)
			n = r.first + done
			if err != nil {
				return n, err
			}
			continue
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// group fills c.grp with messages for bufs[n:], up to Batch datagrams in
// all, and returns the number of messages; c.runs says which datagrams
// each carries. It stops before a datagram whose destination is not of the
// socket's family.
func (c *Conn) group(bufs [][]byte, to []netip.AddrPort, offset, n int) int {
	m := &c.grp
	k, d := 0, 0 // messages, datagrams
	for k < c.batch && d < len(m.iovs) && n+d < len(bufs) {
		first := n + d
		dst := to[first]
		if !c.fits(dst.Addr()) {
			break
		}
		size := len(bufs[first]) - offset
		count, total := 0, 0
		for d < len(m.iovs) && n+d < len(bufs) && count < MaxGSOSegments {
			b := bufs[n+d][offset:]
			if count > 0 && (size == 0 || to[n+d] != dst || len(b) > size || total+len(b) > MaxGSOBytes) {
				break
			}
			setIov(&m.iovs[d], b)
			d++
			count++
			total += len(b)
			if len(b) < size {
				break // a shorter datagram ends the run
			}
		}
		h := &m.hdrs[k].hdr
		h.Iov = &m.iovs[d-count]
		h.SetIovlen(count)
		seg := size
		if count == 1 {
			seg = 0 // one datagram: no segmentation
		}
		binary.NativeEndian.PutUint16(c.grpCtrl[k*gsoCmsgSpace+unix.CmsgLen(0):], uint16(seg))
		m.setDst(k, dst)
		c.runs[k] = run{first: first, count: count}
		k++
	}
	return k
}

// sendSingles sends the datagrams of run r one per message, after the
// kernel refused them grouped, adding to c.skips those refused on their
// own, and returns how many it handled.
func (c *Conn) sendSingles(bufs [][]byte, to []netip.AddrPort, offset int, r run) (int, error) {
	m := &c.tx
	defer clearIovs(m.iovs[:r.count])
	for i := range r.count {
		b := bufs[r.first+i][offset:]
		setIov(&m.iovs[i], b)
		dst := to[r.first+i]
		m.setDst(i, dst)
	}
	return c.sendRun(m, r.first, r.count, nil)
}
