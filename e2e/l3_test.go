package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// l3Host is one host of the flannel/Docker topology: a Linux bridge cbr0
// with the host's BridgeAddress, one container on it, forwarding on, and
// ferry in l3 mode with device ferry0.
type l3Host struct {
	*nstest.Host
	n         int // the host's subnet is 10.244.n.0/24
	container *nstest.NS
	ferry     *ferryd
	subnetEnv string
}

// l3Config renders an l3 network config for host h (subnet 10.244.n.0/24)
// with the given peers (underlay address → subnet number).
func l3Config(h *nstest.Host, n int, enc string, subnetFile string, peers map[netip.Addr]int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  name: %s\n  underlay: %s\n  workers: 2\n%scontrol:\n  socket: SOCKET\nmetrics:\n  listen: \"\"\n", h.Name, h.Addr, offloadKey())
	fmt.Fprintf(&b, "networks:\n  - name: pods\n    mode: l3\n    network: 10.244.0.0/16\n    subnet: 10.244.%d.0/24\n    encap: %s\n    device: ferry0\n", n, enc)
	if subnetFile != "" {
		fmt.Fprintf(&b, "    subnet_file: %s\n", subnetFile)
	}
	b.WriteString("    peers:\n")
	for a, pn := range peers {
		fmt.Fprintf(&b, "      - {underlay: %s, subnet: 10.244.%d.0/24}\n", a, pn)
	}
	return b.String()
}

// newL3Host builds host n's bridge and container (MTU mtu, as flannel's
// subnet file tells Docker) on the underlay.
func newL3Host(t *testing.T, ul *nstest.Underlay, n, mtu int) *l3Host {
	h := &l3Host{Host: ul.AddHost(t, fmt.Sprintf("h%d", n)), n: n}
	h.Bridge(t, "cbr0")
	h.SetMTU(t, "cbr0", mtu)
	h.AddAddr(t, "cbr0", netip.MustParsePrefix(fmt.Sprintf("10.244.%d.1/24", n)))
	h.Sysctl(t, "net.ipv4.ip_forward", "1")
	h.container = h.AddContainer(t, fmt.Sprintf("c%d", n), "cbr0", netip.MustParsePrefix(fmt.Sprintf("10.244.%d.2/24", n)))
	h.container.AddRoute(t, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr(fmt.Sprintf("10.244.%d.1", n)), "eth0")
	return h
}

// l3Pair builds two l3 hosts with ferry over encap enc.
func l3Pair(t *testing.T, enc string) (a, b *l3Host) {
	ul := nstest.NewUnderlay(t, netip.MustParsePrefix("192.168.77.0/24"))
	mtu := 1500 - encap.Overhead(enc, false)
	a, b = newL3Host(t, ul, 1, mtu), newL3Host(t, ul, 2, mtu)
	for _, h := range []*l3Host{a, b} {
		other := b
		if h == b {
			other = a
		}
		h.subnetEnv = filepath.Join(t.TempDir(), "subnet.env")
		h.ferry = startFerry(t, h.Host, l3Config(h.Host, h.n, enc, h.subnetEnv, map[netip.Addr]int{other.Addr: other.n}))
	}
	return a, b
}

// TestE2EL3 runs the flannel/Docker topology over each encapsulation:
// container → cbr0 → host routing → ferry0 → tunnel → ferry0 → cbr0 →
// container, ping both ways and 100 MB of TCP intact; and checks the
// subnet file ferry writes.
func TestE2EL3(t *testing.T) {
	nstest.RequireRoot(t)
	for _, enc := range []string{"udp", "gre", "vxlan"} {
		t.Run(enc, func(t *testing.T) {
			a, b := l3Pair(t, enc)
			mtu := 1500 - encap.Overhead(enc, false)
			env, err := os.ReadFile(a.subnetEnv)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=false\n", mtu)
			if string(env) != want {
				t.Errorf("subnet file:\n%s\nwant:\n%s", env, want)
			}
			if got := a.MTU(t, "ferry0"); got != mtu {
				t.Errorf("ferry0 MTU %d, want %d", got, mtu)
			}
			mustPing(t, a.container, "10.244.2.2")
			mustPing(t, b.container, "10.244.1.2")
			mustPing(t, a.container, "10.244.2.1") // the peer host's bridge
			transfer(t, a.container, b.container, "10.244.2.2", 100<<20)

			a.ferry.stop(t)
			if _, err := os.Stat(a.subnetEnv); !os.IsNotExist(err) {
				t.Errorf("subnet file still there after ferry stopped: %v", err)
			}
			if out, _ := a.Exec(t, 5*time.Second, "ip", "link", "show", "ferry0"); !strings.Contains(out, "does not exist") {
				t.Errorf("ferry0 still there after ferry stopped: %s", out)
			}
		})
	}
}

// TestE2EL2GRE is TestE2ETwoHosts over GRE: transparent Ethernet bridging
// with the VNI as the GRE key; then IPv6 TCP both ways and UDP_SEGMENT
// datagrams over it.
func TestE2EL2GRE(t *testing.T) {
	p := newFerryPair(t, "192.168.77.0/24", "10.42.0.4", func(_ int, cfg string) string {
		return strings.Replace(cfg, "    vni: 42\n", "    vni: 42\n    encap: gre\n", 1)
	})
	c1, c2, f1 := p.c1, p.c2, p.f1
	mustPing(t, c1, "10.42.0.4")
	mustPing(t, c2, "10.42.0.2")
	if got := neighbourMAC(t, c1, "10.42.0.4"); got != macC2a {
		t.Errorf("c1 resolved 10.42.0.4 to %q, want %s (ARP across the GRE overlay)", got, macC2a)
	}
	transfer(t, c1, c2, "10.42.0.4", 100<<20)
	ps := f1.peers(t)
	if len(ps) != 1 || ps[0].TxBytes < 100<<20 {
		t.Errorf("h1 peers = %+v, want one peer with >= 100 MB sent", ps)
	}
	// IPv6 in the containers, and UDP_SEGMENT senders, over GRE as over
	// VXLAN (TestE2EIPv6AndUSO): superpackets behind the GRE header.
	addAddr6(t, c1, ip6C1)
	addAddr6(t, c2, ip6C2)
	mustPing(t, c1, ip6C2)
	transfer(t, c1, c2, ip6C2, 32<<20)
	transfer(t, c2, c1, ip6C1, 32<<20)
	mustUDPSegments(t, c1, c2, netip.AddrPortFrom(netip.MustParseAddr(ip6C2), 5300), 50, 20)
	f1.checkNoDrops(t, "gso-segment", "gro-coalesce", "gre-decap", "port-rx", "port-tx")
}
