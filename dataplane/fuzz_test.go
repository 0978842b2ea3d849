package dataplane

import (
	"testing"
)

// stranger4 is an underlay address that is not a peer of the rig.
var stranger4 = peer1.Next().Next().Next()

func totalDrops(e *Engine) uint64 {
	var n uint64
	for _, d := range e.Errors() {
		n += d.Packets
	}
	return n
}

// outcome is what one input did: frames written to local ports, datagrams
// sent to peers, and drops counted, as deltas over the rig's counters.
type outcome struct{ ports, tunnel, drops int }

func (r *rig) run(t *testing.T, feed func()) outcome {
	r.reset()
	before := totalDrops(r.eng)
	feed()
	return outcome{len(r.got[0]) + len(r.got[1]), len(r.tunOut), int(totalDrops(r.eng) - before)}
}

// FuzzTunnelRx feeds arbitrary datagrams from a peer (or a stranger) into
// the real pipeline. One rig serves the whole run, so inputs also meet the
// FDB state earlier inputs left. Invariants: no panic; every datagram either
// reaches at least one local port or is counted as exactly one drop; nothing
// goes back into the tunnel (split horizon).
func FuzzTunnelRx(f *testing.F) {
	f.Add(vxlan(42, frame(bcast, macR, 60, 1)), false)
	f.Add(vxlan(42, frame(macA, macR, 60, 1)), false)
	f.Add(vxlan(43, frame(bcast, macR, 60, 1)), false)
	f.Add(vxlan(42, frame(bcast, macR, 60, 1)), true)
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 42, 0}, false)
	f.Add([]byte{}, false)
	var r *rig
	f.Fuzz(func(t *testing.T, data []byte, stranger bool) {
		if r == nil {
			r = newRig(t, 1450)
		}
		from := peer1
		if stranger {
			from = stranger4
		}
		o := r.run(t, func() { r.fromPeer(t, from, data) })
		if o.tunnel != 0 {
			t.Fatalf("datagram from a peer was sent back into the tunnel")
		}
		if (o.ports > 0) == (o.drops > 0) || o.drops > 1 {
			t.Fatalf("datagram %x: delivered to %d ports and dropped %d times; want exactly one outcome (%+v)", data, o.ports, o.drops, r.eng.Errors())
		}
	})
}

// FuzzPortRx feeds arbitrary frames from a local port, on one rig for the
// whole run. Invariants: no panic; each frame is forwarded somewhere or
// counted as exactly one drop — except a frame too big for the tunnel,
// which may reach the local port and be dropped once per peer.
func FuzzPortRx(f *testing.F) {
	f.Add(frame(bcast, macA, 60, 1))
	f.Add(frame(macR, macA, 60, 1))
	f.Add([]byte{1, 2, 3})
	f.Add(frame(bcast, bcast, 60, 1))
	var r *rig
	f.Fuzz(func(t *testing.T, data []byte) {
		if r == nil {
			r = newRig(t, 1450)
		}
		o := r.run(t, func() { r.fromPort(t, 0, data) })
		out := o.ports + o.tunnel
		tooBig := len(data) > 1450+18
		switch {
		case out == 0 && o.drops != 1:
			t.Fatalf("frame %x: not forwarded and dropped %d times, want 1 (%+v)", data, o.drops, r.eng.Errors())
		case out > 0 && o.drops > 0 && !tooBig:
			t.Fatalf("frame %x: forwarded %d times and also dropped %d times (%+v)", data, out, o.drops, r.eng.Errors())
		}
	})
}
