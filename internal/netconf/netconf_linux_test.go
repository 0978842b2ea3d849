package netconf_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/internal/netconf"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

func TestNetnsPath(t *testing.T) {
	tests := []struct {
		name, ns, want string
	}{
		{name: "bare name goes under /var/run/netns", ns: "c1", want: "/var/run/netns/c1"},
		{name: "absolute path is kept", ns: "/proc/42/ns/net", want: "/proc/42/ns/net"},
		{name: "bind mount elsewhere is kept", ns: "/run/docker/netns/abc", want: "/run/docker/netns/abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := netconf.NetnsPath(tt.ns); got != tt.want {
				t.Errorf("NetnsPath(%q) = %q, want %q", tt.ns, got, tt.want)
			}
		})
	}
}

// handleIn returns a netlink handle working in namespace ns.
func handleIn(tb testing.TB, ns string) *netlink.Handle {
	tb.Helper()
	nsh, err := netns.GetFromPath(netconf.NetnsPath(ns))
	if err != nil {
		tb.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	return h
}

// do runs fn in namespace ns and fails the test on error.
func do(tb testing.TB, ns string, fn func() error) {
	tb.Helper()
	if err := netconf.Do(ns, fn); err != nil {
		tb.Fatal(err)
	}
}

// randomOctet returns a random byte, used as x in the tests' 10.9x.x.0/24
// subnets so that parallel runs never share addresses.
func randomOctet() byte {
	var b [1]byte
	rand.Read(b[:])
	return b[0]
}

// readFromAny reads frames from every queue until match accepts one, and
// returns a copy; it fails the test after two seconds.
func readFromAny(tb testing.TB, queues []*tuntap.Queue, match func([]byte) bool) []byte {
	tb.Helper()
	bufs := [][]byte{make([]byte, 2048), make([]byte, 2048), make([]byte, 2048)}
	sizes := make([]int, len(bufs))
	pfds := make([]unix.PollFd, len(queues))
	for i, q := range queues {
		pfds[i] = unix.PollFd{Fd: int32(q.Fd()), Events: unix.POLLIN}
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, q := range queues {
			n, err := q.Read(bufs, sizes, 0)
			if err != nil {
				tb.Fatal(err)
			}
			for i := range n {
				if f := bufs[i][:sizes[i]]; match(f) {
					return bytes.Clone(f)
				}
			}
		}
		if _, err := unix.Poll(pfds, 100); err != nil && err != unix.EINTR {
			tb.Fatal(err)
		}
	}
	tb.Fatal("no matching frame arrived within 2s")
	return nil
}

// TestPlaceTAPInNetns is the container scenario: ferry creates a two-queue
// TAP in its namespace ("host", itself a namespace the test made so the real
// host is never touched), configures it, moves it into a container namespace
// as eth0 with an address and default route, and then exchanges real frames
// with the container's kernel through the TAP.
func TestPlaceTAPInNetns(t *testing.T) {
	host, ctr := nstest.NewNS(t, "nt").Name, nstest.NewNS(t, "nt").Name
	x := randomOctet()
	addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, x, 2}), 24)
	gw := netip.AddrFrom4([4]byte{10, 99, x, 1})
	mac := [6]byte{0x02, 0xf0, 0x0d, 0x00, 0x00, x}
	const mtu = 1400
	tapName := nstest.Name(t, "fy")

	var dev *tuntap.Device
	do(t, host, func() error {
		before, err := netns.Get()
		if err != nil {
			return err
		}
		defer before.Close()
		if dev, err = tuntap.Create(tuntap.Options{Name: tapName, Kind: tuntap.TAP, Queues: 2}); err != nil {
			return err
		}
		if err := netconf.SetupLink(tapName, mtu, mac, false); err != nil {
			return err
		}
		if err := netconf.PlaceInNetns(tapName, ctr, "eth0", addr, gw); err != nil {
			return err
		}
		after, err := netns.Get()
		if err != nil {
			return err
		}
		defer after.Close()
		if !before.Equal(after) {
			t.Error("PlaceInNetns changed the calling thread's namespace")
		}
		return nil
	})
	closed := false
	t.Cleanup(func() {
		if !closed {
			dev.Close()
		}
	})

	h := handleIn(t, ctr)
	link, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("eth0 not in the container namespace: %v", err)
	}
	a := link.Attrs()
	if a.Flags&net.FlagUp == 0 {
		t.Error("eth0 is not up")
	}
	if a.MTU != mtu {
		t.Errorf("eth0 MTU %d, want %d", a.MTU, mtu)
	}
	if !bytes.Equal(a.HardwareAddr, mac[:]) {
		t.Errorf("eth0 MAC %v, want %v", a.HardwareAddr, net.HardwareAddr(mac[:]))
	}
	if _, err := handleIn(t, host).LinkByName(tapName); err == nil {
		t.Errorf("%s still in the host namespace after the move", tapName)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != addr.String() {
		t.Errorf("eth0 addresses %v, want [%v]", addrs, addr)
	}
	routes, err := h.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var haveDefault bool
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(gw.AsSlice()) {
			haveDefault = true
		}
	}
	if !haveDefault {
		t.Errorf("no default route via %v in %v", gw, routes)
	}
	lo, err := h.LinkByName("lo")
	if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo in the container namespace is not up (%v)", err)
	}

	// A datagram from the container to the gateway: with no neighbour entry
	// yet, the kernel first asks for the gateway's MAC through the TAP.
	payload := []byte("hello from the container")
	var sock int
	do(t, ctr, func() error {
		var err error
		sock, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	defer unix.Close(sock)
	if err := unix.Sendto(sock, payload, 0, &unix.SockaddrInet4{Port: 9999, Addr: gw.As4()}); err != nil {
		t.Fatal(err)
	}
	req := readFromAny(t, dev.Queues(), func(f []byte) bool {
		arp := parseARP(f)
		return arp != nil && arp.Operation == layers.ARPRequest && bytes.Equal(arp.DstProtAddress, gw.AsSlice())
	})
	if !bytes.Equal(req[6:12], mac[:]) {
		t.Errorf("ARP request from %v, want the TAP's MAC %v", net.HardwareAddr(req[6:12]), net.HardwareAddr(mac[:]))
	}
	if arp := parseARP(req); !bytes.Equal(arp.SourceHwAddress, mac[:]) || !bytes.Equal(arp.SourceProtAddress, addr.Addr().AsSlice()) {
		t.Errorf("ARP request says %v is at %v, want %v at %v", arp.SourceProtAddress, net.HardwareAddr(arp.SourceHwAddress), addr.Addr(), net.HardwareAddr(mac[:]))
	}

	// ferry answers for the gateway: the kernel learns the neighbour and
	// sends the datagram it held back.
	gwMAC := net.HardwareAddr{0x02, 0xfe, 0xed, 0x00, 0x00, x}
	reply := serialize(t,
		&layers.Ethernet{SrcMAC: gwMAC, DstMAC: mac[:], EthernetType: layers.EthernetTypeARP},
		&layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPReply,
			SourceHwAddress: gwMAC, SourceProtAddress: gw.AsSlice(),
			DstHwAddress: mac[:], DstProtAddress: addr.Addr().AsSlice(),
		})
	if n, err := dev.Queues()[1].Write([][]byte{reply}, 0); n != 1 || err != nil {
		t.Fatalf("Write ARP reply = %d, %v", n, err)
	}
	udp := readFromAny(t, dev.Queues(), func(f []byte) bool {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.NoCopy)
		u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		return ok && u.DstPort == 9999
	})
	if !bytes.Equal(udp[:6], gwMAC) {
		t.Errorf("datagram sent to MAC %v, want the learned %v", net.HardwareAddr(udp[:6]), gwMAC)
	}
	p := gopacket.NewPacket(udp, layers.LayerTypeEthernet, gopacket.Default)
	if ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); !ip.DstIP.Equal(gw.AsSlice()) || !ip.SrcIP.Equal(addr.Addr().AsSlice()) {
		t.Errorf("datagram %v -> %v, want %v -> %v", ip.SrcIP, ip.DstIP, addr.Addr(), gw)
	}
	if got := p.Layer(layers.LayerTypeUDP).LayerPayload(); !bytes.Equal(got, payload) {
		t.Errorf("datagram payload %q, want %q", got, payload)
	}
	neighs, err := h.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var learned bool
	for _, n := range neighs {
		if n.IP.Equal(gw.AsSlice()) && bytes.Equal(n.HardwareAddr, gwMAC) {
			learned = true
		}
	}
	if !learned {
		t.Errorf("neighbour table %v has no %v at %v", neighs, gw, gwMAC)
	}

	// Closing ferry's descriptors removes the non-persistent TAP, even in
	// the container's namespace.
	closed = true
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName("eth0"); err == nil {
		t.Error("eth0 still exists after the TAP's descriptors were closed")
	}
}

func parseARP(frame []byte) *layers.ARP {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	return arp
}

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// addLink creates a TAP (a link that needs no kernel module beyond tun) in
// namespace ns with the given MTU, kept until the test ends, and returns it.
func addLink(tb testing.TB, ns string, h *netlink.Handle, name string, mtu int) netlink.Link {
	tb.Helper()
	do(tb, ns, func() error {
		dev, err := tuntap.Create(tuntap.Options{Name: name, Kind: tuntap.TAP, Queues: 1})
		if err != nil {
			return err
		}
		tb.Cleanup(func() { dev.Close() })
		return nil
	})
	link, err := h.LinkByName(name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		tb.Fatal(err)
	}
	return link
}

func TestSetupLinkZeroValuesLeaveSettings(t *testing.T) {
	ns := nstest.NewNS(t, "nt").Name
	h := handleIn(t, ns)
	addLink(t, ns, h, "fydummy", 1300)
	mac := [6]byte{0x02, 1, 2, 3, 4, 5}
	do(t, ns, func() error { return netconf.SetupLink("fydummy", 1450, mac, false) })
	do(t, ns, func() error { return netconf.SetupLink("fydummy", 0, [6]byte{}, true) })
	link, err := h.LinkByName("fydummy")
	if err != nil {
		t.Fatal(err)
	}
	a := link.Attrs()
	if a.MTU != 1450 || !bytes.Equal(a.HardwareAddr, mac[:]) || a.Flags&net.FlagUp == 0 {
		t.Errorf("link MTU %d MAC %v up %v; want 1450, %v, up", a.MTU, a.HardwareAddr, a.Flags&net.FlagUp != 0, net.HardwareAddr(mac[:]))
	}
	err = netconf.Do(ns, func() error { return netconf.SetupLink("fymissing", 1500, [6]byte{}, true) })
	if err == nil || !strings.Contains(err.Error(), "fymissing") {
		t.Errorf("SetupLink on a missing link: %v, want an error naming it", err)
	}
}

func TestPlaceInNetnsRejects(t *testing.T) {
	host, ctr := nstest.NewNS(t, "nt").Name, nstest.NewNS(t, "nt").Name
	h := handleIn(t, host)
	addLink(t, host, h, "fyd0", 1500)
	tests := []struct {
		name    string
		link    string
		ns      string
		addr    netip.Prefix
		gw      netip.Addr
		wantMsg string
	}{
		{name: "gateway outside the prefix", link: "fyd0", ns: ctr, addr: netip.MustParsePrefix("10.98.0.2/24"), gw: netip.MustParseAddr("10.98.1.1"), wantMsg: "outside"},
		{name: "gateway without address", link: "fyd0", ns: ctr, gw: netip.MustParseAddr("10.98.0.1"), wantMsg: "outside"},
		{name: "missing link", link: "fynothere", ns: ctr, wantMsg: "fynothere"},
		{name: "missing namespace", link: "fyd0", ns: nstest.Name(t, "nonens"), wantMsg: "open namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := netconf.Do(host, func() error { return netconf.PlaceInNetns(tt.link, tt.ns, "eth0", tt.addr, tt.gw) })
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("PlaceInNetns = %v, want an error containing %q", err, tt.wantMsg)
			}
			if _, err := h.LinkByName("fyd0"); err != nil {
				t.Fatalf("a rejected PlaceInNetns moved or lost the link: %v", err)
			}
		})
	}
}

func TestDeleteLink(t *testing.T) {
	host, ctr := nstest.NewNS(t, "nt").Name, nstest.NewNS(t, "nt").Name
	hh, hc := handleIn(t, host), handleIn(t, ctr)
	addLink(t, host, hh, "fydel", 1500)
	addLink(t, ctr, hc, "fydel2", 1500)
	tests := []struct {
		name    string
		del     func() error
		gone    func() error // LinkByName of the deleted link; nil if nothing to check
		wantErr bool
	}{
		{
			name: "existing link in the current namespace",
			del:  func() error { return netconf.Do(host, func() error { return netconf.DeleteLink("fydel") }) },
			gone: func() error { _, err := hh.LinkByName("fydel"); return err },
		},
		{
			name: "missing link in the current namespace",
			del:  func() error { return netconf.Do(host, func() error { return netconf.DeleteLink("fynothere") }) },
		},
		{
			name: "existing link in another namespace",
			del:  func() error { return netconf.DeleteLinkInNetns(ctr, "fydel2") },
			gone: func() error { _, err := hc.LinkByName("fydel2"); return err },
		},
		{
			name: "missing link in another namespace",
			del:  func() error { return netconf.DeleteLinkInNetns(ctr, "fynothere") },
		},
		{
			name:    "missing namespace",
			del:     func() error { return netconf.DeleteLinkInNetns(nstest.Name(t, "nonens"), "eth0") },
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.del()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if tt.gone != nil {
				var nf netlink.LinkNotFoundError
				if err := tt.gone(); !errors.As(err, &nf) {
					t.Fatalf("link still there after delete (lookup: %v)", err)
				}
			}
		})
	}
}

func TestLinkMTUForAddr(t *testing.T) {
	ns := nstest.NewNS(t, "nt").Name
	h := handleIn(t, ns)
	link := addLink(t, ns, h, "fyunder", 1234)
	x := randomOctet()
	local := netip.AddrFrom4([4]byte{10, 97, x, 1})
	ipnet := &net.IPNet{IP: local.AsSlice(), Mask: net.CIDRMask(24, 32)}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipnet}); err != nil {
		t.Fatal(err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil { // gives lo its 127.0.0.1
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		addr    netip.Addr
		want    int
		wantErr bool
	}{
		{name: "address of a TAP", addr: local, want: 1234},
		{name: "IPv4-mapped form of it", addr: netip.AddrFrom16(local.As16()), want: 1234},
		{name: "loopback", addr: netip.MustParseAddr("127.0.0.1"), want: 65536},
		{name: "address nobody has", addr: netip.AddrFrom4([4]byte{10, 97, x, 9}), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got int
			err := netconf.Do(ns, func() error {
				var err error
				got, err = netconf.LinkMTUForAddr(tt.addr)
				return err
			})
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("LinkMTUForAddr(%v) = %d, %v; want %d, error %v", tt.addr, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
