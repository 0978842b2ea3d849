package netconf

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SetupOverlayDevice configures name, the layer-3 (TUN) device of an l3-mode
// network, in the caller's namespace, the way flannel configures its own
// device: it sets the MTU (0 leaves it), adds addr, brings the link up, and
// adds a route for the whole overlay network through the device, so that
// the kernel hands ferry every packet for a subnet of the overlay that no
// more specific route (such as the local container bridge's own subnet)
// claims.
//
// addr is the device's address with its prefix length. Give it a /32, as
// flannel does: with a shorter prefix the kernel adds a prefix route for it
// through the device, which would steal this host's own subnet from its
// bridge. flannel uses the first address of the host's subnet, for example
// 10.244.1.0/32 for subnet 10.244.1.0/24 (pkg/backend/udp/udp_amd64.go puts
// the lease's subnet address in tunNet, and configureIface in
// udp_network_amd64.go adds it as a /32 "so that no broadcast routes are
// created" and then a route for the whole network through the device; the
// vxlan backend gives flannel.1 the same /32 in vxlan.go). The kernel uses
// that address as the source of packets the host itself sends into the
// overlay, so replies find their way back. addr must lie inside network.
//
// network is the whole overlay, for example 10.244.0.0/16; its host bits are
// ignored. The route is on-link (scope link, no gateway), in the main table,
// like `ip route add 10.244.0.0/16 dev ferry0` (flannel's udp backend adds
// the same route with universe scope; the scope makes no difference to a
// route without a gateway on a device without a link layer).
//
// Only IPv4 is supported. SetupOverlayDevice is idempotent: calling it again
// with the same arguments leaves the device as it is. A route for network
// that already goes through another device is an error naming that device:
// the overlay would not get the packets. The route and the address disappear
// with the device, so a TUN needs no cleanup beyond closing it; see
// RemoveRoute for devices that outlive ferry.
func SetupOverlayDevice(name string, mtu int, addr netip.Prefix, network netip.Prefix) error {
	addr = netip.PrefixFrom(addr.Addr().Unmap(), addr.Bits())
	network = netip.PrefixFrom(network.Addr().Unmap(), network.Bits()).Masked()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("netconf: overlay device %s: "+format, append([]any{name}, args...)...)
	}
	switch {
	case !addr.IsValid() || !addr.Addr().Is4():
		return fail("address %s is not an IPv4 prefix", addr)
	case !network.IsValid() || !network.Addr().Is4():
		return fail("network %s is not an IPv4 prefix", network)
	case !network.Contains(addr.Addr()):
		return fail("address %s is outside network %s", addr, network)
	case mtu < 0:
		return fail("negative mtu %d", mtu)
	}

	link, err := netlink.LinkByName(name)
	if err != nil {
		return fail("%w", err)
	}
	if mtu != 0 {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fail("set mtu %d: %w", mtu, err)
		}
	}
	// Replace, not add: an address already present is not an error.
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: prefixIPNet(addr)}); err != nil {
		return fail("add address %s: %w", addr, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fail("set up: %w", err)
	}
	route := overlayRoute(link.Attrs().Index, network)
	err = netlink.RouteAdd(route)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return fail("add route %s: %w", network, err)
	}
	// A route for network exists: fine if it is ours, from an earlier call.
	existing, lerr := routesTo(network)
	if lerr != nil {
		return fail("add route %s: %w", network, lerr)
	}
	for _, r := range existing {
		if r.LinkIndex == route.LinkIndex {
			return nil
		}
	}
	other := "another device"
	if len(existing) > 0 {
		if l, err := netlink.LinkByIndex(existing[0].LinkIndex); err == nil {
			other = l.Attrs().Name
		}
	}
	return fail("route %s already goes through %s", network, other)
}

// overlayRoute is the route for the whole overlay through device index.
func overlayRoute(index int, network netip.Prefix) *netlink.Route {
	return &netlink.Route{
		Family:    unix.AF_INET,
		LinkIndex: index,
		Dst:       prefixIPNet(network),
		Scope:     netlink.SCOPE_LINK,
		Table:     unix.RT_TABLE_MAIN,
	}
}

// routesTo lists the main table's routes whose destination is exactly
// network.
func routesTo(network netip.Prefix) ([]netlink.Route, error) {
	filter := &netlink.Route{Dst: prefixIPNet(network), Table: unix.RT_TABLE_MAIN}
	var routes []netlink.Route
	var err error
	for range dumpRetries {
		routes, err = netlink.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return routes, nil
}

// RemoveRoute deletes the main table's route for network through device
// dev in the caller's namespace, as added by SetupOverlayDevice. A route or
// device that does not exist is not an error, so it is safe in cleanup paths.
//
// Deleting a device deletes its routes and addresses with it, and a TUN
// device is deleted when its last queue is closed (both tested), so ferry
// needs RemoveRoute only to take the overlay route away from a device that
// stays, for example when a network is reconfigured while running.
func RemoveRoute(network netip.Prefix, dev string) error {
	network = netip.PrefixFrom(network.Addr().Unmap(), network.Bits()).Masked()
	if !network.IsValid() || !network.Addr().Is4() {
		return fmt.Errorf("netconf: remove route %s dev %s: not an IPv4 prefix", network, dev)
	}
	link, err := netlink.LinkByName(dev)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("netconf: remove route %s dev %s: %w", network, dev, err)
	}
	if err := netlink.RouteDel(overlayRoute(link.Attrs().Index, network)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("netconf: remove route %s dev %s: %w", network, dev, err)
	}
	return nil
}
