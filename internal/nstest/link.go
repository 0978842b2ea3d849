package nstest

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Veth creates a veth pair with the end aName in namespace a and the end
// bName in namespace b (a nil *NS is the test's current namespace), brings
// both ends up, and registers the pair's deletion (by aName, in a) with
// t.Cleanup. Names in the current namespace must not clash with the
// machine's interfaces: take them from [Name].
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	peerNS := openNS(t, b)
	defer peerNS.Close()
	h := a.handle(t)
	defer h.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(peerNS),
	}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("nstest: veth %s (%s) <-> %s (%s): %v", aName, a, bName, b, err)
	}
	if a == nil {
		noteRootLink(aName)
	}
	if b == nil {
		noteRootLink(bName)
	}
	a.deleteLinkOnCleanup(t, aName)
	a.linkUp(t, aName)
	b.linkUp(t, bName)
}

// openNS opens a file descriptor of the namespace, or of the calling thread's
// namespace for a nil *NS. The caller closes it.
func openNS(t testing.TB, n *NS) netns.NsHandle {
	t.Helper()
	var (
		fd  netns.NsHandle
		err error
	)
	if n == nil {
		fd, err = netns.Get()
	} else {
		fd, err = netns.GetFromPath(n.Path)
	}
	if err != nil {
		t.Fatalf("nstest: open %s: %v", n, err)
	}
	return fd
}

// deleteLinkOnCleanup registers the deletion of link name in the namespace
// with t.Cleanup. A link that is already gone (for example the peer of a veth
// end deleted earlier) is not an error.
func (n *NS) deleteLinkOnCleanup(t testing.TB, name string) {
	t.Cleanup(func() {
		h := n.handle(t)
		defer h.Close()
		link, err := h.LinkByName(name)
		if err == nil {
			err = h.LinkDel(link)
		}
		var notFound netlink.LinkNotFoundError
		if err != nil && !errors.As(err, &notFound) && !errors.Is(err, unix.ENODEV) {
			t.Errorf("nstest: delete link %s in %s: %v", name, n, err)
		}
	})
}

// link looks up the link ifname in the namespace with h.
func (n *NS) link(t testing.TB, h *netlink.Handle, ifname string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatalf("nstest: %s: link %s: %v", n, ifname, err)
	}
	return l
}

// linkUp brings the link ifname up.
func (n *NS) linkUp(t testing.TB, ifname string) {
	t.Helper()
	h := n.handle(t)
	defer h.Close()
	if err := h.LinkSetUp(n.link(t, h, ifname)); err != nil {
		t.Fatalf("nstest: %s: set %s up: %v", n, ifname, err)
	}
}

// SetMTU sets the MTU of the link ifname in the namespace.
func (n *NS) SetMTU(t testing.TB, ifname string, mtu int) {
	t.Helper()
	h := n.handle(t)
	defer h.Close()
	if err := h.LinkSetMTU(n.link(t, h, ifname), mtu); err != nil {
		t.Fatalf("nstest: %s: set %s mtu %d: %v", n, ifname, mtu, err)
	}
}

// MTU returns the MTU of the link ifname in the namespace.
func (n *NS) MTU(t testing.TB, ifname string) int {
	t.Helper()
	h := n.handle(t)
	defer h.Close()
	return n.link(t, h, ifname).Attrs().MTU
}

// ipNet converts a prefix to the form netlink wants, keeping the host bits
// (10.0.0.1/24 stays 10.0.0.1/24).
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// AddAddr adds the address p (host address and prefix length, such as
// 10.0.0.1/24) to the link ifname in the namespace. The address goes away
// with the link.
func (n *NS) AddAddr(t testing.TB, ifname string, p netip.Prefix) {
	t.Helper()
	h := n.handle(t)
	defer h.Close()
	if err := h.AddrAdd(n.link(t, h, ifname), &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		t.Fatalf("nstest: %s: add %v to %s: %v", n, p, ifname, err)
	}
}

// AddRoute adds a route to dst in the namespace's main table. A dst with
// zero bits (0.0.0.0/0 or ::/0) makes it the default route. via is the
// gateway, or the zero Addr for an on-link route; dev is the outgoing link,
// or "" to let the kernel choose it from via. The route goes away with its
// link.
func (n *NS) AddRoute(t testing.TB, dst netip.Prefix, via netip.Addr, dev string) {
	t.Helper()
	h := n.handle(t)
	defer h.Close()
	r := &netlink.Route{Family: unix.AF_INET}
	if dst.Addr().Is6() {
		r.Family = unix.AF_INET6
	}
	// netlink needs Dst even for a default route; a zero-length prefix is
	// what `ip route add default` sends.
	r.Dst = ipNet(dst.Masked())
	if via.IsValid() {
		r.Gw = via.AsSlice()
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	if dev != "" {
		r.LinkIndex = n.link(t, h, dev).Attrs().Index
	}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("nstest: %s: add route %v via %v dev %q: %v", n, dst, via, dev, err)
	}
}

// Bridge creates a Linux bridge called name in the namespace, enslaves the
// existing links members to it, brings it up, and registers its deletion
// with t.Cleanup. The members keep their own up/down state.
func (n *NS) Bridge(t testing.TB, name string, members ...string) {
	t.Helper()
	h := n.handle(t)
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatalf("nstest: %s: add bridge %s: %v", n, name, err)
	}
	if n == nil {
		noteRootLink(name)
	}
	n.deleteLinkOnCleanup(t, name)
	for _, m := range members {
		n.Enslave(t, m, name)
	}
	n.linkUp(t, name)
}

// Enslave makes the link member a port of the bridge in the namespace.
func (n *NS) Enslave(t testing.TB, member, bridge string) {
	t.Helper()
	h := n.handle(t)
	defer h.Close()
	if err := h.LinkSetMaster(n.link(t, h, member), n.link(t, h, bridge)); err != nil {
		t.Fatalf("nstest: %s: enslave %s to %s: %v", n, member, bridge, err)
	}
}

// KernelVXLAN creates a Linux kernel VXLAN device called name in the
// namespace: VNI vni, UDP port port (both the destination port and the local
// listening port), outer source address local, carried over the link parent
// (local may be the zero Addr and parent "" to leave them unset), with MAC
// learning on. It adds one all-zeros FDB entry per remote, which sends
// broadcast, multicast and unknown frames to every remote (head-end
// replication, like `bridge fdb append 00:00:00:00:00:00 dst R dev name`),
// brings the device up and registers its deletion with t.Cleanup. Its MTU is
// the parent's minus the 50 bytes of VXLAN over IPv4 overhead.
func (n *NS) KernelVXLAN(t testing.TB, name string, vni uint32, local netip.Addr, port uint16, parent string, remotes []netip.Addr) {
	t.Helper()
	h := n.handle(t)
	defer h.Close()
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name},
		VxlanId:   int(vni),
		Port:      int(port),
		Learning:  true,
	}
	if local.IsValid() {
		vx.SrcAddr = local.AsSlice()
	}
	if parent != "" {
		vx.VtepDevIndex = n.link(t, h, parent).Attrs().Index
	}
	if err := h.LinkAdd(vx); err != nil {
		t.Fatalf("nstest: %s: add vxlan %s vni %d: %v", n, name, vni, err)
	}
	if n == nil {
		noteRootLink(name)
	}
	n.deleteLinkOnCleanup(t, name)
	index := n.link(t, h, name).Attrs().Index
	for _, r := range remotes {
		fdb := &netlink.Neigh{
			LinkIndex:    index,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_SELF,
			State:        netlink.NUD_PERMANENT,
			HardwareAddr: make(net.HardwareAddr, 6),
			IP:           r.AsSlice(),
		}
		if err := h.NeighAppend(fdb); err != nil {
			t.Fatalf("nstest: %s: vxlan %s: append fdb 00:00:00:00:00:00 dst %v: %v", n, name, r, err)
		}
	}
	n.linkUp(t, name)
}

// Sysctl writes value to the sysctl key (dotted, as in
// "net.ipv4.ip_forward"; keys with dots inside a component, such as an
// interface name, are not supported) as seen from inside the namespace. The
// net.* keys are per namespace and vanish with it; on a nil *NS the write
// changes the machine's own setting, which tests should avoid.
func (n *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	err := n.Do(func() error {
		return os.WriteFile(path, []byte(value), 0o644)
	})
	if err != nil {
		t.Fatalf("nstest: %s: sysctl %s=%s: %v", n, key, value, err)
	}
}
