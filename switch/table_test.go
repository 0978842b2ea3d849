package bridge

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

const sec = int64(time.Second)

var (
	macA      = [6]byte{0x02, 0, 0, 0, 0, 0x0a}
	macB      = [6]byte{0x02, 0, 0, 0, 0, 0x0b}
	macC      = [6]byte{0x02, 0, 0, 0, 0, 0x0c}
	multicast = [6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	broadcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	zeroMAC   = [6]byte{}
)

// nthMAC returns distinct unicast MACs for distinct i < 1<<47: i is spread
// over 47 bits by a multiplication that is a bijection, then the I/G bit
// (bit 40 of the packed key) is inserted as 0.
func nthMAC(i uint64) [6]byte {
	x := (i * 0x5851f42d4c957f2d) & (1<<47 - 1)
	return unpack(x>>40<<41 | x&(1<<40-1))
}

func newTable(tb testing.TB, opts Options) *Table {
	tb.Helper()
	tbl, err := New(opts)
	if err != nil {
		tb.Fatalf("New(%+v): %v", opts, err)
	}
	return tbl
}

// learn1 runs LearnLookup on a batch of one frame and returns its out.
func learn1(tbl *Table, now int64, src, dst [6]byte, from Location) Location {
	out := []Location{0}
	tbl.LearnLookup(now, [][6]byte{src}, [][6]byte{dst}, []Location{from}, out)
	return out[0]
}

// checkInvariants verifies the slot layout: every stored key is unicast,
// unique and reachable from its home slot, and the counts agree.
func checkInvariants(tb testing.TB, tbl *Table) {
	tb.Helper()
	tbl.mu.RLock()
	defer tbl.mu.RUnlock()
	n, statics := 0, 0
	keys := make(map[uint64]bool)
	for i := range tbl.slots {
		e := &tbl.slots[i]
		if e.key == 0 {
			if e.static || e.loc.Load() != 0 || e.seen.Load() != 0 {
				tb.Errorf("empty slot %d not cleared", i)
			}
			continue
		}
		n++
		if e.static {
			statics++
		}
		if !unicast(e.key) {
			tb.Errorf("slot %d holds non-unicast key %#x", i, e.key)
		}
		if keys[e.key] {
			tb.Errorf("key %#x stored twice", e.key)
		}
		keys[e.key] = true
		if j := tbl.find(e.key); j != i {
			tb.Errorf("key %#x in slot %d but find returns %d", e.key, i, j)
		}
	}
	if got := tbl.Len(); got != n {
		tb.Errorf("Len() = %d, but %d slots are occupied", got, n)
	}
	if tbl.statics != statics {
		tb.Errorf("statics = %d, but %d entries are static", tbl.statics, statics)
	}
	if n > tbl.Max() {
		tb.Errorf("%d entries, more than Max %d", n, tbl.Max())
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		wantErr    bool
		wantAgeing time.Duration
		wantMax    int
	}{
		{"zero options give defaults", Options{}, false, DefaultAgeing, DefaultMax},
		{"options are kept", Options{Ageing: time.Minute, Max: 100}, false, time.Minute, 100},
		{"one entry", Options{Max: 1}, false, DefaultAgeing, 1},
		{"largest table", Options{Max: MaxMax}, false, DefaultAgeing, MaxMax},
		{"negative ageing", Options{Ageing: -time.Second}, true, 0, 0},
		{"negative max", Options{Max: -1}, true, 0, 0},
		{"max too large", Options{Max: MaxMax + 1}, true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, err := New(tt.opts)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("New(%+v) succeeded, want an error", tt.opts)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%+v): %v", tt.opts, err)
			}
			if tbl.Ageing() != tt.wantAgeing || tbl.Max() != tt.wantMax {
				t.Errorf("Ageing, Max = %v, %d; want %v, %d", tbl.Ageing(), tbl.Max(), tt.wantAgeing, tt.wantMax)
			}
			if len(tbl.slots) < 2*tbl.Max() || len(tbl.slots)&(len(tbl.slots)-1) != 0 {
				t.Errorf("%d slots for %d entries: want a power of two >= twice as many", len(tbl.slots), tbl.Max())
			}
		})
	}
}

// frame is one frame of a scenario, learned in a batch of its own.
type frame struct {
	at       int64
	src, dst [6]byte
	from     Location
}

type static struct {
	mac [6]byte
	loc Location
}

func TestLearnAgeMoveStatic(t *testing.T) {
	const ageing = 10 * time.Second
	tests := []struct {
		name    string
		statics []static // added at time 0
		frames  []frame
		at      int64                // when the lookups are made
		want    map[[6]byte]Location // NoLocation: a miss
		wantLen int
		stats   Stats
	}{
		{
			name:    "learned source hits and unknown destination misses",
			frames:  []frame{{0, macA, macB, PortLocation(1)}},
			at:      sec,
			want:    map[[6]byte]Location{macA: PortLocation(1), macB: NoLocation},
			wantLen: 1,
			stats:   Stats{Learned: 1},
		},
		{
			name:    "entry is visible one nanosecond before ageing",
			frames:  []frame{{0, macA, macB, PortLocation(1)}},
			at:      int64(ageing) - 1,
			want:    map[[6]byte]Location{macA: PortLocation(1)},
			wantLen: 1,
			stats:   Stats{Learned: 1},
		},
		{
			name:    "entry is invisible exactly at ageing",
			frames:  []frame{{0, macA, macB, PortLocation(1)}},
			at:      int64(ageing),
			want:    map[[6]byte]Location{macA: NoLocation},
			wantLen: 1, // not reclaimed until Expire
			stats:   Stats{Learned: 1},
		},
		{
			name: "refresh keeps entry alive",
			frames: []frame{
				{0, macA, macB, PortLocation(1)},
				{9 * sec, macA, macB, PortLocation(1)},
			},
			at:      18 * sec,
			want:    map[[6]byte]Location{macA: PortLocation(1)},
			wantLen: 1,
			stats:   Stats{Learned: 1},
		},
		{
			name: "refresh does not extend life beyond ageing after it",
			frames: []frame{
				{0, macA, macB, PortLocation(1)},
				{9 * sec, macA, macB, PortLocation(1)},
			},
			at:      19 * sec,
			want:    map[[6]byte]Location{macA: NoLocation},
			wantLen: 1,
			stats:   Stats{Learned: 1},
		},
		{
			name: "refresh within ageing/1024 of the stored time is not stored",
			frames: []frame{
				{0, macA, macB, PortLocation(1)},
				{int64(ageing>>refreshShift) - 1, macA, macB, PortLocation(1)},
			},
			at:      int64(ageing),
			want:    map[[6]byte]Location{macA: NoLocation},
			wantLen: 1,
			stats:   Stats{Learned: 1},
		},
		{
			name: "move from port to peer",
			frames: []frame{
				{0, macA, macB, PortLocation(1)},
				{sec, macA, macB, PeerLocation(2)},
			},
			at:      2 * sec,
			want:    map[[6]byte]Location{macA: PeerLocation(2)},
			wantLen: 1,
			stats:   Stats{Learned: 1, Moved: 1},
		},
		{
			name: "move from peer to port",
			frames: []frame{
				{0, macA, macB, PeerLocation(2)},
				{sec, macA, macB, PortLocation(1)},
			},
			at:      2 * sec,
			want:    map[[6]byte]Location{macA: PortLocation(1)},
			wantLen: 1,
			stats:   Stats{Learned: 1, Moved: 1},
		},
		{
			name: "move restarts ageing",
			frames: []frame{
				{0, macA, macB, PortLocation(1)},
				{5 * sec, macA, macB, PortLocation(2)},
			},
			at:      14 * sec,
			want:    map[[6]byte]Location{macA: PortLocation(2)},
			wantLen: 1,
			stats:   Stats{Learned: 1, Moved: 1},
		},
		{
			name: "source seen again after ageing is learned anew, not moved",
			frames: []frame{
				{0, macA, macB, PortLocation(1)},
				{10 * sec, macA, macB, PeerLocation(1)},
			},
			at:      11 * sec,
			want:    map[[6]byte]Location{macA: PeerLocation(1)},
			wantLen: 1,
			stats:   Stats{Learned: 2, Expired: 1},
		},
		{
			name:    "static entry never ages",
			statics: []static{{macA, PortLocation(1)}},
			at:      1000 * sec,
			want:    map[[6]byte]Location{macA: PortLocation(1)},
			wantLen: 1,
		},
		{
			name:    "static entry is not moved by learning",
			statics: []static{{macA, PortLocation(1)}},
			frames:  []frame{{sec, macA, macB, PeerLocation(1)}},
			at:      2 * sec,
			want:    map[[6]byte]Location{macA: PortLocation(1)},
			wantLen: 1,
			stats:   Stats{StaticConflicts: 1},
		},
		{
			name:    "static entry seen at its own location counts nothing",
			statics: []static{{macA, PortLocation(1)}},
			frames:  []frame{{sec, macA, macB, PortLocation(1)}},
			at:      1000 * sec,
			want:    map[[6]byte]Location{macA: PortLocation(1)},
			wantLen: 1,
		},
		{
			name:   "multicast source is not learned",
			frames: []frame{{0, multicast, macB, PortLocation(1)}},
			at:     sec,
			want:   map[[6]byte]Location{multicast: NoLocation},
			stats:  Stats{InvalidSource: 1},
		},
		{
			name:   "broadcast source is not learned",
			frames: []frame{{0, broadcast, macB, PortLocation(1)}},
			at:     sec,
			want:   map[[6]byte]Location{broadcast: NoLocation},
			stats:  Stats{InvalidSource: 1},
		},
		{
			name:   "zero source is not learned",
			frames: []frame{{0, zeroMAC, macB, PortLocation(1)}},
			at:     sec,
			want:   map[[6]byte]Location{zeroMAC: NoLocation},
			stats:  Stats{InvalidSource: 1},
		},
		{
			name:    "frame from no location is not learned",
			frames:  []frame{{0, macA, macB, NoLocation}},
			at:      sec,
			want:    map[[6]byte]Location{macA: NoLocation},
			wantLen: 0,
		},
		{
			name:    "broadcast and multicast destinations miss",
			frames:  []frame{{0, macA, broadcast, PortLocation(1)}},
			at:      sec,
			want:    map[[6]byte]Location{broadcast: NoLocation, multicast: NoLocation},
			wantLen: 1,
			stats:   Stats{Learned: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := newTable(t, Options{Ageing: ageing, Max: 16})
			for _, s := range tt.statics {
				if err := tbl.AddStatic(0, s.mac, s.loc); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tt.frames {
				learn1(tbl, f.at, f.src, f.dst, f.from)
			}
			for mac, want := range tt.want {
				got, ok := tbl.Lookup(tt.at, mac)
				if got != want || ok != (want != NoLocation) {
					t.Errorf("Lookup(%x) = %v, %v; want %v", mac, got, ok, want)
				}
				if got := learn1(tbl, tt.at, zeroMAC, mac, NoLocation); got != want {
					t.Errorf("LearnLookup destination %x = %v, want %v", mac, got, want)
				}
			}
			if got := tbl.Len(); got != tt.wantLen {
				t.Errorf("Len() = %d, want %d", got, tt.wantLen)
			}
			// The lookups above went through frames with a zero source.
			tt.stats.InvalidSource += uint64(len(tt.want))
			if got := tbl.Stats(); got != tt.stats {
				t.Errorf("Stats() = %+v, want %+v", got, tt.stats)
			}
			checkInvariants(t, tbl)
		})
	}
}

func TestLearnLookupBatch(t *testing.T) {
	tbl := newTable(t, Options{})
	src := [][6]byte{macA, macB, macA, macC, multicast}
	dst := [][6]byte{macB, macA, macC, broadcast, macA}
	from := []Location{PortLocation(1), PeerLocation(1), PortLocation(1), PortLocation(2), PortLocation(3)}
	out := make([]Location, len(src)+1)
	out[len(src)] = PortLocation(99) // past len(src): must be left alone
	tbl.LearnLookup(sec, src, dst, from, out)
	// Every destination learned anywhere in the batch is found.
	want := []Location{PeerLocation(1), PortLocation(1), PortLocation(2), NoLocation, PortLocation(1), PortLocation(99)}
	for i := range want {
		if out[i] != want[i] {
			t.Errorf("out[%d] = %v, want %v", i, out[i], want[i])
		}
	}
	if got, want := tbl.Stats(), (Stats{Learned: 3, InvalidSource: 1}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	checkInvariants(t, tbl)
}

func TestLearnLookupLongBatch(t *testing.T) {
	// More frames than one lock acquisition handles: every chunk is learned.
	const n = 3*chunk + 17
	tbl := newTable(t, Options{})
	src, dst := make([][6]byte, n), make([][6]byte, n)
	from, out := make([]Location, n), make([]Location, n)
	for i := range n {
		src[i] = nthMAC(uint64(i + 1))
		dst[i] = nthMAC(uint64(n - i)) // the reverse: learned late for early frames
		from[i] = PortLocation(uint16(i))
	}
	tbl.LearnLookup(0, src, dst, from, out)
	if got := tbl.Len(); got != n {
		t.Fatalf("Len() = %d, want %d", got, n)
	}
	for i := range n {
		// Frame i's destination is the source of frame n-1-i: found iff
		// that frame is in frame i's chunk or an earlier one.
		want := NoLocation
		if j := n - 1 - i; j < (i/chunk+1)*chunk {
			want = PortLocation(uint16(j))
		}
		if out[i] != want {
			t.Errorf("out[%d] = %v, want %v", i, out[i], want)
		}
		if loc, _ := tbl.Lookup(0, src[i]); loc != from[i] {
			t.Errorf("Lookup(src[%d]) = %v, want %v", i, loc, from[i])
		}
	}
	checkInvariants(t, tbl)
}

func TestSteadyStateTakesNoWriteLock(t *testing.T) {
	tbl := newTable(t, Options{})
	src, dst := [][6]byte{macA, macB}, [][6]byte{macB, macA}
	from, out := []Location{PortLocation(1), PeerLocation(1)}, make([]Location, 2)
	tbl.LearnLookup(0, src, dst, from, out)

	// With a reader holding the lock, a call that needed the write lock
	// would block.
	tbl.mu.RLock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		from[0] = PortLocation(2) // a move, then refreshes
		tbl.LearnLookup(sec, src, dst, from, out)
		tbl.LearnLookup(2*sec, src, dst, from, out)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("LearnLookup of known MACs blocked behind a reader: it takes the write lock")
	}
	tbl.mu.RUnlock()
	if out[1] != PortLocation(2) {
		t.Errorf("after the move, out[1] = %v, want port 2", out[1])
	}
}

func TestSteadyStateAllocs(t *testing.T) {
	tbl := newTable(t, Options{})
	const n = 64
	src, dst := make([][6]byte, n), make([][6]byte, n)
	from, out := make([]Location, n), make([]Location, n)
	for i := range n {
		src[i], dst[i] = nthMAC(uint64(i+1)), nthMAC(uint64(n-i))
		from[i] = PortLocation(uint16(i))
	}
	now := int64(0)
	tbl.LearnLookup(now, src, dst, from, out)
	allocs := testing.AllocsPerRun(1000, func() {
		now += int64(time.Millisecond)
		tbl.LearnLookup(now, src, dst, from, out)
	})
	if allocs != 0 {
		t.Errorf("steady-state LearnLookup allocates %v times per batch, want 0", allocs)
	}
	if allocs := testing.AllocsPerRun(1000, func() { tbl.Lookup(now, src[3]) }); allocs != 0 {
		t.Errorf("Lookup allocates %v times, want 0", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { tbl.Expire(now) }); allocs != 0 {
		t.Errorf("Expire allocates %v times, want 0", allocs)
	}
	if got := tbl.Stats(); got != (Stats{Learned: n}) {
		t.Errorf("Stats() = %+v, want only %d learned", got, n)
	}
}

func TestExpire(t *testing.T) {
	tbl := newTable(t, Options{Ageing: 10 * time.Second})
	learn1(tbl, 0, macA, macB, PortLocation(1))
	learn1(tbl, 5*sec, macB, macA, PortLocation(2))
	if err := tbl.AddStatic(0, macC, PeerLocation(1)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		at      int64
		removed int
		left    int
	}{
		{"nothing expires before ageing", 10*sec - 1, 0, 3},
		{"first entry expires at ageing", 10 * sec, 1, 2},
		{"second sweep at the same time finds nothing", 10 * sec, 0, 2},
		{"second entry expires at its ageing", 15 * sec, 1, 1},
		{"static entry never expires", 1e6 * sec, 0, 1},
	}
	for _, s := range steps {
		if got := tbl.Expire(s.at); got != s.removed {
			t.Errorf("%s: Expire removed %d, want %d", s.name, got, s.removed)
		}
		if got := tbl.Len(); got != s.left {
			t.Errorf("%s: Len() = %d, want %d", s.name, got, s.left)
		}
	}
	if got := tbl.Stats().Expired; got != 2 {
		t.Errorf("Expired = %d, want 2", got)
	}
	checkInvariants(t, tbl)
}

func TestExpireManyChunks(t *testing.T) {
	// Half of a large table expires: the sweep crosses chunk boundaries and
	// shifts entries back across them, and every survivor stays reachable.
	tbl := newTable(t, Options{Ageing: 10 * time.Second, Max: 8192})
	const n = 4000
	for i := range 2 * n {
		at := int64(0)
		if i%2 == 1 {
			at = 5 * sec
		}
		learn1(tbl, at, nthMAC(uint64(i+1)), zeroMAC, PortLocation(uint16(i)))
	}
	if got := tbl.Expire(12 * sec); got != n {
		t.Errorf("Expire removed %d, want %d", got, n)
	}
	for i := range 2 * n {
		_, ok := tbl.Lookup(12*sec, nthMAC(uint64(i+1)))
		if want := i%2 == 1; ok != want {
			t.Fatalf("entry %d: found %v, want %v", i, ok, want)
		}
	}
	checkInvariants(t, tbl)
}

func TestCapacity(t *testing.T) {
	const ageing = 10 * time.Second
	m := func(i uint64) [6]byte { return nthMAC(i) }
	tests := []struct {
		name    string
		max     int
		statics [][6]byte
		frames  []frame
		at      int64
		present [][6]byte
		absent  [][6]byte
		stats   Stats
	}{
		{
			name: "full table evicts the least recently seen entry",
			max:  4,
			frames: []frame{
				{1 * sec, m(1), zeroMAC, PortLocation(1)},
				{2 * sec, m(2), zeroMAC, PortLocation(1)},
				{3 * sec, m(3), zeroMAC, PortLocation(1)},
				{4 * sec, m(4), zeroMAC, PortLocation(1)},
				{5 * sec, m(1), zeroMAC, PortLocation(1)}, // refresh: m2 is now the oldest
				{6 * sec, m(5), zeroMAC, PortLocation(1)},
			},
			at:      7 * sec,
			present: [][6]byte{m(1), m(3), m(4), m(5)},
			absent:  [][6]byte{m(2)},
			stats:   Stats{Learned: 5, Evictions: 1},
		},
		{
			name:    "static entries are never evicted",
			max:     3,
			statics: [][6]byte{m(1), m(2)},
			frames: []frame{
				{5, m(3), zeroMAC, PortLocation(1)},
				{6, m(4), zeroMAC, PortLocation(1)},
			},
			at:      7,
			present: [][6]byte{m(1), m(2), m(4)},
			absent:  [][6]byte{m(3)},
			stats:   Stats{Learned: 2, Evictions: 1},
		},
		{
			name:    "table full of static entries refuses learning",
			max:     2,
			statics: [][6]byte{m(1), m(2)},
			frames:  []frame{{5, m(3), zeroMAC, PortLocation(1)}},
			at:      6,
			present: [][6]byte{m(1), m(2)},
			absent:  [][6]byte{m(3)},
			stats:   Stats{Evictions: 1},
		},
		{
			name: "reclaiming an aged-out entry counts as expired, not evicted",
			max:  2,
			frames: []frame{
				{0, m(1), zeroMAC, PortLocation(1)},
				{5 * sec, m(2), zeroMAC, PortLocation(1)},
				{12 * sec, m(3), zeroMAC, PortLocation(1)},
			},
			at:      13 * sec,
			present: [][6]byte{m(2), m(3)},
			absent:  [][6]byte{m(1)},
			stats:   Stats{Learned: 3, Expired: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := newTable(t, Options{Ageing: ageing, Max: tt.max})
			for _, mac := range tt.statics {
				if err := tbl.AddStatic(0, mac, PeerLocation(0)); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tt.frames {
				learn1(tbl, f.at, f.src, f.dst, f.from)
			}
			for _, mac := range tt.present {
				if _, ok := tbl.Lookup(tt.at, mac); !ok {
					t.Errorf("%x missing", mac)
				}
			}
			for _, mac := range tt.absent {
				if loc, ok := tbl.Lookup(tt.at, mac); ok {
					t.Errorf("%x present at %v, want it gone", mac, loc)
				}
			}
			if got := tbl.Len(); got > tt.max {
				t.Errorf("Len() = %d, above Max %d", got, tt.max)
			}
			if got := tbl.Stats(); got != tt.stats {
				t.Errorf("Stats() = %+v, want %+v", got, tt.stats)
			}
			checkInvariants(t, tbl)
		})
	}
}

func TestFloodIsBounded(t *testing.T) {
	const (
		max   = 8192
		flood = 100_000
		batch = 64
	)
	tbl := newTable(t, Options{Max: max})
	slots := len(tbl.slots)
	macs := make([][6]byte, flood)
	for i := range macs {
		macs[i] = nthMAC(uint64(i + 1))
	}
	dst := make([][6]byte, batch)
	from, out := make([]Location, batch), make([]Location, batch)
	for i := range from {
		from[i] = PortLocation(1)
		dst[i] = macs[i]
	}
	next, now := 0, int64(0)
	floodBatch := func() {
		now++
		tbl.LearnLookup(now, macs[next:next+batch], dst, from, out)
		next += batch
		if tbl.Len() > max {
			t.Fatalf("Len() = %d after %d MACs, above Max %d", tbl.Len(), next, max)
		}
	}
	for next+batch <= 2*max { // warm up: fill the table, then evict
		floodBatch()
	}
	runs := (flood-next)/batch - 1
	if allocs := testing.AllocsPerRun(runs, floodBatch); allocs != 0 {
		t.Errorf("flooding a full table allocates %v times per batch, want 0", allocs)
	}
	if tbl.Len() != max {
		t.Errorf("Len() = %d, want a full table of %d", tbl.Len(), max)
	}
	if got, want := tbl.Stats(), (Stats{Learned: uint64(next), Evictions: uint64(next - max)}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if len(tbl.slots) != slots {
		t.Errorf("slots grew from %d to %d", slots, len(tbl.slots))
	}
	checkInvariants(t, tbl)
}

func TestAddStaticAndDelete(t *testing.T) {
	tbl := newTable(t, Options{Max: 2})
	for _, tc := range []struct {
		name string
		mac  [6]byte
		loc  Location
		want error
	}{
		{"multicast MAC", multicast, PortLocation(1), ErrInvalidMAC},
		{"broadcast MAC", broadcast, PortLocation(1), ErrInvalidMAC},
		{"zero MAC", zeroMAC, PortLocation(1), ErrInvalidMAC},
		{"no location", macA, NoLocation, ErrInvalidLocation},
		{"first static", macA, PortLocation(1), nil},
		{"same MAC again updates it", macA, PeerLocation(3), nil},
		{"second static", macB, PortLocation(2), nil},
		{"third static on a full table", macC, PortLocation(2), ErrFull},
	} {
		if err := tbl.AddStatic(0, tc.mac, tc.loc); !errors.Is(err, tc.want) {
			t.Errorf("%s: AddStatic(%x, %v) = %v, want %v", tc.name, tc.mac, tc.loc, err, tc.want)
		}
	}
	if loc, _ := tbl.Lookup(0, macA); loc != PeerLocation(3) {
		t.Errorf("Lookup(A) = %v, want peer 3", loc)
	}
	if !tbl.Delete(macA) || tbl.Delete(macA) || tbl.Delete(broadcast) {
		t.Error("Delete(A) twice: want true then false; Delete(broadcast): want false")
	}
	if _, ok := tbl.Lookup(0, macA); ok {
		t.Error("A still found after Delete")
	}

	// A learned entry becomes static in place.
	learn1(tbl, 0, macC, zeroMAC, PortLocation(5))
	if err := tbl.AddStatic(sec, macC, PortLocation(6)); err != nil {
		t.Fatal(err)
	}
	if got := tbl.Snapshot(1e6 * sec); len(got) != 2 || got[1].MAC != macC || !got[1].Static || got[1].Location != PortLocation(6) {
		t.Errorf("Snapshot() = %+v, want B and a static C at port 6", got)
	}
	checkInvariants(t, tbl)
}

func TestFlush(t *testing.T) {
	setup := func(t *testing.T) *Table {
		tbl := newTable(t, Options{})
		learn1(tbl, 0, macA, zeroMAC, PortLocation(1))
		learn1(tbl, 0, macB, zeroMAC, PeerLocation(1))
		learn1(tbl, 0, nthMAC(9), zeroMAC, PortLocation(1))
		if err := tbl.AddStatic(0, macC, PortLocation(1)); err != nil {
			t.Fatal(err)
		}
		return tbl
	}
	tests := []struct {
		name    string
		flush   func(*Table) int
		removed int
		left    [][6]byte
	}{
		{"flush removes every dynamic entry", (*Table).Flush, 2 + 1, [][6]byte{macC}},
		{"flush by port removes its entries, static too",
			func(t *Table) int { return t.FlushLocation(PortLocation(1)) }, 3, [][6]byte{macB}},
		{"flush by peer leaves the ports",
			func(t *Table) int { return t.FlushLocation(PeerLocation(1)) }, 1, [][6]byte{macA, nthMAC(9), macC}},
		{"flush of an unused location removes nothing",
			func(t *Table) int { return t.FlushLocation(PeerLocation(7)) }, 0, [][6]byte{macA, macB, nthMAC(9), macC}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := setup(t)
			if got := tt.flush(tbl); got != tt.removed {
				t.Errorf("removed %d, want %d", got, tt.removed)
			}
			if tbl.Len() != len(tt.left) {
				t.Errorf("Len() = %d, want %d", tbl.Len(), len(tt.left))
			}
			for _, mac := range tt.left {
				if _, ok := tbl.Lookup(0, mac); !ok {
					t.Errorf("%x missing after flush", mac)
				}
			}
			checkInvariants(t, tbl)
		})
	}
}

func TestSnapshot(t *testing.T) {
	tbl := newTable(t, Options{Ageing: 10 * time.Second})
	r := rand.New(rand.NewPCG(1, 2))
	const n = 500
	for _, i := range r.Perm(n) {
		learn1(tbl, int64(i)*sec/100, nthMAC(uint64(i+1)), zeroMAC, PortLocation(uint16(i)))
	}
	if err := tbl.AddStatic(0, macA, PeerLocation(4)); err != nil {
		t.Fatal(err)
	}
	now := 10*sec + sec/2 // entries 0 to 50, learned at or before sec/2, have aged out
	snap := tbl.Snapshot(now)
	if want := n - 51 + 1; len(snap) != want {
		t.Fatalf("Snapshot has %d entries, want %d live ones", len(snap), want)
	}
	for i, e := range snap {
		if i > 0 && pack(&snap[i-1].MAC) >= pack(&e.MAC) {
			t.Fatalf("Snapshot not sorted by MAC at %d: %x then %x", i, snap[i-1].MAC, e.MAC)
		}
		if e.MAC == macA {
			if !e.Static || e.Location != PeerLocation(4) || e.Age != time.Duration(now) {
				t.Errorf("static entry = %+v", e)
			}
			continue
		}
		loc, ok := tbl.Lookup(now, e.MAC)
		if !ok || loc != e.Location || e.Static || e.Age < 0 || e.Age >= 10*time.Second {
			t.Errorf("entry %+v: Lookup says %v, %v", e, loc, ok)
		}
		if learnedAt := int64(e.Location.Index()) * sec / 100; e.Age != time.Duration(now-learnedAt) {
			t.Errorf("entry %+v: age want %v", e, time.Duration(now-learnedAt))
		}
	}
}

func TestConcurrentStress(t *testing.T) {
	// Workers learn and look up while the control plane expires, snapshots,
	// adds and deletes static entries and flushes, all on one small table
	// (so that it is full and evicting). Run with -race.
	const (
		max     = 256
		pool    = 1024
		workers = 4
		batches = 2000
		batch   = 64
	)
	tbl := newTable(t, Options{Ageing: 50 * time.Millisecond, Max: max})
	var clock sync.Mutex
	var now int64
	tick := func() int64 {
		clock.Lock()
		defer clock.Unlock()
		now += int64(10 * time.Microsecond)
		return now
	}
	stop := make(chan struct{})
	var wg, control sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			src, dst := make([][6]byte, batch), make([][6]byte, batch)
			from, out := make([]Location, batch), make([]Location, batch)
			for range batches {
				for i := range batch {
					src[i] = nthMAC(uint64(r.IntN(pool) + 1))
					dst[i] = nthMAC(uint64(r.IntN(pool) + 1))
					from[i] = PortLocation(uint16(r.IntN(8)))
					if r.IntN(50) == 0 {
						src[i] = multicast
					}
				}
				tbl.LearnLookup(tick(), src, dst, from, out)
				for i, loc := range out {
					if loc != NoLocation && !loc.IsValid() {
						t.Errorf("out[%d] = %v", i, loc)
					}
				}
			}
		})
	}
	control.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			now := tick()
			tbl.Expire(now)
			snap := tbl.Snapshot(now)
			if len(snap) > max {
				t.Errorf("Snapshot has %d entries, Max is %d", len(snap), max)
			}
			for i := 1; i < len(snap); i++ {
				if pack(&snap[i-1].MAC) >= pack(&snap[i].MAC) {
					t.Errorf("Snapshot not sorted at %d", i)
				}
			}
		}
	})
	control.Go(func() {
		r := rand.New(rand.NewPCG(99, 7))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mac := nthMAC(uint64(r.IntN(pool) + 1))
			switch i % 5 {
			case 0, 1:
				if err := tbl.AddStatic(tick(), mac, PeerLocation(1)); err != nil && !errors.Is(err, ErrFull) {
					t.Errorf("AddStatic: %v", err)
				}
			case 2:
				tbl.Delete(mac)
			case 3:
				tbl.FlushLocation(PeerLocation(1))
			case 4:
				tbl.Lookup(tick(), mac)
				if i%50 == 4 {
					tbl.Flush()
				}
			}
			time.Sleep(50 * time.Microsecond)
		}
	})
	wg.Wait()
	close(stop)
	control.Wait()
	checkInvariants(t, tbl)
	s := tbl.Stats()
	if s.Learned == 0 || s.Evictions == 0 || s.InvalidSource == 0 {
		t.Errorf("Stats() = %+v: the stress did not learn, evict and see invalid sources", s)
	}
}
