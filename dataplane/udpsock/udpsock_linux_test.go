package udpsock

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	loopback  = netip.MustParseAddrPort("127.0.0.1:0")
	loopback6 = netip.MustParseAddrPort("[::1]:0")
)

// families are the two address families a Conn may be of, each with its
// loopback address, for tests that run once per family.
var families = []struct {
	name string
	addr netip.AddrPort
}{{"IPv4", loopback}, {"IPv6", loopback6}}

// listen opens an IPv4 loopback Conn (listenAt).
func listen(tb testing.TB, batch int) *Conn {
	tb.Helper()
	return listenAt(tb, loopback, batch)
}

// listenAt opens a Conn on addr with room for a few large batches, closed
// at the end of the test.
func listenAt(tb testing.TB, addr netip.AddrPort, batch int) *Conn {
	tb.Helper()
	c, err := Listen(Options{Addr: addr, RecvBuf: 4 << 20, SendBuf: 4 << 20, Batch: batch})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// payload fills a datagram of the given size with bytes derived from its
// index, so reordering or corruption shows.
func payload(index, size int) []byte {
	p := make([]byte, size)
	for j := range p {
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
func makeBufs(n, size int) ([][]byte, []int, []netip.AddrPort) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n), make([]netip.AddrPort, n)
}

type datagram struct {
	data      []byte
	from      netip.AddrPort
	truncated bool
}

// readN reads until want datagrams arrived or a second passed, calling
// ReadBatch with chunk buffers at a time, and returns what arrived.
func readN(tb testing.TB, c *Conn, want, chunk, bufSize, offset int) []datagram {
	tb.Helper()
	bufs, sizes, from := makeBufs(chunk, bufSize)
	var got []datagram
	deadline := time.Now().Add(time.Second)
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
				truncated: c.Truncated(i),
			})
		}
	}
	if len(got) != want {
		tb.Fatalf("received %d datagrams, want %d", len(got), want)
	}
	return got
}

// waitReadable polls fd for input for at most d.
func waitReadable(tb testing.TB, fd int, d time.Duration) {
	tb.Helper()
	if d <= 0 {
		return
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, int(d.Milliseconds())+1); err != nil && err != unix.EINTR {
		tb.Fatalf("poll: %v", err)
	}
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

func TestWriteBatch64ArrivesInOrder(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) { testWriteBatch64ArrivesInOrder(t, f.addr) })
	}
}

func testWriteBatch64ArrivesInOrder(t *testing.T, addr netip.AddrPort) {
	const offset = 50 // headroom, as for a VXLAN outer header
	src, dst := listenAt(t, addr, 64), listenAt(t, addr, 64)
	bufs := make([][]byte, 64)
	want := make([][]byte, 64)
	to := make([]netip.AddrPort, 64)
	for i := range bufs {
		want[i] = payload(i, 1+(i*97)%1472) // 1 .. 1472 bytes, all different
		bufs[i] = withHeadroom(want[i], offset)
		to[i] = dst.LocalAddr()
	}
	n, err := src.WriteBatch(bufs, to, offset)
	if n != 64 || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want 64, nil", n, err)
	}
	if s := src.Skipped(); len(s) != 0 {
		t.Fatalf("Skipped = %v, want none", s)
	}
	got := readN(t, dst, 64, 64, 2048, offset)
	for i, d := range got {
		if !bytes.Equal(d.data, want[i]) {
			t.Errorf("datagram %d: %d bytes differ from the %d sent", i, len(d.data), len(want[i]))
		}
		if d.from != src.LocalAddr() {
			t.Errorf("datagram %d from %v, want %v", i, d.from, src.LocalAddr())
		}
		if d.truncated {
			t.Errorf("datagram %d reported truncated", i)
		}
	}
	assertEmpty(t, dst)
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
		{name: "write longer than Batch goes in chunks", batch: 4, send: 70, readChunk: 4, wantReads: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := listen(t, tt.batch), listen(t, tt.batch)
			bufs := make([][]byte, tt.send)
			to := make([]netip.AddrPort, tt.send)
			for i := range bufs {
				bufs[i] = payload(i, 10+i)
				to[i] = dst.LocalAddr()
			}
			n, err := src.WriteBatch(bufs, to, 0)
			if n != tt.send || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, tt.send)
			}
			if tt.wantReads == nil {
				got := readN(t, dst, tt.send, tt.readChunk, 256, 0)
				for i, d := range got {
					if !bytes.Equal(d.data, bufs[i]) {
						t.Fatalf("datagram %d differs", i)
					}
				}
				assertEmpty(t, dst)
				return
			}
			rbufs, sizes, from := makeBufs(tt.readChunk, 256)
			next := 0
			for r, want := range tt.wantReads {
				n, err := dst.ReadBatch(rbufs, sizes, from, 0)
				if n != want || err != nil {
					t.Fatalf("read %d: ReadBatch = %d, %v; want %d, nil", r, n, err, want)
				}
				for i := range n {
					if !bytes.Equal(rbufs[i][:sizes[i]], bufs[next]) {
						t.Fatalf("read %d datagram %d is not datagram %d", r, i, next)
					}
					next++
				}
			}
			assertEmpty(t, dst)
		})
	}
}

func TestReadBatchNilFrom(t *testing.T) {
	src, dst := listen(t, 8), listen(t, 8)
	n, err := src.WriteBatch([][]byte{payload(1, 30)}, []netip.AddrPort{dst.LocalAddr()}, 0)
	if n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	waitReadable(t, dst.Fd(), time.Second)
	bufs, sizes, _ := makeBufs(8, 64)
	n, err = dst.ReadBatch(bufs, sizes, nil, 0)
	if n != 1 || err != nil || sizes[0] != 30 {
		t.Fatalf("ReadBatch = %d, %v, size %d; want 1, nil, 30", n, err, sizes[0])
	}
}

func TestTruncationDetected(t *testing.T) {
	const bufSize, offset = 1000, 100
	src, dst := listen(t, 8), listen(t, 8)
	sizes := []int{100, 2000, 900, 901, 50}
	bufs := make([][]byte, len(sizes))
	to := make([]netip.AddrPort, len(sizes))
	for i, s := range sizes {
		bufs[i] = payload(i, s)
		to[i] = dst.LocalAddr()
	}
	if n, err := src.WriteBatch(bufs, to, 0); n != len(bufs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
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
	}
}

func TestWriteBatchSkipsBadDatagram(t *testing.T) {
	tests := []struct {
		name    string
		local   netip.AddrPort // the sockets' address; zero: loopback
		data    []byte
		to      func(good netip.AddrPort) netip.AddrPort
		wantErr error
	}{
		{
			name:    "oversize datagram",
			data:    make([]byte, 70000),
			to:      func(good netip.AddrPort) netip.AddrPort { return good },
			wantErr: unix.EMSGSIZE,
		},
		{
			name:    "destination port zero",
			data:    []byte("x"),
			to:      func(good netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(good.Addr(), 0) },
			wantErr: unix.EINVAL,
		},
		{
			name:    "IPv6 destination",
			data:    []byte("x"),
			to:      func(netip.AddrPort) netip.AddrPort { return netip.MustParseAddrPort("[::1]:9") },
			wantErr: ErrNotIPv4,
		},
		{
			name:    "zero destination",
			data:    []byte("x"),
			to:      func(netip.AddrPort) netip.AddrPort { return netip.AddrPort{} },
			wantErr: ErrNotIPv4,
		},
		{
			name:    "IPv4 destination from an IPv6 socket",
			local:   loopback6,
			data:    []byte("x"),
			to:      func(netip.AddrPort) netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:9") },
			wantErr: ErrNotIPv6,
		},
		{
			name:    "IPv4-mapped destination from an IPv6 socket",
			local:   loopback6,
			data:    []byte("x"),
			to:      func(netip.AddrPort) netip.AddrPort { return netip.MustParseAddrPort("[::ffff:127.0.0.1]:9") },
			wantErr: ErrNotIPv6,
		},
		{
			name:    "oversize datagram from an IPv6 socket",
			local:   loopback6,
			data:    make([]byte, 70000),
			to:      func(good netip.AddrPort) netip.AddrPort { return good },
			wantErr: unix.EMSGSIZE,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := tt.local
			if !local.IsValid() {
				local = loopback
			}
			src, dst := listenAt(t, local, 64), listenAt(t, local, 64)
			const bad = 2
			bufs := make([][]byte, 5)
			to := make([]netip.AddrPort, 5)
			for i := range bufs {
				bufs[i] = payload(i, 20+i)
				to[i] = dst.LocalAddr()
			}
			bufs[bad], to[bad] = tt.data, tt.to(dst.LocalAddr())
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

// TestICMPErrorDoesNotStopBatch enables IP_RECVERR, so the kernel records the
// ICMP port-unreachable for a datagram to a closed port as a pending socket
// error, which the next send reports and clears without sending its datagram:
// inside one sendmmsg as a short count, or at the start of the next call as
// ECONNREFUSED. Either way every datagram to the open port must arrive and
// none of them may be skipped.
func TestICMPErrorDoesNotStopBatch(t *testing.T) {
	tests := []struct {
		name    string
		batches [][]bool // per WriteBatch, per datagram: true = to the closed port
	}{
		{name: "refused datagram first in the batch", batches: [][]bool{{true, false, false, false}}},
		{name: "refused datagram in an earlier batch", batches: [][]bool{{true}, {false, false, false}}},
		{name: "refused datagrams interleaved", batches: [][]bool{{false, true, false, true, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := listen(t, 64), listen(t, 64)
			if err := unix.SetsockoptInt(src.Fd(), unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
				t.Fatal(err)
			}
			// A port nothing listens on: bind one, then close it.
			tmp, err := Listen(Options{Addr: loopback})
			if err != nil {
				t.Fatal(err)
			}
			refused := tmp.LocalAddr()
			if err := tmp.Close(); err != nil {
				t.Fatal(err)
			}
			var want [][]byte
			for round := range 3 {
				for _, batch := range tt.batches {
					bufs := make([][]byte, len(batch))
					to := make([]netip.AddrPort, len(batch))
					for i, toClosed := range batch {
						bufs[i] = payload(len(want)+i, 10+i)
						to[i] = dst.LocalAddr()
						if toClosed {
							to[i] = refused
						} else {
							want = append(want, bufs[i])
						}
					}
					n, err := src.WriteBatch(bufs, to, 0)
					if n != len(batch) || err != nil {
						t.Fatalf("round %d: WriteBatch = %d, %v; want %d, nil", round, n, err, len(batch))
					}
					for _, s := range src.Skipped() {
						if !batch[s.Index] {
							t.Fatalf("round %d: datagram %d to the open port skipped: %v", round, s.Index, s.Err)
						}
					}
				}
			}
			got := readN(t, dst, len(want), 8, 64, 0)
			for i, d := range got {
				if !bytes.Equal(d.data, want[i]) {
					t.Fatalf("received datagram %d differs from the one sent", i)
				}
			}
		})
	}
}

func TestEmptyReadIsNotAnError(t *testing.T) {
	c := listen(t, 8)
	assertEmpty(t, c)
}

func TestReadBatchShortBuffer(t *testing.T) {
	c := listen(t, 8)
	bufs := [][]byte{make([]byte, 64), make([]byte, 10)}
	if _, err := c.ReadBatch(bufs, make([]int, 2), nil, 10); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("ReadBatch with a buffer no longer than offset: err = %v, want ErrShortBuffer", err)
	}
}

func TestListen(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{name: "ephemeral loopback port", opts: Options{Addr: loopback}},
		{name: "IPv4-mapped address", opts: Options{Addr: netip.MustParseAddrPort("[::ffff:127.0.0.1]:0")}},
		{name: "forced buffers", opts: Options{Addr: loopback, RecvBuf: 8 << 20, SendBuf: 8 << 20}},
		{name: "largest batch", opts: Options{Addr: loopback, Batch: MaxBatch}},
		{name: "IPv6 loopback", opts: Options{Addr: loopback6}},
		{name: "zero address", opts: Options{}, wantErr: true},
		{name: "batch too large", opts: Options{Addr: loopback, Batch: MaxBatch + 1}, wantErr: true},
		{name: "negative batch", opts: Options{Addr: loopback, Batch: -1}, wantErr: true},
		{name: "negative receive buffer", opts: Options{Addr: loopback, RecvBuf: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Listen(tt.opts)
			if tt.wantErr {
				if err == nil {
					c.Close()
					t.Fatal("Listen succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			la, want := c.LocalAddr(), tt.opts.Addr.Addr().Unmap()
			if la.Addr() != want || la.Port() == 0 {
				t.Errorf("LocalAddr = %v, want %v with a chosen port", la, want)
			}
			if want.Is6() {
				// One family per socket: IPv4 peers are refused.
				if v6only, err := unix.GetsockoptInt(c.Fd(), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil || v6only != 1 {
					t.Errorf("IPV6_V6ONLY = %d, %v; want 1", v6only, err)
				}
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
			if tt.opts.RecvBuf > 0 && unix.Geteuid() == 0 {
				got, err := unix.GetsockoptInt(c.Fd(), unix.SOL_SOCKET, unix.SO_RCVBUF)
				if err != nil || got < tt.opts.RecvBuf {
					t.Errorf("SO_RCVBUF = %d, %v; want at least %d as root", got, err, tt.opts.RecvBuf)
				}
			}
		})
	}
}

func TestReusePort(t *testing.T) {
	a, err := Listen(Options{Addr: loopback, ReusePort: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Listen(Options{Addr: a.LocalAddr(), ReusePort: true})
	if err != nil {
		t.Fatalf("second SO_REUSEPORT socket on %v: %v", a.LocalAddr(), err)
	}
	defer b.Close()
	c, err := Listen(Options{Addr: a.LocalAddr()})
	if err == nil {
		c.Close()
		t.Fatalf("a socket without SO_REUSEPORT bound %v too", a.LocalAddr())
	}
	if !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("err = %v, want EADDRINUSE", err)
	}
}

func TestCloseTwice(t *testing.T) {
	c, err := Listen(Options{Addr: loopback})
	if err != nil {
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
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) { testBatchIOAllocatesNothing(t, f.addr) })
	}
}

func testBatchIOAllocatesNothing(t *testing.T, addr netip.AddrPort) {
	src, dst := listenAt(t, addr, 64), listenAt(t, addr, 64)
	const offset = 50
	bufs := make([][]byte, 64)
	to := make([]netip.AddrPort, 64)
	for i := range bufs {
		bufs[i] = withHeadroom(payload(i, 1400), offset)
		to[i] = dst.LocalAddr()
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
	if received == 0 || received != sent {
		t.Errorf("sent %d datagrams, received %d", sent, received)
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

// benchSetup returns a sender, a receiver and a batch of 64 datagrams of
// 1400 bytes (a typical tunnel packet) behind 50 bytes of headroom.
func benchSetup(b *testing.B) (src, dst *Conn, bufs [][]byte, to []netip.AddrPort) {
	src, dst = listen(b, 64), listen(b, 64)
	bufs = make([][]byte, 64)
	to = make([]netip.AddrPort, 64)
	for i := range bufs {
		bufs[i] = withHeadroom(payload(i, 1400), 50)
		to[i] = dst.LocalAddr()
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
		if i%32 == 31 {
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
	sa := &unix.SockaddrInet4{Port: int(to[0].Port()), Addr: to[0].Addr().As4()}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for _, buf := range bufs {
			if err := unix.Sendto(src.Fd(), buf[50:], unix.MSG_DONTWAIT, sa); err != nil {
				b.Fatal(err)
			}
		}
		if i%32 == 31 {
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
	sa := &unix.SockaddrInet4{Port: int(to[0].Port()), Addr: to[0].Addr().As4()}
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

// TestReusePortEphemeralPortsDistinct: sockets asking for an ephemeral port
// with ReusePort get ports of their own (the option is set after the
// bind), never one another such socket holds, so the send sockets that
// several workers share stay distinct ports.
func TestReusePortEphemeralPortsDistinct(t *testing.T) {
	seen := map[uint16]bool{}
	for range 64 {
		c, err := Listen(Options{Addr: loopback, ReusePort: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		p := c.LocalAddr().Port()
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
