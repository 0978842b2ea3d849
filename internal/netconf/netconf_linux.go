// Package netconf configures Linux links and network namespaces for ferry's
// ports: MTU, MAC, up/down, moving a TAP into a container's namespace with
// its address and default route, deleting links, and setting up the TUN
// device of a layer-3 (flannel-style) overlay with its route.
//
// It speaks rtnetlink through github.com/vishvananda/netlink and opens
// namespaces with github.com/vishvananda/netns; it never runs the ip command.
// Work inside another namespace goes through a netlink handle opened in that
// namespace, so the calling thread never changes namespace; the few helpers
// that must run code inside a namespace (CreateNetns, Do) do it on a
// dedicated, locked OS thread that no other goroutine can land on.
//
// All functions are safe to call from several goroutines; the kernel
// serializes the changes.
package netconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, as with
// `ip netns`.
const NetnsDir = "/var/run/netns"

// dumpRetries bounds how often a netlink dump that the kernel interrupted
// (because the table changed during it) is repeated.
const dumpRetries = 5

// NetnsPath returns the path of the namespace file for ns: an absolute path
// is returned unchanged, and a name becomes NetnsDir/name.
func NetnsPath(ns string) string {
	if filepath.IsAbs(ns) {
		return ns
	}
	return filepath.Join(NetnsDir, ns)
}

// SetupLink configures link name in the caller's namespace: its MTU (0 leaves
// it), its MAC address (all zeros leaves it), and, if up, brings it up. A
// link that is already up is left up even when up is false.
func SetupLink(name string, mtu int, mac [6]byte, up bool) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netconf: setup %s: %w", name, err)
	}
	if mtu != 0 {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("netconf: setup %s: set mtu %d: %w", name, mtu, err)
		}
	}
	if mac != [6]byte{} {
		hw := net.HardwareAddr(mac[:])
		if err := netlink.LinkSetHardwareAddr(link, hw); err != nil {
			return fmt.Errorf("netconf: setup %s: set mac %s: %w", name, hw, err)
		}
	}
	if up {
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("netconf: setup %s: set up: %w", name, err)
		}
	}
	return nil
}

// SetGSOMaxSegs sets the most segments the kernel puts in one GSO packet
// for link name (in the caller's namespace; it stays with the link when
// the link moves): a TCP stack sending through the link builds no larger
// superpackets.
func SetGSOMaxSegs(name string, segs int) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netconf: gso_max_segs of %s: %w", name, err)
	}
	if err := netlink.LinkSetGSOMaxSegs(link, segs); err != nil {
		return fmt.Errorf("netconf: set gso_max_segs %d on %s: %w", segs, name, err)
	}
	return nil
}

// PlaceInNetns moves link name from the caller's namespace into namespace ns
// (a name under NetnsDir or an absolute path), and there renames it to ifname
// (if non-empty), brings it up, adds addr (if valid; the address with its
// prefix length, e.g. 10.0.0.2/24), adds a default route via gw (if valid),
// and brings up lo. A valid gw must lie inside addr's prefix.
//
// Moving a link brings it down and keeps its MTU and MAC, so call SetupLink
// first. A process holding the link's TAP descriptor keeps it across the
// move. If a later step fails, the link stays in ns: remove it with
// DeleteLinkInNetns (or by closing a TAP's descriptors).
func PlaceInNetns(name, ns, ifname string, addr netip.Prefix, gw netip.Addr) error {
	addr = netip.PrefixFrom(addr.Addr().Unmap(), addr.Bits())
	gw = gw.Unmap()
	if gw.IsValid() && !(addr.IsValid() && addr.Contains(gw)) {
		return fmt.Errorf("netconf: place %s in %s: gateway %s is outside %s", name, ns, gw, addr)
	}

	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netconf: place %s in %s: %w", name, ns, err)
	}
	nsh, err := netns.GetFromPath(NetnsPath(ns))
	if err != nil {
		return fmt.Errorf("netconf: place %s in %s: open namespace: %w", name, ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netconf: place %s in %s: netlink handle: %w", name, ns, err)
	}
	defer h.Close()

	if err := netlink.LinkSetNsFd(link, int(nsh)); err != nil {
		return fmt.Errorf("netconf: place %s in %s: move: %w", name, ns, err)
	}
	// The index survives the move unless it collides with one in ns, so look
	// the link up by name there.
	moved, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netconf: place %s in %s: find after move: %w", name, ns, err)
	}
	final := name
	if ifname != "" && ifname != name {
		if err := h.LinkSetName(moved, ifname); err != nil {
			return fmt.Errorf("netconf: place %s in %s: rename to %s: %w", name, ns, ifname, err)
		}
		final = ifname
	}
	if err := h.LinkSetUp(moved); err != nil {
		return fmt.Errorf("netconf: place %s in %s: set %s up: %w", name, ns, final, err)
	}
	if addr.IsValid() {
		a := &netlink.Addr{IPNet: prefixIPNet(addr)}
		if err := h.AddrAdd(moved, a); err != nil {
			return fmt.Errorf("netconf: place %s in %s: add address %s to %s: %w", name, ns, addr, final, err)
		}
	}
	if gw.IsValid() {
		r := &netlink.Route{LinkIndex: moved.Attrs().Index, Gw: net.IP(gw.AsSlice())}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("netconf: place %s in %s: default route via %s: %w", name, ns, gw, err)
		}
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("netconf: place %s in %s: find lo: %w", name, ns, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("netconf: place %s in %s: set lo up: %w", name, ns, err)
	}
	return nil
}

// prefixIPNet converts a prefix to the net.IPNet netlink wants, keeping the
// host bits (the interface's own address).
func prefixIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

// DeleteLink deletes link name in the caller's namespace. A link that does
// not exist is not an error.
func DeleteLink(name string) error {
	return deleteLink(nil, "", name)
}

// DeleteLinkInNetns deletes link ifname in namespace ns (a name under
// NetnsDir or an absolute path). A link that does not exist is not an error;
// a namespace that does not exist is.
func DeleteLinkInNetns(ns, ifname string) error {
	nsh, err := netns.GetFromPath(NetnsPath(ns))
	if err != nil {
		return fmt.Errorf("netconf: delete %s in %s: open namespace: %w", ifname, ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netconf: delete %s in %s: netlink handle: %w", ifname, ns, err)
	}
	defer h.Close()
	return deleteLink(h, ns, ifname)
}

// deleteLink deletes a link through h, or in the caller's namespace when h is
// nil; ns only names the namespace in errors.
func deleteLink(h *netlink.Handle, ns, name string) error {
	where := name
	if ns != "" {
		where = name + " in " + ns
	}
	if h == nil {
		h = &netlink.Handle{} // the zero Handle works in the caller's namespace
	}
	link, err := h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("netconf: delete %s: %w", where, err)
	}
	if err := h.LinkDel(link); err != nil {
		if isNotFound(err) {
			return nil // deleted meanwhile, e.g. its TAP descriptor was closed
		}
		return fmt.Errorf("netconf: delete %s: %w", where, err)
	}
	return nil
}

// isNotFound reports whether err says the link does not exist.
func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// LinkExists reports whether a link named name exists in the current
// namespace. ferry checks it before creating a TAP device: on Linux,
// TUNSETIFF on an existing multi-queue device silently attaches more queues
// to it instead of failing, which would let a second daemon share, and on
// exit tear down, another's port.
func LinkExists(name string) (bool, error) {
	_, err := netlink.LinkByName(name)
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("netconf: look up link %q: %w", name, err)
}

// LinkMTUForAddr returns the MTU of the interface in the caller's namespace
// that has addr as one of its addresses. It is how ferry derives a network's
// default MTU from the underlay address it sends tunnels from.
func LinkMTUForAddr(addr netip.Addr) (int, error) {
	addr = addr.Unmap()
	var addrs []netlink.Addr
	var err error
	for range dumpRetries {
		addrs, err = netlink.AddrList(nil, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("netconf: mtu for %s: list addresses: %w", addr, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != addr {
			continue
		}
		link, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil {
			return 0, fmt.Errorf("netconf: mtu for %s: link %d: %w", addr, a.LinkIndex, err)
		}
		return link.Attrs().MTU, nil
	}
	return 0, fmt.Errorf("netconf: mtu for %s: no interface has this address", addr)
}

// CreateNetns creates a named network namespace, bind-mounted at
// NetnsPath(name) like `ip netns add`. The caller's threads stay in their
// namespace: the new namespace is entered only by a dedicated locked thread,
// which returns to its original namespace (or, if it cannot, is retired
// with its goroutine). Remove it with DeleteNetns.
func CreateNetns(name string) error {
	err := onLockedThread(func() error {
		h, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		return h.Close()
	})
	if err != nil {
		return fmt.Errorf("netconf: create namespace %s: %w", name, err)
	}
	return nil
}

// DeleteNetns unmounts and removes the named namespace created by
// CreateNetns. The namespace itself lives on while something (a process, an
// open descriptor) still refers to it.
func DeleteNetns(name string) error {
	if err := netns.DeleteNamed(name); err != nil {
		return fmt.Errorf("netconf: delete namespace %s: %w", name, err)
	}
	return nil
}

// Do runs fn on a dedicated OS thread that has entered namespace ns (a name
// under NetnsDir or an absolute path), and returns fn's error. Sockets and
// devices that fn opens belong to ns and stay there after fn returns. fn runs
// on another goroutine than the caller's, which Do waits for; goroutines that
// fn starts do not run in ns.
func Do(ns string, fn func() error) error {
	target, err := netns.GetFromPath(NetnsPath(ns))
	if err != nil {
		return fmt.Errorf("netconf: enter namespace %s: %w", ns, err)
	}
	defer target.Close()
	var ferr error
	err = onLockedThread(func() error {
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("netconf: enter namespace %s: %w", ns, err)
		}
		ferr = fn()
		return nil
	})
	return errors.Join(ferr, err)
}

// onLockedThread runs fn on a new goroutine locked to its OS thread, then
// puts the thread back into the namespace it started in. If that fails, the
// thread stays locked, so the runtime retires it when the goroutine ends and
// no other goroutine ever runs in the wrong namespace.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
