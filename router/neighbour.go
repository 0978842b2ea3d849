package router

// How the neighbour table works.
//
// Storage. A set-associative hash table: an address hashes to one bucket of
// `ways` slots, and its entry, if any, is in one of them. The slots are
// allocated once, in NewNeighbours, at least twice Options.Max of them, so
// learning never allocates and a bucket rarely fills before the table does.
// A full bucket evicts its least recently seen entry. No probe chains cross
// buckets, so removing an entry is clearing its slot. A slot is empty when
// its key is 0 (0.0.0.0 is never stored).
//
// An entry is complete (mac != 0: the address is at that MAC) or
// incomplete (mac == 0: an ARP request was sent at seen and not answered
// yet). A complete entry lives Ageing after it was last learned or
// refreshed; an incomplete one RetransmitInterval, after which the next
// miss sends another request.
//
// Locking, as in package bridge. One sync.RWMutex guards which key is in
// which slot. A slot's mac and seen are atomics, so they may change under
// the read lock. Learn and Resolve take the read lock once per call; only
// when a call has addresses that are not in the table does it take the
// write lock, once, to insert them. In the steady state, every neighbour
// known, the write lock is never taken and nothing is allocated. A refresh
// of seen is stored only when the stored one is older than the refresh
// grain (Ageing/1024), since each atomic store is a full barrier on a line
// other cores read. Two workers learning different MACs for one address at
// once both store, and the last store wins; a lookup racing with a change
// may return the previous MAC. Neither breaks the slot layout, which only
// the write lock changes.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-overlay/ferry/header"
)

// Defaults and limits of NeighbourOptions.
const (
	// DefaultNeighbourAgeing is how long a learned entry lives without a
	// refresh, the bridge's FDB default: the router learns from every
	// frame a container sends, so a live container is refreshed
	// constantly, and one that changes its MAC announces it by ARP.
	DefaultNeighbourAgeing = 300 * time.Second
	// DefaultNeighbourMax is the default number of entries of one
	// network's table.
	DefaultNeighbourMax = 4096
	// MaxNeighbourMax is the largest NeighbourOptions.Max accepted: 1<<20
	// entries take 48 MiB.
	MaxNeighbourMax = 1 << 20
	// DefaultRetransmitInterval is the least time between two ARP
	// requests for one address, Linux's retrans_time.
	DefaultRetransmitInterval = time.Second
)

const (
	// ways is the number of slots of a bucket.
	ways = 8
	// neighChunk is the most items Learn or Resolve handles under one
	// lock acquisition; it sizes their stack bitmaps.
	neighChunk = 256
	// sweepSlots is how many slots Expire handles under one lock
	// acquisition.
	sweepSlots = 1024
)

// NeighbourOptions configures a Neighbours table. The zero value gives the
// defaults.
type NeighbourOptions struct {
	// Ageing is how long a complete entry stays valid after it was last
	// learned or refreshed; 0 means DefaultNeighbourAgeing. It must not
	// be negative.
	Ageing time.Duration
	// Max is the most entries, complete and incomplete, the table holds;
	// 0 means DefaultNeighbourMax. It must be in [0, MaxNeighbourMax].
	Max int
	// RetransmitInterval is the least time between two ARP requests for
	// one address; 0 means DefaultRetransmitInterval. It must not be
	// negative.
	RetransmitInterval time.Duration
}

// Binding is one (address, MAC) pair the router saw: the sender of an ARP
// request or reply, or the source of a frame in the network.
type Binding struct {
	IP  netip.Addr
	MAC header.MAC
}

// Neighbour is one entry as the control plane lists it.
type Neighbour struct {
	// IP is the neighbour's address.
	IP netip.Addr `json:"ip"`
	// MAC is its MAC address; zero while Incomplete.
	MAC header.MAC `json:"mac"`
	// Incomplete reports that an ARP request is outstanding.
	Incomplete bool `json:"incomplete"`
	// Age is the time since the entry was learned or last refreshed, or
	// since the ARP request was sent.
	Age time.Duration `json:"age"`
}

// NeighbourStats are a table's counters since NewNeighbours. Each is read
// atomically; the set is not one consistent snapshot.
type NeighbourStats struct {
	// Learned counts entries created or completed by learning.
	Learned uint64 `json:"learned"`
	// Changed counts live entries whose MAC learning changed.
	Changed uint64 `json:"changed"`
	// Evictions counts insertions that met a full bucket or table: each
	// replaced the bucket's least recently seen entry or, when that was
	// not allowed, was not stored.
	Evictions uint64 `json:"evictions"`
	// Expired counts entries removed by Expire.
	Expired uint64 `json:"expired"`
	// Invalid counts bindings not learned because the address is not a
	// host address (RFC 1812 §5.3.7) or the MAC is not unicast.
	Invalid uint64 `json:"invalid"`
	// Requests counts ARP requests Resolve asked the caller to send.
	Requests uint64 `json:"requests"`
}

// nslot is one slot. key changes only under the write lock; mac and seen
// may change under the read lock.
type nslot struct {
	key  uint32
	mac  atomic.Uint64 // packed MAC; 0 while incomplete
	seen atomic.Int64  // now when learned or refreshed, or when requested
}

// Neighbours maps the IPv4 addresses of one L2 network's hosts to their
// MACs, so the router can address the frames it routes into the network.
// Create it with NewNeighbours.
//
// All methods are safe for concurrent use. Learn and Resolve are the
// dataplane's calls, made by every worker once per batch; the other methods
// are the control plane's. All calls on one table must use the same clock
// for now.
type Neighbours struct {
	// Read by every call, written only by NewNeighbours.
	slots   []nslot
	shift   uint // 32 - log2(buckets)
	seed    uint32
	ageing  int64
	retrans int64
	grain   int64
	max     int64

	_  [64]byte
	mu sync.RWMutex
	_  [64]byte

	n atomic.Int64 // occupied slots; changed under the write lock

	learned, changed, evictions, expired, invalid, requests atomic.Uint64
}

// Errors returned by NewNeighbours, wrapped with the offending value.
var (
	// ErrBadNeighbourOptions: an option is out of range.
	ErrBadNeighbourOptions = errors.New("out of range")
)

// NewNeighbours returns an empty table with the storage for opts.Max
// entries allocated.
func NewNeighbours(opts NeighbourOptions) (*Neighbours, error) {
	if opts.Ageing < 0 {
		return nil, fmt.Errorf("router: neighbour ageing %v: %w", opts.Ageing, ErrBadNeighbourOptions)
	}
	if opts.RetransmitInterval < 0 {
		return nil, fmt.Errorf("router: retransmit interval %v: %w", opts.RetransmitInterval, ErrBadNeighbourOptions)
	}
	if opts.Max < 0 || opts.Max > MaxNeighbourMax {
		return nil, fmt.Errorf("router: neighbour max %d: %w, want [0, %d]", opts.Max, ErrBadNeighbourOptions, MaxNeighbourMax)
	}
	if opts.Ageing == 0 {
		opts.Ageing = DefaultNeighbourAgeing
	}
	if opts.Max == 0 {
		opts.Max = DefaultNeighbourMax
	}
	if opts.RetransmitInterval == 0 {
		opts.RetransmitInterval = DefaultRetransmitInterval
	}
	buckets := 1 << bits.Len(uint((2*opts.Max+ways-1)/ways-1)) // power of two >= 2*Max/ways
	return &Neighbours{
		slots:   make([]nslot, buckets*ways),
		shift:   uint(32 - bits.TrailingZeros(uint(buckets))),
		seed:    rand.Uint32() | 1,
		ageing:  int64(opts.Ageing),
		retrans: int64(opts.RetransmitInterval),
		grain:   int64(opts.Ageing) >> 10,
		max:     int64(opts.Max),
	}, nil
}

// bucket returns the slots of the bucket of key.
func (t *Neighbours) bucket(key uint32) []nslot {
	b := int((key * t.seed) >> t.shift) // shift 32, one bucket, gives 0
	return t.slots[b*ways : b*ways+ways]
}

// find returns key's slot in its bucket, or nil.
func find(bucket []nslot, key uint32) *nslot {
	for i := range bucket {
		if bucket[i].key == key {
			return &bucket[i]
		}
	}
	return nil
}

func packMAC(m header.MAC) uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(binary.BigEndian.Uint32(m[2:]))
}

func unpackMAC(v uint64) header.MAC {
	return header.MAC{byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// live reports whether s, read at now, is a complete entry within its
// ageing (returning its MAC), and whether it is an incomplete entry whose
// request is recent.
func (t *Neighbours) live(s *nslot, now int64) (mac uint64, complete, pending bool) {
	mac = s.mac.Load()
	age := now - s.seen.Load()
	if mac != 0 {
		return mac, age < t.ageing, false
	}
	return 0, false, age < t.retrans
}

// Learn records each binding of bs: the address is at that MAC as of now.
// Bindings whose address is not a host address or whose MAC is not unicast
// are counted as Invalid and skipped. Learn takes the read lock once per
// 256 bindings, and the write lock once more only if some address was not
// in the table; in the steady state it does not allocate.
func (t *Neighbours) Learn(bs []Binding, now int64) {
	for len(bs) > 0 {
		n := min(len(bs), neighChunk)
		t.learnChunk(bs[:n], now)
		bs = bs[n:]
	}
}

func (t *Neighbours) learnChunk(bs []Binding, now int64) {
	var pending [neighChunk / 64]uint64
	var anyPending bool
	var learned, changed, invalid uint64
	t.mu.RLock()
	for i := range bs {
		key, mac := addrU32(bs[i].IP), bs[i].MAC
		if !isHostAddr(key) || !isUnicastMAC(mac) {
			invalid++
			continue
		}
		s := find(t.bucket(key), key)
		if s == nil {
			pending[i/64] |= 1 << (i % 64)
			anyPending = true
			continue
		}
		l, c := t.store(s, packMAC(mac), now)
		learned += l
		changed += c
	}
	t.mu.RUnlock()
	var evictions uint64
	if anyPending {
		t.mu.Lock()
		for i := range bs {
			if pending[i/64]&(1<<(i%64)) == 0 {
				continue
			}
			key := addrU32(bs[i].IP)
			mac := packMAC(bs[i].MAC)
			s := find(t.bucket(key), key)
			if s == nil {
				var evicted bool
				s, evicted = t.insert(key, now, true)
				if evicted {
					evictions++
				}
				if s == nil {
					continue
				}
			}
			l, c := t.store(s, mac, now)
			learned += l
			changed += c
		}
		t.mu.Unlock()
	}
	addIf(&t.learned, learned)
	addIf(&t.changed, changed)
	addIf(&t.invalid, invalid)
	addIf(&t.evictions, evictions)
}

// store records that s's address is at mac as of now and reports whether
// that created or completed an entry (learned) or changed a live one's MAC
// (changed).
func (t *Neighbours) store(s *nslot, mac uint64, now int64) (learned, changed uint64) {
	old, complete, _ := t.live(s, now)
	switch {
	case old == mac && complete:
		if now-s.seen.Load() >= t.grain {
			s.seen.Store(now)
		}
		return 0, 0
	case complete:
		changed = 1
	default:
		learned = 1
	}
	s.mac.Store(mac)
	s.seen.Store(now)
	return learned, changed
}

// oldestAfter returns the least recently seen entry of the first bucket
// after key's (wrapping around) that holds any, or nil if the table is
// empty. It is only called when the table is at Max, when about half the
// slots are in use, so the scan stops after a bucket or two. Call under the
// write lock.
func (t *Neighbours) oldestAfter(key uint32) *nslot {
	nb := len(t.slots) / ways
	start := int((key * t.seed) >> t.shift) // as in bucket
	for i := 1; i <= nb; i++ {
		b := t.slots[((start+i)%nb)*ways : ((start+i)%nb+1)*ways]
		var oldest *nslot
		for j := range b {
			if b[j].key != 0 && (oldest == nil || b[j].seen.Load() < oldest.seen.Load()) {
				oldest = &b[j]
			}
		}
		if oldest != nil {
			return oldest
		}
	}
	return nil
}

// insert claims a slot for key, which is not in the table, and returns it
// with key set, mac 0 and seen now; the caller stores the rest. It takes,
// in order: an empty slot (unless the table is at Max), a stale slot (an
// aged-out entry or an incomplete one past its retransmit interval), or,
// if mayEvict, the least recently seen slot of the bucket, reporting that
// it evicted. It returns nil when it found none. Call under the write lock.
func (t *Neighbours) insert(key uint32, now int64, mayEvict bool) (s *nslot, evicted bool) {
	b := t.bucket(key)
	var empty, stale, oldest *nslot
	for i := range b {
		c := &b[i]
		if c.key == 0 {
			if empty == nil {
				empty = c
			}
			continue
		}
		_, complete, pending := t.live(c, now)
		if !complete && !pending && stale == nil {
			stale = c
		}
		if oldest == nil || c.seen.Load() < oldest.seen.Load() {
			oldest = c
		}
	}
	switch {
	case empty != nil && t.n.Load() < t.max:
		s = empty
		t.n.Add(1)
	case stale != nil:
		s = stale
	case mayEvict && oldest != nil:
		s, evicted = oldest, true
	case mayEvict && empty != nil:
		// The table is at Max but key's bucket holds no entry to evict:
		// make room in the nearest bucket that has one, and take the
		// empty slot here, so the newest binding is always kept.
		victim := t.oldestAfter(key)
		if victim == nil {
			return nil, false
		}
		victim.key = 0
		victim.mac.Store(0)
		victim.seen.Store(0)
		s, evicted = empty, true
	default:
		return nil, mayEvict
	}
	s.key = key
	s.mac.Store(0)
	s.seen.Store(now)
	return s, evicted
}

// Resolve looks up each address ips[i] as of now and writes its MAC to
// macs[i], or the zero MAC when it is not known; it returns the number of
// misses. For a miss it sets solicit[i] when the caller should send an ARP
// request for the address (BuildARPRequest) — at most once per
// RetransmitInterval per address, with the same address twice in ips
// solicited once — and records the request in the table. A request never
// evicts a complete entry: with the address's bucket full of live
// neighbours, solicit[i] is set but not recorded. The caller drops a
// missed packet (reason "neighbour-unresolved"); the reply teaches the
// table through Learn.
//
// macs and solicit must be at least as long as ips. Resolve takes the read
// lock once per 256 addresses, and the write lock once more only when a
// request is due; it does not allocate.
func (t *Neighbours) Resolve(ips []netip.Addr, macs []header.MAC, solicit []bool, now int64) (misses int) {
	_, _ = macs[:len(ips)], solicit[:len(ips)]
	for off := 0; off < len(ips); off += neighChunk {
		end := min(len(ips), off+neighChunk)
		misses += t.resolveChunk(ips[off:end], macs[off:end], solicit[off:end], now)
	}
	return misses
}

func (t *Neighbours) resolveChunk(ips []netip.Addr, macs []header.MAC, solicit []bool, now int64) (misses int) {
	var due [neighChunk / 64]uint64
	var anyDue bool
	t.mu.RLock()
	for i := range ips {
		solicit[i] = false
		key := addrU32(ips[i])
		if key == 0 {
			macs[i] = header.MAC{}
			misses++
			continue
		}
		if s := find(t.bucket(key), key); s != nil {
			mac, complete, pending := t.live(s, now)
			if complete {
				macs[i] = unpackMAC(mac)
				continue
			}
			if pending {
				macs[i] = header.MAC{}
				misses++
				continue
			}
		}
		macs[i] = header.MAC{}
		misses++
		due[i/64] |= 1 << (i % 64)
		anyDue = true
	}
	t.mu.RUnlock()
	if !anyDue {
		return misses
	}
	var requests uint64
	t.mu.Lock()
	for i := range ips {
		if due[i/64]&(1<<(i%64)) == 0 {
			continue
		}
		key := addrU32(ips[i])
		s := find(t.bucket(key), key)
		if s != nil {
			mac, complete, pending := t.live(s, now)
			if complete { // learned since the read pass
				macs[i] = unpackMAC(mac)
				misses--
				continue
			}
			if pending { // requested earlier in this batch, or by another worker
				continue
			}
			s.mac.Store(0)
			s.seen.Store(now)
		} else {
			t.insert(key, now, false)
		}
		solicit[i] = true
		requests++
	}
	t.mu.Unlock()
	addIf(&t.requests, requests)
	return misses
}

// Lookup returns the MAC of ip as of now, and false if ip has no complete,
// live entry. It takes the read lock per call: the fast path uses Resolve.
func (t *Neighbours) Lookup(ip netip.Addr, now int64) (header.MAC, bool) {
	key := addrU32(ip)
	if key == 0 {
		return header.MAC{}, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if s := find(t.bucket(key), key); s != nil {
		if mac, complete, _ := t.live(s, now); complete {
			return unpackMAC(mac), true
		}
	}
	return header.MAC{}, false
}

// Expire removes the entries that are no longer live at now (aged-out
// complete ones, incomplete ones past their retransmit interval) and
// returns how many it removed. It takes the write lock for 1024 slots at a
// time, and only for chunks that hold something to remove.
func (t *Neighbours) Expire(now int64) int {
	removed := 0
	for off := 0; off < len(t.slots); off += sweepSlots {
		chunk := t.slots[off:min(len(t.slots), off+sweepSlots)]
		t.mu.RLock()
		stale := false
		for i := range chunk {
			if chunk[i].key != 0 && t.dead(&chunk[i], now) {
				stale = true
				break
			}
		}
		t.mu.RUnlock()
		if !stale {
			continue
		}
		t.mu.Lock()
		for i := range chunk {
			if s := &chunk[i]; s.key != 0 && t.dead(s, now) {
				s.key = 0
				s.mac.Store(0)
				s.seen.Store(0)
				t.n.Add(-1)
				removed++
			}
		}
		t.mu.Unlock()
	}
	addIf(&t.expired, uint64(removed))
	return removed
}

func (t *Neighbours) dead(s *nslot, now int64) bool {
	_, complete, pending := t.live(s, now)
	return !complete && !pending
}

// Snapshot returns the live entries as of now, in table order.
func (t *Neighbours) Snapshot(now int64) []Neighbour {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Neighbour, 0, t.n.Load())
	for i := range t.slots {
		s := &t.slots[i]
		if s.key == 0 {
			continue
		}
		mac, complete, pending := t.live(s, now)
		if !complete && !pending {
			continue
		}
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], s.key)
		out = append(out, Neighbour{
			IP:         netip.AddrFrom4(a),
			MAC:        unpackMAC(mac),
			Incomplete: !complete,
			Age:        time.Duration(now - s.seen.Load()),
		})
	}
	return out
}

// Len returns the number of occupied slots, live or not yet expired.
func (t *Neighbours) Len() int { return int(t.n.Load()) }

// Stats returns the table's counters.
func (t *Neighbours) Stats() NeighbourStats {
	return NeighbourStats{
		Learned:   t.learned.Load(),
		Changed:   t.changed.Load(),
		Evictions: t.evictions.Load(),
		Expired:   t.expired.Load(),
		Invalid:   t.invalid.Load(),
		Requests:  t.requests.Load(),
	}
}

func addIf(c *atomic.Uint64, v uint64) {
	if v != 0 {
		c.Add(v)
	}
}

// BuildARPRequest writes into out (at least 42 bytes) a broadcast ARP
// request from the gateway (gwMAC, gwIP) asking for target, and returns
// its length, 42. It is what Resolve's solicit asks for; the caller floods
// it into the network. gwIP and target must be IPv4. It does not allocate.
func BuildARPRequest(out []byte, gwIP netip.Addr, gwMAC header.MAC, target netip.Addr) int {
	_ = out[arpFrameLen-1]
	header.Ethernet(out).Encode(header.BroadcastMAC, gwMAC, header.EtherTypeARP)
	header.ARP(out[header.EthernetLen:]).Encode(&header.ARPFields{
		Op:        header.ARPRequest,
		SenderMAC: gwMAC,
		SenderIP:  gwIP,
		TargetIP:  target,
	})
	return arpFrameLen
}
