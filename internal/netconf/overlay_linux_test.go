package netconf_test

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/internal/netconf"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// The flannel layout the overlay tests use: the whole overlay, this host's
// subnet, the device's /32 (the subnet's first address, as flannel gives
// it), and the local container bridge's gateway address.
var (
	overlayNet  = netip.MustParsePrefix("10.244.0.0/16")
	overlayAddr = netip.MustParsePrefix("10.244.1.0/32")
	bridgeAddr  = netip.MustParsePrefix("10.244.1.1/24")
)

// overlayTUN creates a one-queue TUN device called ferry0 inside ns, closed
// (and so deleted) at the end of the test.
func overlayTUN(t *testing.T, ns *nstest.NS) *tuntap.Device {
	t.Helper()
	var dev *tuntap.Device
	if err := ns.Do(func() (err error) {
		dev, err = tuntap.Create(tuntap.Options{Name: "ferry0", Kind: tuntap.TUN, Queues: 1})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Error(err)
		}
	})
	return dev
}

// setupOverlay runs SetupOverlayDevice for ferry0 inside ns.
func setupOverlay(ns *nstest.NS, mtu int, addr, network netip.Prefix) error {
	return ns.Do(func() error { return netconf.SetupOverlayDevice("ferry0", mtu, addr, network) })
}

// routeState is what the overlay tests check of a route.
type routeState struct {
	dst   netip.Prefix
	dev   string
	scope netlink.Scope
	gw    bool
}

// mainRoutes lists ns's main-table IPv4 routes, by destination and device.
func mainRoutes(t *testing.T, h *netlink.Handle) []routeState {
	t.Helper()
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []routeState
	for _, r := range routes {
		l, err := h.LinkByIndex(r.LinkIndex)
		if err != nil {
			t.Fatal(err)
		}
		dst, _ := netip.AddrFromSlice(r.Dst.IP)
		bits, _ := r.Dst.Mask.Size()
		out = append(out, routeState{dst: netip.PrefixFrom(dst.Unmap(), bits), dev: l.Attrs().Name, scope: r.Scope, gw: r.Gw != nil})
	}
	return out
}

// addrsOf lists the IPv4 addresses of link name.
func addrsOf(t *testing.T, h *netlink.Handle, name string) []netip.Prefix {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return out
}

func TestSetupOverlayDevice(t *testing.T) {
	ns := nstest.NewNS(t, "ovl")
	overlayTUN(t, ns)
	h := ns.Handle(t)
	wantRoutes := []routeState{{dst: overlayNet, dev: "ferry0", scope: netlink.SCOPE_LINK}}
	// The second call must find everything in place and change nothing.
	for _, call := range []string{"first call", "repeated call"} {
		if err := setupOverlay(ns, 1450, overlayAddr, overlayNet); err != nil {
			t.Fatalf("%s: %v", call, err)
		}
		l, err := h.LinkByName("ferry0")
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().MTU != 1450 || l.Attrs().Flags&unix.IFF_UP == 0 {
			t.Errorf("%s: ferry0 mtu %d, flags %v; want 1450, up", call, l.Attrs().MTU, l.Attrs().Flags)
		}
		if got := addrsOf(t, h, "ferry0"); len(got) != 1 || got[0] != overlayAddr {
			t.Errorf("%s: ferry0 addresses %v, want [%v]", call, got, overlayAddr)
		}
		// With a /32 the kernel adds no prefix route: the overlay route is
		// the only one in the main table.
		if got := mainRoutes(t, h); len(got) != 1 || got[0] != wantRoutes[0] {
			t.Errorf("%s: main routes %+v, want %+v", call, got, wantRoutes)
		}
	}
	// MTU 0 leaves the MTU.
	if err := setupOverlay(ns, 0, overlayAddr, overlayNet); err != nil {
		t.Fatal(err)
	}
	if mtu := ns.MTU(t, "ferry0"); mtu != 1450 {
		t.Errorf("after mtu 0: mtu %d, want 1450 kept", mtu)
	}
}

func TestSetupOverlayDeviceRejects(t *testing.T) {
	tests := []struct {
		name       string
		dev        string
		mtu        int
		addr, net  netip.Prefix
		wantSubstr string
	}{
		{name: "address outside the network", dev: "ferry0", addr: netip.MustParsePrefix("10.245.1.0/32"), net: overlayNet, wantSubstr: "outside network"},
		{name: "IPv6 address", dev: "ferry0", addr: netip.MustParsePrefix("fd00::1/128"), net: overlayNet, wantSubstr: "not an IPv4 prefix"},
		{name: "IPv6 network", dev: "ferry0", addr: overlayAddr, net: netip.MustParsePrefix("fd00::/64"), wantSubstr: "not an IPv4 prefix"},
		{name: "zero address", dev: "ferry0", net: overlayNet, wantSubstr: "not an IPv4 prefix"},
		{name: "zero network", dev: "ferry0", addr: overlayAddr, wantSubstr: "not an IPv4 prefix"},
		{name: "negative mtu", dev: "ferry0", mtu: -1, addr: overlayAddr, net: overlayNet, wantSubstr: "negative mtu"},
		{name: "no such device", dev: "nosuch0", addr: overlayAddr, net: overlayNet, wantSubstr: "nosuch0"},
	}
	ns := nstest.NewNS(t, "ovl")
	overlayTUN(t, ns)
	h := ns.Handle(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ns.Do(func() error { return netconf.SetupOverlayDevice(tt.dev, tt.mtu, tt.addr, tt.net) })
			if err == nil || !strings.Contains(err.Error(), tt.wantSubstr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantSubstr)
			}
			if got := addrsOf(t, h, "ferry0"); len(got) != 0 {
				t.Errorf("a rejected call left addresses %v on ferry0", got)
			}
		})
	}
}

// TestSetupOverlayDeviceRouteTaken: when the overlay's route already goes
// through another device, the overlay would never see a packet, so setup
// fails and names that device.
func TestSetupOverlayDeviceRouteTaken(t *testing.T) {
	ns := nstest.NewNS(t, "ovl")
	overlayTUN(t, ns)
	// This kernel has no dummy links: one end of a veth pair (both ends in
	// ns, both up) stands for the other device.
	nstest.Veth(t, ns, "other0", ns, "other0p")
	ns.AddRoute(t, overlayNet, netip.Addr{}, "other0")
	err := setupOverlay(ns, 1450, overlayAddr, overlayNet)
	if err == nil || !strings.Contains(err.Error(), "already goes through other0") {
		t.Fatalf("err = %v, want it to name other0", err)
	}
}

// TestOverlayDeviceIsTheFirstHop builds the flannel topology's first hop in a
// namespace standing for a host: the overlay TUN with its /32 and the /16
// route, and the local container bridge (one end of a veth pair here) with
// this host's
// /24. A packet from the host to another host's subnet must come out of the
// TUN, with the TUN's address as its source; a packet to the local subnet
// must not.
func TestOverlayDeviceIsTheFirstHop(t *testing.T) {
	ns := nstest.NewNS(t, "ovl")
	dev := overlayTUN(t, ns)
	nstest.Veth(t, ns, "cbr0", ns, "cbr0p")
	ns.AddAddr(t, "cbr0", bridgeAddr)
	if err := setupOverlay(ns, 1450, overlayAddr, overlayNet); err != nil {
		t.Fatal(err)
	}

	local := netip.MustParseAddrPort("10.244.1.7:4000")  // on the bridge's subnet
	remote := netip.MustParseAddrPort("10.244.2.7:4000") // another host's subnet
	payloads := map[netip.AddrPort][]byte{local: []byte("to the local subnet"), remote: []byte("to another host")}
	if err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, dst := range []netip.AddrPort{local, remote} {
			if err := unix.Sendto(fd, payloads[dst], 0, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The TUN may also carry the kernel's own IPv6 traffic (router
	// solicitations, MLD): only IPv4 counts.
	isIPv4 := func(p []byte) bool { return len(p) >= header.IPv4MinLen && p[0]>>4 == 4 }
	pkt := header.IPv4(readFromAny(t, dev.Queues(), isIPv4))
	if !pkt.IsValid(len(pkt)) || pkt.Protocol() != header.ProtoUDP || pkt.Src() != overlayAddr.Addr() || pkt.Dst() != remote.Addr() {
		t.Fatalf("first IPv4 packet out of ferry0: % x; want UDP %v -> %v", []byte(pkt), overlayAddr.Addr(), remote.Addr())
	}
	udp := pkt.Payload()
	if len(udp) < 8 || int(udp[2])<<8|int(udp[3]) != int(remote.Port()) || !bytes.Equal(udp[8:], payloads[remote]) {
		t.Fatalf("UDP datagram % x, want port %d and payload %q", udp, remote.Port(), payloads[remote])
	}
	// Nothing else, in particular not the local-subnet packet, comes out.
	bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		n, err := dev.Queues()[0].Read(bufs, sizes, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 && isIPv4(bufs[0][:sizes[0]]) {
			t.Fatalf("second IPv4 packet out of ferry0: % x", bufs[0][:sizes[0]])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOverlayRouteCleanup: RemoveRoute takes the route away and is
// idempotent, and closing the TUN takes its route and address with the
// device.
func TestOverlayRouteCleanup(t *testing.T) {
	ns := nstest.NewNS(t, "ovl")
	dev := overlayTUN(t, ns)
	h := ns.Handle(t)
	if err := setupOverlay(ns, 1450, overlayAddr, overlayNet); err != nil {
		t.Fatal(err)
	}
	removeRoute := func(dev string) error {
		return ns.Do(func() error { return netconf.RemoveRoute(overlayNet, dev) })
	}
	for _, call := range []string{"first RemoveRoute", "RemoveRoute of a missing route"} {
		if err := removeRoute("ferry0"); err != nil {
			t.Fatalf("%s: %v", call, err)
		}
		if got := mainRoutes(t, h); len(got) != 0 {
			t.Fatalf("%s: main routes %+v, want none", call, got)
		}
		if got := addrsOf(t, h, "ferry0"); len(got) != 1 || got[0] != overlayAddr {
			t.Fatalf("%s: addresses %v, want [%v] kept", call, got, overlayAddr)
		}
	}

	if err := setupOverlay(ns, 1450, overlayAddr, overlayNet); err != nil {
		t.Fatal(err)
	}
	if got := mainRoutes(t, h); len(got) != 1 {
		t.Fatalf("after setup again: main routes %+v, want the overlay route", got)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := h.LinkByName("ferry0")
	var notFound netlink.LinkNotFoundError
	if !errors.As(err, &notFound) {
		t.Fatalf("after closing the TUN: LinkByName = %v, want not found", err)
	}
	if got := mainRoutes(t, h); len(got) != 0 {
		t.Fatalf("after closing the TUN: main routes %+v, want none", got)
	}
	all, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if r.Dst != nil && r.Dst.IP.Equal(overlayAddr.Addr().AsSlice()) {
			t.Fatalf("after closing the TUN: local route %v for the device's address remains", r)
		}
	}
	if err := removeRoute("ferry0"); err != nil {
		t.Fatalf("RemoveRoute on a deleted device: %v, want nil", err)
	}
}
