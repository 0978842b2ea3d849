package udpsock

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/internal/nstest"
)

// TestSegmentedSendArrivesAsDatagrams sends one UDP_SEGMENT message of 10
// full segments and a short one, and receives it with UDP_GRO: whether the
// kernel hands it over as one GRO buffer (loopback keeps the train whole)
// or as single datagrams, splitting by GROSize must give back exactly the
// datagrams sent.
func TestSegmentedSendArrivesAsDatagrams(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) { testSegmentedSendArrivesAsDatagrams(t, f.addr) })
	}
}

func testSegmentedSendArrivesAsDatagrams(t *testing.T, addr netip.AddrPort) {
	const seg, full, last = 1000, 10, 500
	src, dst := listenAt(t, addr, 8), listenAt(t, addr, 8)
	if err := src.EnableGSO(); err != nil {
		t.Skipf("no UDP_SEGMENT here: %v", err)
	}
	if err := dst.EnableGRO(); err != nil {
		t.Fatal(err)
	}
	var train []byte
	var want [][]byte
	for i := range full + 1 {
		d := payload(i, seg)
		if i == full {
			d = d[:last]
		}
		want = append(want, d)
		train = append(train, d...)
	}
	n, err := src.WriteSegmented([][]byte{train}, []int{seg}, []netip.AddrPort{dst.LocalAddr()})
	if n != 1 || err != nil || len(src.Skipped()) != 0 {
		t.Fatalf("WriteSegmented = %d, %v, skipped %v", n, err, src.Skipped())
	}
	got, buffers := receiveAll(t, dst, len(want))
	if len(got) != len(want) {
		t.Fatalf("received %d datagrams, want %d", len(got), len(want))
	}
	t.Logf("%d datagrams arrived in %d buffers", len(got), buffers)
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("datagram %d: %d bytes differ from the %d sent", i, len(got[i]), len(want[i]))
		}
	}
}

func TestSegmentedSendAllocatesNothing(t *testing.T) {
	src, dst := listen(t, 8), listen(t, 8)
	if err := src.EnableGSO(); err != nil {
		t.Skipf("no UDP_SEGMENT here: %v", err)
	}
	if err := dst.EnableGRO(); err != nil {
		t.Fatal(err)
	}
	train := make([]byte, 20*1400)
	bufs, segs, to := [][]byte{train}, []int{1400}, []netip.AddrPort{dst.LocalAddr()}
	rb, sizes, from := makeBufs(8, 65536)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := src.WriteSegmented(bufs, segs, to); err != nil {
			t.Fatal(err)
		}
		for {
			k, err := dst.ReadBatch(rb, sizes, from, 0)
			if err != nil {
				t.Fatal(err)
			}
			if k == 0 {
				break
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("segmented send and GRO receive allocate %v times per run, want 0", allocs)
	}
}

// receiveAll reads from c until want datagrams arrived (splitting UDP_GRO
// buffers by GROSize) or two seconds passed, and returns them with the
// number of buffers they came in.
func receiveAll(t *testing.T, c *Conn, want int) (got [][]byte, buffers int) {
	t.Helper()
	bufs, sizes, from := makeBufs(8, 65536)
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		waitReadable(t, c.Fd(), 100*time.Millisecond)
		k, err := c.ReadBatch(bufs, sizes, from, 0)
		if err != nil {
			t.Fatal(err)
		}
		buffers += k
		for i := range k {
			b := bufs[i][:sizes[i]]
			g := c.GROSize(i)
			if g == 0 {
				g = len(b)
			}
			for off := 0; off < len(b); off += g {
				got = append(got, bytes.Clone(b[off:min(off+g, len(b))]))
			}
		}
	}
	return got, buffers
}

// TestGroupedSendKeepsEveryDatagram sends a batch that mixes runs (five
// 100-byte datagrams and a 40-byte one to a, three 300-byte ones to b, a
// single 100-byte one to a, and a run longer than MaxGSOSegments to b)
// with WriteGrouped, and checks that each destination receives exactly
// its datagrams, in order, and that the runs arrived grouped.
func TestGroupedSendKeepsEveryDatagram(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) { testGroupedSendKeepsEveryDatagram(t, f.addr) })
	}
}

func testGroupedSendKeepsEveryDatagram(t *testing.T, addr netip.AddrPort) {
	src, a, b := listenAt(t, addr, 64), listenAt(t, addr, 64), listenAt(t, addr, 64)
	if err := src.EnableGSO(); err != nil {
		t.Skipf("no UDP_SEGMENT here: %v", err)
	}
	for _, c := range []*Conn{a, b} {
		if err := c.EnableGRO(); err != nil {
			t.Fatal(err)
		}
	}
	var bufs [][]byte
	var to []netip.AddrPort
	want := map[netip.AddrPort][][]byte{}
	add := func(dst *Conn, size int) {
		d := payload(len(bufs), size)
		bufs = append(bufs, d)
		to = append(to, dst.LocalAddr())
		want[dst.LocalAddr()] = append(want[dst.LocalAddr()], d)
	}
	for range 5 {
		add(a, 100)
	}
	add(a, 40)
	for range 3 {
		add(b, 300)
	}
	add(a, 100)
	for range MaxGSOSegments + 3 {
		add(b, 64)
	}
	n, err := 0, error(nil)
	for n < len(bufs) && err == nil { // more datagrams than one call's Batch
		var k int
		k, err = src.WriteGrouped(bufs[n:], to[n:], 0)
		n += k
	}
	if n != len(bufs) || err != nil || len(src.Skipped()) != 0 {
		t.Fatalf("WriteGrouped sent %d of %d, err %v, skipped %v", n, len(bufs), err, src.Skipped())
	}
	for _, c := range []*Conn{a, b} {
		w := want[c.LocalAddr()]
		got, buffers := receiveAll(t, c, len(w))
		if len(got) != len(w) {
			t.Fatalf("%v received %d datagrams, want %d", c.LocalAddr(), len(got), len(w))
		}
		for i := range w {
			if !bytes.Equal(got[i], w[i]) {
				t.Fatalf("%v datagram %d: %d bytes differ from the %d sent", c.LocalAddr(), i, len(got[i]), len(w[i]))
			}
		}
		t.Logf("%v: %d datagrams in %d buffers", c.LocalAddr(), len(got), buffers)
		if buffers >= len(got) {
			t.Errorf("%v: %d datagrams arrived in %d buffers: the runs were not grouped", c.LocalAddr(), len(got), buffers)
		}
	}
}

func TestGroupedSendAllocatesNothing(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) { testGroupedSendAllocatesNothing(t, f.addr) })
	}
}

func testGroupedSendAllocatesNothing(t *testing.T, addr netip.AddrPort) {
	src, dst := listenAt(t, addr, 64), listenAt(t, addr, 64)
	if err := src.EnableGSO(); err != nil {
		t.Skipf("no UDP_SEGMENT here: %v", err)
	}
	bufs := make([][]byte, 64)
	to := make([]netip.AddrPort, 64)
	for i := range bufs {
		bufs[i] = payload(i, 120)
		to[i] = dst.LocalAddr()
	}
	rb, sizes, from := makeBufs(64, 2048)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := src.WriteGrouped(bufs, to, 0); err != nil {
			t.Fatal(err)
		}
		for {
			k, err := dst.ReadBatch(rb, sizes, from, 0)
			if err != nil {
				t.Fatal(err)
			}
			if k == 0 {
				break
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("grouped send allocates %v times per run, want 0", allocs)
	}
}

// TestGroupedSendSplitsWhatTheKernelWillNotCut sends a run of datagrams
// larger than the loopback MTU of a fresh namespace (1280): the kernel
// refuses the grouped message (a segment over the path MTU), so
// WriteGrouped sends the datagrams one by one, which the kernel fragments,
// and every one still arrives whole.
func TestGroupedSendSplitsWhatTheKernelWillNotCut(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "fgso")
	ns.SetMTU(t, "lo", 1280)
	err := ns.Do(func() error {
		src, dst := listen(t, 8), listen(t, 8)
		if err := src.EnableGSO(); err != nil {
			t.Skipf("no UDP_SEGMENT here: %v", err)
		}
		bufs := [][]byte{payload(0, 1400), payload(1, 1400), payload(2, 1400)}
		to := []netip.AddrPort{dst.LocalAddr(), dst.LocalAddr(), dst.LocalAddr()}
		n, err := src.WriteGrouped(bufs, to, 0)
		if n != len(bufs) || err != nil || len(src.Skipped()) != 0 {
			t.Fatalf("WriteGrouped sent %d of %d, err %v, skipped %v", n, len(bufs), err, src.Skipped())
		}
		got, _ := receiveAll(t, dst, len(bufs))
		if len(got) != len(bufs) {
			t.Fatalf("received %d datagrams, want %d", len(got), len(bufs))
		}
		for i := range bufs {
			if !bytes.Equal(got[i], bufs[i]) {
				t.Fatalf("datagram %d differs", i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
