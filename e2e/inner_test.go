package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/internal/nstest"
)

// The IPv6 addresses the tests below give their containers next to the
// IPv4 ones of the config. An l2 network carries any Ethernet frame, so
// ferry needs no IPv6 configuration for them.
const (
	ip6C1 = "fd42::2"
	ip6C2 = "fd42::3"
)

// offloadStages are the stages that cut superpackets, coalesce tunnel
// datagrams and decapsulate, and the ports' queues between them: where a
// test of the offload path wants no drops.
var offloadStages = []string{"gso-segment", "gro-coalesce", "vxlan-decap", "port-rx", "port-tx"}

// TestE2EIPv6AndUSO: containers speaking IPv6 over an l2 network, and
// applications sending UDP with UDP_SEGMENT (USO), between two ferry hosts.
// With offloads on, the containers' kernels hand ferry TCPv6 and UDP
// superpackets (the TAP advertises TSO6, USO4 and USO6); each must reach the
// other container intact, and on the wire as MTU-sized VXLAN datagrams
// with valid checksums. Without offloads the same traffic arrives cut by the
// containers' kernels.
func TestE2EIPv6AndUSO(t *testing.T) {
	p := newFerryPair(t, "192.168.72.0/24", "10.42.0.3", nil)
	c1, c2, f1 := p.c1, p.c2, p.f1
	addAddr6(t, c1, ip6C1)
	addAddr6(t, c2, ip6C2)
	mustPing(t, c1, ip6C2)
	mustPing(t, c2, ip6C1)

	f1.clearRuntime(t)
	transfer(t, c1, c2, ip6C2, 32<<20)
	transfer(t, c2, c1, ip6C1, 32<<20)
	// Most of c1's 32 MiB (MSS 1390 over IPv6 at MTU 1450) leaves its
	// kernel in superpackets; the first segments of a connection do not.
	segs, most := f1.stagePackets(t)["gso-segment"], uint64((32<<20)/1390/2)
	if offloadsOn() && segs < most {
		t.Errorf("with offloads, gso-segment cut %d segments from c1's superpackets, want at least %d, half of its 32 MiB", segs, most)
	}
	if !offloadsOn() && segs != 0 {
		t.Errorf("without offloads, gso-segment cut %d segments, want none", segs)
	}
	t.Logf("gso-segment cut %d segments during the IPv6 transfers", segs)

	// What the wire carries of TCPv6 superpackets: MTU-sized VXLAN
	// datagrams, each inner IPv6/TCP segment with a valid checksum.
	checkWireTCP(t, captureDuringTCP(t, f1, "ip6 and tcp and dst port 5201", 200, c1, c2, netip.AddrPortFrom(netip.MustParseAddr(ip6C2), 5201)))

	for _, dst := range []string{"10.42.0.3", ip6C2} {
		t.Run("USO to "+dst, func(t *testing.T) {
			f1.clearRuntime(t)
			const sends, per = 50, 20
			mustUDPSegments(t, c1, c2, netip.AddrPortFrom(netip.MustParseAddr(dst), 5300), sends, per)
			// With offloads each send reaches ferry as one superpacket,
			// which it cuts into exactly the datagrams the application
			// asked for: per of 1000 bytes and a short one.
			want := uint64(0)
			if offloadsOn() {
				want = sends * (per + 1)
			}
			if got := f1.stagePackets(t)["gso-segment"]; got != want {
				t.Errorf("gso-segment cut %d datagrams, want %d", got, want)
			}
		})
	}
	f1.checkNoDrops(t, offloadStages...)
}

// TestE2EKernelVXLANInteropIPv6AndUSO: between a ferry host and a host
// using the kernel's VXLAN device on a bridge (as TestE2EKernelVXLANInterop),
// IPv6 TCP and UDP_SEGMENT datagrams (IPv4 and IPv6) both ways. The kernel
// host checks every inner checksum ferry put on the wire (its container
// drops a segment that fails), and ferry must take the kernel's MTU-sized
// segments of the other direction.
func TestE2EKernelVXLANInteropIPv6AndUSO(t *testing.T) {
	f, cf, ck := newKernelPeerRig(t, "192.168.73.0/24")
	addAddr6(t, cf, ip6C1)
	addAddr6(t, ck, ip6C2)
	mustPing(t, cf, ip6C2)
	mustPing(t, ck, ip6C1)

	transfer(t, cf, ck, ip6C2, 32<<20)
	transfer(t, ck, cf, ip6C1, 32<<20)
	for _, c := range []struct {
		name     string
		from, to *nstest.NS
		dst      string
	}{
		{"ferry to kernel, IPv4", cf, ck, "10.42.0.3"},
		{"ferry to kernel, IPv6", cf, ck, ip6C2},
		{"kernel to ferry, IPv4", ck, cf, "10.42.0.2"},
		{"kernel to ferry, IPv6", ck, cf, ip6C1},
	} {
		t.Run("USO "+c.name, func(t *testing.T) {
			mustUDPSegments(t, c.from, c.to, netip.AddrPortFrom(netip.MustParseAddr(c.dst), 5300), 50, 20)
		})
	}
	f.checkNoDrops(t, offloadStages...)
}

// addAddr6 gives the container's eth0 the IPv6 address addr/64 at once
// (nodad: no duplicate address detection to wait for).
func addAddr6(t *testing.T, c *nstest.NS, addr string) {
	t.Helper()
	if out, err := c.Exec(t, 5*time.Second, "ip", "-6", "addr", "add", addr+"/64", "dev", "eth0", "nodad"); err != nil {
		t.Fatalf("ip -6 addr add %s in %s: %v %s", addr, c, err, out)
	}
}

// USO datagrams of mustUDPSegments: per datagrams of udpSegSize bytes and
// a last one of udpSegTail bytes per send.
const (
	udpSegSize = 1000
	udpSegTail = 300
)

// mustUDPSegments sends sends UDP_SEGMENT writes from the namespace from to
// addr in to, 1 ms apart, each cut by whoever segments it (the container's
// kernel, or ferry when the TAP takes superpackets) into per datagrams of
// udpSegSize bytes and one of udpSegTail bytes. It fails the test unless
// the receiver got every datagram exactly once with the bytes sent, within
// 10 seconds.
func mustUDPSegments(t *testing.T, from, to *nstest.NS, addr netip.AddrPort, sends, per int) {
	t.Helper()
	var rx *net.UDPConn
	err := to.Do(func() error {
		var err error
		rx, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("listen on %v in %s: %v", addr, to, err)
	}
	defer rx.Close()
	// Room for everything sent, so the receiving socket cannot be the
	// reason a datagram is missing.
	if err := setsockopt(rx, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		t.Fatalf("SO_RCVBUFFORCE: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	if err := rx.SetReadDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- receiveUDPSegments(rx, sends, per) }()

	var tx *net.UDPConn
	err = from.Do(func() error {
		var err error
		tx, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("dial %v from %s: %v", addr, from, err)
	}
	defer tx.Close()
	if err := setsockopt(tx, unix.SOL_UDP, unix.UDP_SEGMENT, udpSegSize); err != nil {
		t.Fatalf("UDP_SEGMENT: %v", err)
	}
	buf := make([]byte, per*udpSegSize+udpSegTail)
	for s := range sends {
		for i := range per + 1 {
			fillDatagram(buf[i*udpSegSize:min((i+1)*udpSegSize, len(buf))], s, i)
		}
		if _, err := tx.Write(buf); err != nil {
			t.Fatalf("UDP_SEGMENT send %d of %d bytes to %v: %v", s, len(buf), addr, err)
		}
		time.Sleep(time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatalf("UDP_SEGMENT datagrams from %s to %v: %v", from, addr, err)
	}
}

// receiveUDPSegments reads the datagrams of mustUDPSegments from c until it
// has all of them or its read deadline passes, and returns an error naming
// what was missing, duplicated or corrupted.
func receiveUDPSegments(c *net.UDPConn, sends, per int) error {
	seen := make([]bool, sends*(per+1))
	got := 0
	buf := make([]byte, 65536)
	want := make([]byte, udpSegSize)
	for got < len(seen) {
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("%d of %d datagrams received: %w", got, len(seen), err)
		}
		if n < 8 {
			return fmt.Errorf("a datagram of %d bytes", n)
		}
		s, i := int(binary.BigEndian.Uint32(buf)), int(binary.BigEndian.Uint32(buf[4:]))
		if s >= sends || i > per {
			return fmt.Errorf("a datagram numbered %d/%d, outside %d sends of %d", s, i, sends, per+1)
		}
		size := udpSegSize
		if i == per {
			size = udpSegTail
		}
		fillDatagram(want[:size], s, i)
		switch {
		case n != size || string(buf[:n]) != string(want[:size]):
			return fmt.Errorf("datagram %d of send %d: %d bytes, not the %d bytes sent", i, s, n, size)
		case seen[s*(per+1)+i]:
			return fmt.Errorf("datagram %d of send %d arrived twice", i, s)
		}
		seen[s*(per+1)+i] = true
		got++
	}
	return nil
}

// fillDatagram writes datagram i of send s: its two numbers, then bytes
// that depend on both.
func fillDatagram(b []byte, s, i int) {
	binary.BigEndian.PutUint32(b, uint32(s))
	binary.BigEndian.PutUint32(b[4:], uint32(i))
	for j := 8; j < len(b); j++ {
		b[j] = byte(s*31 + i*7 + j)
	}
}

// setsockopt sets an integer socket option on c's socket.
func setsockopt(c syscall.Conn, level, opt, value int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, value) }); err != nil {
		return err
	}
	return serr
}
