package bridge

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// model is a naive twin of Table: a Go map with the same learning, ageing
// and static semantics, and no capacity limit (the tests that use it never
// fill the table).
type model struct {
	ageing  int64
	entries map[uint64]*modelEntry
	stats   Stats
}

type modelEntry struct {
	loc    Location
	seen   int64
	static bool
}

func (m *model) live(now int64, key uint64) (*modelEntry, bool) {
	e, ok := m.entries[key]
	if !ok || (!e.static && now-e.seen >= m.ageing) {
		return nil, false
	}
	return e, true
}

// learn is one frame's source, applied in frame order.
func (m *model) learn(now int64, key uint64, loc Location) {
	switch e, ok := m.entries[key]; {
	case !unicast(key):
		m.stats.InvalidSource++
	case loc == NoLocation:
	case !ok:
		m.entries[key] = &modelEntry{loc: loc, seen: now}
		m.stats.Learned++
	case e.static:
		if e.loc != loc {
			m.stats.StaticConflicts++
		} else {
			if now-e.seen >= m.ageing>>refreshShift {
				e.seen = now
			}
		}
	case now-e.seen >= m.ageing:
		*e = modelEntry{loc: loc, seen: now}
		m.stats.Learned++
		m.stats.Expired++
	default:
		if e.loc != loc {
			e.loc, e.seen = loc, now
			m.stats.Moved++
		} else if now-e.seen >= m.ageing>>refreshShift {
			e.seen = now
		}
	}
}

func (m *model) removeIf(remove func(*modelEntry) bool) int {
	n := 0
	for k, e := range m.entries {
		if remove(e) {
			delete(m.entries, k)
			n++
		}
	}
	return n
}

// runOps decodes ops into calls on a small, densely filled Table (so that
// probe runs are long, wrap around and are shifted back by deletions) and on
// its model, and compares every result.
func runOps(t *testing.T, ops []byte) {
	const ageing = 4 * time.Second
	// 14 unicast MACs for a table of 16: the model never sees an eviction.
	var macs [16][6]byte
	for i := range 14 {
		macs[i] = nthMAC(uint64(i + 1))
	}
	macs[14], macs[15] = broadcast, zeroMAC
	locs := [...]Location{PortLocation(0), PortLocation(1), PeerLocation(0), NoLocation}

	tbl := newTable(t, Options{Ageing: ageing, Max: 16})
	m := &model{ageing: int64(ageing), entries: make(map[uint64]*modelEntry)}
	now := int64(0)
	next := func() byte {
		if len(ops) == 0 {
			return 0
		}
		b := ops[0]
		ops = ops[1:]
		return b
	}
	var src, dst [][6]byte
	var from, out []Location
	for step := 0; len(ops) > 0; step++ {
		switch op := next(); op % 6 {
		case 0: // a batch of 1 to 8 frames
			n := int(next()%8) + 1
			src, dst, from, out = src[:0], dst[:0], from[:0], out[:0]
			for range n {
				b := next()
				src = append(src, macs[b%16])
				dst = append(dst, macs[b/16])
				from = append(from, locs[next()%4])
				out = append(out, PortLocation(999))
			}
			for i := range src {
				m.learn(now, pack(&src[i]), from[i])
			}
			tbl.LearnLookup(now, src, dst, from, out)
			// Sources are learned before destinations are looked up.
			for i, d := range dst {
				want := NoLocation
				if e, ok := m.live(now, pack(&d)); ok {
					want = e.loc
				}
				if out[i] != want {
					t.Fatalf("step %d: frame %d to %x: out %v, want %v", step, i, d, out[i], want)
				}
			}
		case 1: // time passes, by up to 7/2 of the ageing
			now += int64(next()%8) * int64(ageing) / 2
			now += int64(next() % 2) // and sometimes the nanosecond that ages an entry out
		case 2:
			mac, loc := macs[next()%16], locs[next()%4]
			err := tbl.AddStatic(now, mac, loc)
			switch {
			case !unicast(pack(&mac)):
				if !errors.Is(err, ErrInvalidMAC) {
					t.Fatalf("step %d: AddStatic(%x) = %v, want ErrInvalidMAC", step, mac, err)
				}
			case loc == NoLocation:
				if !errors.Is(err, ErrInvalidLocation) {
					t.Fatalf("step %d: AddStatic(%x, none) = %v, want ErrInvalidLocation", step, mac, err)
				}
			case err != nil:
				t.Fatalf("step %d: AddStatic(%x, %v): %v", step, mac, loc, err)
			default:
				m.entries[pack(&mac)] = &modelEntry{loc: loc, seen: now, static: true}
			}
		case 3:
			mac := macs[next()%16]
			_, want := m.entries[pack(&mac)]
			delete(m.entries, pack(&mac))
			if got := tbl.Delete(mac); got != want {
				t.Fatalf("step %d: Delete(%x) = %v, want %v", step, mac, got, want)
			}
		case 4:
			want := m.removeIf(func(e *modelEntry) bool { return !e.static && now-e.seen >= m.ageing })
			m.stats.Expired += uint64(want)
			if got := tbl.Expire(now); got != want {
				t.Fatalf("step %d: Expire removed %d, want %d", step, got, want)
			}
		case 5:
			var got, want int
			if b := next(); b%5 == 4 {
				want = m.removeIf(func(e *modelEntry) bool { return !e.static })
				got = tbl.Flush()
			} else {
				loc := locs[b%4]
				want = m.removeIf(func(e *modelEntry) bool { return e.loc == loc })
				got = tbl.FlushLocation(loc)
			}
			if got != want {
				t.Fatalf("step %d: flush op %d removed %d, want %d", step, op, got, want)
			}
		}

		// After every step: same lookups, size, counters and snapshot.
		for _, mac := range macs {
			loc, ok := tbl.Lookup(now, mac)
			e, want := m.live(now, pack(&mac))
			if ok != want || (want && loc != e.loc) {
				t.Fatalf("step %d: Lookup(%x) = %v, %v; model has %+v, %v", step, mac, loc, ok, e, want)
			}
		}
		if tbl.Len() != len(m.entries) {
			t.Fatalf("step %d: Len() = %d, model has %d", step, tbl.Len(), len(m.entries))
		}
		if got := tbl.Stats(); got != m.stats {
			t.Fatalf("step %d: Stats() = %+v, model %+v", step, got, m.stats)
		}
		var want []Entry
		for k, e := range m.entries {
			if _, ok := m.live(now, k); ok {
				want = append(want, Entry{MAC: unpack(k), Location: e.loc, Age: time.Duration(now - e.seen), Static: e.static})
			}
		}
		slices.SortFunc(want, func(a, b Entry) int { return cmp.Compare(pack(&a.MAC), pack(&b.MAC)) })
		if got := tbl.Snapshot(now); !slices.Equal(got, want) {
			t.Fatalf("step %d: Snapshot() = %+v, model %+v", step, got, want)
		}
	}
	checkInvariants(t, tbl)
}

func TestAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(2024, 11))
	for i := range 300 {
		ops := make([]byte, 50+r.IntN(400))
		for j := range ops {
			ops[j] = byte(r.Uint32())
		}
		t.Run("", func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("sequence %d: ops %x", i, ops)
				}
			}()
			runOps(t, ops)
		})
	}
}

// FuzzAgainstModel checks Table against its model on any op sequence.
func FuzzAgainstModel(f *testing.F) {
	f.Add([]byte{0, 3, 0x10, 0, 0x01, 1, 0x21, 2, 1, 2, 0, 4})
	f.Add([]byte{2, 0, 0, 0, 1, 1, 0x00, 2, 0, 0, 1, 1, 4, 5, 0})
	f.Add([]byte{0, 7, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 3, 3, 3, 4, 5, 4, 1, 3, 1, 4})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4096 {
			return
		}
		runOps(t, ops)
	})
}
