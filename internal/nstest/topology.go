package nstest

import (
	"fmt"
	"net/netip"
	"testing"
)

// UnderlayDev is the name of each simulated host's underlay link, inside the
// host's namespace (the host's "eth0").
const UnderlayDev = "ul0"

// Underlay simulates the physical network between hosts: a Linux bridge (the
// "switch") in a namespace of its own, with one veth per host namespace. Each
// host gets the next address of Prefix on its [UnderlayDev] link. An
// Underlay is not safe for concurrent use.
type Underlay struct {
	// Switch is the namespace holding the bridge.
	Switch *NS
	// Bridge is the bridge's name inside Switch.
	Bridge string
	// Prefix is the underlay subnet, such as 192.168.77.0/24.
	Prefix netip.Prefix

	last  netip.Addr // the last host address handed out
	hosts int
}

// Host is a simulated machine: a namespace attached to an [Underlay].
type Host struct {
	*NS
	// Addr is the host's underlay address, assigned to [UnderlayDev].
	Addr netip.Addr
}

// NewUnderlay creates the switch namespace and its bridge for the IPv4
// subnet prefix; [Underlay.AddHost] plugs hosts into it. Everything is
// deleted in t.Cleanup.
func NewUnderlay(t testing.TB, prefix netip.Prefix) *Underlay {
	t.Helper()
	if !prefix.Addr().Is4() || prefix.Bits() > 30 {
		t.Fatalf("nstest: underlay prefix %v: want an IPv4 subnet of at least 4 addresses", prefix)
	}
	u := &Underlay{Switch: NewNS(t, "sw"), Bridge: "br0", Prefix: prefix.Masked()}
	u.last = u.Prefix.Addr()
	u.Switch.Bridge(t, u.Bridge)
	return u
}

// AddHost creates a host namespace named prefix plus a random suffix,
// connects its [UnderlayDev] link to the switch with a veth, and gives it the
// next free address of the underlay subnet (.1, .2, … for a /24).
func (u *Underlay) AddHost(t testing.TB, prefix string) *Host {
	t.Helper()
	addr := u.last.Next()
	if !u.Prefix.Contains(addr.Next()) {
		t.Fatalf("nstest: underlay %v is full", u.Prefix)
	}
	u.last = addr
	u.hosts++
	h := &Host{NS: NewNS(t, prefix), Addr: addr}
	port := fmt.Sprintf("p%d", u.hosts)
	Veth(t, u.Switch, port, h.NS, UnderlayDev)
	u.Switch.Enslave(t, port, u.Bridge)
	h.AddAddr(t, UnderlayDev, netip.PrefixFrom(addr, u.Prefix.Bits()))
	return h
}

// KernelOverlay makes the host a member of a Docker-style overlay network
// built from the kernel's own devices: a VXLAN device "vx<vni>" over
// [UnderlayDev] with the host's underlay address as source, UDP port port,
// and head-end replication to remotes, enslaved to a bridge "br<vni>". It
// returns the bridge's name, for [NS.AddContainer]. This is the kernel peer
// that ferry must interoperate with on the wire.
func (h *Host) KernelOverlay(t testing.TB, vni uint32, port uint16, remotes []netip.Addr) (bridge string) {
	t.Helper()
	vx := fmt.Sprintf("vx%d", vni)
	bridge = fmt.Sprintf("br%d", vni)
	h.KernelVXLAN(t, vx, vni, h.Addr, port, UnderlayDev, remotes)
	h.Bridge(t, bridge, vx)
	return bridge
}

// AddContainer creates a container namespace named prefix plus a random
// suffix, with an "eth0" holding address addr (such as 10.42.0.2/24),
// connected by a veth to the bridge in n, and returns it. The container's
// MTU is the bridge's MTU, so a bridge over a VXLAN device yields containers
// whose frames fit the tunnel, as Docker does.
func (n *NS) AddContainer(t testing.TB, prefix, bridge string, addr netip.Prefix) *NS {
	t.Helper()
	c := NewNS(t, prefix)
	hostEnd := Name(t, "vc")
	mtu := n.MTU(t, bridge)
	Veth(t, n, hostEnd, c, "eth0")
	n.SetMTU(t, hostEnd, mtu)
	c.SetMTU(t, "eth0", mtu)
	n.Enslave(t, hostEnd, bridge)
	c.AddAddr(t, "eth0", addr)
	return c
}
