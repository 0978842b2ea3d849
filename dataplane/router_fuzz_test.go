package dataplane

import (
	"net/netip"
	"testing"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/router"
)

// FuzzRouterAndNAT feeds arbitrary frames to the gateway of a masquerading
// network and arbitrary packets into its uplink. One rig serves the whole
// run, so inputs meet the neighbour and conntrack state earlier ones left.
// Invariants: no panic, and the worker's pool gets every buffer back (no
// packet the router made leaks).
func FuzzRouterAndNAT(f *testing.F) {
	outside := netip.MustParseAddr("198.18.0.2")
	f.Add(udpTo(outside, 100, 64, false), false)
	f.Add(udpTo(netip.MustParseAddr("10.43.0.2"), 100, 1, false), false)
	f.Add(udpTo(blueGW, 100, 64, false), false)
	f.Add(arpFrame(header.ARPRequest, bcast, macBlueHost, netip.MustParseAddr("10.42.0.2"), blueGW, [6]byte{}), false)
	f.Add(arpFrame(header.ARPReply, [6]byte(router.GatewayMAC("blue")), macBlueHost, netip.MustParseAddr("10.42.0.2"), blueGW, [6]byte{}), false)
	f.Add(reply(udpTo(outside, 100, 64, false)[14:]), true)
	f.Add([]byte{}, true)
	var (
		w     *Worker
		ports [2]*MemPort
		up    *MemPort
	)
	f.Fuzz(func(t *testing.T, data []byte, fromUplink bool) {
		if w == nil {
			_, w, ports, up = natRig(t, func(int, []byte) {}, func([]byte) {})
		}
		if fromUplink {
			up.Queue(data)
			pollUplink(t, w)
		} else {
			ports[0].Queue(data)
			poll(t, w, 0)
		}
		if w.pool.Free() != w.pool.Cap() {
			t.Fatalf("pool has %d of %d buffers back", w.pool.Free(), w.pool.Cap())
		}
	})
}
