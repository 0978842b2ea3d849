package dataplane

import (
	"sync"
	"testing"
)

func TestRingRejectsBadSize(t *testing.T) {
	for _, size := range []int{0, 1, 3, 6, 100} {
		if _, err := NewRing(size); err == nil {
			t.Errorf("NewRing(%d) = nil error, want an error", size)
		}
	}
}

func TestRingBurstOrderAndBounds(t *testing.T) {
	r, err := NewRing(8)
	if err != nil {
		t.Fatal(err)
	}
	bs := make([]*Batch, 11)
	for i := range bs {
		bs[i] = &Batch{Len: i}
	}
	if n := r.Enqueue(bs); n != 8 {
		t.Fatalf("Enqueue 11 into empty ring of 8 took %d, want 8", n)
	}
	if n := r.Enqueue(bs[8:]); n != 0 {
		t.Fatalf("Enqueue into full ring took %d, want 0", n)
	}
	if r.Len() != 8 {
		t.Fatalf("Len = %d, want 8", r.Len())
	}
	out := make([]*Batch, 3)
	if n := r.Dequeue(out); n != 3 {
		t.Fatalf("Dequeue 3 = %d", n)
	}
	for i, b := range out {
		if b.Len != i {
			t.Fatalf("dequeued batch %d has Len %d: order lost", i, b.Len)
		}
	}
	// Wrap around: 3 free slots now.
	if n := r.Enqueue(bs[8:]); n != 3 {
		t.Fatalf("Enqueue after dequeue took %d, want 3", n)
	}
	all := make([]*Batch, 16)
	n := r.Dequeue(all)
	if n != 8 {
		t.Fatalf("Dequeue all = %d, want 8", n)
	}
	for i, b := range all[:n] {
		if b.Len != i+3 {
			t.Fatalf("after wrap, batch %d has Len %d, want %d", i, b.Len, i+3)
		}
	}
	if n := r.Dequeue(all); n != 0 {
		t.Fatalf("Dequeue from empty ring = %d", n)
	}
}

// TestRingConcurrentTransfer moves a million batch pointers between two
// goroutines in random-sized bursts and checks that every one arrives once,
// in order. Run with -race to check the memory ordering.
func TestRingConcurrentTransfer(t *testing.T) {
	const total = 200_000
	r, _ := NewRing(64)
	src := make([]Batch, 256)
	for i := range src {
		src[i].Len = i
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]*Batch, 7)
		sent := 0
		for sent < total {
			k := min(len(buf), total-sent, 1+sent%7)
			for i := range k {
				buf[i] = &src[(sent+i)%len(src)]
			}
			sent += r.Enqueue(buf[:k])
		}
	}()
	got := 0
	buf := make([]*Batch, 5)
	for got < total {
		n := r.Dequeue(buf)
		for _, b := range buf[:n] {
			if b.Len != got%len(src) {
				t.Fatalf("batch %d: got Len %d, want %d", got, b.Len, got%len(src))
			}
			got++
		}
	}
	wg.Wait()
	if r.Len() != 0 {
		t.Fatalf("ring not empty after transfer: %d", r.Len())
	}
}

func TestRingAllocatesNothing(t *testing.T) {
	r, _ := NewRing(16)
	in := []*Batch{{}, {}, {}, {}}
	out := make([]*Batch, 4)
	if a := testing.AllocsPerRun(1000, func() {
		r.Enqueue(in)
		r.Dequeue(out)
	}); a != 0 {
		t.Fatalf("Enqueue+Dequeue allocate %v times per run, want 0", a)
	}
}

func BenchmarkRingBurst(b *testing.B) {
	r, _ := NewRing(256)
	in := make([]*Batch, 32)
	for i := range in {
		in[i] = &Batch{}
	}
	out := make([]*Batch, 32)
	b.ReportAllocs()
	for b.Loop() {
		r.Enqueue(in)
		r.Dequeue(out)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/32, "ns/batch")
}

// BenchmarkRingPingPong measures a producer and a consumer on two cores
// passing bursts of 8 batches.
func BenchmarkRingPingPong(b *testing.B) {
	r, _ := NewRing(256)
	in := make([]*Batch, 8)
	for i := range in {
		in[i] = &Batch{}
	}
	b.ReportAllocs()
	done := make(chan struct{})
	total := b.N * len(in)
	go func() {
		out := make([]*Batch, 8)
		for got := 0; got < total; {
			got += r.Dequeue(out)
		}
		close(done)
	}()
	for sent := 0; sent < total; {
		sent += r.Enqueue(in[:min(len(in), total-sent)])
	}
	<-done
}

func TestPoolBounded(t *testing.T) {
	p := NewPool(4, 2048)
	var got []*Packet
	for range 4 {
		pk := p.Get()
		if pk == nil {
			t.Fatal("pool of 4 ran dry early")
		}
		if pk.Headroom() != Headroom || pk.Len() != 0 {
			t.Fatalf("fresh packet: headroom %d len %d", pk.Headroom(), pk.Len())
		}
		got = append(got, pk)
	}
	if p.Get() != nil {
		t.Fatal("empty pool returned a packet")
	}
	got[0].SetBytes([]byte{1, 2, 3})
	got[0].Trace = true
	for _, pk := range got {
		p.Put(pk)
	}
	if p.Free() != 4 {
		t.Fatalf("Free = %d after returning all", p.Free())
	}
	for range 4 {
		pk := p.Get()
		if pk.Len() != 0 || pk.Trace {
			t.Fatal("recycled packet kept state")
		}
	}
}

func TestPacketHeadroom(t *testing.T) {
	p := NewPool(1, 256).Get()
	p.SetBytes([]byte("inner"))
	h := p.Prepend(8)
	if h == nil || len(h) != 8 {
		t.Fatal("Prepend(8) failed with full headroom")
	}
	copy(h, "OUTERHDR")
	if string(p.Bytes()) != "OUTERHDRinner" {
		t.Fatalf("Bytes = %q", p.Bytes())
	}
	if p.Prepend(Headroom) != nil {
		t.Fatal("Prepend beyond headroom succeeded")
	}
	if !p.Advance(8) || string(p.Bytes()) != "inner" {
		t.Fatalf("Advance: %q", p.Bytes())
	}
	if p.Advance(100) {
		t.Fatal("Advance past the end succeeded")
	}
	if p.SetBytes(make([]byte, 257)) {
		t.Fatal("SetBytes larger than the buffer succeeded")
	}
}
