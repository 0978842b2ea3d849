package tuntap_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// ioURing makes createIn ask for io_uring queues.
var ioURing bool

// TestWithIOURing runs the read and write tests again on queues that use
// io_uring (Options.IOURing): the same frames, errors, sentinels and
// allocations as with a system call per frame.
func TestWithIOURing(t *testing.T) {
	nstest.RequireIOURing(t)
	ioURing = true
	t.Cleanup(func() { ioURing = false })
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"TAPAnswersARP", TestTAPAnswersARP},
		{"TUNAnswersPing", TestTUNAnswersPing},
		{"ReadWithNothingWaiting", TestReadWithNothingWaiting},
		{"WriteErrors", TestWriteErrors},
		{"ShortBuffer", TestShortBuffer},
		{"ReadWriteAllocateNothing", TestReadWriteAllocateNothing},
		{"ReadsABurstInOrder", testReadsABurstInOrder},
	} {
		t.Run(tc.name, tc.f)
	}
}

// TestReadsABurstInOrder writes 40 ARP requests from 40 senders, which the
// kernel answers during the writes, and checks that one Read returns the 40
// replies, in the order of the requests, and a second Read none.
func TestReadsABurstInOrder(t *testing.T) { testReadsABurstInOrder(t) }

func testReadsABurstInOrder(t *testing.T) {
	const burst = 40
	ns := quietNS(t)
	dev := createIn(t, ns, tuntap.Options{Name: nstest.Name(t, "fy"), Kind: tuntap.TAP, Queues: 1})
	upWithAddr(t, handleIn(t, ns), dev.Name(), netip.MustParsePrefix("10.78.0.200/24"))
	p := &arpPingPong{q: dev.Queues()[0], bufs: make([][]byte, 64), sizes: make([]int, 64)}
	for i := range p.bufs {
		p.bufs[i] = make([]byte, 64+2048)
	}
	p.drain(t)
	reqs := make([][]byte, burst)
	for i := range reqs {
		sender := netip.AddrFrom4([4]byte{10, 78, 0, byte(i + 1)})
		reqs[i] = withHeadroom(arpFrame(t, layers.ARPRequest, fakeMAC, layers.EthernetBroadcast,
			sender, netip.MustParseAddr("10.78.0.200"), make(net.HardwareAddr, 6)), 64)
	}
	if n, err := p.q.Write(reqs, 64); n != burst || err != nil {
		t.Fatalf("Write of %d requests = %d, %v", burst, n, err)
	}
	n, err := p.q.Read(p.bufs, p.sizes, 64)
	if err != nil || n != burst {
		t.Fatalf("Read = %d, %v; want the %d replies", n, err, burst)
	}
	for i := range n {
		a := parseARP(p.bufs[i][64 : 64+p.sizes[i]])
		if a == nil || a.Operation != layers.ARPReply {
			t.Fatalf("frame %d is not an ARP reply", i)
		}
		if want := []byte{10, 78, 0, byte(i + 1)}; net.IP(a.DstProtAddress).String() != net.IP(want).String() {
			t.Errorf("reply %d answers %v, want %v: replies out of order", i, net.IP(a.DstProtAddress), net.IP(want))
		}
	}
	if n, err := p.q.Read(p.bufs, p.sizes, 64); n != 0 || err != nil {
		t.Errorf("Read after the burst = %d, %v; want 0, nil", n, err)
	}
}

// BenchmarkTAPBurst writes a burst of 32 ARP requests into a TAP, which the
// kernel answers during the writes, and reads the 32 replies: with a
// system call per frame, and with the queue on io_uring.
func BenchmarkTAPBurst(b *testing.B) {
	const burst = 32
	for _, ring := range []bool{false, true} {
		name := "syscalls"
		if ring {
			name = "io_uring"
		}
		b.Run(name, func(b *testing.B) {
			if ring {
				nstest.RequireIOURing(b)
			}
			ioURing = ring
			p := newARPPingPong(b)
			ioURing = false
			reqs := make([][]byte, burst)
			for i := range reqs {
				reqs[i] = p.req[0]
			}
			bufs := make([][]byte, 64)
			for i := range bufs {
				bufs[i] = make([]byte, 64+2048)
			}
			sizes := make([]int, 64)
			b.ReportAllocs()
			frames := 0
			for b.Loop() {
				if n, err := p.q.Write(reqs, 64); n != burst || err != nil {
					b.Fatalf("Write = %d, %v", n, err)
				}
				n, err := p.q.Read(bufs, sizes, 64)
				if err != nil {
					b.Fatal(err)
				}
				frames += n
			}
			if frames != burst*b.N {
				b.Fatalf("read %d frames for %d requests", frames, burst*b.N)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/frame")
		})
	}
}
