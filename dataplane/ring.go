package dataplane

import (
	"fmt"
	"sync/atomic"
)

// cacheLine is the padding unit that keeps the producer's and the consumer's
// hot fields on separate cache lines, so the two cores do not bounce one line
// between them on every operation.
const cacheLine = 64

// Ring is a lock-free single-producer single-consumer queue of batches, in
// the style of DPDK's rte_ring: a power-of-two array, a head written only by
// the producer, a tail written only by the consumer, and a private copy of
// the other side's index on each side (refreshed only when the cached value
// says the ring looks full or empty), so most bursts touch no shared cache
// line but their own.
//
// Exactly one goroutine may call Enqueue and exactly one (possibly another)
// may call Dequeue. Rings carry batches, never single packets: one
// synchronisation per up to MaxBatch packets.
type Ring struct {
	_    [cacheLine]byte
	head atomic.Uint64 // next slot to write; written by the producer
	_    [cacheLine - 8]byte
	tail atomic.Uint64 // next slot to read; written by the consumer
	_    [cacheLine - 8]byte

	// Producer-private.
	prodHead   uint64
	cachedTail uint64
	_          [cacheLine - 16]byte

	// Consumer-private.
	consTail   uint64
	cachedHead uint64
	_          [cacheLine - 16]byte

	mask  uint64
	slots []*Batch
}

// NewRing returns a ring with room for size batches; size must be a power
// of two and at least 2.
func NewRing(size int) (*Ring, error) {
	if size < 2 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring size %d: must be a power of two >= 2", size)
	}
	return &Ring{mask: uint64(size - 1), slots: make([]*Batch, size)}, nil
}

// Cap returns the number of batches the ring can hold.
func (r *Ring) Cap() int { return len(r.slots) }

// Enqueue appends as many of bs as fit, in order, and returns how many it
// took. Producer side only.
func (r *Ring) Enqueue(bs []*Batch) int {
	size := uint64(len(r.slots))
	free := size - (r.prodHead - r.cachedTail)
	if free < uint64(len(bs)) {
		r.cachedTail = r.tail.Load()
		free = size - (r.prodHead - r.cachedTail)
	}
	n := min(uint64(len(bs)), free)
	for i := range n {
		r.slots[(r.prodHead+i)&r.mask] = bs[i]
	}
	r.prodHead += n
	r.head.Store(r.prodHead) // release: the slots are visible before the index
	return int(n)
}

// Dequeue removes up to len(bs) batches into bs, in order, and returns how
// many it took. Consumer side only.
func (r *Ring) Dequeue(bs []*Batch) int {
	avail := r.cachedHead - r.consTail
	if avail < uint64(len(bs)) {
		r.cachedHead = r.head.Load() // acquire: pairs with the producer's Store
		avail = r.cachedHead - r.consTail
	}
	n := min(uint64(len(bs)), avail)
	for i := range n {
		j := (r.consTail + i) & r.mask
		bs[i] = r.slots[j]
		r.slots[j] = nil
	}
	r.consTail += n
	r.tail.Store(r.consTail)
	return int(n)
}

// Len returns a snapshot of the number of batches queued. Either side, or a
// third goroutine reading statistics, may call it.
func (r *Ring) Len() int { return int(r.head.Load() - r.tail.Load()) }
