package dataplane

// MaxBatch is the largest number of packets in one Batch: the vector size of
// the pipeline, and the most a single recvmmsg/sendmmsg or device read loop
// moves at once.
const MaxBatch = 64

// Batch is a vector of packets moving through the pipeline together. Every
// stage takes a batch; per-batch costs (a clock read, a table lock, a
// syscall) are paid once for up to MaxBatch packets.
//
// Pkts[:Len] are the packets. A Batch is owned by one goroutine at a time; it
// crosses goroutines only through a Ring.
type Batch struct {
	Pkts [MaxBatch]*Packet
	Len  int
}

// Slice returns the packets of the batch. The slice aliases the batch.
func (b *Batch) Slice() []*Packet { return b.Pkts[:b.Len] }

// Push appends p and reports false if the batch is full.
func (b *Batch) Push(p *Packet) bool {
	if b.Len == MaxBatch {
		return false
	}
	b.Pkts[b.Len] = p
	b.Len++
	return true
}

// Full reports whether the batch holds MaxBatch packets.
func (b *Batch) Full() bool { return b.Len == MaxBatch }

// Clear empties the batch without freeing its packets.
func (b *Batch) Clear() {
	clear(b.Pkts[:b.Len])
	b.Len = 0
}

// Free returns every packet of the batch to its pool and empties the batch.
func (b *Batch) Free() {
	for _, p := range b.Pkts[:b.Len] {
		p.pool.Put(p)
	}
	b.Clear()
}
