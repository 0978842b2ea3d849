package dataplane

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/ferry-overlay/ferry/dataplane/rawsock"
)

// GRETunnel adapts a raw GRE socket (IP protocol 47, package rawsock) to
// TunnelIO. The kernel gives every raw GRE socket a copy of every GRE
// packet, so a node has exactly one receiving GRETunnel (give it to one
// worker); the other workers' tunnels are send-only. GRE has no ports, so
// Spread is 1. Like UDPTunnel, it is used by one worker goroutine.
type GRETunnel struct {
	c       *rawsock.Conn
	bufs    [][]byte
	sizes   []int
	from    []netip.Addr
	refused []int
	segDst  []netip.Addr // WriteSegmented's destinations, all one peer
}

// NewGRETunnel opens a raw GRE socket bound to local; sendOnly makes it
// discard every received packet (for all workers but one).
func NewGRETunnel(local netip.Addr, sendOnly bool) (*GRETunnel, error) {
	c, err := rawsock.Listen(rawsock.Options{Proto: rawsock.ProtoGRE, Local: local, Batch: MaxBatch, RecvBuf: 4 << 20, SendBuf: 4 << 20, SendOnly: sendOnly})
	if err != nil {
		return nil, fmt.Errorf("gre socket on %s: %w", local, err)
	}
	return &GRETunnel{
		c:       c,
		bufs:    make([][]byte, MaxBatch),
		sizes:   make([]int, MaxBatch),
		from:    make([]netip.Addr, MaxBatch),
		refused: make([]int, 0, MaxBatch),
		segDst:  make([]netip.Addr, MaxBatch),
	}, nil
}

// Fd returns the socket's file descriptor, for the worker's epoll set.
func (g *GRETunnel) Fd() int { return g.c.Fd() }

// ReadBatch implements TunnelIO: each packet holds the GRE header and what
// follows (the outer IPv4 header is removed), Peer its outer source.
func (g *GRETunnel) ReadBatch(pkts []*Packet) (int, error) {
	pkts = pkts[:min(len(pkts), len(g.bufs))]
	for i, p := range pkts {
		p.RxBuffer()
		g.bufs[i] = p.buf
	}
	n, err := g.c.ReadBatch(g.bufs[:len(pkts)], g.sizes, g.from, Headroom)
	for i := range n {
		p := pkts[i]
		p.SetLen(min(g.sizes[i], len(p.buf)-Headroom))
		p.Peer = g.from[i]
		if g.c.Truncated(i) {
			p.MarkTruncated()
		}
	}
	clear(g.bufs[:len(pkts)])
	return n, err
}

// Spread implements TunnelIO: GRE has no source port to vary.
func (g *GRETunnel) Spread() int { return 1 }

// Refused implements TunnelIO.
func (g *GRETunnel) Refused() []int { return g.refused }

// WriteBatch implements TunnelIO; src is ignored (Spread is 1).
func (g *GRETunnel) WriteBatch(_ int, pkts []*Packet, dst []netip.Addr) (int, error) {
	written := 0
	g.refused = g.refused[:0]
	for len(pkts) > 0 {
		chunk := pkts[:min(len(pkts), len(g.bufs))]
		for i, p := range chunk {
			g.bufs[i] = p.Bytes()
		}
		n, err := g.c.WriteBatch(g.bufs[:len(chunk)], dst[:len(chunk)], 0)
		clear(g.bufs[:len(chunk)])
		for _, s := range g.c.Skipped() {
			g.refused = append(g.refused, written+s.Index)
		}
		written += n
		if err != nil {
			if errors.Is(err, rawsock.ErrTxFull) {
				err = ErrTxFull
			}
			return written, err
		}
		pkts, dst = pkts[len(chunk):], dst[len(chunk):]
	}
	return written, nil
}

// WriteSegmented implements SegmentWriter: a raw IP socket has no
// UDP_SEGMENT, so the datagrams of buf, segSize bytes each but the last,
// go out with sendmmsg, up to MaxBatch per call — one system call where a
// TAP without offloads would have needed one read per segment. src is
// ignored.
func (g *GRETunnel) WriteSegmented(_ int, buf []byte, segSize int, dst netip.Addr) (int, error) {
	if segSize <= 0 {
		return 0, errRefused
	}
	sent := 0
	for off := 0; off < len(buf); {
		k := 0
		for ; k < len(g.bufs) && off < len(buf); k++ {
			g.bufs[k] = buf[off:min(off+segSize, len(buf))]
			g.segDst[k] = dst
			off += segSize
		}
		n, err := g.c.WriteBatch(g.bufs[:k], g.segDst[:k], 0)
		clear(g.bufs[:k])
		sent += n - len(g.c.Skipped())
		if err != nil {
			if errors.Is(err, rawsock.ErrTxFull) {
				err = ErrTxFull
			}
			return sent, err
		}
		if len(g.c.Skipped()) > 0 {
			return sent, errRefused
		}
	}
	return sent, nil
}

// LocalAddr implements TunnelAddrs: the bound underlay address; GRE has
// no port (0).
func (g *GRETunnel) LocalAddr() netip.AddrPort { return netip.AddrPortFrom(g.c.LocalAddr(), 0) }

// SourcePorts implements TunnelAddrs: GRE has no ports.
func (g *GRETunnel) SourcePorts() []uint16 { return nil }

// RxSourcePort implements TunnelAddrs: GRE has no ports (0).
func (g *GRETunnel) RxSourcePort(int) uint16 { return 0 }

// Close closes the socket.
func (g *GRETunnel) Close() error { return g.c.Close() }
