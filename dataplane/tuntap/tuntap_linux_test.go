package tuntap_test

import (
	"bytes"
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

// createIn creates a device inside namespace ns and closes it when the test
// ends (unless the test closed it already).
// With ioURing set (TestWithIOURing), the device's queues use io_uring,
// and a device that fell back to a system call per frame fails the test.
func createIn(tb testing.TB, ns string, opts tuntap.Options) *tuntap.Device {
	tb.Helper()
	opts.IOURing = opts.IOURing || ioURing
	var dev *tuntap.Device
	err := netconf.Do(ns, func() error {
		var err error
		dev, err = tuntap.Create(opts)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	if on, err := dev.IOURing(); on != opts.IOURing || err != nil {
		dev.Close()
		tb.Fatalf("device on io_uring: %v (%v), want %v", on, err, opts.IOURing)
	}
	tb.Cleanup(func() {
		if err := dev.Close(); err != nil {
			tb.Error(err)
		}
	})
	return dev
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

// upWithAddr brings link name up in ns with address addr and returns it.
func upWithAddr(tb testing.TB, h *netlink.Handle, name string, addr netip.Prefix) netlink.Link {
	tb.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		tb.Fatal(err)
	}
	ipnet := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipnet}); err != nil {
		tb.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		tb.Fatal(err)
	}
	return link
}

// readMatching reads frames from q at offset until match accepts one, and
// returns a copy of it; the test fails if none arrives within two seconds.
// Frames match rejects (IPv6 neighbour discovery and the like) are skipped.
func readMatching(tb testing.TB, q *tuntap.Queue, offset int, match func([]byte) bool) []byte {
	tb.Helper()
	bufs := [][]byte{make([]byte, offset+2048), make([]byte, offset+2048)}
	sizes := make([]int, len(bufs))
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		n, err := q.Read(bufs, sizes, offset)
		if err != nil {
			tb.Fatalf("Read: %v", err)
		}
		for i := range n {
			if f := bufs[i][offset : offset+sizes[i]]; match(f) {
				return bytes.Clone(f)
			}
		}
		if n == 0 {
			fds := []unix.PollFd{{Fd: int32(q.Fd()), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, 100); err != nil && err != unix.EINTR {
				tb.Fatalf("poll: %v", err)
			}
		}
	}
	tb.Fatal("no matching frame arrived within 2s")
	return nil
}

// serialize builds a frame from gopacket layers, fixing lengths and
// checksums.
func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// arpFrame builds an Ethernet ARP frame from src to dst.
func arpFrame(tb testing.TB, op uint16, src, dst net.HardwareAddr, senderIP, targetIP netip.Addr, targetHW net.HardwareAddr) []byte {
	return serialize(tb,
		&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: op,
			SourceHwAddress: src, SourceProtAddress: senderIP.AsSlice(),
			DstHwAddress: targetHW, DstProtAddress: targetIP.AsSlice(),
		})
}

// parseARP returns the ARP layer of an Ethernet frame, or nil.
func parseARP(frame []byte) *layers.ARP {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	return arp
}

// headroom fills the first offset bytes of each buffer with a mark, so a
// test can check Read never writes in front of the offset.
const mark = 0xEE

func withHeadroom(frame []byte, offset int) []byte {
	b := bytes.Repeat([]byte{mark}, offset+len(frame))
	copy(b[offset:], frame)
	return b
}

var fakeMAC = net.HardwareAddr{0x02, 0xfe, 0x00, 0x00, 0x00, 0x01}

func TestCreate(t *testing.T) {
	tests := []struct {
		name string
		opts tuntap.Options
	}{
		{name: "TAP with one queue", opts: tuntap.Options{Name: nstest.Name(t, "fy"), Kind: tuntap.TAP, Queues: 1}},
		{name: "TAP with four queues", opts: tuntap.Options{Name: nstest.Name(t, "fy"), Kind: tuntap.TAP, Queues: 4}},
		{name: "TUN with two queues", opts: tuntap.Options{Name: nstest.Name(t, "fy"), Kind: tuntap.TUN, Queues: 2}},
		{name: "TAP with vnet header", opts: tuntap.Options{Name: nstest.Name(t, "fy"), Kind: tuntap.TAP, Queues: 2, VnetHdr: true}},
		{name: "kernel-chosen TAP name", opts: tuntap.Options{Kind: tuntap.TAP, Queues: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := nstest.NewNS(t, "nt").Name
			dev := createIn(t, ns, tt.opts)
			if tt.opts.Name != "" && dev.Name() != tt.opts.Name {
				t.Errorf("Name = %q, want %q", dev.Name(), tt.opts.Name)
			}
			if tt.opts.Name == "" && !strings.HasPrefix(dev.Name(), "tap") {
				t.Errorf("kernel-chosen Name = %q, want tapN", dev.Name())
			}
			if dev.Kind() != tt.opts.Kind {
				t.Errorf("Kind = %v, want %v", dev.Kind(), tt.opts.Kind)
			}
			if len(dev.Queues()) != tt.opts.Queues {
				t.Fatalf("%d queues, want %d", len(dev.Queues()), tt.opts.Queues)
			}
			seen := map[int]bool{}
			for i, q := range dev.Queues() {
				if q.Index() != i || seen[q.Fd()] {
					t.Errorf("queue %d: index %d, fd %d (seen before: %v)", i, q.Index(), q.Fd(), seen[q.Fd()])
				}
				seen[q.Fd()] = true
				fl, err := unix.FcntlInt(uintptr(q.Fd()), unix.F_GETFL, 0)
				if err != nil || fl&unix.O_NONBLOCK == 0 {
					t.Errorf("queue %d: flags %#x, %v; want O_NONBLOCK", i, fl, err)
				}
			}

			h := handleIn(t, ns)
			link, err := h.LinkByName(dev.Name())
			if err != nil {
				t.Fatalf("link %s not in namespace %s: %v", dev.Name(), ns, err)
			}
			tun, ok := link.(*netlink.Tuntap)
			if !ok {
				t.Fatalf("link type %s, want tuntap", link.Type())
			}
			wantMode := netlink.TUNTAP_MODE_TAP
			if tt.opts.Kind == tuntap.TUN {
				wantMode = netlink.TUNTAP_MODE_TUN
			}
			if tun.Mode != wantMode {
				t.Errorf("mode %v, want %v", tun.Mode, wantMode)
			}
			checks := []struct {
				flag netlink.TuntapFlag
				want bool
				what string
			}{
				{netlink.TUNTAP_NO_PI, true, "IFF_NO_PI"},
				{netlink.TUNTAP_MULTI_QUEUE, tt.opts.Queues > 1, "IFF_MULTI_QUEUE"},
				{netlink.TUNTAP_VNET_HDR, tt.opts.VnetHdr, "IFF_VNET_HDR"},
			}
			for _, c := range checks {
				if got := tun.Flags&c.flag != 0; got != c.want {
					t.Errorf("%s set = %v, want %v", c.what, got, c.want)
				}
			}
			// The kernel reports a queue count only for multi-queue devices.
			wantQueues := 0
			if tt.opts.Queues > 1 {
				wantQueues = tt.opts.Queues
			}
			if tun.Queues != wantQueues {
				t.Errorf("kernel reports %d queues, want %d", tun.Queues, wantQueues)
			}
			if !tun.NonPersist {
				t.Error("device is persistent, want non-persistent")
			}

			if err := dev.Close(); err != nil {
				t.Fatal(err)
			}
			for i, q := range dev.Queues() {
				if q.Fd() != -1 {
					t.Errorf("queue %d: Fd after Close = %d, want -1", i, q.Fd())
				}
			}
			if _, err := h.LinkByName(dev.Name()); err == nil {
				t.Errorf("link %s still exists after Close", dev.Name())
			}
		})
	}
}

func TestCreateRejects(t *testing.T) {
	tests := []struct {
		name    string
		opts    tuntap.Options
		wantMsg string
	}{
		{name: "zero kind", opts: tuntap.Options{Name: "fyk", Queues: 1}, wantMsg: "invalid kind"},
		{name: "no queues", opts: tuntap.Options{Name: "fyq", Kind: tuntap.TAP}, wantMsg: "at least 1"},
		{name: "name longer than 15 bytes", opts: tuntap.Options{Name: "fy-name-too-long", Kind: tuntap.TAP, Queues: 1}, wantMsg: "fy-name-too-long"},
		{name: "TUN asked on an existing TAP's name", opts: tuntap.Options{Name: "fytaken", Kind: tuntap.TUN, Queues: 1}, wantMsg: "fytaken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := nstest.NewNS(t, "nt").Name
			createIn(t, ns, tuntap.Options{Name: "fytaken", Kind: tuntap.TAP, Queues: 1})
			err := netconf.Do(ns, func() error {
				dev, err := tuntap.Create(tt.opts)
				if err == nil {
					dev.Close()
				}
				return err
			})
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Create error = %v, want one containing %q", err, tt.wantMsg)
			}
		})
	}
}

// TestTAPAnswersARP writes an ARP request for the TAP's address into the
// device and reads the kernel's reply back, with headroom in front of both.
func TestTAPAnswersARP(t *testing.T) {
	const offset = 64
	ns := nstest.NewNS(t, "nt").Name
	dev := createIn(t, ns, tuntap.Options{Name: nstest.Name(t, "fy"), Kind: tuntap.TAP, Queues: 1})
	link := upWithAddr(t, handleIn(t, ns), dev.Name(), netip.MustParsePrefix("10.77.0.2/24"))
	tapMAC := link.Attrs().HardwareAddr
	q := dev.Queues()[0]

	req := arpFrame(t, layers.ARPRequest, fakeMAC, layers.EthernetBroadcast,
		netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2"), make(net.HardwareAddr, 6))
	n, err := q.Write([][]byte{withHeadroom(req, offset)}, offset)
	if n != 1 || err != nil {
		t.Fatalf("Write = %d, %v; want 1, nil", n, err)
	}

	bufs := [][]byte{bytes.Repeat([]byte{mark}, offset+2048)}
	sizes := []int{0}
	var reply *layers.ARP
	deadline := time.Now().Add(2 * time.Second)
	for reply == nil && time.Now().Before(deadline) {
		n, err := q.Read(bufs, sizes, offset)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			unix.Poll([]unix.PollFd{{Fd: int32(q.Fd()), Events: unix.POLLIN}}, 100)
			continue
		}
		if !bytes.Equal(bufs[0][:offset], bytes.Repeat([]byte{mark}, offset)) {
			t.Fatal("Read wrote into the headroom before the offset")
		}
		frame := bufs[0][offset : offset+sizes[0]]
		if a := parseARP(frame); a != nil && a.Operation == layers.ARPReply {
			reply = a
			if eth := frame[:6]; !bytes.Equal(eth, fakeMAC) {
				t.Errorf("reply sent to %s, want %s", net.HardwareAddr(eth), fakeMAC)
			}
		}
	}
	if reply == nil {
		t.Fatal("no ARP reply within 2s")
	}
	if !bytes.Equal(reply.SourceHwAddress, tapMAC) || !bytes.Equal(reply.SourceProtAddress, []byte{10, 77, 0, 2}) {
		t.Errorf("reply says %v is at %v, want 10.77.0.2 at %v", reply.SourceProtAddress, net.HardwareAddr(reply.SourceHwAddress), tapMAC)
	}
	if !bytes.Equal(reply.DstHwAddress, fakeMAC) || !bytes.Equal(reply.DstProtAddress, []byte{10, 77, 0, 1}) {
		t.Errorf("reply addressed to %v at %v, want 10.77.0.1 at %v", reply.DstProtAddress, net.HardwareAddr(reply.DstHwAddress), fakeMAC)
	}
}

// TestTUNAnswersPing writes an ICMP echo request to the TUN's address and
// reads the kernel's echo reply: a bare IPv4 packet each way.
func TestTUNAnswersPing(t *testing.T) {
	ns := nstest.NewNS(t, "nt").Name
	dev := createIn(t, ns, tuntap.Options{Name: nstest.Name(t, "fy"), Kind: tuntap.TUN, Queues: 1})
	upWithAddr(t, handleIn(t, ns), dev.Name(), netip.MustParsePrefix("10.78.0.1/24"))
	q := dev.Queues()[0]

	payload := []byte("ferry tun ping")
	req := serialize(t,
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: net.IP{10, 78, 0, 2}, DstIP: net.IP{10, 78, 0, 1}},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x1234, Seq: 7},
		gopacket.Payload(payload))
	if n, err := q.Write([][]byte{req}, 0); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v; want 1, nil", n, err)
	}
	frame := readMatching(t, q, 0, func(f []byte) bool {
		p := gopacket.NewPacket(f, layers.LayerTypeIPv4, gopacket.NoCopy)
		icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		return ok && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoReply
	})
	p := gopacket.NewPacket(frame, layers.LayerTypeIPv4, gopacket.Default)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if !ip.SrcIP.Equal(net.IP{10, 78, 0, 1}) || !ip.DstIP.Equal(net.IP{10, 78, 0, 2}) {
		t.Errorf("reply %v -> %v, want 10.78.0.1 -> 10.78.0.2", ip.SrcIP, ip.DstIP)
	}
	if icmp.Id != 0x1234 || icmp.Seq != 7 || !bytes.Equal(icmp.Payload, payload) {
		t.Errorf("reply id %#x seq %d payload %q; want 0x1234, 7, %q", icmp.Id, icmp.Seq, icmp.Payload, payload)
	}
}

func TestReadWithNothingWaiting(t *testing.T) {
	ns := nstest.NewNS(t, "nt").Name
	dev := createIn(t, ns, tuntap.Options{Name: nstest.Name(t, "fy"), Kind: tuntap.TAP, Queues: 2})
	bufs := [][]byte{make([]byte, 2048), make([]byte, 2048)}
	sizes := make([]int, 2)
	for i, q := range dev.Queues() {
		if n, err := q.Read(bufs, sizes, 0); n != 0 || err != nil {
			t.Errorf("queue %d: Read on an idle device = %d, %v; want 0, nil", i, n, err)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	req := arpFrame(t, layers.ARPRequest, fakeMAC, layers.EthernetBroadcast,
		netip.MustParseAddr("10.76.0.1"), netip.MustParseAddr("10.76.0.2"), make(net.HardwareAddr, 6))
	tests := []struct {
		name    string
		up      bool
		frames  [][]byte
		wantN   int
		wantErr error // a sentinel, or nil for "some other error"
	}{
		{name: "link down", frames: [][]byte{req, req}, wantN: 0, wantErr: tuntap.ErrLinkDown},
		{name: "frame shorter than an Ethernet header", up: true, frames: [][]byte{req, req[:5], req}, wantN: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := nstest.NewNS(t, "nt").Name
			dev := createIn(t, ns, tuntap.Options{Name: nstest.Name(t, "fy"), Kind: tuntap.TAP, Queues: 1})
			if tt.up {
				upWithAddr(t, handleIn(t, ns), dev.Name(), netip.MustParsePrefix("10.76.0.2/24"))
			}
			n, err := dev.Queues()[0].Write(tt.frames, 0)
			if n != tt.wantN || err == nil {
				t.Fatalf("Write = %d, %v; want %d and an error", n, err, tt.wantN)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Write error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && !strings.Contains(err.Error(), dev.Name()) {
				t.Fatalf("Write error %q does not name the device", err)
			}
		})
	}
}

func TestShortBuffer(t *testing.T) {
	ns := nstest.NewNS(t, "nt").Name
	q := createIn(t, ns, tuntap.Options{Name: nstest.Name(t, "fy"), Kind: tuntap.TAP, Queues: 1}).Queues()[0]
	short := [][]byte{make([]byte, 16)}
	if _, err := q.Read(short, []int{0}, 16); !errors.Is(err, tuntap.ErrShortBuffer) {
		t.Errorf("Read with no room after the offset: %v, want ErrShortBuffer", err)
	}
	if _, err := q.Write(short, 16); !errors.Is(err, tuntap.ErrShortBuffer) {
		t.Errorf("Write with nothing after the offset: %v, want ErrShortBuffer", err)
	}
}

// arpPingPong is a TAP with an address and a prepared ARP request for it:
// each Write of req makes the kernel queue one ARP reply to read.
type arpPingPong struct {
	q     *tuntap.Queue
	req   [][]byte
	bufs  [][]byte
	sizes []int
}

func newARPPingPong(tb testing.TB) *arpPingPong {
	ns := quietNS(tb)
	dev := createIn(tb, ns, tuntap.Options{Name: nstest.Name(tb, "fy"), Kind: tuntap.TAP, Queues: 1})
	upWithAddr(tb, handleIn(tb, ns), dev.Name(), netip.MustParsePrefix("10.79.0.2/24"))
	req := arpFrame(tb, layers.ARPRequest, fakeMAC, layers.EthernetBroadcast,
		netip.MustParseAddr("10.79.0.1"), netip.MustParseAddr("10.79.0.2"), make(net.HardwareAddr, 6))
	p := &arpPingPong{
		q:     dev.Queues()[0],
		req:   [][]byte{withHeadroom(req, 64)},
		bufs:  [][]byte{make([]byte, 64+2048), make([]byte, 64+2048), make([]byte, 64+2048), make([]byte, 64+2048)},
		sizes: make([]int, 4),
	}
	p.drain(tb)
	return p
}

// quietNS creates a namespace for a test that counts the frames a TAP
// gives it, and returns its name. IPv6 is off in it, so a device made
// there sends nothing of its own (duplicate address detection, router
// solicitations and MLD reports go out at random times after the link
// comes up, and once made a burst of 40 ARP replies read as 41 frames).
func quietNS(tb testing.TB) string {
	ns := nstest.NewNS(tb, "nt")
	ns.Sysctl(tb, "net.ipv6.conf.all.disable_ipv6", "1")
	ns.Sysctl(tb, "net.ipv6.conf.default.disable_ipv6", "1")
	return ns.Name
}

func (p *arpPingPong) drain(tb testing.TB) {
	for {
		n, err := p.q.Read(p.bufs, p.sizes, 64)
		if err != nil {
			tb.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// exchange writes one request and reads what is waiting (the kernel answers
// during the write); it returns the number of frames read.
func (p *arpPingPong) exchange(tb testing.TB) int {
	if n, err := p.q.Write(p.req, 64); n != 1 || err != nil {
		tb.Fatalf("Write = %d, %v", n, err)
	}
	n, err := p.q.Read(p.bufs, p.sizes, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestReadWriteAllocateNothing(t *testing.T) {
	p := newARPPingPong(t)
	frames := 0
	allocs := testing.AllocsPerRun(100, func() { frames += p.exchange(t) })
	if allocs != 0 {
		t.Errorf("Write+Read allocate %v times per frame, want 0", allocs)
	}
	if frames < 100 {
		t.Errorf("read %d frames for 101 ARP requests; the kernel should answer each", frames)
	}
	allocs = testing.AllocsPerRun(100, func() {
		if n, err := p.q.Read(p.bufs, p.sizes, 64); n != 0 || err != nil {
			t.Fatalf("Read = %d, %v on a drained queue", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("Read with nothing waiting allocates %v times, want 0", allocs)
	}
}

// BenchmarkTAPWriteRead measures one frame written into a TAP and the
// kernel's answer read back: two syscalls plus the kernel's ARP handling.
func BenchmarkTAPWriteRead(b *testing.B) {
	p := newARPPingPong(b)
	b.ReportAllocs()
	frames := 0
	for b.Loop() {
		frames += p.exchange(b)
	}
	if frames < b.N {
		b.Fatalf("read %d frames for %d requests", frames, b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}
