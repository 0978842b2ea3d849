package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// openTUN creates a TUN or TAP device (IFF_NO_PI plus flags, which must
// include IFF_TUN or IFF_TAP) in the calling thread's namespace and returns it as a non-blocking *os.File, so
// reads honour deadlines. The device disappears when the file is closed.
func openTUN(name string, flags uint16) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ifreq %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_NO_PI | flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// kernelPair creates, in a namespace of the test's own, a TUN device "tin"
// (a TAP device with MAC 02:00:00:00:00:02 if tap) opened with
// IFF_VNET_HDR and a TUN device "tout" without, addressed 10.9.1.1/24
// and fd09:1::1/64 (tin), 10.9.2.1/24 and fd09:2::1/64 (tout), with
// forwarding on: a superpacket written into tin is forwarded to tout, which
// has no offloads, so the kernel's own GSO cuts it.
func kernelPair(t *testing.T, tap bool) (ns *nstest.NS, in, out *os.File) {
	nstest.RequireRoot(t)
	ns = nstest.NewNS(t, "offl")
	err := ns.Do(func() error {
		var err error
		kind := uint16(unix.IFF_TUN)
		if tap {
			kind = unix.IFF_TAP
		}
		if in, err = openTUN("tin", kind|unix.IFF_VNET_HDR); err != nil {
			return err
		}
		out, err = openTUN("tout", unix.IFF_TUN)
		return err
	})
	if err != nil {
		if in != nil {
			in.Close()
		}
		t.Fatalf("create TUN devices: %v", err)
	}
	t.Cleanup(func() { in.Close(); out.Close() })
	ns.Sysctl(t, "net.ipv4.ip_forward", "1")
	ns.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
	ns.Sysctl(t, "net.ipv4.conf.all.rp_filter", "0")
	ns.Sysctl(t, "net.ipv4.conf.tin.rp_filter", "0")
	setup := [][]string{
		{"link", "set", "tin", "up"},
		{"link", "set", "tout", "up", "mtu", "1500"},
		{"addr", "add", "10.9.1.1/24", "dev", "tin"},
		{"addr", "add", "10.9.2.1/24", "dev", "tout"},
		{"-6", "addr", "add", "fd09:1::1/64", "dev", "tin", "nodad"},
		{"-6", "addr", "add", "fd09:2::1/64", "dev", "tout", "nodad"},
	}
	if tap {
		setup = append([][]string{{"link", "set", "tin", "address", "02:00:00:00:00:02"}}, setup...)
	}
	for _, args := range setup {
		if o, err := ns.Exec(t, 5*time.Second, "ip", args...); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, o)
		}
	}
	return ns, in, out
}

// readSegments reads from tout until it has len(want) packets of s's flow
// and checks each, after undoing the forwarding hop, byte for byte against
// want.
func readSegments(t *testing.T, out *os.File, s spec, want [][]byte) {
	t.Helper()
	buf := make([]byte, 65536)
	deadline := time.Now().Add(3 * time.Second)
	for got := 0; got < len(want); {
		if err := out.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		m, err := out.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("kernel delivered %d of %d segments", got, len(want))
		}
		if err != nil {
			t.Fatalf("read tout: %v", err)
		}
		k := buf[:m]
		if !ours(k, s) {
			continue // router solicitations and the like
		}
		unforward(k)
		if !bytes.Equal(k, want[got]) {
			t.Fatalf("segment %d: kernel's %d bytes differ from the expected %d bytes\nkernel: % x\nwant:   % x",
				got, len(k), len(want[got]), k[:min(len(k), 80)], want[got][:min(len(want[got]), 80)])
		}
		got++
	}
}

// writeVnet writes pkt preceded by hdr into the TUN device f.
func writeVnet(t *testing.T, f *os.File, hdr VirtioNetHdr, pkt []byte) {
	t.Helper()
	frame := make([]byte, VirtioNetHdrLen+len(pkt))
	hdr.Encode(frame)
	copy(frame[VirtioNetHdrLen:], pkt)
	if _, err := f.Write(frame); err != nil {
		t.Fatalf("write superpacket into %s: %v", f.Name(), err)
	}
}

// TestKernelSegmentationMatches writes superpackets into tin (see
// kernelPair) and reads the kernel's segments from tout. Each must equal,
// byte for byte, what Segment makes of the same superpacket (after undoing
// the forwarding hop's TTL decrement).
func TestKernelSegmentationMatches(t *testing.T) {
	for _, tap := range []bool{false, true} {
		t.Run(map[bool]string{false: "TUN", true: "TAP"}[tap], func(t *testing.T) { kernelSegmentationMatches(t, tap) })
	}
}

func kernelSegmentationMatches(t *testing.T, tap bool) {
	_, in, out := kernelPair(t, tap)
	src4, dst4 := netip.MustParseAddr("10.9.1.2"), netip.MustParseAddr("10.9.2.2")
	src6, dst6 := netip.MustParseAddr("fd09:1::2"), netip.MustParseAddr("fd09:2::2")
	cases := []struct {
		name    string
		mut     func(*spec)
		payload int
		gso     int
	}{
		{"TCPv4 64 KiB", nil, 65535 - 52, 1398},
		{"TCPv4 PSH, FIN and CWR (ECN)", func(s *spec) {
			s.flags |= header.TCPFlagPSH | header.TCPFlagFIN | header.TCPFlagCWR | header.TCPFlagECE
		}, 10000, 1398},
		{"TCPv6 64 KiB", func(s *spec) { s.v6 = true; s.src, s.dst = src6, dst6 }, 65535 - 72, 1378},
		{"UDPv4 USO", func(s *spec) { s.udp = true }, 30000, 1422},
		{"UDPv6 USO", func(s *spec) { s.udp, s.v6 = true, true; s.src, s.dst = src6, dst6 }, 20000, 1402},
	}
	segs, sizes := outBufs(64, 2048)
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := baseSpec(false)
			s.ether = tap
			s.src, s.dst = src4, dst4
			s.dport = uint16(6000 + ci) // tells this case's packets apart
			if c.mut != nil {
				c.mut(&s)
			}
			s.payload = pattern(c.payload, byte(ci))
			sp, hdr := makeSuperpacket(t, s, c.gso)
			n, st := Segment(sp, s.linkLen(), hdr, 1500, segs, sizes)
			if st != StatusOK {
				t.Fatalf("Segment: %v", st)
			}
			writeVnet(t, in, hdr, sp)
			want := make([][]byte, n)
			for i := range n {
				want[i] = segs[i][s.linkLen():sizes[i]] // tout is a TUN device
			}
			readSegments(t, out, s, want)
			t.Logf("%d segments identical to the kernel's", n)
		})
	}
}

// TestKernelAcceptsCoalesced writes what Coalesce makes of a flow's
// segments into tin: the kernel must accept the superpacket and its
// virtio-net header, and its own GSO must cut it back into exactly the
// original segments — which proves the header and the pseudo-header sum
// left in the checksum field are what the kernel expects.
func TestKernelAcceptsCoalesced(t *testing.T) {
	for _, tap := range []bool{false, true} {
		t.Run(map[bool]string{false: "TUN", true: "TAP"}[tap], func(t *testing.T) { kernelAcceptsCoalesced(t, tap) })
	}
}

func kernelAcceptsCoalesced(t *testing.T, tap bool) {
	_, in, out := kernelPair(t, tap)
	cases := []struct {
		name   string
		v6     bool
		sizes  []int
		cwrPSH bool // CWR on the first segment, PSH on the last
		udp    bool
	}{
		{"TCPv4 40 segments", false, append(repeat(1398, 39), 700), false, false},
		{"TCPv4 PSH on the last, CWR on the first", false, repeat(1000, 5), true, false},
		{"TCPv6 30 segments", true, repeat(1378, 30), false, false},
		{"UDPv4 64 datagrams of 64 bytes", false, repeat(64, 64), false, true},
		{"UDPv6 20 datagrams and a short one", true, append(repeat(1000, 20), 30), false, true},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := baseSpec(c.v6)
			s.ether = tap
			s.src, s.dst = netip.MustParseAddr("10.9.1.2"), netip.MustParseAddr("10.9.2.2")
			if c.v6 {
				s.src, s.dst = netip.MustParseAddr("fd09:1::2"), netip.MustParseAddr("fd09:2::2")
			}
			s.dport = uint16(7000 + ci)
			s.udp = c.udp
			muts := map[int]func(*spec){}
			if c.cwrPSH {
				muts[0] = func(s *spec) { s.flags |= header.TCPFlagCWR }
				muts[len(c.sizes)-1] = func(s *spec) { s.flags |= header.TCPFlagPSH }
			}
			pkts := flowSegs(t, s, c.sizes, muts, nil)
			want := make([][]byte, len(pkts))
			for i, p := range pkts {
				want[i] = bytes.Clone(p[s.linkLen():]) // tout is a TUN device
			}
			hdrs := make([]VirtioNetHdr, len(pkts))
			co := NewCoalescer(s.linkLen(), 64)
			co.SetUDP(true)
			if n := co.Coalesce(pkts, hdrs); n != 1 {
				t.Fatalf("Coalesce left %d packets, want 1", n)
			}
			writeVnet(t, in, hdrs[0], pkts[0])
			readSegments(t, out, s, want)
		})
	}
}

// TestKernelSuperpacketsFromTUN has the kernel's own stack send
// superpackets out of a TUN device with IFF_VNET_HDR and TUNSETOFFLOAD
// (TSO from a TCP connection whose handshake the test answers, USO from a
// UDP socket with UDP_SEGMENT) and checks that Decode accepts the kernel's
// virtio-net header — hdr_len and all — and that Segment cuts the packet
// into valid segments carrying exactly the bytes the socket sent.
func TestKernelSuperpacketsFromTUN(t *testing.T) {
	ns, in, _ := kernelPair(t, false)
	rc, err := in.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ioctlErr error
	err = rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD,
			unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6|unix.TUN_F_USO4|unix.TUN_F_USO6)
	})
	if err = errors.Join(err, ioctlErr); err != nil {
		t.Fatalf("TUNSETOFFLOAD: %v", err)
	}
	data := pattern(20000, 77)

	t.Run("UDP_SEGMENT", func(t *testing.T) {
		var fd int
		err := ns.Do(func() error {
			var err error
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		oob := make([]byte, unix.CmsgSpace(2))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
		binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], 1000)
		to := &unix.SockaddrInet4{Port: 7100, Addr: [4]byte{10, 9, 1, 2}}
		if err := unix.Sendmsg(fd, data[:10000], oob, to, 0); err != nil {
			t.Fatalf("sendmsg with UDP_SEGMENT: %v", err)
		}
		pkt, hdr := readSuperpacket(t, in, GSOUDPL4)
		segs, sizes := outBufs(64, 2048)
		n, st := Segment(pkt, 0, hdr, 1500, segs, sizes)
		if st != StatusOK || n != 10 {
			t.Fatalf("Segment(kernel's USO superpacket, hdr %+v) = %d, %v; want 10, ok", hdr, n, st)
		}
		var all []byte
		for i := range n {
			all = append(all, checkSegment(t, segs[i][:sizes[i]], 0, 1500).payload...)
		}
		if !bytes.Equal(all, data[:10000]) {
			t.Fatal("datagrams do not carry the bytes sent")
		}
		t.Logf("kernel header %+v -> %d datagrams", hdr, n)
	})

	t.Run("TCP TSO", func(t *testing.T) {
		var fd int
		err := ns.Do(func() error {
			var err error
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: 7200, Addr: [4]byte{10, 9, 1, 2}})
		if !errors.Is(err, unix.EINPROGRESS) {
			t.Fatalf("connect: %v", err)
		}
		syn, _ := readSuperpacket(t, in, GSONone)
		if syn[0] != 0x45 || syn[33]&header.TCPFlagSYN == 0 {
			t.Fatalf("expected a SYN, got % x", syn[:min(len(syn), 40)])
		}
		// Answer as 10.9.1.2:7200 would: SYN-ACK with MSS 1460, window
		// 65535, no window scaling, so the kernel may send 10 segments.
		sa := spec{src: netip.MustParseAddr("10.9.1.2"), dst: netip.MustParseAddr("10.9.1.1"),
			sport: 7200, dport: binary.BigEndian.Uint16(syn[20:]), seq: 5000, ack: binary.BigEndian.Uint32(syn[24:]) + 1,
			flags: header.TCPFlagSYN | header.TCPFlagACK, window: 65535, ttl: 64, noTS: true}
		writeVnet(t, in, VirtioNetHdr{}, build(t, sa, 0))
		deadline := time.Now().Add(3 * time.Second)
		sent := 0
		for sent < len(data) && time.Now().Before(deadline) {
			m, err := unix.Write(fd, data[sent:])
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOTCONN) {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatalf("write: %v", err)
			}
			sent += m
		}
		pkt, hdr := readSuperpacket(t, in, GSOTCPv4)
		segs, sizes := outBufs(64, 2048)
		n, st := Segment(pkt, 0, hdr, 1500, segs, sizes)
		if st != StatusOK || n < 2 {
			t.Fatalf("Segment(kernel's TSO superpacket, hdr %+v) = %d, %v", hdr, n, st)
		}
		var all []byte
		for i := range n {
			all = append(all, checkSegment(t, segs[i][:sizes[i]], 0, 1500).payload...)
		}
		if !bytes.Equal(all, data[:len(all)]) {
			t.Fatal("segments do not carry the first bytes written")
		}
		t.Logf("kernel header %+v -> %d segments, %d bytes", hdr, n, len(all))
	})
}

// readSuperpacket reads from the TUN device f (IFF_VNET_HDR) until an IPv4 packet
// with the given GSO type arrives, decodes its header and returns both.
func readSuperpacket(t *testing.T, f *os.File, gsoType uint8) ([]byte, VirtioNetHdr) {
	t.Helper()
	buf := make([]byte, 70000)
	deadline := time.Now().Add(3 * time.Second)
	for {
		if err := f.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		m, err := f.Read(buf)
		if err != nil {
			t.Fatalf("read %s waiting for GSO type %d: %v", f.Name(), gsoType, err)
		}
		var hdr VirtioNetHdr
		if st := hdr.Decode(buf[:m]); st != StatusOK {
			t.Fatalf("Decode of the kernel's virtio-net header: %v", st)
		}
		pkt := buf[VirtioNetHdrLen:m]
		if hdr.GSOType&^GSOECN == gsoType && len(pkt) > 0 && pkt[0] == 0x45 {
			return bytes.Clone(pkt), hdr
		}
	}
}

// ours reports whether the IP packet k is one of s's segments: same
// protocol, destination address and port.
func ours(k []byte, s spec) bool {
	proto := byte(header.ProtoTCP)
	if s.udp {
		proto = byte(header.ProtoUDP)
	}
	switch {
	case len(k) >= 44 && k[0] == 0x45 && !s.v6:
		return k[9] == proto && bytes.Equal(k[16:20], s.dst.AsSlice()) && binary.BigEndian.Uint16(k[22:]) == s.dport
	case len(k) >= 64 && k[0]>>4 == 6 && s.v6:
		return k[6] == proto && bytes.Equal(k[24:40], s.dst.AsSlice()) && binary.BigEndian.Uint16(k[42:]) == s.dport
	}
	return false
}

// unforward undoes what forwarding changed in a packet: the TTL (hop limit)
// decrement and, for IPv4, the header checksum.
func unforward(k []byte) {
	if k[0]>>4 == 6 {
		k[7]++
		return
	}
	k[8]++
	v4 := header.IPv4(k)
	v4.SetChecksum(v4.CalculateChecksum())
}
