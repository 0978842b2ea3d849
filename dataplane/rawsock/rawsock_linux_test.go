package rawsock

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// Every test runs in network namespaces of its own: a raw socket receives
// every packet of its protocol to its address, so in a shared namespace
// another test's GRE traffic could land in it. Loopback tests send from
// 127.0.0.2 to 127.0.0.1 (both are local on lo).
var (
	lo1 = netip.MustParseAddr("127.0.0.1")
	lo2 = netip.MustParseAddr("127.0.0.2")
	lo3 = netip.MustParseAddr("127.0.0.3")
)

// newNS returns a fresh namespace with lo up, deleted at the end of the test.
func newNS(tb testing.TB) *nstest.NS {
	tb.Helper()
	return nstest.NewNS(tb, "rawsk")
}

// listenIn opens a Conn inside ns, closed at the end of the test.
func listenIn(tb testing.TB, ns *nstest.NS, opts Options) *Conn {
	tb.Helper()
	var c *Conn
	if err := ns.Do(func() (err error) {
		c, err = Listen(opts)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// greConn opens a GRE Conn bound to local in ns with room for a few large
// batches.
func greConn(tb testing.TB, ns *nstest.NS, local netip.Addr, batch int) *Conn {
	tb.Helper()
	return listenIn(tb, ns, Options{Proto: ProtoGRE, Local: local, RecvBuf: 4 << 20, SendBuf: 4 << 20, Batch: batch})
}

// grePayload builds what ferry's GRE encapsulation puts after the outer IPv4
// header: a 4-byte GRE header (no flags, version 0, protocol 0x0800) and an
// inner IPv4/UDP packet, size bytes in all (at least 32), whose bytes derive
// from index so that reordering or corruption shows.
func grePayload(index, size int) []byte {
	p := make([]byte, size)
	p[2], p[3] = 0x08, 0x00
	inner := header.IPv4(p[4:])
	inner.Encode(&header.IPv4Fields{
		TotalLength: uint16(size - 4),
		ID:          uint16(index),
		TTL:         64,
		Protocol:    header.ProtoUDP,
		Src:         netip.AddrFrom4([4]byte{10, 244, 1, byte(index)}),
		Dst:         netip.AddrFrom4([4]byte{10, 244, 2, byte(index)}),
	})
	for j := 4 + header.IPv4MinLen; j < size; j++ {
		p[j] = byte(index*7 + j)
	}
	return p
}

// withHeadroom returns p copied behind offset bytes of headroom.
func withHeadroom(p []byte, offset int) []byte {
	b := make([]byte, offset+len(p))
	copy(b[offset:], p)
	return b
}

// makeBufs returns n receive buffers of size bytes each, and sizes and from
// slices to go with them.
func makeBufs(n, size int) ([][]byte, []int, []netip.Addr) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n), make([]netip.Addr, n)
}

type datagram struct {
	data      []byte
	from      netip.Addr
	head      header.IPv4
	truncated bool
}

// readN reads until want datagrams arrived or two seconds passed, calling
// ReadBatch with chunk buffers at a time, and returns what arrived.
func readN(tb testing.TB, c *Conn, want, chunk, bufSize, offset int) []datagram {
	tb.Helper()
	bufs, sizes, from := makeBufs(chunk, bufSize)
	var got []datagram
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		n, err := c.ReadBatch(bufs[:min(chunk, want-len(got))], sizes, from, offset)
		if err != nil {
			tb.Fatalf("ReadBatch: %v", err)
		}
		if n == 0 {
			waitReadable(tb, c.Fd(), time.Until(deadline))
			continue
		}
		for i := range n {
			got = append(got, datagram{
				data:      bytes.Clone(bufs[i][offset : offset+sizes[i]]),
				from:      from[i],
				head:      header.IPv4(bytes.Clone(c.Header(i))),
				truncated: c.Truncated(i),
			})
		}
	}
	if len(got) != want {
		tb.Fatalf("received %d datagrams, want %d", len(got), want)
	}
	return got
}

// waitReadable polls fd for input for at most d and reports whether it is
// readable.
func waitReadable(tb testing.TB, fd int, d time.Duration) bool {
	tb.Helper()
	if d <= 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(d.Milliseconds())+1)
	if err != nil && err != unix.EINTR {
		tb.Fatalf("poll: %v", err)
	}
	return n > 0
}

// assertEmpty checks that no datagram is left waiting on c.
func assertEmpty(tb testing.TB, c *Conn) {
	tb.Helper()
	bufs, sizes, from := makeBufs(4, 2048)
	n, err := c.ReadBatch(bufs, sizes, from, 0)
	if n != 0 || err != nil {
		tb.Fatalf("ReadBatch on drained socket = %d, %v; want 0, nil", n, err)
	}
}

// send writes bufs to dst with c and fails the test unless all were sent.
func send(tb testing.TB, c *Conn, dst netip.Addr, offset int, bufs ...[]byte) {
	tb.Helper()
	to := make([]netip.Addr, len(bufs))
	for i := range to {
		to[i] = dst
	}
	n, err := c.WriteBatch(bufs, to, offset)
	if n != len(bufs) || err != nil || len(c.Skipped()) != 0 {
		tb.Fatalf("WriteBatch = %d, %v, skipped %v; want %d, nil, none", n, err, c.Skipped(), len(bufs))
	}
}

// checkArrived compares received datagrams with the payloads sent from src
// to dst: same bytes, source, and an outer header the kernel built for
// protocol 47 with no options and DF set (every payload fits the MTU).
func checkArrived(t *testing.T, got []datagram, want [][]byte, src, dst netip.Addr) {
	t.Helper()
	for i, d := range got {
		if !bytes.Equal(d.data, want[i]) {
			t.Errorf("datagram %d: %d bytes differ from the %d sent", i, len(d.data), len(want[i]))
		}
		if d.from != src {
			t.Errorf("datagram %d from %v, want %v", i, d.from, src)
		}
		if d.truncated {
			t.Errorf("datagram %d reported truncated", i)
		}
		h := d.head
		if !h.IsValid(len(h)+len(d.data)) || h.HeaderLength() != header.IPv4MinLen || int(h.TotalLength()) != header.IPv4MinLen+len(want[i]) ||
			h.Protocol() != ProtoGRE || h.Src() != src || h.Dst() != dst || h.TTL() != 64 || !h.DF() || h.CalculateChecksum() != h.Checksum() {
			t.Errorf("datagram %d: outer header % x: want a valid 20-byte IPv4 header, protocol 47, %v -> %v, TTL 64, DF, total length %d",
				i, []byte(h), src, dst, header.IPv4MinLen+len(want[i]))
		}
	}
}

func TestWriteBatch64ArrivesIntactOverLoopback(t *testing.T) {
	const offset = 50 // headroom, as for an outer header
	ns := newNS(t)
	src, dst := greConn(t, ns, lo2, 64), greConn(t, ns, lo1, 64)
	bufs := make([][]byte, 64)
	want := make([][]byte, 64)
	for i := range bufs {
		want[i] = grePayload(i, 32+(i*97)%1448) // 32 .. 1479 bytes, all different
		bufs[i] = withHeadroom(want[i], offset)
	}
	send(t, src, lo1, offset, bufs...)
	got := readN(t, dst, 64, 64, 2048, offset)
	checkArrived(t, got, want, lo2, lo1)
	assertEmpty(t, dst)
}

// vethPair returns two namespaces joined by a veth pair, with addresses
// 10.200.x.1/24 and 10.200.x.2/24 (x random, so parallel runs differ).
func vethPair(t *testing.T) (a, b *nstest.NS, aAddr, bAddr netip.Addr) {
	t.Helper()
	var x [1]byte
	rand.Read(x[:])
	a, b = newNS(t), newNS(t)
	nstest.Veth(t, a, "eth0", b, "eth0")
	aAddr = netip.AddrFrom4([4]byte{10, 200, x[0], 1})
	bAddr = netip.AddrFrom4([4]byte{10, 200, x[0], 2})
	a.AddAddr(t, "eth0", netip.PrefixFrom(aAddr, 24))
	b.AddAddr(t, "eth0", netip.PrefixFrom(bAddr, 24))
	return a, b, aAddr, bAddr
}

func TestWriteBatch64ArrivesIntactBetweenNamespaces(t *testing.T) {
	a, b, aAddr, bAddr := vethPair(t)
	src, dst := greConn(t, a, aAddr, 64), greConn(t, b, bAddr, 64)
	want := make([][]byte, 64)
	for i := range want {
		want[i] = grePayload(i, 32+(i*53)%1448)
	}
	send(t, src, bAddr, 0, want...)
	got := readN(t, dst, 64, 64, 2048, 0)
	checkArrived(t, got, want, aAddr, bAddr)
	assertEmpty(t, dst)
}

// TestPayloadOverMTUIsFragmented: a payload that does not fit the veth's
// MTU of 1500 is sent in fragments without DF, and the peer's kernel
// reassembles it before the raw socket sees it.
func TestPayloadOverMTUIsFragmented(t *testing.T) {
	a, b, aAddr, bAddr := vethPair(t)
	src, dst := greConn(t, a, aAddr, 8), greConn(t, b, bAddr, 8)
	big := grePayload(5, 4000)
	send(t, src, bAddr, 0, big)
	got := readN(t, dst, 1, 8, 8192, 0)[0]
	if !bytes.Equal(got.data, big) || got.truncated || got.from != aAddr {
		t.Fatalf("got %d bytes from %v (truncated %v), want the 4000 sent from %v", len(got.data), got.from, got.truncated, aAddr)
	}
	if h := got.head; int(h.TotalLength()) != header.IPv4MinLen+4000 || h.DF() || h.IsFragment() {
		t.Fatalf("reassembled header % x: want total length %d, no DF, not a fragment", []byte(h), header.IPv4MinLen+4000)
	}
}

func TestPartialBatches(t *testing.T) {
	tests := []struct {
		name      string
		batch     int // Options.Batch of both sockets
		send      int // datagrams in one WriteBatch
		readChunk int // len(bufs) given to ReadBatch
		wantReads []int
	}{
		{name: "fewer waiting than buffers", batch: 64, send: 5, readChunk: 64, wantReads: []int{5}},
		{name: "more waiting than buffers", batch: 64, send: 25, readChunk: 10, wantReads: []int{10, 10, 5}},
		{name: "Batch caps the read", batch: 8, send: 20, readChunk: 64, wantReads: []int{8, 8, 4}},
		{name: "write longer than Batch goes in chunks", batch: 4, send: 70, readChunk: 64, wantReads: []int{4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2}},
	}
	ns := newNS(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := greConn(t, ns, lo2, tt.batch), greConn(t, ns, lo1, tt.batch)
			bufs := make([][]byte, tt.send)
			for i := range bufs {
				bufs[i] = grePayload(i, 32+i)
			}
			send(t, src, lo1, 0, bufs...)
			rbufs, sizes, from := makeBufs(tt.readChunk, 256)
			next := 0
			for r, want := range tt.wantReads {
				n, err := dst.ReadBatch(rbufs, sizes, from, 0)
				if n != want || err != nil {
					t.Fatalf("read %d: ReadBatch = %d, %v; want %d, nil", r, n, err, want)
				}
				for i := range n {
					if !bytes.Equal(rbufs[i][:sizes[i]], bufs[next]) || from[i] != lo2 {
						t.Fatalf("read %d datagram %d is not datagram %d from %v", r, i, next, lo2)
					}
					next++
				}
			}
			assertEmpty(t, dst)
		})
	}
}

func TestReadBatchNilFrom(t *testing.T) {
	ns := newNS(t)
	src, dst := greConn(t, ns, lo2, 8), greConn(t, ns, lo1, 8)
	send(t, src, lo1, 0, grePayload(1, 40))
	waitReadable(t, dst.Fd(), time.Second)
	bufs, sizes, _ := makeBufs(8, 64)
	n, err := dst.ReadBatch(bufs, sizes, nil, 0)
	if n != 1 || err != nil || sizes[0] != 40 {
		t.Fatalf("ReadBatch = %d, %v, size %d; want 1, nil, 40", n, err, sizes[0])
	}
}

func TestTruncationDetected(t *testing.T) {
	const bufSize, offset = 1000, 100
	ns := newNS(t)
	src, dst := greConn(t, ns, lo2, 8), greConn(t, ns, lo1, 8)
	sizes := []int{100, 2000, 900, 901, 50}
	bufs := make([][]byte, len(sizes))
	for i, s := range sizes {
		bufs[i] = grePayload(i, s)
	}
	send(t, src, lo1, 0, bufs...)
	got := readN(t, dst, len(sizes), 8, bufSize, offset)
	room := bufSize - offset
	for i, d := range got {
		wantTrunc := sizes[i] > room
		if d.truncated != wantTrunc {
			t.Errorf("datagram %d (%d bytes into %d): Truncated = %v, want %v", i, sizes[i], room, d.truncated, wantTrunc)
		}
		wantLen := min(sizes[i], room)
		if len(d.data) != wantLen || !bytes.Equal(d.data, bufs[i][:wantLen]) {
			t.Errorf("datagram %d: got %d bytes, want the first %d sent", i, len(d.data), wantLen)
		}
		if int(d.head.TotalLength()) != header.IPv4MinLen+sizes[i] {
			t.Errorf("datagram %d: header total length %d, want %d", i, d.head.TotalLength(), header.IPv4MinLen+sizes[i])
		}
	}
}

// TestIPOptionsKeptApart sends with IP options set on the sender (IP_OPTIONS:
// three no-ops and an end-of-list, 4 bytes), so the received header is 24
// bytes long: the payload must still start at the offset, and Header must
// return the options.
func TestIPOptionsKeptApart(t *testing.T) {
	options := []byte{1, 1, 1, 0}
	tests := []struct {
		name      string
		room      int // receive buffer bytes after the offset
		wantLen   int
		wantTrunc bool
		wantHead  int
	}{
		{name: "whole datagram fits", room: 2000, wantLen: 300, wantHead: 24},
		{name: "payload cut", room: 104, wantLen: 100, wantTrunc: true, wantHead: 24},
		{name: "buffer ends inside the options", room: 2, wantLen: 0, wantTrunc: true, wantHead: 22},
	}
	ns := newNS(t)
	src, dst := greConn(t, ns, lo2, 8), greConn(t, ns, lo1, 8)
	if err := unix.SetsockoptString(src.Fd(), unix.IPPROTO_IP, unix.IP_OPTIONS, string(options)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const offset = 16
			p := grePayload(3, 300)
			send(t, src, lo1, 0, p)
			got := readN(t, dst, 1, 1, offset+tt.room, offset)[0]
			if !bytes.Equal(got.data, p[:tt.wantLen]) || got.truncated != tt.wantTrunc {
				t.Errorf("got %d bytes, truncated %v; want the first %d sent, truncated %v", len(got.data), got.truncated, tt.wantLen, tt.wantTrunc)
			}
			if len(got.head) != tt.wantHead || got.head.HeaderLength() != 24 || !bytes.Equal(got.head[20:], options[:tt.wantHead-20]) {
				t.Errorf("Header = % x, want %d bytes: IHL 6 and the options % x", []byte(got.head), tt.wantHead, options[:tt.wantHead-20])
			}
			if got.from != lo2 || got.head.Protocol() != ProtoGRE {
				t.Errorf("from %v, protocol %d; want %v, 47", got.from, got.head.Protocol(), lo2)
			}
		})
	}
}

// TestOnlyOwnProtocolAndAddressArrive sends something the bound GRE socket
// must not see, then a GRE marker to it: the marker must be the only
// datagram it reads.
func TestOnlyOwnProtocolAndAddressArrive(t *testing.T) {
	tests := []struct {
		name  string
		other func(t *testing.T, ns *nstest.NS)
	}{
		{
			name: "UDP datagram to the bound address",
			other: func(t *testing.T, ns *nstest.NS) {
				err := ns.Do(func() error {
					fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
					if err != nil {
						return err
					}
					defer unix.Close(fd)
					return unix.Sendto(fd, grePayload(9, 64), 0, &unix.SockaddrInet4{Port: 4754, Addr: lo1.As4()})
				})
				if err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "IP protocol 4 datagram to the bound address",
			other: func(t *testing.T, ns *nstest.NS) {
				ipip := listenIn(t, ns, Options{Proto: unix.IPPROTO_IPIP, Local: lo2})
				send(t, ipip, lo1, 0, grePayload(9, 64)[4:])
			},
		},
		{
			name: "GRE to another local address",
			other: func(t *testing.T, ns *nstest.NS) {
				other := greConn(t, ns, lo2, 8)
				send(t, other, lo3, 0, grePayload(9, 64))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newNS(t)
			src, dst := greConn(t, ns, lo2, 8), greConn(t, ns, lo1, 8)
			tt.other(t, ns)
			marker := grePayload(1, 48)
			send(t, src, lo1, 0, marker)
			got := readN(t, dst, 1, 8, 2048, 0)
			if !bytes.Equal(got[0].data, marker) {
				t.Fatalf("first datagram received is % x, want the marker", got[0].data)
			}
			assertEmpty(t, dst)
		})
	}
}

func TestUnboundReceivesForEveryLocalAddress(t *testing.T) {
	ns := newNS(t)
	src := greConn(t, ns, lo2, 8)
	any := greConn(t, ns, netip.IPv4Unspecified(), 8)
	send(t, src, lo1, 0, grePayload(1, 40))
	send(t, src, lo3, 0, grePayload(2, 41))
	got := readN(t, any, 2, 8, 2048, 0)
	for i, wantDst := range []netip.Addr{lo1, lo3} {
		if got[i].head.Dst() != wantDst || got[i].from != lo2 || len(got[i].data) != 40+i {
			t.Errorf("datagram %d: %d bytes %v -> %v, want %d bytes %v -> %v", i, len(got[i].data), got[i].from, got[i].head.Dst(), 40+i, lo2, wantDst)
		}
	}
	assertEmpty(t, any)
}

// TestEverySocketGetsACopy: two GRE sockets bound to one address each
// receive every datagram, and a SendOnly one receives none but sends.
func TestEverySocketGetsACopy(t *testing.T) {
	ns := newNS(t)
	src := listenIn(t, ns, Options{Proto: ProtoGRE, Local: lo2, SendOnly: true})
	first, second := greConn(t, ns, lo1, 8), greConn(t, ns, lo1, 8)
	sendOnly := listenIn(t, ns, Options{Proto: ProtoGRE, Local: lo1, SendOnly: true})
	want := [][]byte{grePayload(1, 40), grePayload(2, 41), grePayload(3, 42)}
	send(t, src, lo1, 0, want...)
	for _, c := range []*Conn{first, second} {
		got := readN(t, c, 3, 8, 2048, 0)
		checkArrived(t, got, want, lo2, lo1)
		assertEmpty(t, c)
	}
	// Delivery to every matching socket happens in one pass, so the
	// send-only socket would hold its copies by now.
	assertEmpty(t, sendOnly)
}

func TestWriteBatchSkipsBadDatagram(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		to      netip.Addr
		wantErr error
	}{
		{name: "payload over 65535 bytes", data: make([]byte, 70000), to: lo1, wantErr: unix.EMSGSIZE},
		{name: "no route to destination", data: grePayload(2, 40), to: netip.MustParseAddr("192.0.2.1"), wantErr: unix.ENETUNREACH},
		{name: "broadcast destination", data: grePayload(2, 40), to: netip.MustParseAddr("127.255.255.255"), wantErr: unix.EACCES},
		{name: "IPv6 destination", data: grePayload(2, 40), to: netip.IPv6Loopback(), wantErr: ErrNotIPv4},
		{name: "zero destination", data: grePayload(2, 40), wantErr: ErrNotIPv4},
	}
	ns := newNS(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := greConn(t, ns, lo2, 64), greConn(t, ns, lo1, 64)
			const bad = 2
			bufs := make([][]byte, 5)
			to := make([]netip.Addr, 5)
			for i := range bufs {
				bufs[i] = grePayload(i, 40+i)
				to[i] = lo1
			}
			bufs[bad], to[bad] = tt.data, tt.to
			n, err := src.WriteBatch(bufs, to, 0)
			if n != 5 || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want 5, nil", n, err)
			}
			skips := src.Skipped()
			if len(skips) != 1 || skips[0].Index != bad || !errors.Is(skips[0].Err, tt.wantErr) {
				t.Fatalf("Skipped = %v, want [{%d %v}]", skips, bad, tt.wantErr)
			}
			got := readN(t, dst, 4, 8, 256, 0)
			for j, i := range []int{0, 1, 3, 4} {
				if !bytes.Equal(got[j].data, bufs[i]) {
					t.Errorf("received datagram %d is not sent datagram %d", j, i)
				}
			}
			assertEmpty(t, dst)
		})
	}
}

// icmpMsg is what a test needs of an ICMP error about one of its GRE
// datagrams.
type icmpMsg struct {
	typ, code uint8
	proto     uint8 // protocol of the quoted datagram
	size      int   // its GRE payload size, from the quoted inner total length
}

// readICMP returns the ICMP error messages that arrive on icmp within d.
func readICMP(t *testing.T, icmp *Conn, d time.Duration) []icmpMsg {
	t.Helper()
	var msgs []icmpMsg
	bufs, sizes, _ := makeBufs(8, 2048)
	deadline := time.Now().Add(d)
	for waitReadable(t, icmp.Fd(), time.Until(deadline)) {
		n, err := icmp.ReadBatch(bufs, sizes, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			// ICMP header (8 bytes), the quoted IPv4 header (20), the first
			// 8 bytes of its payload: the GRE header and the start of the
			// inner IPv4 header.
			m := bufs[i][:sizes[i]]
			if len(m) < 8+header.IPv4MinLen+8 {
				t.Fatalf("ICMP message of %d bytes quotes too little: % x", len(m), m)
			}
			inner := 8 + header.IPv4MinLen + 4
			msgs = append(msgs, icmpMsg{typ: m[0], code: m[1], proto: m[8+9], size: 4 + int(binary.BigEndian.Uint16(m[inner+2:]))})
		}
	}
	return msgs
}

// TestICMPProtocolUnreachable shows what a peer's kernel does with GRE: with
// no GRE socket open it answers a datagram with ICMP protocol unreachable,
// which does not surface as an error on the sender's Conn; with one open it
// delivers the datagram and answers nothing.
func TestICMPProtocolUnreachable(t *testing.T) {
	a, b, aAddr, bAddr := vethPair(t)
	src := greConn(t, a, aAddr, 8)
	icmp := listenIn(t, a, Options{Proto: unix.IPPROTO_ICMP, Local: aAddr})

	send(t, src, bAddr, 0, grePayload(1, 40))
	msgs := readICMP(t, icmp, 500*time.Millisecond)
	// Destination unreachable, protocol unreachable, quoting our datagram.
	want := icmpMsg{typ: 3, code: 2, proto: ProtoGRE, size: 40}
	if len(msgs) != 1 || msgs[0] != want {
		t.Fatalf("without a GRE socket on the peer: ICMP %+v, want [%+v]", msgs, want)
	}
	// The error is not recorded on the sender: a read finds nothing and no
	// error, and the next batch goes out whole.
	assertEmpty(t, src)

	dst := greConn(t, b, bAddr, 8)
	send(t, src, bAddr, 0, grePayload(2, 41), grePayload(3, 42))
	got := readN(t, dst, 2, 8, 2048, 0)
	if !bytes.Equal(got[0].data, grePayload(2, 41)) || !bytes.Equal(got[1].data, grePayload(3, 42)) {
		t.Fatal("with a GRE socket on the peer: the datagrams did not arrive intact")
	}
	if msgs := readICMP(t, icmp, 300*time.Millisecond); len(msgs) != 0 {
		t.Fatalf("with a GRE socket on the peer: ICMP %+v, want none", msgs)
	}
}

func TestEmptyReadIsNotAnError(t *testing.T) {
	assertEmpty(t, greConn(t, newNS(t), lo1, 8))
}

func TestReadBatchShortBuffer(t *testing.T) {
	c := greConn(t, newNS(t), lo1, 8)
	bufs := [][]byte{make([]byte, 64), make([]byte, 10)}
	if _, err := c.ReadBatch(bufs, make([]int, 2), nil, 10); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("ReadBatch with a buffer no longer than offset: err = %v, want ErrShortBuffer", err)
	}
}

func TestListen(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr error // nil: success; errNone: any error
	}{
		{name: "GRE on loopback", opts: Options{Proto: ProtoGRE, Local: lo1}},
		{name: "IPv4-mapped address", opts: Options{Proto: ProtoGRE, Local: netip.MustParseAddr("::ffff:127.0.0.1")}},
		{name: "unspecified address", opts: Options{Proto: ProtoGRE, Local: netip.IPv4Unspecified()}},
		{name: "forced buffers", opts: Options{Proto: ProtoGRE, Local: lo1, RecvBuf: 8 << 20, SendBuf: 8 << 20}},
		{name: "largest batch", opts: Options{Proto: ProtoGRE, Local: lo1, Batch: MaxBatch}},
		{name: "address not on this host", opts: Options{Proto: ProtoGRE, Local: netip.MustParseAddr("192.0.2.1")}, wantErr: unix.EADDRNOTAVAIL},
		{name: "IPv6 address", opts: Options{Proto: ProtoGRE, Local: netip.IPv6Loopback()}, wantErr: errAny},
		{name: "zero address", opts: Options{Proto: ProtoGRE}, wantErr: errAny},
		{name: "protocol 0", opts: Options{Local: lo1}, wantErr: errAny},
		{name: "protocol 255 (send-only IPPROTO_RAW)", opts: Options{Proto: 255, Local: lo1}, wantErr: errAny},
		{name: "batch too large", opts: Options{Proto: ProtoGRE, Local: lo1, Batch: MaxBatch + 1}, wantErr: errAny},
		{name: "negative batch", opts: Options{Proto: ProtoGRE, Local: lo1, Batch: -1}, wantErr: errAny},
		{name: "negative receive buffer", opts: Options{Proto: ProtoGRE, Local: lo1, RecvBuf: -1}, wantErr: errAny},
	}
	ns := newNS(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *Conn
			err := ns.Do(func() (err error) {
				c, err = Listen(tt.opts)
				return err
			})
			if tt.wantErr != nil {
				if err == nil {
					c.Close()
					t.Fatal("Listen succeeded, want an error")
				}
				if tt.wantErr != errAny && !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.LocalAddr() != tt.opts.Local.Unmap() || c.Proto() != ProtoGRE {
				t.Errorf("LocalAddr, Proto = %v, %d; want %v, 47", c.LocalAddr(), c.Proto(), tt.opts.Local.Unmap())
			}
			wantBatch := tt.opts.Batch
			if wantBatch == 0 {
				wantBatch = DefaultBatch
			}
			if c.Batch() != wantBatch {
				t.Errorf("Batch = %d, want %d", c.Batch(), wantBatch)
			}
			fl, err := unix.FcntlInt(uintptr(c.Fd()), unix.F_GETFL, 0)
			if err != nil || fl&unix.O_NONBLOCK == 0 {
				t.Errorf("fd flags %#x, %v: want O_NONBLOCK", fl, err)
			}
			if tt.opts.RecvBuf > 0 {
				got, err := unix.GetsockoptInt(c.Fd(), unix.SOL_SOCKET, unix.SO_RCVBUF)
				if err != nil || got < tt.opts.RecvBuf {
					t.Errorf("SO_RCVBUF = %d, %v; want at least %d as root", got, err, tt.opts.RecvBuf)
				}
			}
		})
	}
}

// errAny in a TestListen case means any error will do.
var errAny = errors.New("any error")

func TestCloseTwice(t *testing.T) {
	ns := newNS(t)
	var c *Conn
	if err := ns.Do(func() (err error) {
		c, err = Listen(Options{Proto: ProtoGRE, Local: lo1})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c.Fd() != -1 {
		t.Fatalf("Fd after Close = %d, want -1", c.Fd())
	}
}

func TestBatchIOAllocatesNothing(t *testing.T) {
	const offset = 50
	ns := newNS(t)
	src, dst := greConn(t, ns, lo2, 64), greConn(t, ns, lo1, 64)
	bufs := make([][]byte, 64)
	to := make([]netip.Addr, 64)
	for i := range bufs {
		bufs[i] = withHeadroom(grePayload(i, 1400), offset)
		to[i] = lo1
	}
	rbufs, sizes, from := makeBufs(64, 2048)
	var sent, received int
	allocs := testing.AllocsPerRun(50, func() {
		n, err := src.WriteBatch(bufs, to, offset)
		if err != nil {
			t.Fatal(err)
		}
		sent += n
		// Loopback delivers during the send, so the batch is waiting now.
		n, err = dst.ReadBatch(rbufs, sizes, from, offset)
		if err != nil {
			t.Fatal(err)
		}
		received += n
	})
	if allocs != 0 {
		t.Errorf("WriteBatch+ReadBatch allocate %v times per batch, want 0", allocs)
	}
	// AllocsPerRun runs the function once more than it measures.
	if sent != 51*64 || received != sent {
		t.Errorf("sent %d datagrams, received %d; want %d each", sent, received, 51*64)
	}
	allocs = testing.AllocsPerRun(50, func() {
		if n, err := dst.ReadBatch(rbufs, sizes, from, offset); n != 0 || err != nil {
			t.Fatalf("ReadBatch on empty socket = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("ReadBatch on an empty socket allocates %v times, want 0", allocs)
	}
}

// benchSetup returns a sender, a receiver and a batch of 64 GRE payloads of
// 1400 bytes (a typical tunnel packet) behind 50 bytes of headroom, in a
// namespace of the benchmark's own.
func benchSetup(b *testing.B) (src, dst *Conn, bufs [][]byte, to []netip.Addr) {
	ns := newNS(b)
	src, dst = greConn(b, ns, lo2, 64), greConn(b, ns, lo1, 64)
	bufs = make([][]byte, 64)
	to = make([]netip.Addr, 64)
	for i := range bufs {
		bufs[i] = withHeadroom(grePayload(i, 1400), 50)
		to[i] = lo1
	}
	return src, dst, bufs, to
}

func reportPerPacket(b *testing.B, perOp int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perOp), "ns/pkt")
}

// drain empties c so a benchmark's sends are not dropped at a full receiver
// between measurements.
func drain(c *Conn) {
	bufs, sizes, _ := makeBufs(64, 2048)
	for {
		if n, err := c.ReadBatch(bufs, sizes, nil, 0); n == 0 || err != nil {
			return
		}
	}
}

func BenchmarkWriteBatch64(b *testing.B) {
	src, dst, bufs, to := benchSetup(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if n, err := src.WriteBatch(bufs, to, 50); n != 64 || err != nil {
			b.Fatalf("WriteBatch = %d, %v", n, err)
		}
		if i%16 == 15 {
			b.StopTimer()
			drain(dst)
			b.StartTimer()
		}
	}
	reportPerPacket(b, 64)
}

func BenchmarkReadWriteBatch64(b *testing.B) {
	src, dst, bufs, to := benchSetup(b)
	rbufs, sizes, from := makeBufs(64, 2048)
	b.ReportAllocs()
	for b.Loop() {
		if n, err := src.WriteBatch(bufs, to, 50); n != 64 || err != nil {
			b.Fatalf("WriteBatch = %d, %v", n, err)
		}
		for got := 0; got < 64; {
			n, err := dst.ReadBatch(rbufs, sizes, from, 50)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	reportPerPacket(b, 64)
}

// BenchmarkSendto64 is the baseline for BenchmarkWriteBatch64: the same 64
// datagrams, one sendto(2) each.
func BenchmarkSendto64(b *testing.B) {
	src, dst, bufs, to := benchSetup(b)
	sa := &unix.SockaddrInet4{Addr: to[0].As4()}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for _, buf := range bufs {
			if err := unix.Sendto(src.Fd(), buf[50:], unix.MSG_DONTWAIT, sa); err != nil {
				b.Fatal(err)
			}
		}
		if i%16 == 15 {
			b.StopTimer()
			drain(dst)
			b.StartTimer()
		}
	}
	reportPerPacket(b, 64)
}

// BenchmarkSendtoRecvfrom64 is the baseline for BenchmarkReadWriteBatch64:
// one sendto(2) and one recvfrom(2) per datagram.
func BenchmarkSendtoRecvfrom64(b *testing.B) {
	src, dst, bufs, to := benchSetup(b)
	sa := &unix.SockaddrInet4{Addr: to[0].As4()}
	rbuf := make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		for _, buf := range bufs {
			if err := unix.Sendto(src.Fd(), buf[50:], unix.MSG_DONTWAIT, sa); err != nil {
				b.Fatal(err)
			}
		}
		for got := 0; got < 64; {
			_, _, err := unix.Recvfrom(dst.Fd(), rbuf, unix.MSG_DONTWAIT)
			if err == unix.EAGAIN {
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			got++
		}
	}
	reportPerPacket(b, 64)
}
