package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// TestE2EBadInputIsCountedAndForwardingGoesOn sends a live ferry malformed
// VXLAN datagrams from a peer and datagrams from a stranger on the underlay,
// then checks that each one is a counted drop under its own reason and that
// the overlay still carries traffic.
func TestE2EBadInputIsCountedAndForwardingGoesOn(t *testing.T) {
	p := newFerryPair(t, "192.168.80.0/24", "10.42.0.3", nil)
	h1, h2, c1, c2, f1 := p.h1, p.h2, p.c1, p.c2, p.f1
	stranger := p.ul.AddHost(t, "bx")
	mustPing(t, c1, "10.42.0.3")

	inner := make([]byte, 60) // a broadcast frame from a unicast source
	copy(inner, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x77, 0x08, 0x06})
	vx := func(flags byte, vni uint32, payload []byte) []byte {
		b := []byte{flags, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
		return append(b, payload...)
	}
	const n = 5
	send := func(from *nstest.Host, datagrams ...[]byte) {
		t.Helper()
		err := from.Do(func() error {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(h1.Addr, 4789)))
			if err != nil {
				return err
			}
			defer c.Close()
			for _, d := range datagrams {
				for range n {
					if _, err := c.Write(d); err != nil {
						return fmt.Errorf("send: %w", err)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	send(h2,
		[]byte{0x08, 0, 0},       // runt
		vx(0x08, 42, inner[:10]), // no room for the inner Ethernet header
		vx(0x00, 42, inner),      // I flag missing
		vx(0x0c, 42, inner),      // reserved flag set
		vx(0x08, 4242, inner),    // unknown VNI
	)
	send(stranger, vx(0x08, 42, inner)) // well-formed, but not from a peer

	want := map[string]uint64{
		"vxlan-short":     2 * n,
		"vxlan-bad-flags": 2 * n,
		"unknown-vni":     n,
		"unknown-peer":    n,
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var errs []dataplane.DropStats
		f1.ctlJSON(t, &errs, "errors")
		got := map[string]uint64{}
		for _, e := range errs {
			if e.Stage == "vxlan-decap" {
				got[e.Reason] = e.Packets
			}
		}
		ok := len(got) == len(want)
		for r, w := range want {
			ok = ok && got[r] == w
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vxlan-decap drops = %v, want %v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustPing(t, c2, "10.42.0.2")
}
