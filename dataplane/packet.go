package dataplane

import (
	"net/netip"

	"github.com/ferry-overlay/ferry/offload"

	bridge "github.com/ferry-overlay/ferry/switch"
)

const (
	// Headroom is the empty room kept in front of every received frame so
	// that encapsulation prepends outer headers in place, without copying the
	// payload. 128 bytes hold the largest outer stack ferry writes (outer
	// Ethernet 14 + IPv6 40 + UDP 8 + VXLAN 8 = 70) with room to spare and keep
	// the frame start 64-byte aligned within the buffer.
	Headroom = 128

	// DefaultFrameRoom is the room after the headroom in each buffer: enough
	// for a 64 KiB TCP/UDP superpacket plus a virtio-net header, so TAP/TUN
	// offloads (IFF_VNET_HDR, TUNSETOFFLOAD) need no other buffer type. Memory
	// is reserved per pool in one slab; the kernel only backs the pages a
	// frame touches, so a 1500-byte frame costs one or two pages, not 64 KiB.
	DefaultFrameRoom = 65536 + 64
)

// Packet is one pooled packet buffer with its metadata.
//
// The bytes of the packet are Bytes(), the window [off, end) of a fixed
// backing array that has Headroom free bytes in front of a freshly received
// frame. A Packet belongs to exactly one owner at a time (a worker, or a ring
// in transit between two); it is not safe for concurrent use. Fields are
// valid from the stage named in their comment onward, and are reset when the
// packet returns to its pool.
type Packet struct {
	buf      []byte
	off, end int
	pool     *Pool

	// InPort is the global index of the local port the frame was read
	// from; valid after port rx, meaningless for tunnel traffic.
	InPort uint16
	// Network is the index of the network the packet belongs to; valid
	// after ethernet-input (port traffic) or decap (tunnel traffic).
	Network uint16
	// From is the bridge location the frame entered the network from
	// (local port or peer); valid with Network.
	From bridge.Location
	// Peer is the underlay address of the remote host: the source of a
	// datagram on tunnel rx.
	Peer netip.Addr
	// Hash is the inner flow hash (RFC 7348 §5 source port, worker
	// spreading); valid after ethernet-input.
	Hash uint32
	// Trace marks the packet for the packet tracer: set at ingress when a
	// trace session selects it; stages then record their decisions in
	// its trace record.
	Trace bool
	// tr is the packet's trace record; valid iff Trace.
	tr *traceRec

	truncated    bool   // set by tunnel rx: the datagram did not fit
	encapPending bool   // queued for vxlan-encap in this batch
	encapDrop    Reason // why encap refused it, if it did

	// Offload state (offload.go). vnet is the virtio-net header read with
	// the frame from a port with offloads, or the one to write with it;
	// rxDrop is why port rx refused the frame (dropped at port-rx);
	// groSize is the UDP_GRO segment size of a tunnel read (0: one
	// datagram); portRefs counts the port-tx lists holding the packet.
	vnet     offload.VirtioNetHdr
	rxDrop   Reason
	groSize  int
	portRefs uint8
}

// MarkTruncated records that the datagram read into p did not fit its
// buffer; decap drops it as rx-truncated.
func (p *Packet) MarkTruncated() { p.truncated = true }

// Bytes returns the packet's current bytes. The slice aliases the buffer and
// is valid until the next Prepend, Advance, SetLen or until the packet is
// freed.
func (p *Packet) Bytes() []byte { return p.buf[p.off:p.end] }

// Len returns the number of bytes in the packet.
func (p *Packet) Len() int { return p.end - p.off }

// Headroom returns the free bytes in front of the packet.
func (p *Packet) Headroom() int { return p.off }

// Prepend grows the packet by n bytes at the front and returns them for the
// caller to fill (an outer header). It returns nil, leaving the packet
// unchanged, when the headroom is smaller than n.
func (p *Packet) Prepend(n int) []byte {
	if n > p.off {
		return nil
	}
	p.off -= n
	return p.buf[p.off : p.off+n]
}

// Advance drops n bytes from the front of the packet (an outer header
// already parsed). It reports false, leaving the packet unchanged, if the
// packet is shorter than n.
func (p *Packet) Advance(n int) bool {
	if n > p.end-p.off {
		return false
	}
	p.off += n
	return true
}

// RxBuffer resets the packet to an empty frame at Headroom and returns the
// whole room after it, for a device or socket to read into. Call SetLen with
// the size read.
func (p *Packet) RxBuffer() []byte {
	p.off, p.end = Headroom, Headroom
	return p.buf[Headroom:]
}

// SetLen sets the packet's length, counted from its current start. It
// reports false if n does not fit in the buffer.
func (p *Packet) SetLen(n int) bool {
	if n < 0 || p.off+n > len(p.buf) {
		return false
	}
	p.end = p.off + n
	return true
}

// SetBytes copies b into the packet as a fresh frame at Headroom (used by
// fake ports, tests and injected packets; the fast path reads in place).
func (p *Packet) SetBytes(b []byte) bool {
	room := p.RxBuffer()
	if len(b) > len(room) {
		return false
	}
	copy(room, b)
	p.end = p.off + len(b)
	return true
}

// reset clears the metadata for reuse.
func (p *Packet) reset() {
	p.off, p.end = Headroom, Headroom
	p.InPort, p.Network, p.From, p.Hash = 0, 0, 0, 0
	p.Peer = netip.Addr{}
	p.Trace = false
	p.truncated, p.encapPending, p.encapDrop = false, false, ReasonNone
	p.vnet, p.rxDrop, p.groSize, p.portRefs = offload.VirtioNetHdr{}, ReasonNone, 0, 0
}

// Pool is a fixed set of packet buffers carved from one slab.
//
// A Pool is owned by one worker and is not safe for concurrent use: Get and
// Put are a slice push and pop, with no lock and no allocation. Packets that
// travel to another goroutine come back to their owner before they are Put
// (see Ring). The pool never grows: when it is empty, Get returns nil and
// the caller counts a drop, so memory stays bounded under any load.
type Pool struct {
	free  []*Packet
	size  int
	total int
}

// NewPool returns a pool of n packets, each with Headroom plus frameRoom
// bytes. frameRoom <= 0 means DefaultFrameRoom.
func NewPool(n, frameRoom int) *Pool {
	if frameRoom <= 0 {
		frameRoom = DefaultFrameRoom
	}
	size := Headroom + frameRoom
	slab := make([]byte, n*size)
	pkts := make([]Packet, n)
	pl := &Pool{free: make([]*Packet, 0, n), size: size, total: n}
	for i := range pkts {
		p := &pkts[i]
		p.buf = slab[i*size : (i+1)*size : (i+1)*size]
		p.pool = pl
		p.reset()
		pl.free = append(pl.free, p)
	}
	return pl
}

// Get returns a reset packet, or nil when the pool is empty.
func (pl *Pool) Get() *Packet {
	n := len(pl.free)
	if n == 0 {
		return nil
	}
	p := pl.free[n-1]
	pl.free = pl.free[:n-1]
	return p
}

// GetBatch fills b up to its capacity from the pool and returns how many
// packets it added.
func (pl *Pool) GetBatch(b *Batch) int {
	added := 0
	for b.Len < MaxBatch {
		p := pl.Get()
		if p == nil {
			break
		}
		b.Pkts[b.Len] = p
		b.Len++
		added++
	}
	return added
}

// Put returns p to the pool it came from. Putting a packet twice corrupts the
// pool; ownership rules make that impossible in the pipeline.
func (pl *Pool) Put(p *Packet) {
	p.reset()
	pl.free = append(pl.free, p)
}

// Free returns the number of packets available.
func (pl *Pool) Free() int { return len(pl.free) }

// Cap returns the number of packets the pool was built with.
func (pl *Pool) Cap() int { return pl.total }

// BufferSize returns the byte size of each packet buffer, headroom included.
func (pl *Pool) BufferSize() int { return pl.size }
