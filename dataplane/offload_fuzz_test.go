package dataplane

import (
	"slices"
	"testing"

	"github.com/ferry-overlay/ferry/offload"
)

// FuzzOffloadPortRx feeds arbitrary bytes, as read from a TAP with
// offloads (a virtio-net header, then a frame that may claim to be a
// superpacket), into the real offload pipeline. Invariants: no panic and
// no leaked packet buffer.
func FuzzOffloadPortRx(f *testing.F) {
	h, sp := tcpSuper(3000, 1410)
	f.Add(withVnet(h, sp))
	// The same behind an 802.1Q tag, as from a container's VLAN device.
	th := h
	th.HdrLen, th.CsumStart = h.HdrLen+4, h.CsumStart+4
	f.Add(withVnet(th, slices.Concat(sp[:12], []byte{0x81, 0x00, 0x00, 0x64}, sp[12:])))
	h.Flags = 0
	f.Add(withVnet(h, sp))
	f.Add(withVnet(offload.VirtioNetHdr{Flags: offload.FlagNeedsCsum, CsumStart: 34, CsumOffset: 6}, frame(macR, macA, 200, 1)))
	f.Add(withVnet(offload.VirtioNetHdr{GSOType: offload.GSOUDPL4, GSOSize: 100}, frame(macR, macA, 1000, 1)))
	f.Add([]byte{1, 2, 3})
	r := newOffRig(f, 1450)
	r.ports[0].Sink, r.ports[1].Sink = nil, nil
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 65536 {
			return
		}
		r.tunOut = r.tunOut[:0]
		r.fromPort(t, 0, b)
		if r.w.pool.Free() != r.w.pool.Cap() {
			t.Fatalf("pool leaks: %d of %d free", r.w.pool.Free(), r.w.pool.Cap())
		}
	})
}

// FuzzGROSplit splits arbitrary UDP_GRO buffers, with an arbitrary segment
// size as the kernel would report it, into datagrams and runs them through
// decap, bridge and coalescing. Invariants: no panic and no leaked buffer.
func FuzzGROSplit(f *testing.F) {
	h, sp := tcpSuper(5*1410, 1410)
	a := newOffRig(f, 1450)
	a.fromPort(f, 0, withVnet(h, sp))
	var train []byte
	for _, s := range a.tunOut {
		train = append(train, s.data...)
	}
	f.Add(train, uint16(8+14+1450))
	f.Add(train, uint16(10))
	f.Add(train[:100], uint16(30))
	r := newOffRig(f, 1450)
	r.mirror(f)
	r.ports[0].Sink, r.ports[1].Sink, r.tun.Sink = nil, nil, nil
	tbl := r.eng.tables.Load()
	f.Fuzz(func(t *testing.T, b []byte, seg uint16) {
		gp := r.w.pool.Get()
		if !gp.SetBytes(b) {
			gp.pool.Put(gp)
			return
		}
		gp.Peer, gp.groSize = peer1, int(seg)
		r.w.tbl = tbl
		r.w.splitGRO(tbl, TunnelVXLAN, gp)
		if r.w.rx.Len > 0 {
			r.w.runTunnelBatch(tbl, TunnelVXLAN)
		}
		if r.w.pool.Free() != r.w.pool.Cap() {
			t.Fatalf("pool leaks: %d of %d free", r.w.pool.Free(), r.w.pool.Cap())
		}
	})
}
