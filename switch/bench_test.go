package bridge

import (
	"testing"
	"time"
)

// benchBatch returns a batch of n frames among the first known MACs, which
// the table has learned, and the clock after learning them.
func benchBatch(b *testing.B, tbl *Table, known, n int) (src, dst [][6]byte, from, out []Location) {
	b.Helper()
	all := make([][6]byte, known)
	allFrom := make([]Location, known)
	for i := range all {
		all[i] = nthMAC(uint64(i + 1))
		allFrom[i] = PortLocation(uint16(i % 16))
	}
	for i := 0; i < known; i += chunk {
		j := min(i+chunk, known)
		tbl.LearnLookup(0, all[i:j], all[i:j], allFrom[i:j], make([]Location, j-i))
	}
	if tbl.Len() != known {
		b.Fatalf("Len() = %d, want %d", tbl.Len(), known)
	}
	src, dst = make([][6]byte, n), make([][6]byte, n)
	from, out = make([]Location, n), make([]Location, n)
	for i := range n {
		// Spread over the whole table: a stride coprime with known.
		s, d := (i*7919)%known, (i*7919+known/2)%known
		src[i], dst[i], from[i] = all[s], all[d], allFrom[s]
	}
	return src, dst, from, out
}

func reportPerFrame(b *testing.B, frames int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
}

// BenchmarkLearnLookup is the steady state: batches of 64 frames whose MACs
// are all known, so every source is a refresh and every destination a hit.
func BenchmarkLearnLookup(b *testing.B) {
	for _, bc := range []struct {
		name  string
		known int
	}{
		{"known=64", 64},
		{"known=8192", 8192},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const batch = 64
			tbl := newTable(b, Options{Max: 8192})
			src, dst, from, out := benchBatch(b, tbl, bc.known, batch)
			now := int64(0)
			b.ReportAllocs()
			for b.Loop() {
				now += int64(time.Microsecond) // a new clock each batch: refreshes store
				tbl.LearnLookup(now, src, dst, from, out)
			}
			reportPerFrame(b, batch)
			if s := tbl.Stats(); s.Learned != uint64(bc.known) || s.Moved != 0 {
				b.Fatalf("steady state changed the table: %+v", s)
			}
		})
	}
}

// BenchmarkLearnLookupParallel is BenchmarkLearnLookup with every core's
// worker sharing the table, each with its own batch of the same 8192 MACs:
// the cost of the shared read lock and of refreshing shared entries.
func BenchmarkLearnLookupParallel(b *testing.B) {
	const batch = 64
	tbl := newTable(b, Options{Max: 8192})
	src, dst, from, _ := benchBatch(b, tbl, 8192, batch)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		out := make([]Location, batch)
		now := int64(0)
		for pb.Next() {
			now += int64(time.Microsecond)
			tbl.LearnLookup(now, src, dst, from, out)
		}
	})
	reportPerFrame(b, batch)
}

// BenchmarkLearnFlood is the worst case: every source is new and the table
// is full, so every frame takes the write path and evicts.
func BenchmarkLearnFlood(b *testing.B) {
	const batch = 64
	tbl := newTable(b, Options{Max: 8192})
	benchBatch(b, tbl, 8192, batch)
	src, dst := make([][6]byte, batch), make([][6]byte, batch)
	from, out := make([]Location, batch), make([]Location, batch)
	for i := range from {
		from[i] = PortLocation(1)
		dst[i] = nthMAC(uint64(i + 1))
	}
	next := uint64(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		for i := range src {
			src[i] = nthMAC(next)
			next++
		}
		tbl.LearnLookup(int64(next), src, dst, from, out)
	}
	reportPerFrame(b, batch)
}

// BenchmarkLookup is the per-packet control-plane lookup.
func BenchmarkLookup(b *testing.B) {
	tbl := newTable(b, Options{Max: 8192})
	src, _, _, _ := benchBatch(b, tbl, 8192, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tbl.Lookup(0, src[i%64])
		i++
	}
}

// BenchmarkExpire is one sweep of a full table of 8192 entries with nothing
// to reclaim: the periodic cost the daemon pays, under read locks only.
func BenchmarkExpire(b *testing.B) {
	tbl := newTable(b, Options{Max: 8192})
	benchBatch(b, tbl, 8192, 64)
	b.ReportAllocs()
	for b.Loop() {
		if tbl.Expire(1) != 0 {
			b.Fatal("Expire removed entries")
		}
	}
}
