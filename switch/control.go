package bridge

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"time"
)

// Lookup returns the location of mac's live entry, for the control plane and
// what-if traces; ok is false when a frame to mac would be flooded. now is
// the clock LearnLookup is given. It takes the read lock.
func (t *Table) Lookup(now int64, mac [6]byte) (loc Location, ok bool) {
	t.mu.RLock()
	loc = t.lookup(now, pack(&mac))
	t.mu.RUnlock()
	return loc, loc != NoLocation
}

// Entry is one row of a Snapshot.
type Entry struct {
	// MAC is the entry's address.
	MAC [6]byte
	// Location is where frames to MAC are sent.
	Location Location
	// Age is how long ago the entry was last learned, moved or refreshed
	// (refreshes are recorded to within Ageing/1024); for a static entry,
	// since it was added or a frame from MAC last came from its location.
	Age time.Duration
	// Static entries never age and are not moved by learning.
	Static bool
}

// Snapshot returns the live entries, sorted by MAC, in a new slice the caller
// owns. Entries that aged out but were not reclaimed yet are left out. It
// holds the read lock for one pass over the table, so workers keep running.
func (t *Table) Snapshot(now int64) []Entry {
	t.mu.RLock()
	out := make([]Entry, 0, t.n.Load())
	for i := range t.slots {
		e := &t.slots[i]
		if e.key == 0 {
			continue
		}
		age := now - e.seen.Load()
		if !e.static && age >= t.ageing {
			continue
		}
		out = append(out, Entry{
			MAC:      unpack(e.key),
			Location: Location(e.loc.Load()),
			Age:      time.Duration(max(age, 0)),
			Static:   e.static,
		})
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(pack(&a.MAC), pack(&b.MAC)) })
	return out
}

// AddStatic makes mac a static entry at loc: it never ages, learning never
// moves it, and only Delete, FlushLocation or another AddStatic changes it.
// A dynamic entry for mac becomes static. On a full table it evicts a
// dynamic entry (counted in Evictions), or fails with ErrFull if every entry
// is static. It fails with ErrInvalidMAC for zero, broadcast and multicast
// MACs and with ErrInvalidLocation unless loc is a port or a peer. now is the
// clock LearnLookup is given. It takes the write lock.
func (t *Table) AddStatic(now int64, mac [6]byte, loc Location) error {
	key := pack(&mac)
	if !unicast(key) {
		return fmt.Errorf("bridge: static entry %s: %w", net.HardwareAddr(mac[:]), ErrInvalidMAC)
	}
	if !loc.IsValid() {
		return fmt.Errorf("bridge: static entry %s at %v: %w", net.HardwareAddr(mac[:]), loc, ErrInvalidLocation)
	}
	var s Stats
	t.mu.Lock()
	defer t.add(&s)
	defer t.mu.Unlock()
	if i := t.find(key); i >= 0 {
		e := &t.slots[i]
		if !e.static {
			e.static = true
			t.statics++
		}
		e.seen.Store(now)
		e.loc.Store(uint32(loc))
		return nil
	}
	if !t.insert(now, key, loc, true, &s) {
		return fmt.Errorf("bridge: static entry %s: %d entries: %w", net.HardwareAddr(mac[:]), t.max, ErrFull)
	}
	return nil
}

// Delete removes mac's entry, static or dynamic, and reports whether there
// was one. It takes the write lock.
func (t *Table) Delete(mac [6]byte) bool {
	key := pack(&mac)
	if !unicast(key) {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.find(key)
	if i < 0 {
		return false
	}
	t.removeAt(uint64(i))
	return true
}

// Flush removes every dynamic entry, keeping the static ones, and returns how
// many it removed. It holds the write lock for one pass over the table, so
// that no entry escapes it.
func (t *Table) Flush() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.removeIf(0, len(t.slots), func(e *entry) bool { return !e.static })
}

// FlushLocation removes every entry at loc, static ones included, and returns
// how many it removed: call it when the port or peer loc goes away, since
// frames sent to a location that no longer exists are lost. It holds the
// write lock for one pass over the table, so that no entry escapes it.
func (t *Table) FlushLocation(loc Location) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.removeIf(0, len(t.slots), func(e *entry) bool { return Location(e.loc.Load()) == loc })
}

// Expire reclaims the dynamic entries that have not been learned or refreshed
// for the ageing time, counts them as Expired and returns how many there
// were. Aged-out entries are already invisible to lookups; Expire frees their
// slots. The daemon calls it periodically, for example every second.
//
// It works through the table 1024 slots at a time: each chunk is scanned
// under the read lock, and only a chunk with something to remove takes the
// write lock, so workers are held up for at most one chunk at a time. An
// entry moved between chunks by a concurrent change may be left for the next
// call.
func (t *Table) Expire(now int64) int {
	expired := func(e *entry) bool { return !e.static && now-e.seen.Load() >= t.ageing }
	removed := 0
	for start := 0; start < len(t.slots); start += sweepChunk {
		end := min(start+sweepChunk, len(t.slots))
		t.mu.RLock()
		found := false
		for i := start; i < end && !found; i++ {
			found = t.slots[i].key != 0 && expired(&t.slots[i])
		}
		t.mu.RUnlock()
		if found {
			t.mu.Lock()
			removed += t.removeIf(start, end, expired)
			t.mu.Unlock()
		}
	}
	if removed > 0 {
		t.expired.Add(uint64(removed))
	}
	return removed
}

// removeIf removes the entries in slots [start, end) for which remove
// returns true and returns how many. The caller holds the write lock.
func (t *Table) removeIf(start, end int, remove func(*entry) bool) int {
	removed := 0
	for i := start; i < end; {
		if e := &t.slots[i]; e.key != 0 && remove(e) {
			t.removeAt(uint64(i))
			removed++
			continue // removeAt may have shifted another entry into slot i
		}
		i++
	}
	return removed
}
