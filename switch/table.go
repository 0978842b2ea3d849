package bridge

// How the table works.
//
// Storage. The table is one open-addressing hash table (linear probing) whose
// slots hold the entries themselves. It is allocated once, in New, with at
// least twice as many slots as Options.Max entries, so the load factor stays at
// or below one half, probe sequences stay short, and learning never allocates
// or grows anything. A slot is empty when its key is 0; key 0 is the MAC
// 00:00:00:00:00:00, which is never stored. Deleting uses backward-shift
// deletion, so there are no tombstones and a table that churns forever keeps
// its probe lengths. Keys are MACs packed into a uint64 (a packed integer key
// hashes and compares in one instruction, unlike a [6]byte or struct), hashed
// with a per-table random seed so that chosen MACs cannot build long probe
// chains.
//
// Locking. One sync.RWMutex guards the slot layout: which key is in which
// slot, and each entry's static flag. A slot's lastSeen and location are
// atomics, so they may change under the read lock.
//
//   - LearnLookup takes the read lock once per call (per 256 frames). Under it
//     each source is refreshed (atomic store of lastSeen, only when the
//     stored one is older than the refresh grain, below) or moved (atomic
//     stores of location and lastSeen); then each destination is looked up.
//     Sources not in the table are remembered in a bitmap on the stack. Only
//     if there are any does it take the write lock, once, insert them
//     (evicting if the table is full), and look up again the destinations
//     that missed, so that MACs learned anywhere in the batch are found. In
//     the steady state (every MAC known) the write lock is never taken and
//     nothing is allocated.
//   - Counters are summed on the stack and added to the shared atomics once
//     per call, and only when non-zero.
//   - Expire scans 1024 slots at a time under the read lock and takes the
//     write lock only for a chunk that has something to remove, so a sweep
//     with nothing to reclaim never blocks the workers, and one that does
//     blocks them for one chunk at a time.
//   - Control-plane calls (Lookup, Snapshot, AddStatic, Delete, Flush,
//     FlushLocation) take the lock for their whole operation.
//
// Races that are allowed, and why they are harmless: two workers that see the
// same MAC on different locations in the same instant both store, and the
// last store wins (a MAC that flaps between locations flaps in the table,
// counted as moves). A worker may store an older lastSeen just after another
// stored a newer one, making the entry look older by at most the skew between
// the workers' clocks. A lookup racing with a move may return the previous
// location. None of these break the slot layout, which only the write lock
// changes.
//
// Refresh grain. A refresh stores lastSeen only if the stored value is at
// least Ageing/1024 old: atomic stores are full barriers that cost more than
// the rest of a lookup, and they make other cores re-read the line. So a
// dynamic entry ages out between Ageing*(1-1/1024) and Ageing after the last
// frame from its MAC, and exactly Ageing after it was learned or moved.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero Options.
const (
	// DefaultAgeing is how long a learned entry lives without being
	// refreshed, the IEEE 802.1D default and the Linux bridge's.
	DefaultAgeing = 300 * time.Second
	// DefaultMax is the default number of entries of one network's table.
	DefaultMax = 8192
	// MaxMax is the largest Options.Max accepted: 1<<20 entries take 48 MiB.
	MaxMax = 1 << 20
)

const (
	// chunk is the most frames LearnLookup handles under one lock
	// acquisition; it sizes the stack bitmap of frames still to learn.
	chunk = 256
	// sweepChunk is how many slots Expire handles under one lock
	// acquisition.
	sweepChunk = 1024
	// evictSample is how many dynamic entries a full table examines to
	// choose the one to evict.
	evictSample = 8
	// refreshShift sets the refresh grain to ageing>>refreshShift (about
	// 0.3 s for 300 s): a refresh within the grain of the stored lastSeen is
	// not stored, since every store is an atomic exchange (a full barrier)
	// on a cache line that other cores read.
	refreshShift = 10
	// keyMulticast is the I/G bit of the first octet in a packed key.
	keyMulticast = 1 << 40
)

// Errors returned by the control-plane calls, wrapped with context.
var (
	// ErrInvalidMAC: zero, broadcast and multicast MACs cannot be entries.
	ErrInvalidMAC = errors.New("not a unicast MAC address")
	// ErrInvalidLocation: an entry needs a port or a peer location.
	ErrInvalidLocation = errors.New("not a port or peer location")
	// ErrFull: the table is full and every entry is static.
	ErrFull = errors.New("table full of static entries")
)

// Options configures a Table. The zero value gives the defaults.
type Options struct {
	// Ageing is how long a dynamic entry stays visible after it was last
	// learned or refreshed. 0 means DefaultAgeing. It must not be negative.
	Ageing time.Duration
	// Max is the most entries, static and dynamic, the table holds; all of
	// their storage is allocated by New. 0 means DefaultMax. It must be in
	// [0, MaxMax].
	Max int
}

// Stats are the table's counters since New. Each is read atomically, the set
// is not one consistent snapshot.
type Stats struct {
	// Learned counts dynamic entries created by learning: a new MAC, or a
	// MAC whose previous entry had aged out.
	Learned uint64
	// Moved counts live dynamic entries that learning moved to another
	// location.
	Moved uint64
	// Evictions counts sources that met a full table: each evicted the
	// least recently seen live dynamic entry, or, if every entry was
	// static, was not learned. AddStatic on a full table is counted too.
	Evictions uint64
	// Expired counts dynamic entries that aged out and were reclaimed, by
	// Expire or by reuse when learning.
	Expired uint64
	// InvalidSource counts frames whose source MAC was zero, broadcast or
	// multicast, which are never learned.
	InvalidSource uint64
	// StaticConflicts counts frames whose source has a static entry at
	// another location; the static entry is kept.
	StaticConflicts uint64
}

// entry is one slot of the table. key, static are changed only under the
// write lock; seen and loc may be changed under the read lock.
type entry struct {
	key    uint64        // packed MAC; 0 marks an empty slot
	seen   atomic.Int64  // now when last learned or refreshed
	loc    atomic.Uint32 // a Location
	static bool
}

// Table is the forwarding database of one L2 network. Create it with New.
//
// All methods are safe for concurrent use. LearnLookup is the dataplane's
// call, made by every worker at once; see its comment for its cost. The other
// methods are for the control plane and may hold the lock for a pass over the
// table.
type Table struct {
	// Read by every lookup, written only by New.
	slots  []entry // len is a power of two, >= 2*max
	mask   uint64
	seed0  uint64
	seed1  uint64
	ageing int64 // nanoseconds
	grain  int64 // ageing/1024: refreshes closer together are not stored
	max    int

	// mu is written by every RLock of every worker; the padding keeps it
	// off the cache lines of the read-only fields above and the counters
	// below.
	_  [64]byte
	mu sync.RWMutex
	_  [64]byte

	n       atomic.Int64 // occupied slots; changed under the write lock
	statics int          // static entries; guarded by mu (write)
	cursor  uint64       // eviction scan position; guarded by mu (write)

	learned, moved, evictions, expired, invalidSource, staticConflicts atomic.Uint64
}

// New returns an empty table, with the storage for opts.Max entries
// allocated.
func New(opts Options) (*Table, error) {
	if opts.Ageing < 0 {
		return nil, fmt.Errorf("bridge: ageing %v: must not be negative", opts.Ageing)
	}
	if opts.Max < 0 || opts.Max > MaxMax {
		return nil, fmt.Errorf("bridge: max %d entries: must be in [0, %d]", opts.Max, MaxMax)
	}
	if opts.Ageing == 0 {
		opts.Ageing = DefaultAgeing
	}
	if opts.Max == 0 {
		opts.Max = DefaultMax
	}
	size := 1 << bits.Len(uint(2*opts.Max-1)) // smallest power of two >= 2*Max
	return &Table{
		slots:  make([]entry, size),
		mask:   uint64(size - 1),
		seed0:  rand.Uint64(),
		seed1:  rand.Uint64() | 1,
		ageing: int64(opts.Ageing),
		grain:  int64(opts.Ageing) >> refreshShift,
		max:    opts.Max,
	}, nil
}

// Ageing returns the table's ageing time.
func (t *Table) Ageing() time.Duration { return time.Duration(t.ageing) }

// Max returns the most entries the table holds.
func (t *Table) Max() int { return t.max }

// Len returns the number of entries stored, static and dynamic, including
// dynamic entries that have aged out but were not yet reclaimed. It is never
// more than Max.
func (t *Table) Len() int { return int(t.n.Load()) }

// Stats returns the counters.
func (t *Table) Stats() Stats {
	return Stats{
		Learned:         t.learned.Load(),
		Moved:           t.moved.Load(),
		Evictions:       t.evictions.Load(),
		Expired:         t.expired.Load(),
		InvalidSource:   t.invalidSource.Load(),
		StaticConflicts: t.staticConflicts.Load(),
	}
}

// add adds the non-zero counts of s to the table's counters.
func (t *Table) add(s *Stats) {
	for _, c := range [...]struct {
		n *uint64
		a *atomic.Uint64
	}{
		{&s.Learned, &t.learned},
		{&s.Moved, &t.moved},
		{&s.Evictions, &t.evictions},
		{&s.Expired, &t.expired},
		{&s.InvalidSource, &t.invalidSource},
		{&s.StaticConflicts, &t.staticConflicts},
	} {
		if *c.n != 0 {
			c.a.Add(*c.n)
		}
	}
}

// pack turns a MAC into a key whose order is the MAC's byte order. It
// takes a pointer: reading a copy of a [6]byte just stored on the stack
// stalls on store forwarding, which cost the hot path 3x.
func pack(m *[6]byte) uint64 {
	return uint64(binary.BigEndian.Uint16(m[0:2]))<<32 | uint64(binary.BigEndian.Uint32(m[2:6]))
}

// unpack is the inverse of pack.
func unpack(k uint64) [6]byte {
	var m [6]byte
	binary.BigEndian.PutUint16(m[0:2], uint16(k>>32))
	binary.BigEndian.PutUint32(m[2:6], uint32(k))
	return m
}

// unicast reports whether key may be stored: not zero, not group.
func unicast(key uint64) bool { return key != 0 && key&keyMulticast == 0 }

// home returns key's preferred slot: a seeded multiply-fold hash.
func (t *Table) home(key uint64) uint64 {
	hi, lo := bits.Mul64(key^t.seed0, t.seed1)
	return (hi ^ lo) & t.mask
}

// find returns the slot holding key, or -1. key must not be 0. The caller
// holds the lock.
func (t *Table) find(key uint64) int {
	for i := t.home(key); ; i = (i + 1) & t.mask {
		switch t.slots[i].key {
		case 0:
			return -1
		case key:
			return int(i)
		}
	}
}

// lookup returns where the live entry for key is, or NoLocation. The caller
// holds the lock.
func (t *Table) lookup(now int64, key uint64) Location {
	if !unicast(key) {
		return NoLocation
	}
	i := t.find(key)
	if i < 0 {
		return NoLocation
	}
	e := &t.slots[i]
	if !e.static && now-e.seen.Load() >= t.ageing {
		return NoLocation
	}
	return Location(e.loc.Load())
}

// learn applies a frame from loc to the existing entry e for its source.
// The caller holds the lock, read or write.
func (t *Table) learn(now int64, e *entry, loc Location, s *Stats) {
	last := e.seen.Load()
	if e.static {
		if Location(e.loc.Load()) != loc {
			s.StaticConflicts++
			return
		}
		if now-last >= t.grain {
			e.seen.Store(now)
		}
		return
	}
	if now-last >= t.ageing && e.seen.CompareAndSwap(last, now) {
		// The entry had aged out: this is a new learning, not a move. Of
		// workers racing here, only the CAS winner counts it.
		e.loc.Store(uint32(loc))
		s.Expired++
		s.Learned++
		return
	}
	if Location(e.loc.Load()) != loc {
		e.loc.Store(uint32(loc))
		e.seen.Store(now)
		s.Moved++
	} else if now-last >= t.grain {
		e.seen.Store(now)
	}
}

// LearnLookup is the bridge stage of a batch. For each frame i it learns
// src[i] at from[i], then sets out[i] to the location of dst[i], or to
// NoLocation when the frame must be flooded (unknown, broadcast or multicast
// destination). dst, from and out must be at least as long as src; only
// their first len(src) elements are read or written, and none is kept after
// the call returns.
//
// All sources of the batch are learned, in frame order, before any
// destination is looked up, so a destination learned or moved by any frame
// of the batch is found at its new location (unless another goroutine
// changes it meanwhile); a batch longer than 256 frames is handled as
// consecutive batches of 256. Sources that are zero, broadcast or multicast are
// not learned (counted as InvalidSource); frames from NoLocation are not
// learned and not counted. A source with a static entry elsewhere is counted
// as a StaticConflict and not moved.
//
// now is the caller's monotonic clock in nanoseconds, read once per batch.
//
// Cost: one read lock and no allocation per 256 frames; the write lock is
// taken once per 256 frames only when some source is new to the table. It is
// safe to call from many goroutines at once on the same Table.
func (t *Table) LearnLookup(now int64, src, dst [][6]byte, from, out []Location) {
	for len(src) > 0 {
		n := min(len(src), chunk)
		t.learnLookup(now, src[:n], dst[:n], from[:n], out[:n])
		src, dst, from, out = src[n:], dst[n:], from[n:], out[n:]
	}
}

// learnLookup is LearnLookup for at most chunk frames.
func (t *Table) learnLookup(now int64, src, dst [][6]byte, from, out []Location) {
	dst, from, out = dst[:len(src)], from[:len(src)], out[:len(src)]
	var (
		s       Stats
		pending [chunk / 64]uint64 // bit i: src[i] is not in the table
		missing bool
	)
	t.mu.RLock()
	for i := range src {
		if key := pack(&src[i]); !unicast(key) {
			s.InvalidSource++
		} else if from[i] != NoLocation {
			if j := t.find(key); j >= 0 {
				t.learn(now, &t.slots[j], from[i], &s)
			} else {
				pending[i/64] |= 1 << (i % 64)
				missing = true
			}
		}
	}
	for i := range dst {
		out[i] = t.lookup(now, pack(&dst[i]))
	}
	t.mu.RUnlock()

	if missing {
		t.mu.Lock()
		for w, word := range pending {
			for word != 0 {
				i := w*64 + bits.TrailingZeros64(word)
				word &= word - 1
				key := pack(&src[i])
				if j := t.find(key); j >= 0 {
					// Learned meanwhile, by another worker or by an
					// earlier frame of this batch.
					t.learn(now, &t.slots[j], from[i], &s)
					continue
				}
				if t.insert(now, key, from[i], false, &s) {
					s.Learned++
				}
			}
		}
		for i := range out {
			if out[i] == NoLocation {
				out[i] = t.lookup(now, pack(&dst[i]))
			}
		}
		t.mu.Unlock()
	}
	t.add(&s)
}

// insert stores a new entry for key, which is not in the table, evicting if
// the table is full. It reports false if the table is full of static
// entries. The caller holds the write lock.
func (t *Table) insert(now int64, key uint64, loc Location, static bool, s *Stats) bool {
	if int(t.n.Load()) >= t.max {
		s.Evictions++
		if t.statics >= t.max {
			return false
		}
		t.evict(now, s)
	}
	i := t.home(key)
	for t.slots[i].key != 0 {
		i = (i + 1) & t.mask
	}
	e := &t.slots[i]
	e.key = key
	e.seen.Store(now)
	e.loc.Store(uint32(loc))
	e.static = static
	if static {
		t.statics++
	}
	t.n.Add(1)
	return true
}

// evict removes the least recently seen of the next evictSample dynamic
// entries after the eviction cursor: an approximation of the least recently
// seen entry of the whole table that costs O(1) per eviction, so a flood of
// new MACs into a full table stays cheap. It is exact when the table holds
// no more than evictSample dynamic entries. An entry found already aged out
// is counted as Expired rather than evicted. There must be a dynamic entry.
// The caller holds the write lock.
func (t *Table) evict(now int64, s *Stats) {
	victim, oldest, sampled := -1, int64(0), 0
	for range t.slots {
		i := t.cursor
		t.cursor = (t.cursor + 1) & t.mask
		e := &t.slots[i]
		if e.key == 0 || e.static {
			continue
		}
		if seen := e.seen.Load(); victim < 0 || seen < oldest {
			victim, oldest = int(i), seen
		}
		if sampled++; sampled == evictSample {
			break
		}
	}
	if now-oldest >= t.ageing {
		s.Evictions--
		s.Expired++
	}
	t.removeAt(uint64(victim))
}

// removeAt empties slot i and shifts back the entries after it in its probe
// run that may move, so that lookups never need tombstones. The caller holds
// the write lock.
func (t *Table) removeAt(i uint64) {
	if t.slots[i].static {
		t.statics--
	}
	for j := (i + 1) & t.mask; t.slots[j].key != 0; j = (j + 1) & t.mask {
		e := &t.slots[j]
		// e may fill the hole at i when i lies cyclically in [home, j),
		// that is, when e is at least as far from its home as from i.
		if (j-t.home(e.key))&t.mask >= (j-i)&t.mask {
			h := &t.slots[i]
			h.key = e.key
			h.seen.Store(e.seen.Load())
			h.loc.Store(e.loc.Load())
			h.static = e.static
			i = j
		}
	}
	h := &t.slots[i]
	h.key = 0
	h.seen.Store(0)
	h.loc.Store(0)
	h.static = false
	t.n.Add(-1)
}
