package udpsock

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// TestSegmentedSendArrivesAsDatagrams sends one UDP_SEGMENT message of 10
// full segments and a short one, and receives it with UDP_GRO: whether the
// kernel hands it over as one GRO buffer (loopback keeps the train whole)
// or as single datagrams, splitting by GROSize must give back exactly the
// datagrams sent.
func TestSegmentedSendArrivesAsDatagrams(t *testing.T) {
	const seg, full, last = 1000, 10, 500
	src, dst := listen(t, 8), listen(t, 8)
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
	bufs, sizes, from := makeBufs(8, 65536)
	var got [][]byte
	buffers := 0
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		waitReadable(t, dst.Fd(), 100*time.Millisecond)
		k, err := dst.ReadBatch(bufs, sizes, from, 0)
		if err != nil {
			t.Fatal(err)
		}
		buffers += k
		for i := range k {
			b := bufs[i][:sizes[i]]
			g := dst.GROSize(i)
			if g == 0 {
				g = len(b)
			}
			if g != seg && len(b) > g {
				t.Fatalf("GRO buffer of %d bytes with segment size %d, want %d", len(b), g, seg)
			}
			for off := 0; off < len(b); off += g {
				got = append(got, bytes.Clone(b[off:min(off+g, len(b))]))
			}
		}
	}
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
