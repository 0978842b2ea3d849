package nstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// TestMain fails the run if anything the tests created survives them,
// checked both through the package's own registry and through the output of
// `ip netns list` and `ip link`.
func TestMain(m *testing.M) {
	code := m.Run()
	if os.Geteuid() == 0 {
		if err := checkGone(); err != nil {
			fmt.Fprintln(os.Stderr, "nstest: leftovers after tests:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// checkGone reports every namespace or root-namespace link created by this
// process that is still present.
func checkGone() error {
	var errs []error
	if left := Leftovers(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("Leftovers: %v", left))
	}
	nsNames, links := created()
	errs = append(errs, absentFrom([]string{"ip", "netns", "list"}, nsNames))
	errs = append(errs, absentFrom([]string{"ip", "-o", "link"}, links))
	return errors.Join(errs...)
}

// absentFrom runs argv and reports the names that appear as whole words in
// its output.
func absentFrom(argv []string, names []string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%q: %w: %s", argv, err, out)
	}
	words := make(map[string]bool)
	for _, w := range strings.FieldsFunc(string(out), func(r rune) bool {
		return r == ' ' || r == '\n' || r == ':' || r == '@' || r == '\t' || r == '\\'
	}) {
		words[w] = true
	}
	var present []string
	for _, n := range names {
		if words[n] {
			present = append(present, n)
		}
	}
	if len(present) > 0 {
		return fmt.Errorf("%q still lists %v", argv, present)
	}
	return nil
}

func TestName(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		wantErr bool
	}{
		{name: "empty prefix", prefix: ""},
		{name: "short prefix", prefix: "ns"},
		{name: "longest allowed prefix", prefix: "ninechars"},
		{name: "prefix one too long", prefix: "tenchars10", wantErr: true},
		{name: "prefix far too long", prefix: "a-very-long-interface-prefix", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := make(map[string]bool)
			for range 200 {
				n, err := name(tt.prefix)
				if tt.wantErr {
					if err == nil {
						t.Fatalf("name(%q) = %q, want an error", tt.prefix, n)
					}
					return
				}
				if err != nil {
					t.Fatalf("name(%q): %v", tt.prefix, err)
				}
				if len(n) > maxIfName || len(n) != len(tt.prefix)+suffixLen {
					t.Fatalf("name(%q) = %q: length %d, want %d (at most %d)", tt.prefix, n, len(n), len(tt.prefix)+suffixLen, maxIfName)
				}
				if !strings.HasPrefix(n, tt.prefix) {
					t.Fatalf("name(%q) = %q: missing prefix", tt.prefix, n)
				}
				if seen[n] {
					t.Fatalf("name(%q) returned %q twice", tt.prefix, n)
				}
				seen[n] = true
			}
		})
	}
}

// mustPrefix and mustAddr keep test tables short.
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

// vethPair returns two namespaces joined by a veth with 10.99.0.1/24 on a's
// "eth0" and 10.99.0.2/24 on b's.
func vethPair(t *testing.T) (a, b *NS) {
	t.Helper()
	a, b = NewNS(t, "a"), NewNS(t, "b")
	Veth(t, a, "eth0", b, "eth0")
	a.AddAddr(t, "eth0", mustPrefix("10.99.0.1/24"))
	b.AddAddr(t, "eth0", mustPrefix("10.99.0.2/24"))
	return a, b
}

func TestDo(t *testing.T) {
	RequireRoot(t)
	n := NewNS(t, "do")

	// Lock the test goroutine so the thread it comes back on can be checked.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()

	sentinel := errors.New("from fn")
	var ln net.Listener
	err = n.Do(func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		if cur.Equal(orig) {
			return errors.New("fn runs in the original namespace")
		}
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
	defer ln.Close()
	back, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if !back.Equal(orig) {
		t.Fatal("thread not restored to its original namespace")
	}

	// The listener lives in n: reachable from n's loopback, not from ours.
	addr := ln.Addr().String()
	if c, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s from the original namespace succeeded; the socket leaked out of %s", addr, n.Name)
	}
	err = n.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("dial %s inside %s: %v", addr, n.Name, err)
	}
}

func TestExec(t *testing.T) {
	RequireRoot(t)
	n := NewNS(t, "exec")

	out, err := n.Exec(t, 5*time.Second, "ip", "-o", "link")
	if err != nil {
		t.Fatalf("ip link: %v\n%s", err, out)
	}
	if lines := strings.Count(strings.TrimSpace(out), "\n") + 1; lines != 1 || !strings.Contains(out, "lo:") || !strings.Contains(out, "UP") {
		t.Fatalf("new namespace should hold only lo, up; ip link says:\n%s", out)
	}

	start := time.Now()
	_, err = n.Exec(t, 300*time.Millisecond, "sleep", "10")
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("sleep 10 with a 300ms timeout: err = %v, want a timeout", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("timed-out command took %v to return", took)
	}

	if _, err := n.Exec(t, 5*time.Second, "false"); err == nil {
		t.Fatal("Exec(false) returned no error")
	}
}

func TestVethPing(t *testing.T) {
	RequireRoot(t)
	a, b := vethPair(t)
	tests := []struct {
		name    string
		from    *NS
		to      netip.Addr
		wantErr bool
	}{
		{name: "a to b", from: a, to: mustAddr("10.99.0.2")},
		{name: "b to a", from: b, to: mustAddr("10.99.0.1")},
		{name: "a to unassigned address", from: a, to: mustAddr("10.99.0.3"), wantErr: true},
		{name: "b to address outside any subnet", from: b, to: mustAddr("10.98.0.1"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Ping(t, tt.from, tt.to, 2)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Ping(%v) error = %v, wantErr %v", tt.to, err, tt.wantErr)
			}
		})
	}
}

func TestRoutedPing(t *testing.T) {
	RequireRoot(t)
	// a (10.96.1.2) — r — b (10.96.2.2), default routes via r.
	a, r, b := NewNS(t, "a"), NewNS(t, "r"), NewNS(t, "b")
	Veth(t, a, "eth0", r, "ra")
	Veth(t, b, "eth0", r, "rb")
	a.AddAddr(t, "eth0", mustPrefix("10.96.1.2/24"))
	r.AddAddr(t, "ra", mustPrefix("10.96.1.1/24"))
	b.AddAddr(t, "eth0", mustPrefix("10.96.2.2/24"))
	r.AddAddr(t, "rb", mustPrefix("10.96.2.1/24"))
	a.AddRoute(t, mustPrefix("0.0.0.0/0"), mustAddr("10.96.1.1"), "")
	b.AddRoute(t, mustPrefix("10.96.1.0/24"), mustAddr("10.96.2.1"), "eth0")

	if err := Ping(t, a, mustAddr("10.96.2.2"), 1); err == nil {
		t.Fatal("ping across r succeeded before forwarding was enabled")
	}
	r.Sysctl(t, "net.ipv4.ip_forward", "1")
	if err := Ping(t, a, mustAddr("10.96.2.2"), 2); err != nil {
		t.Fatal(err)
	}
}

func TestTCPTransfer(t *testing.T) {
	RequireRoot(t)
	a, b := vethPair(t)
	const size = 10 << 20
	sent, received, err := TCPTransfer(t, a, b, netip.MustParseAddrPort("10.99.0.2:5201"), size, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if sent != received {
		t.Fatalf("sent sha256 %x, received %x", sent, received)
	}
	if sent == ([32]byte{}) {
		t.Fatal("zero hash")
	}

	// The same size always sends the same bytes.
	again, _, err := TCPTransfer(t, b, a, netip.MustParseAddrPort("10.99.0.1:5202"), size, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if again != sent {
		t.Fatalf("second transfer sent %x, first %x: data not deterministic", again, sent)
	}

	// Listening on an address the receiver does not own fails fast.
	if _, _, err := TCPTransfer(t, a, b, netip.MustParseAddrPort("10.99.0.1:5203"), 1, 5*time.Second); err == nil {
		t.Fatal("transfer to an address of the sender's namespace, listened on in the receiver's, succeeded")
	}
}

func TestKernelVXLANOverlay(t *testing.T) {
	RequireRoot(t)
	u := NewUnderlay(t, mustPrefix("192.168.77.0/24"))
	h1, h2 := u.AddHost(t, "h1"), u.AddHost(t, "h2")
	if h1.Addr != mustAddr("192.168.77.1") || h2.Addr != mustAddr("192.168.77.2") {
		t.Fatalf("host addresses %v, %v; want 192.168.77.1, .2", h1.Addr, h2.Addr)
	}
	if err := Ping(t, h1.NS, h2.Addr, 2); err != nil {
		t.Fatalf("underlay: %v", err)
	}

	const vni, port = 4242, 4789
	br1 := h1.KernelOverlay(t, vni, port, []netip.Addr{h2.Addr})
	br2 := h2.KernelOverlay(t, vni, port, []netip.Addr{h1.Addr})
	c1 := h1.AddContainer(t, "c1", br1, mustPrefix("10.42.0.1/24"))
	c2 := h2.AddContainer(t, "c2", br2, mustPrefix("10.42.0.2/24"))
	if mtu := c1.MTU(t, "eth0"); mtu != 1450 {
		t.Fatalf("container MTU %d, want 1450 (1500 minus VXLAN overhead)", mtu)
	}

	if err := Ping(t, c1, mustAddr("10.42.0.2"), 3); err != nil {
		t.Fatalf("overlay: %v", err)
	}
	if err := Ping(t, c2, mustAddr("10.42.0.1"), 3); err != nil {
		t.Fatalf("overlay: %v", err)
	}
	// Full-size segments must fit the tunnel.
	sent, received, err := TCPTransfer(t, c1, c2, netip.MustParseAddrPort("10.42.0.2:7000"), 2<<20, 30*time.Second)
	if err != nil {
		t.Fatalf("overlay: %v", err)
	}
	if sent != received {
		t.Fatalf("overlay transfer corrupted: sent %x, received %x", sent, received)
	}

	// The traffic really went through the VXLAN devices.
	for _, h := range []*Host{h1, h2} {
		link, err := h.Handle(t).LinkByName(fmt.Sprintf("vx%d", vni))
		if err != nil {
			t.Fatal(err)
		}
		if s := link.Attrs().Statistics; s == nil || s.TxPackets == 0 || s.RxPackets == 0 {
			t.Fatalf("%s: vxlan statistics %+v, want packets both ways", h.Name, s)
		}
	}
}

func TestUDPBroadcast(t *testing.T) {
	RequireRoot(t)
	lan := NewNS(t, "lan")
	lan.Bridge(t, "br0")
	sender := lan.AddContainer(t, "s", "br0", mustPrefix("10.95.0.1/24"))
	var listeners []*NS
	for i := range 3 {
		listeners = append(listeners, lan.AddContainer(t, fmt.Sprintf("l%d", i), "br0", mustPrefix(fmt.Sprintf("10.95.0.%d/24", i+2))))
	}
	other := NewNS(t, "other") // not on the bridge

	tests := []struct {
		name      string
		bcast     string
		listeners []*NS
		want      []int
	}{
		{name: "subnet broadcast reaches each listener once", bcast: "10.95.0.255:9999", listeners: listeners, want: []int{1, 1, 1}},
		{name: "namespace off the bridge hears nothing", bcast: "10.95.0.255:9998", listeners: []*NS{listeners[0], other}, want: []int{1, 0}},
		{name: "unicast reaches only its target", bcast: "10.95.0.3:9997", listeners: listeners, want: []int{0, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := UDPBroadcast(t, sender, netip.MustParseAddrPort(tt.bcast), tt.listeners, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("copies received %v, want %v", got, tt.want)
			}
		})
	}

	// The limited broadcast needs a route; give the sender a default route.
	sender.AddRoute(t, mustPrefix("0.0.0.0/0"), netip.Addr{}, "eth0")
	got, err := UDPBroadcast(t, sender, netip.MustParseAddrPort("255.255.255.255:9996"), listeners, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 1 1]" {
		t.Fatalf("limited broadcast: copies received %v, want [1 1 1]", got)
	}
}

// TestCleanup checks, after a subtest's cleanups have run, that everything it
// created is gone, including links it made in the test's own namespace.
func TestCleanup(t *testing.T) {
	RequireRoot(t)
	var nsNames, rootLinks []string
	t.Run("create", func(t *testing.T) {
		u := NewUnderlay(t, mustPrefix("192.168.78.0/24"))
		h := u.AddHost(t, "h")
		h.KernelOverlay(t, 7, 4789, []netip.Addr{mustAddr("192.168.78.9")})
		root := Name(t, "ft")
		Veth(t, nil, root, h.NS, "eth9")
		rootBr := Name(t, "fb")
		(*NS)(nil).Bridge(t, rootBr)
		nsNames = []string{u.Switch.Name, h.Name}
		rootLinks = []string{root, rootBr}
		if err := absentFrom([]string{"ip", "-o", "link"}, rootLinks); err == nil {
			t.Fatalf("ip link does not show %v while they exist", rootLinks)
		}
		if err := absentFrom([]string{"ip", "netns", "list"}, nsNames); err == nil {
			t.Fatalf("ip netns list does not show %v while they exist", nsNames)
		}
	})
	for _, n := range nsNames {
		if _, err := os.Stat("/var/run/netns/" + n); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("netns %s: stat = %v, want not exist", n, err)
		}
	}
	if err := absentFrom([]string{"ip", "netns", "list"}, nsNames); err != nil {
		t.Error(err)
	}
	if err := absentFrom([]string{"ip", "-o", "link"}, rootLinks); err != nil {
		t.Error(err)
	}
}
