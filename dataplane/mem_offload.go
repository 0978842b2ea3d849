package dataplane

import (
	"net/netip"

	"github.com/ferry-overlay/ferry/offload"
)

// MemVnetPort is a MemPort that behaves like a TAP with offloads
// (TAPVnetQueue): every queued frame starts with a virtio-net header, which
// may announce a superpacket, and every frame written reaches Sink behind
// its header. For tests and benchmarks of the offload path.
type MemVnetPort struct {
	MemPort
	// NoUSO makes the port refuse UDP superpackets, like a TAP on a
	// kernel without UDP segmentation offload.
	NoUSO bool
}

func (m *MemVnetPort) writesVnet()    {}
func (m *MemVnetPort) takesUSO() bool { return !m.NoUSO }

// ReadBatch implements PortIO.
func (m *MemVnetPort) ReadBatch(pkts []*Packet) (int, error) {
	n := m.read(pkts)
	for _, p := range pkts[:n] {
		p.takeVnet()
	}
	return n, nil
}

// WriteBatch implements PortIO.
func (m *MemVnetPort) WriteBatch(pkts []*Packet) (int, error) {
	for i, p := range pkts {
		if m.TxCap > 0 && m.TxPackets >= m.TxCap {
			return i, ErrTxFull
		}
		m.TxPackets++
		m.TxBytes += p.Len()
		if m.Sink != nil {
			h := p.off - offload.VirtioNetHdrLen
			p.vnet.Encode(p.buf[h:p.off])
			m.Sink(p.buf[h:p.end])
		}
	}
	return len(pkts), nil
}

// WriteSegmented implements SegmentWriter: each datagram of buf counts and
// reaches Sink on its own, as a peer would receive it.
func (m *MemTunnel) WriteSegmented(src int, buf []byte, segSize int, dst netip.Addr) (int, error) {
	n := 0
	for off := 0; off < len(buf); off += segSize {
		d := buf[off:min(off+segSize, len(buf))]
		m.TxPackets++
		m.TxBytes += len(d)
		if m.Sink != nil {
			m.Sink(src, dst, d)
		}
		n++
	}
	return n, nil
}
