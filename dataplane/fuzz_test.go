package dataplane

import (
	"testing"
)

var stranger4 = peer1.Next().Next().Next()

func totalDrops(e *Engine) uint64 {
	var n uint64
	for _, d := range e.Errors() {
		n += d.Packets
	}
	return n
}

// FuzzTunnelRx feeds arbitrary datagrams from a peer (or a stranger) into
// the real pipeline. Invariants: no panic; every datagram either reaches at
// least one local port or is counted as exactly one drop; nothing goes back
// into the tunnel (split horizon).
func FuzzTunnelRx(f *testing.F) {
	f.Add(vxlan(42, frame(bcast, macR, 60, 1)), false)
	f.Add(vxlan(42, frame(macA, macR, 60, 1)), false)
	f.Add(vxlan(43, frame(bcast, macR, 60, 1)), false)
	f.Add(vxlan(42, frame(bcast, macR, 60, 1)), true)
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 42, 0}, false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, data []byte, stranger bool) {
		r := newRig(t, 1450)
		from := peer1
		if stranger {
			from = stranger4
		}
		r.fromPeer(t, from, data)
		delivered := len(r.got[0]) + len(r.got[1])
		drops := totalDrops(r.eng)
		if len(r.tunOut) != 0 {
			t.Fatalf("datagram from a peer was sent back into the tunnel")
		}
		if (delivered > 0) == (drops > 0) || drops > 1 {
			t.Fatalf("datagram %x: delivered to %d ports and dropped %d times; want exactly one outcome (%+v)", data, delivered, drops, r.eng.Errors())
		}
	})
}

// FuzzPortRx feeds arbitrary frames from a local port. Invariants: no
// panic; each frame is forwarded somewhere or counted as exactly one drop.
func FuzzPortRx(f *testing.F) {
	f.Add(frame(bcast, macA, 60, 1))
	f.Add(frame(macR, macA, 60, 1))
	f.Add([]byte{1, 2, 3})
	f.Add(frame(bcast, bcast, 60, 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newRig(t, 1450)
		r.fromPort(t, 0, data)
		out := len(r.got[0]) + len(r.got[1]) + len(r.tunOut)
		drops := totalDrops(r.eng)
		if (out > 0) == (drops > 0) && !(out > 0 && drops > 0 && len(data) > 1450+18) {
			t.Fatalf("frame %x: %d outputs and %d drops; want exactly one outcome (%+v)", data, out, drops, r.eng.Errors())
		}
	})
}
