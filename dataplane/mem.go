package dataplane

import (
	"net/netip"
)

// memQueue is the receive side of the in-memory fakes: frames (and for
// tunnels their senders) delivered in order, once or cyclically.
type memQueue struct {
	frames [][]byte
	from   []netip.Addr
	next   int
	// Loop makes reads cycle over the queued frames forever instead of
	// consuming them (a traffic generator).
	Loop bool
}

func (q *memQueue) read(pkts []*Packet) int {
	n := 0
	for n < len(pkts) && len(q.frames) > 0 {
		if q.next == len(q.frames) {
			if !q.Loop {
				q.frames, q.from, q.next = q.frames[:0], q.from[:0], 0
				break
			}
			q.next = 0
		}
		p := pkts[n]
		if !p.SetBytes(q.frames[q.next]) {
			p.MarkTruncated()
		}
		if len(q.from) > 0 {
			p.Peer = q.from[q.next]
		}
		q.next++
		n++
	}
	return n
}

// MemPort is an in-memory PortIO for tests and `ferry bench pipeline`: it
// delivers queued frames on read and hands written frames to a sink. It
// makes no syscalls, so the pipeline's own cost can be measured alone.
// Like a device queue, it is used by one goroutine.
type MemPort struct {
	memQueue
	// Sink, if set, is called with every frame written; the slice is only
	// valid during the call.
	Sink func(frame []byte)
	// TxCap, if positive, is how many frames the port accepts in all;
	// past it, writes report ErrTxFull (to test back-pressure).
	TxCap int
	// TxPackets and TxBytes count what was written.
	TxPackets, TxBytes int
}

// Queue adds frames to be read, in order. The port keeps the slices.
func (m *MemPort) Queue(frames ...[]byte) { m.frames = append(m.frames, frames...) }

// ReadBatch implements PortIO.
func (m *MemPort) ReadBatch(pkts []*Packet) (int, error) { return m.read(pkts), nil }

// WriteBatch implements PortIO.
func (m *MemPort) WriteBatch(pkts []*Packet) (int, error) {
	for i, p := range pkts {
		if m.TxCap > 0 && m.TxPackets >= m.TxCap {
			return i, ErrTxFull
		}
		m.TxPackets++
		m.TxBytes += p.Len()
		if m.Sink != nil {
			m.Sink(p.Bytes())
		}
	}
	return len(pkts), nil
}

// MemTunnel is an in-memory TunnelIO: queued datagrams arrive from their
// given peer addresses, and sent datagrams go to a sink.
type MemTunnel struct {
	memQueue
	// Ports is the Spread (number of outer source ports); 0 means 1.
	Ports int
	// Sink, if set, gets every datagram sent with its source port index
	// and destination; the slice is only valid during the call.
	Sink func(src int, dst netip.Addr, datagram []byte)
	// TxPackets and TxBytes count what was sent.
	TxPackets, TxBytes int
}

// Queue adds datagrams from peer to be read, in order.
func (m *MemTunnel) Queue(peer netip.Addr, datagrams ...[]byte) {
	for _, d := range datagrams {
		m.frames = append(m.frames, d)
		m.from = append(m.from, peer)
	}
}

// ReadBatch implements TunnelIO.
func (m *MemTunnel) ReadBatch(pkts []*Packet) (int, error) { return m.read(pkts), nil }

// Spread implements TunnelIO.
func (m *MemTunnel) Spread() int { return max(m.Ports, 1) }

// Refused implements TunnelIO; the fake refuses nothing.
func (m *MemTunnel) Refused() []int { return nil }

// WriteBatch implements TunnelIO.
func (m *MemTunnel) WriteBatch(src int, pkts []*Packet, dst []netip.Addr) (int, error) {
	for i, p := range pkts {
		m.TxPackets++
		m.TxBytes += p.Len()
		if m.Sink != nil {
			m.Sink(src, dst[i], p.Bytes())
		}
	}
	return len(pkts), nil
}
