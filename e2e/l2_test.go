package e2e

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/internal/nstest"
)

const (
	macC1a = "02:42:0a:2a:00:02"
	macC1b = "02:42:0a:2a:00:03"
	macC2a = "02:42:0a:2a:00:04"
	macC2b = "02:42:0a:2a:00:05"
)

// TestE2ETwoHosts: two ferry hosts with two containers each, on one VXLAN
// network: pings across hosts both ways, ARP resolves across the overlay,
// and 100 MB cross over TCP intact.
func TestE2ETwoHosts(t *testing.T) {
	nstest.RequireRoot(t)
	ul := nstest.NewUnderlay(t, netip.MustParsePrefix("192.168.77.0/24"))
	h1, h2 := ul.AddHost(t, "h1"), ul.AddHost(t, "h2")
	c1a, c1b := nstest.NewNS(t, "c1a"), nstest.NewNS(t, "c1b")
	c2a, c2b := nstest.NewNS(t, "c2a"), nstest.NewNS(t, "c2b")

	f1 := startFerry(t, h1, l2Config(h1, 42, []netip.Addr{h2.Addr}, []portSpec{
		{nstest.Name(t, "t1a"), c1a.Name, "10.42.0.2/24", macC1a},
		{nstest.Name(t, "t1b"), c1b.Name, "10.42.0.3/24", macC1b},
	}))
	f2 := startFerry(t, h2, l2Config(h2, 42, []netip.Addr{h1.Addr}, []portSpec{
		{nstest.Name(t, "t2a"), c2a.Name, "10.42.0.4/24", macC2a},
		{nstest.Name(t, "t2b"), c2b.Name, "10.42.0.5/24", macC2b},
	}))

	mustPing(t, c1a, "10.42.0.4")
	mustPing(t, c2b, "10.42.0.3")
	mustPing(t, c1a, "10.42.0.3") // same host, through ferry's bridge
	if got := neighbourMAC(t, c1a, "10.42.0.4"); got != macC2a {
		t.Errorf("c1a resolved 10.42.0.4 to %q, want %s (ARP across the overlay)", got, macC2a)
	}
	if got := neighbourMAC(t, c2b, "10.42.0.3"); got != macC1b {
		t.Errorf("c2b resolved 10.42.0.3 to %q, want %s", got, macC1b)
	}

	transfer(t, c1a, c2a, "10.42.0.4", 100<<20)

	// h1's FDB knows c2a's MAC behind h2, and its own containers on ports.
	want := map[string]string{macC2a: h2.Addr.String(), macC1a: "", macC2b: h2.Addr.String()}
	got := map[string]string{}
	for _, e := range f1.fdb(t) {
		got[e.MAC] = e.Peer
	}
	for mac, peer := range want {
		if p, ok := got[mac]; !ok || p != peer {
			t.Errorf("h1 fdb[%s] = %q (present %v), want peer %q", mac, p, ok, peer)
		}
	}
	// The peer counters saw the 100 MB.
	ps := f2.peers(t)
	if len(ps) != 1 || ps[0].RxBytes < 100<<20 || ps[0].LastHeard == nil {
		t.Errorf("h2 peers = %+v, want one peer with >= 100 MB received", ps)
	}
}

// TestE2EKernelVXLANInterop: one ferry host and one host using the Linux
// kernel's VXLAN device on a bridge with a container veth (Docker's overlay
// built from kernel parts): ping and TCP both ways.
func TestE2EKernelVXLANInterop(t *testing.T) {
	f, cf, ck := newKernelPeerRig(t, "192.168.78.0/24")
	mustPing(t, cf, "10.42.0.3")
	mustPing(t, ck, "10.42.0.2")
	transfer(t, cf, ck, "10.42.0.3", 50<<20)
	transfer(t, ck, cf, "10.42.0.2", 50<<20)

	f.checkNoDrops(t, "vxlan-decap")
}

// TestE2EThreeHostMesh: three ferry hosts in full mesh. A broadcast reaches
// every other container exactly once (head-end replication, split horizon:
// no loops, no duplicates), and a MAC that moves to another host is
// followed.
func TestE2EThreeHostMesh(t *testing.T) {
	nstest.RequireRoot(t)
	ul := nstest.NewUnderlay(t, netip.MustParsePrefix("192.168.79.0/24"))
	hs := []*nstest.Host{ul.AddHost(t, "m1"), ul.AddHost(t, "m2"), ul.AddHost(t, "m3")}
	cs := []*nstest.NS{nstest.NewNS(t, "ca"), nstest.NewNS(t, "cb"), nstest.NewNS(t, "cc")}
	// The "mobile" container: the same MAC and address on m1 and on m3;
	// only one of the two is up at a time.
	mob1, mob3 := nstest.NewNS(t, "mv1"), nstest.NewNS(t, "mv3")
	const macMob = "02:42:0a:2a:00:63"
	var ds []*ferryd
	for i, h := range hs {
		var peers []netip.Addr
		for j, o := range hs {
			if j != i {
				peers = append(peers, o.Addr)
			}
		}
		ports := []portSpec{{nstest.Name(t, "tm"), cs[i].Name, netip.AddrFrom4([4]byte{10, 42, 0, byte(2 + i)}).String() + "/24", "02:42:0a:2a:00:1" + string(rune('0'+i))}}
		switch i {
		case 0:
			ports = append(ports, portSpec{nstest.Name(t, "tv"), mob1.Name, "10.42.0.99/24", macMob})
		case 2:
			ports = append(ports, portSpec{nstest.Name(t, "tv"), mob3.Name, "10.42.0.99/24", macMob})
		}
		ds = append(ds, startFerry(t, h, l2Config(h, 7, peers, ports)))
	}
	if out, err := mob3.Exec(t, 5*time.Second, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatalf("%v %s", err, out)
	}

	// Warm ARP so the broadcast test is not confused by ARP traffic.
	mustPing(t, cs[0], "10.42.0.3")
	mustPing(t, cs[0], "10.42.0.4")

	counts, err := nstest.UDPBroadcast(t, cs[0], netip.MustParseAddrPort("10.42.0.255:9999"), []*nstest.NS{cs[1], cs[2], mob1}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range counts {
		if n != 1 {
			t.Errorf("broadcast listener %d received %d copies, want exactly 1 (all: %v)", i, n, counts)
		}
	}
	if t.Failed() {
		for _, d := range ds {
			errs, _ := d.ctl("errors")
			peers, _ := d.ctl("peers")
			t.Logf("%s: ferry errors:\n%s\nferry peers:\n%s", d.host.Name, errs, peers)
		}
	}

	// The mobile container speaks from m1: m2 learns it behind m1.
	mustPing(t, cs[1], "10.42.0.99")
	if p := peerOf(t, ds[1], macMob); p != hs[0].Addr.String() {
		t.Fatalf("m2 has %s at %q, want peer %s", macMob, p, hs[0].Addr)
	}
	// It moves to m3: down on m1, up on m3, and it speaks.
	if out, err := mob1.Exec(t, 5*time.Second, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := mob3.Exec(t, 5*time.Second, "ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	mustPing(t, mob3, "10.42.0.3")
	if p := peerOf(t, ds[1], macMob); p != hs[2].Addr.String() {
		t.Fatalf("after the move, m2 has %s at %q, want peer %s", macMob, p, hs[2].Addr)
	}
	// m2's container still has the old ARP entry; its frames must now
	// reach the MAC on m3.
	mustPing(t, cs[1], "10.42.0.99")
}

// newKernelPeerRig builds, on an underlay of prefix, a ferry host with
// container cf (10.42.0.2, its port a TAP) and a host using the kernel's
// VXLAN device on a bridge with container ck (10.42.0.3, a veth), on VNI
// 42, and returns ferry's daemon and the two containers.
func newKernelPeerRig(t *testing.T, prefix string) (f *ferryd, cf, ck *nstest.NS) {
	t.Helper()
	nstest.RequireRoot(t)
	ul := nstest.NewUnderlay(t, netip.MustParsePrefix(prefix))
	hf, hk := ul.AddHost(t, "hf"), ul.AddHost(t, "hk")
	br := hk.KernelOverlay(t, 42, 4789, []netip.Addr{hf.Addr})
	// A veth never finishes checksums the stack left partial (a NIC
	// does), so the kernel VXLAN host would hand its inner TCP checksums
	// to the wire unfinished; only a receiving kernel, which trusts the
	// skb's CHECKSUM_PARTIAL state across the veth, accepts that. With tx
	// checksum offload off on its underlay, the kernel finishes them in
	// software, as a real NIC would on the wire.
	if out, err := hk.Exec(t, 5*time.Second, "ethtool", "-K", nstest.UnderlayDev, "tx", "off"); err != nil {
		t.Fatalf("ethtool: %v %s", err, out)
	}
	ck = hk.AddContainer(t, "ck", br, netip.MustParsePrefix("10.42.0.3/24"))
	cf = nstest.NewNS(t, "cf")
	f = startFerry(t, hf, l2Config(hf, 42, []netip.Addr{hk.Addr}, []portSpec{{nstest.Name(t, "tf"), cf.Name, "10.42.0.2/24", macC1a}}))
	return f, cf, ck
}

func peerOf(t *testing.T, d *ferryd, mac string) string {
	t.Helper()
	for _, e := range d.fdb(t) {
		if e.MAC == mac {
			return e.Peer
		}
	}
	return ""
}
