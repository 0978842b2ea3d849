package bench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named namespaces are bind-mounted, as by `ip netns add`.
const netnsDir = "/var/run/netns"

// netNS is a named network namespace that the overlay scenario created and
// deletes. It holds no open descriptor; methods open it by path.
type netNS struct {
	name string
	path string
}

// uniqueTag returns a short random hex string that makes this run's names
// unique on the machine.
func uniqueTag() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random name: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// newNS creates the named namespace (like `ip netns add name`) without
// leaving any thread of the process in it, and brings its loopback up.
func newNS(name string) (*netNS, error) {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	n := &netNS{name: name, path: filepath.Join(netnsDir, name)}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("netns %s: open current netns: %w", name, err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if h.IsOpen() {
		h.Close()
	}
	if rerr := netns.Set(orig); rerr != nil {
		// Leave the thread locked: the runtime discards it with the
		// goroutine, so nothing else runs in the wrong namespace.
		return nil, errors.Join(err, fmt.Errorf("netns %s: restore netns: %w", name, rerr))
	}
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("netns %s: create: %w", name, err)
	}
	if err := n.linkUp("lo"); err != nil {
		return n, err
	}
	return n, nil
}

// remove deletes the namespace's name; the namespace and its links go away
// once no process runs in it.
func (n *netNS) remove() error {
	if err := netns.DeleteNamed(n.name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns %s: delete: %w", n.name, err)
	}
	return nil
}

// do runs fn on the calling goroutine with its OS thread in the namespace,
// then switches back. Sockets fn creates stay in the namespace; processes
// fn starts run in it.
func (n *netNS) do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: open current netns: %w", n.name, err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(n.path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: open: %w", n.name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: enter: %w", n.name, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(fnErr, fmt.Errorf("netns %s: restore netns: %w", n.name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// start starts cmd inside the namespace: the child is forked from a thread
// that is in it.
func (n *netNS) start(cmd *exec.Cmd) error {
	return n.do(cmd.Start)
}

// handle returns a netlink handle bound to the namespace; the caller closes
// it.
func (n *netNS) handle() (*netlink.Handle, error) {
	fd, err := netns.GetFromPath(n.path)
	if err != nil {
		return nil, fmt.Errorf("netns %s: open: %w", n.name, err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		return nil, fmt.Errorf("netns %s: netlink: %w", n.name, err)
	}
	return h, nil
}

// withLink runs fn with a handle on the namespace and its link ifname.
func (n *netNS) withLink(ifname string, fn func(h *netlink.Handle, l netlink.Link) error) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("netns %s: link %s: %w", n.name, ifname, err)
	}
	if err := fn(h, l); err != nil {
		return fmt.Errorf("netns %s: link %s: %w", n.name, ifname, err)
	}
	return nil
}

func (n *netNS) linkUp(ifname string) error {
	return n.withLink(ifname, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetUp(l) })
}

func (n *netNS) setMTU(ifname string, mtu int) error {
	return n.withLink(ifname, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetMTU(l, mtu) })
}

func (n *netNS) mtu(ifname string) (int, error) {
	var mtu int
	err := n.withLink(ifname, func(_ *netlink.Handle, l netlink.Link) error {
		mtu = l.Attrs().MTU
		return nil
	})
	return mtu, err
}

func (n *netNS) addAddr(ifname string, p netip.Prefix) error {
	return n.withLink(ifname, func(h *netlink.Handle, l netlink.Link) error {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD // usable at once, as on a fresh container
		}
		return h.AddrAdd(l, a)
	})
}

// addDefaultRoute adds a default route via gw, which must be on a
// connected subnet.
func (n *netNS) addDefaultRoute(gw netip.Addr) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	r := &netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: gw.AsSlice()}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("netns %s: default route via %s: %w", n.name, gw, err)
	}
	return nil
}

// addBridge creates a Linux bridge, down, without members.
func (n *netNS) addBridge(name string) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		return fmt.Errorf("netns %s: add bridge %s: %w", n.name, name, err)
	}
	return nil
}

// sysctl sets a sysctl key ("net.ipv4.ip_forward") as seen from inside
// the namespace, where the net.* keys are the namespace's own.
func (n *netNS) sysctl(key, value string) error {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := n.do(func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		return fmt.Errorf("netns %s: sysctl %s=%s: %w", n.name, key, value, err)
	}
	return nil
}

func (n *netNS) enslave(member, bridge string) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	m, err := h.LinkByName(member)
	if err != nil {
		return fmt.Errorf("netns %s: link %s: %w", n.name, member, err)
	}
	br, err := h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("netns %s: link %s: %w", n.name, bridge, err)
	}
	if err := h.LinkSetMaster(m, br); err != nil {
		return fmt.Errorf("netns %s: enslave %s to %s: %w", n.name, member, bridge, err)
	}
	return nil
}

// veth creates a veth pair, aName in a and bName in b, both up.
func veth(a *netNS, aName string, b *netNS, bName string) error {
	peer, err := netns.GetFromPath(b.path)
	if err != nil {
		return fmt.Errorf("netns %s: open: %w", b.name, err)
	}
	defer peer.Close()
	h, err := a.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(peer)}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("veth %s (%s) <-> %s (%s): %w", aName, a.name, bName, b.name, err)
	}
	if err := a.linkUp(aName); err != nil {
		return err
	}
	return b.linkUp(bName)
}

// kernelOverlay builds the kernel's Docker-style overlay in host namespace
// h: a VXLAN device over underlay (source local, UDP port, head-end
// replication to remote, learning on) enslaved to a bridge with the host end
// hostEnd of a container's veth. The bridge and the veth get the VXLAN
// device's MTU.
func kernelOverlay(h *netNS, underlay string, local, remote netip.Addr, vni uint32, port uint16, hostEnd string) error {
	const vx, br = "vx0", "br0"
	nh, err := h.handle()
	if err != nil {
		return err
	}
	defer nh.Close()
	ul, err := nh.LinkByName(underlay)
	if err != nil {
		return fmt.Errorf("netns %s: link %s: %w", h.name, underlay, err)
	}
	dev := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: vx},
		VxlanId:      int(vni),
		Port:         int(port),
		Learning:     true,
		SrcAddr:      local.AsSlice(),
		VtepDevIndex: ul.Attrs().Index,
	}
	if err := nh.LinkAdd(dev); err != nil {
		return fmt.Errorf("netns %s: add vxlan: %w", h.name, err)
	}
	l, err := nh.LinkByName(vx)
	if err != nil {
		return fmt.Errorf("netns %s: link %s: %w", h.name, vx, err)
	}
	fdb := &netlink.Neigh{
		LinkIndex:    l.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT,
		HardwareAddr: make(net.HardwareAddr, 6),
		IP:           remote.AsSlice(),
	}
	if err := nh.NeighAppend(fdb); err != nil {
		return fmt.Errorf("netns %s: vxlan fdb 00:00:00:00:00:00 dst %s: %w", h.name, remote, err)
	}
	if err := h.addBridge(br); err != nil {
		return err
	}
	mtu := l.Attrs().MTU
	for _, m := range []string{vx, hostEnd} {
		if err := h.setMTU(m, mtu); err != nil {
			return err
		}
		if err := h.enslave(m, br); err != nil {
			return err
		}
	}
	for _, up := range []string{vx, br} {
		if err := h.linkUp(up); err != nil {
			return err
		}
	}
	return nil
}
