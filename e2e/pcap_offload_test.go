package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// TestE2EPcapTunnelTxDuringTCP captures 200 packets at h1's tunnel-tx
// while c1 sends 8 MB transfers over TCP to c2. With offloads on, the container hands
// ferry 64 KB superpackets; the capture must still hold what the wire
// carries: every packet at most an underlay frame (14 + 1500 bytes), a
// VXLAN VNI 42 datagram whose inner IPv4/TCP packet has the length it says
// and valid IP and TCP checksums, with at most an MSS of payload. Every
// transfer must arrive intact.
func TestE2EPcapTunnelTxDuringTCP(t *testing.T) {
	r := newObsRig(t, "192.168.86.0/24")
	pkts := captureDuringTCP(t, r.f1, "tcp and dst port 5201", 200, r.c1, r.c2, netip.MustParseAddrPort("10.42.0.3:5201"))
	checkWireTCP(t, pkts)
}

// checkWireTCP checks every captured packet with wireTCP and that at least
// one of them is a full-size data segment (1000 bytes of payload or more).
func checkWireTCP(t *testing.T, pkts [][]byte) {
	t.Helper()
	full := 0
	for i, b := range pkts {
		if _, _, payload := wireTCP(t, i, b); len(payload) >= 1000 {
			full++
		}
	}
	if full == 0 {
		t.Fatal("no full-size data segment captured")
	}
	t.Logf("%d packets, %d full-size segments, all within the underlay MTU with valid checksums", len(pkts), full)
}

// captureDuringTCP captures n packets matching filter at f's tunnel-tx
// while from sends 8 MB transfers over TCP to addr in to, and returns them.
// A transfer may end before the capture is listening, so it starts another
// whenever none is running, until the capture has its packets. Every
// transfer must arrive intact.
func captureDuringTCP(t *testing.T, f *ferryd, filter string, n int, from, to *nstest.NS, addr netip.AddrPort) [][]byte {
	t.Helper()
	var wg sync.WaitGroup
	var running atomic.Bool
	file := capturePoint(t, f, "tunnel-tx", filter, n, func() {
		if !running.CompareAndSwap(false, true) {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer running.Store(false)
			sent, got, err := nstest.TCPTransfer(t, from, to, addr, 8<<20, 60*time.Second)
			if err != nil || sent != got {
				t.Errorf("TCP transfer: %v (hash sent %x, received %x)", err, sent, got)
			}
		}()
	})
	wg.Wait()
	lt, pkts := readPcap(t, file)
	if lt != layers.LinkTypeEthernet || len(pkts) != n {
		t.Fatalf("capture: link type %v, %d packets; want Ethernet, %d", lt, len(pkts), n)
	}
	return pkts
}

// wireTCP checks that captured packet i, b, is what the wire may carry
// between two hosts of the test's network: at most an underlay frame (14 +
// 1500 bytes), a VXLAN VNI 42 datagram whose inner IPv4/TCP or IPv6/TCP
// packet has the length it says, valid checksums (IPv4 header and TCP) and
// at most an MSS of payload at MTU 1450. It returns the inner TCP sequence
// number, flags and payload.
func wireTCP(t *testing.T, i int, b []byte) (seq uint32, flags uint8, payload []byte) {
	t.Helper()
	if len(b) > 14+1500 {
		t.Fatalf("packet %d: %d bytes, more than an underlay frame", i, len(b))
	}
	pkt := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	vx, _ := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
	if vx == nil || vx.VNI != 42 || len(vx.Payload) < 15 {
		t.Fatalf("packet %d is not VXLAN VNI 42: %v", i, pkt)
	}
	inner := vx.Payload[14:]
	var src, dst netip.Addr
	var tcp []byte
	switch inner[0] >> 4 {
	case 4:
		ip := header.IPv4(inner)
		if len(inner) < 40 || int(ip.TotalLength()) != len(inner) || ip.Protocol() != header.ProtoTCP {
			t.Fatalf("packet %d: inner packet of %d bytes is not the IPv4/TCP packet it says", i, len(inner))
		}
		if header.FoldChecksum(header.Checksum(inner[:20], 0)) != 0xffff {
			t.Fatalf("packet %d: inner IPv4 header checksum does not verify", i)
		}
		src, dst, tcp = ip.Src(), ip.Dst(), inner[20:]
	case 6:
		ip := header.IPv6(inner)
		if len(inner) < header.IPv6Len+20 || int(ip.PayloadLength()) != len(inner)-header.IPv6Len || ip.NextHeader() != header.ProtoTCP {
			t.Fatalf("packet %d: inner packet of %d bytes is not the IPv6/TCP packet it says", i, len(inner))
		}
		src, dst, tcp = ip.Src(), ip.Dst(), inner[header.IPv6Len:]
	default:
		t.Fatalf("packet %d: inner packet is neither IPv4 nor IPv6", i)
	}
	seq = binary.BigEndian.Uint32(tcp[4:])
	sum := header.PseudoHeaderChecksum(header.ProtoTCP, src, dst, uint16(len(tcp)))
	if header.FoldChecksum(header.Checksum(tcp, sum)) != 0xffff {
		t.Fatalf("packet %d (seq %d): inner TCP checksum does not verify", i, seq)
	}
	payload = tcp[int(tcp[12]>>4)*4:]
	if mss := 1450 - (len(inner) - len(tcp)) - 20; len(payload) > mss {
		t.Fatalf("packet %d: %d bytes of TCP payload, more than an MSS (%d) at MTU 1450", i, len(payload), mss)
	}
	return seq, tcp[13], payload
}

// TestE2EPcapTunnelTxCoversTCPStream captures at h1's tunnel-tx for the
// whole of one bounded TCP transfer from c1 to c2 (4 MiB, written in 64 KiB
// chunks, paced so the capture reader keeps up) and rebuilds the stream
// from the capture alone: every packet is one the wire may carry
// (wireTCP), and the segments' sequence numbers, from the SYN on, cover
// the 4 MiB without a gap, their payload bytes exactly what c1 sent. With
// offloads on, c1's stack hands ferry superpackets; the capture must still
// show every wire segment of them.
func TestE2EPcapTunnelTxCoversTCPStream(t *testing.T) {
	const size, chunk = 4 << 20, 64 << 10
	r := newObsRig(t, "192.168.96.0/24")
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{'f', 'e', 'r', 'r', 'y'}).Read(data)

	var ln *net.TCPListener
	if err := r.c2.Do(func() error {
		var err error
		ln, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(10, 42, 0, 3), Port: 5202})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan []byte, 1)
	go func() {
		defer close(received)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		got, _ := io.ReadAll(c)
		received <- got
	}()

	// The capture is running once its pcapng header arrives.
	cmd := exec.Command(ferryBin, "--socket", r.f1.socket, "pcap", "--point", "tunnel-tx",
		"--filter", "tcp and dst port 5202", "--count", "0", "--snaplen", "2048", "--duration", "4s", "-w", "-")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(stdout)
	if _, err := br.Peek(4); err != nil {
		cmd.Wait()
		t.Fatalf("ferry pcap: no pcapng stream: %v: %s", err, stderr.String())
	}
	var stream bytes.Buffer
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(&stream, br)
		copied <- err
	}()

	var conn net.Conn
	if err := r.c1.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", "10.42.0.3:5202", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	pace := 2 * time.Millisecond // 128 ms for the 4 MiB, well inside --duration
	if raceBuild {
		pace = 10 * time.Millisecond
	}
	for off := 0; off < size; off += chunk {
		if _, err := conn.Write(data[off : off+chunk]); err != nil {
			t.Fatalf("send after %d bytes: %v", off, err)
		}
		time.Sleep(pace)
	}
	conn.Close()
	if got := <-received; !bytes.Equal(got, data) {
		t.Fatalf("c2 received %d bytes that differ from the %d sent", len(got), size)
	}
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ferry pcap: %v: %s", err, stderr.String())
	}
	if msg := strings.TrimSpace(stderr.String()); strings.Contains(msg, "missed") {
		t.Fatalf("ferry pcap: %s; the test's pacing should let the reader keep up", msg)
	}

	rd, err := pcapgo.NewNgReader(&stream, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	// Rebuild the stream from the capture: every payload byte at its
	// offset from the SYN's sequence number, agreeing with every other
	// copy (retransmissions) and with what was sent. Packets sent by
	// different workers may come out of the capture in any order.
	type segment struct {
		seq     uint32
		payload []byte
	}
	var (
		isn     uint32
		synSeen bool
		segs    []segment
	)
	for i := 0; ; i++ {
		b, _, err := rd.ReadPacketData()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		seq, flags, payload := wireTCP(t, i, b)
		switch {
		case flags&0x02 != 0: // SYN
			isn, synSeen = seq, true
		case len(payload) > 0:
			segs = append(segs, segment{seq, payload})
		}
	}
	if !synSeen {
		t.Fatal("no SYN captured")
	}
	covered := make([]bool, size)
	for i, sg := range segs {
		off := int(sg.seq - isn - 1)
		if off < 0 || off+len(sg.payload) > size {
			t.Fatalf("segment %d: payload at stream offset %d+%d is outside the %d bytes sent", i, off, len(sg.payload), size)
		}
		if !bytes.Equal(sg.payload, data[off:off+len(sg.payload)]) {
			t.Fatalf("segment %d: payload at stream offset %d differs from what was sent", i, off)
		}
		for j := off; j < off+len(sg.payload); j++ {
			covered[j] = true
		}
	}
	if gap := slices.Index(covered, false); gap >= 0 {
		t.Fatalf("the capture's segments leave a gap at stream offset %d of %d", gap, size)
	}
	t.Logf("%d data segments cover the %d bytes sent; %s", len(segs), size, strings.TrimSpace(stderr.String()))
}

// TestE2ETAPSuperpacketsFitOneGSOMessage checks that with offloads a TAP
// port of a VXLAN network (MTU 1450) limits the container's superpackets to
// 44 segments — the VXLAN datagrams of one fit one UDP_SEGMENT message of
// at most 65507 bytes — and that without offloads the kernel's default
// stays; then that TCP still arrives intact.
func TestE2ETAPSuperpacketsFitOneGSOMessage(t *testing.T) {
	r := newObsRig(t, "192.168.70.0/24")
	want := 44
	if !offloadsOn() {
		want = 65535
	}
	for _, c := range []*nstest.NS{r.c1, r.c2} {
		l, err := c.Handle(t).LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if got := int(l.Attrs().GSOMaxSegs); got != want {
			t.Fatalf("%s eth0: gso_max_segs %d, want %d", c, got, want)
		}
	}
	sent, got, err := nstest.TCPTransfer(t, r.c1, r.c2, netip.MustParseAddrPort("10.42.0.3:5201"), 16<<20, 60*time.Second)
	if err != nil || sent != got {
		t.Fatalf("TCP transfer: %v (hash sent %x, received %x)", err, sent, got)
	}
}
