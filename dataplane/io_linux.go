package dataplane

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/dataplane/udpsock"
	"github.com/ferry-overlay/ferry/offload"
)

// TAPQueue adapts one queue of a TAP device to PortIO. The [][]byte
// scratch the device API wants is built once, so the adapter allocates
// nothing per call.
type TAPQueue struct {
	q     *tuntap.Queue
	bufs  [][]byte
	sizes []int
}

// NewTAPQueue wraps q.
func NewTAPQueue(q *tuntap.Queue) *TAPQueue {
	return &TAPQueue{q: q, bufs: make([][]byte, MaxBatch), sizes: make([]int, MaxBatch)}
}

// Fd returns the queue's file descriptor, for the worker's epoll set.
func (t *TAPQueue) Fd() int { return t.q.Fd() }

// ReadBatch implements PortIO.
func (t *TAPQueue) ReadBatch(pkts []*Packet) (int, error) {
	pkts = pkts[:min(len(pkts), len(t.bufs))]
	for i, p := range pkts {
		p.RxBuffer()
		t.bufs[i] = p.buf
	}
	n, err := t.q.Read(t.bufs[:len(pkts)], t.sizes, Headroom)
	for i := range n {
		pkts[i].SetLen(t.sizes[i])
	}
	clear(t.bufs[:len(pkts)])
	return n, err
}

// WriteBatch implements PortIO.
func (t *TAPQueue) WriteBatch(pkts []*Packet) (int, error) {
	return writeTAP(t.q, t.bufs, pkts, false)
}

// writeTAP writes each packet as one frame to q, len(bufs) per call, the
// packet's virtio-net header (Packet.vnet, encoded into the headroom just in
// front of it) first when vnet is set, and maps the device's sentinel errors
// to the dataplane's. bufs is the caller's scratch; it allocates nothing.
func writeTAP(q *tuntap.Queue, bufs [][]byte, pkts []*Packet, vnet bool) (int, error) {
	written := 0
	for len(pkts) > 0 {
		chunk := pkts[:min(len(pkts), len(bufs))]
		for i, p := range chunk {
			if vnet {
				h := p.off - offload.VirtioNetHdrLen
				p.vnet.Encode(p.buf[h:p.off])
				bufs[i] = p.buf[h:p.end]
			} else {
				bufs[i] = p.Bytes()
			}
		}
		n, err := q.Write(bufs[:len(chunk)], 0)
		clear(bufs[:len(chunk)])
		written += n
		if err != nil {
			switch {
			case errors.Is(err, tuntap.ErrTxFull):
				err = ErrTxFull
			case errors.Is(err, tuntap.ErrLinkDown):
				err = ErrPortDown
			}
			return written, err
		}
		pkts = pkts[len(chunk):]
	}
	return written, nil
}

// UDPTunnel adapts UDP sockets to TunnelIO: one socket bound to the tunnel
// port receives (SO_REUSEPORT, one per worker, so the kernel spreads
// datagrams over workers by flow), and Spread sockets send, so the outer
// source port follows the inner flow's hash.
//
// Every worker's tunnel sends from the same source ports (the first
// worker's, which the others join with SO_REUSEPORT): a flow's outer
// source port then depends on the flow alone, not on which worker sent
// it, so the peer's receive sockets hand the flow to one of its workers
// whichever of ours sent it. That worker writes the flow into its own TAP
// or TUN queue, and the device hands the flow's replies to the queue that
// last wrote it (tun_automq_select_queue), so both directions of a
// connection stay on one worker on each host. With source ports per
// worker, a connection could settle into a cycle: each side's replies
// arrived on a different worker than before, moved the flow to that
// worker's queue, changed its outer source port, and so on; each move left
// segments on two workers at once, which reached the far container out of
// order (tens of thousands of spurious retransmissions in a 4-second TCP
// stream on a two-worker rig).
type UDPTunnel struct {
	rx      *udpsock.Conn
	tx      []*udpsock.Conn
	local   netip.AddrPort
	srcPort []uint16
	port    uint16
	bufs    [][]byte
	sizes   []int
	addrs   []netip.AddrPort
	refused []int
	seg     segState // UDP_SEGMENT sends, see offload_linux.go
}

// NewUDPTunnel opens the receive socket on local:port and one send socket
// on local for each of srcPorts, bound to that port; with srcPorts nil,
// spread send sockets on ports the kernel picks (SourcePorts returns them,
// for the other workers' tunnels).
func NewUDPTunnel(local netip.Addr, port uint16, spread int, srcPorts []uint16) (*UDPTunnel, error) {
	u := &UDPTunnel{
		port:    port,
		bufs:    make([][]byte, MaxBatch),
		sizes:   make([]int, MaxBatch),
		addrs:   make([]netip.AddrPort, MaxBatch),
		refused: make([]int, 0, MaxBatch),
	}
	var err error
	u.rx, err = udpsock.Listen(udpsock.Options{Addr: netip.AddrPortFrom(local, port), ReusePort: true, Batch: MaxBatch, RecvBuf: 4 << 20, SendBuf: 4 << 20})
	if err != nil {
		return nil, fmt.Errorf("tunnel socket %s:%d: %w", local, port, err)
	}
	if srcPorts == nil {
		srcPorts = make([]uint16, max(spread, 1)) // port 0: the kernel picks
	}
	for _, sp := range srcPorts {
		c, err := udpsock.Listen(udpsock.Options{Addr: netip.AddrPortFrom(local, sp), ReusePort: true, Batch: MaxBatch, SendBuf: 4 << 20})
		if err != nil {
			u.Close()
			return nil, fmt.Errorf("tunnel send socket on %s: %w", netip.AddrPortFrom(local, sp), err)
		}
		u.tx = append(u.tx, c)
		u.srcPort = append(u.srcPort, c.LocalAddr().Port())
	}
	u.local = netip.AddrPortFrom(local, port)
	return u, nil
}

// Fd returns the receive socket's file descriptor, for the worker's epoll
// set.
func (u *UDPTunnel) Fd() int { return u.rx.Fd() }

// SourcePorts returns the outer source ports the tunnel sends from, by
// source index (TunnelAddrs). The slice is the tunnel's; do not modify it.
func (u *UDPTunnel) SourcePorts() []uint16 { return u.srcPort }

// LocalAddr returns the local underlay address and VXLAN port
// (TunnelAddrs).
func (u *UDPTunnel) LocalAddr() netip.AddrPort { return u.local }

// RxSourcePort returns the UDP source port of the i-th datagram of the last
// ReadBatch (TunnelAddrs).
func (u *UDPTunnel) RxSourcePort(i int) uint16 { return u.addrs[i].Port() }

// ReadBatch implements TunnelIO.
func (u *UDPTunnel) ReadBatch(pkts []*Packet) (int, error) {
	pkts = pkts[:min(len(pkts), len(u.bufs))]
	for i, p := range pkts {
		p.RxBuffer()
		u.bufs[i] = p.buf
	}
	n, err := u.rx.ReadBatch(u.bufs[:len(pkts)], u.sizes, u.addrs, Headroom)
	for i := range n {
		p := pkts[i]
		p.SetLen(min(u.sizes[i], len(p.buf)-Headroom))
		p.Peer = u.addrs[i].Addr().Unmap()
		if u.rx.Truncated(i) {
			p.MarkTruncated()
		}
		p.groSize = u.rx.GROSize(i) // 0 unless UDP_GRO (offload_linux.go)
	}
	clear(u.bufs[:len(pkts)])
	return n, err
}

// Spread implements TunnelIO.
func (u *UDPTunnel) Spread() int { return len(u.tx) }

// Refused implements TunnelIO.
func (u *UDPTunnel) Refused() []int { return u.refused }

// WriteBatch implements TunnelIO.
func (u *UDPTunnel) WriteBatch(src int, pkts []*Packet, dst []netip.Addr) (int, error) {
	c := u.tx[src]
	written := 0
	u.refused = u.refused[:0]
	for len(pkts) > 0 {
		chunk := pkts[:min(len(pkts), len(u.bufs))]
		for i, p := range chunk {
			u.bufs[i] = p.Bytes()
			u.addrs[i] = netip.AddrPortFrom(dst[i], u.port)
		}
		var n int
		var err error
		if u.seg.gso {
			// Runs of equal-size datagrams to one peer go out as one
			// UDP_SEGMENT message each (offload_linux.go).
			n, err = c.WriteGrouped(u.bufs[:len(chunk)], u.addrs[:len(chunk)], 0)
		} else {
			n, err = c.WriteBatch(u.bufs[:len(chunk)], u.addrs[:len(chunk)], 0)
		}
		clear(u.bufs[:len(chunk)])
		for _, s := range c.Skipped() {
			u.refused = append(u.refused, written+s.Index)
		}
		written += n
		if err != nil {
			if errors.Is(err, udpsock.ErrTxFull) {
				err = ErrTxFull
			}
			return written, err
		}
		pkts, dst = pkts[len(chunk):], dst[len(chunk):]
	}
	return written, nil
}

// Close closes every socket.
func (u *UDPTunnel) Close() error {
	var errs []error
	if u.rx != nil {
		errs = append(errs, u.rx.Close())
	}
	for _, c := range u.tx {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
