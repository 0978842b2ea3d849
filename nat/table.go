package nat

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-overlay/ferry/header"
)

// Bits of entry.state above the TCP state byte.
const (
	stSeenReply uint32 = 1 << 8
	stAssured   uint32 = 1 << 9
	stTCPMask   uint32 = 0xff
)

const (
	// earlyDropScan bounds the entries one early-drop attempt examines.
	earlyDropScan = 128
	// maxPortAttempts bounds the ports masquerade tries after the flow's
	// own, as the kernel's nf_nat_l4proto_unique_tuple does (128).
	maxPortAttempts = 128
	// refreshSlack: a packet that does not change a connection's state
	// moves its expiry only when that gains at least this much, so an
	// established flow writes the shared expiry word about once a second
	// instead of once a packet.
	refreshSlack = int64(time.Second)
)

// entry is one tracked connection. tuples and dirs are written only under
// the write lock; expires and state are read and written atomically
// because packets of one flow may be processed by several workers holding
// the read lock.
type entry struct {
	tuples  [2]key       // [dirOrig], [dirReply]
	expires atomic.Int64 // the caller's clock, ns; expired iff now >= expires
	state   atomic.Uint32
	dirs    [2]Dir // the Dir of packets matching tuples[0], tuples[1]
	used    bool
}

// Rule publishes Port of protocol Proto (TCP or UDP) on the nat_address to
// the container endpoint To, like `docker run -p Port:To.Port`.
type Rule struct {
	Proto header.IPProto `json:"proto"`
	Port  uint16         `json:"port"`
	To    netip.AddrPort `json:"to"`
}

// ruleSet is an immutable set of rules, swapped whole by SetRules.
type ruleSet struct {
	rules []Rule
	to    map[uint32]key // proto<<16|port -> target (src, sport fields)
}

func ruleKey(proto header.IPProto, port uint16) uint32 { return uint32(proto)<<16 | uint32(port) }

// lookup returns the target address and port of a published port.
func (r *ruleSet) lookup(proto header.IPProto, port uint16) (addr uint32, p uint16, ok bool) {
	if r == nil || len(r.to) == 0 {
		return 0, 0, false
	}
	k, ok := r.to[ruleKey(proto, port)]
	return k.src(), k.sport(), ok
}

// Table tracks connections and translates packets for one uplink. Create
// it with New. See the package comment for its concurrency model; every
// method is safe for concurrent use.
type Table struct {
	opts       Options
	nat        uint32 // Options.NATAddr
	seed       uint64
	tcpTimeout [numTCPStates]int64
	udpUnrep   int64
	udpAssured int64
	icmp       int64
	gcInterval int64
	nextGC     atomic.Int64
	rules      atomic.Pointer[ruleSet]

	mu sync.RWMutex
	// Guarded by mu: written only under the write lock.
	entries     []entry
	free        []int32  // stack of unused entry indexes
	slots       []uint32 // open-addressing index: 0 empty, else entry<<1|tupleDir + 1
	mask        uint64
	gcCursor    int
	evictCursor int
	byProto     [3]int // TCP, UDP, ICMP entries

	inserts, earlyDrops, tableFull, portExhausted, expired, deleted, tcpInvalid atomic.Uint64
}

// New returns an empty Table with all storage for opts.MaxEntries
// connections allocated, or an error naming the bad option.
func New(opts Options) (*Table, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Table{
		opts:       o,
		nat:        addrBits(o.NATAddr),
		seed:       rand.Uint64(),
		udpUnrep:   int64(o.UDPUnreplied),
		udpAssured: int64(o.UDPAssured),
		icmp:       int64(o.ICMP),
		gcInterval: int64(o.GCInterval),
		entries:    make([]entry, o.MaxEntries),
		free:       make([]int32, o.MaxEntries),
	}
	t.tcpTimeout = [numTCPStates]int64{
		TCPSynSent:     int64(o.TCPSynSent),
		TCPSynRecv:     int64(o.TCPSynRecv),
		TCPEstablished: int64(o.TCPEstablished),
		TCPFinWait:     int64(o.TCPFinWait),
		TCPCloseWait:   int64(o.TCPCloseWait),
		TCPLastAck:     int64(o.TCPLastAck),
		TCPTimeWait:    int64(o.TCPTimeWait),
		TCPClose:       int64(o.TCPClose),
		TCPSynSent2:    int64(o.TCPSynSent),
	}
	// Two keys per entry at load factor <= 1/2.
	n := uint64(1) << bits.Len64(uint64(4*o.MaxEntries-1))
	t.slots = make([]uint32, n)
	t.mask = n - 1
	for i := range t.free {
		t.free[i] = int32(len(t.free) - 1 - i)
	}
	t.rules.Store(&ruleSet{})
	return t, nil
}

// NATAddr returns the nat_address the table translates to.
func (t *Table) NATAddr() netip.Addr { return t.opts.NATAddr }

// find returns the entry holding tuple k and which of its tuples matched,
// or idx -1. Callers hold the lock (read or write).
func (t *Table) find(k key) (idx int32, w int) {
	for i := hash(k, t.seed) & t.mask; ; i = (i + 1) & t.mask {
		v := t.slots[i]
		if v == 0 {
			return -1, 0
		}
		v--
		if t.entries[v>>1].tuples[v&1] == k {
			return int32(v >> 1), int(v & 1)
		}
	}
}

// slotKey returns the key a non-empty slot value refers to.
func (t *Table) slotKey(v uint32) key {
	v--
	return t.entries[v>>1].tuples[v&1]
}

// slotRef is the index slot value for tuple w of entry idx.
func slotRef(idx int32, w int) uint32 { return (uint32(idx)<<1 | uint32(w)) + 1 }

func (t *Table) indexAdd(k key, ref uint32) {
	i := hash(k, t.seed) & t.mask
	for t.slots[i] != 0 {
		i = (i + 1) & t.mask
	}
	t.slots[i] = ref
}

// indexRemove deletes the slot holding ref (whose key is k) and shifts
// later members of its probe run back, so no tombstones accumulate and
// lookups stay as short as at insertion.
func (t *Table) indexRemove(k key, ref uint32) {
	i := hash(k, t.seed) & t.mask
	for t.slots[i] != ref {
		i = (i + 1) & t.mask
	}
	for {
		t.slots[i] = 0
		j := i
		for {
			j = (j + 1) & t.mask
			v := t.slots[j]
			if v == 0 {
				return
			}
			home := hash(t.slotKey(v), t.seed) & t.mask
			// v may move to i iff its home is not cyclically in (i, j].
			if (i <= j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
				t.slots[i] = v
				i = j
				break
			}
		}
	}
}

func protoSlot(p header.IPProto) int {
	switch p {
	case header.ProtoTCP:
		return 0
	case header.ProtoUDP:
		return 1
	}
	return 2
}

// insert adds a connection; both tuples must be absent from the index.
// Call with the write lock held.
func (t *Table) insert(now int64, orig, reply key, d0, d1 Dir, state uint32, timeout int64) Verdict {
	if len(t.free) == 0 && !t.makeRoom(now) {
		t.tableFull.Add(1)
		return DropTableFull
	}
	idx := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	e := &t.entries[idx]
	e.tuples = [2]key{orig, reply}
	e.dirs = [2]Dir{d0, d1}
	e.used = true
	e.state.Store(state)
	e.expires.Store(now + timeout)
	t.indexAdd(orig, slotRef(idx, dirOrig))
	t.indexAdd(reply, slotRef(idx, dirReply))
	t.byProto[protoSlot(orig.proto())]++
	t.inserts.Add(1)
	return Translated
}

// remove deletes entry idx. Call with the write lock held.
func (t *Table) remove(idx int32) {
	e := &t.entries[idx]
	t.indexRemove(e.tuples[dirOrig], slotRef(idx, dirOrig))
	t.indexRemove(e.tuples[dirReply], slotRef(idx, dirReply))
	t.byProto[protoSlot(e.tuples[dirOrig].proto())]--
	e.used = false
	t.free = append(t.free, idx)
}

// live returns the index of the unexpired entry holding k, or -1; an
// expired one is removed on the way. Call with the write lock held.
func (t *Table) live(now int64, k key) int32 {
	idx, _ := t.find(k)
	if idx >= 0 && now >= t.entries[idx].expires.Load() {
		t.remove(idx)
		t.expired.Add(1)
		return -1
	}
	return idx
}

// makeRoom frees one entry of a full table: an expired one if a collection
// step finds any, else one that is not assured (the kernel's early_drop).
// Call with the write lock held.
func (t *Table) makeRoom(now int64) bool {
	if t.expireLocked(now, t.opts.GCBatch) > 0 {
		return true
	}
	n := len(t.entries)
	for range min(earlyDropScan, n) {
		i := t.evictCursor
		t.evictCursor++
		if t.evictCursor == n {
			t.evictCursor = 0
		}
		e := &t.entries[i]
		if e.used && e.state.Load()&stAssured == 0 {
			t.remove(int32(i))
			t.earlyDrops.Add(1)
			return true
		}
	}
	return false
}

// expireLocked examines up to max entries from the collection cursor and
// removes the expired ones; it returns how many it removed.
func (t *Table) expireLocked(now int64, max int) int {
	n := len(t.entries)
	removed := 0
	for range min(max, n) {
		i := t.gcCursor
		t.gcCursor++
		if t.gcCursor == n {
			t.gcCursor = 0
		}
		e := &t.entries[i]
		if e.used && now >= e.expires.Load() {
			t.remove(int32(i))
			removed++
		}
	}
	t.expired.Add(uint64(removed))
	return removed
}

// Expire runs one collection step at time now: it examines up to max
// entries (Options.GCBatch if max <= 0) and removes the expired ones,
// returning how many. Process already does this every GCInterval; a
// housekeeping goroutine may call Expire to clean an idle table.
func (t *Table) Expire(now int64, max int) int {
	if max <= 0 {
		max = t.opts.GCBatch
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.expireLocked(now, max)
}

// SetRules replaces the publish rules atomically and ends every connection
// a removed or changed rule created (inbound and hairpin flows to its port
// on the nat_address), so no stale entry keeps sending a published port's
// traffic to its old target. It returns how many connections it deleted.
// Each rule needs Proto TCP or UDP, a non-zero Port, an IPv4 To with a
// non-zero port, and a (Proto, Port) no other rule has; on error nothing
// changes.
func (t *Table) SetRules(rules []Rule) (deleted int, err error) {
	rs := &ruleSet{rules: append([]Rule(nil), rules...), to: make(map[uint32]key, len(rules))}
	for i, r := range rules {
		if r.Proto != header.ProtoTCP && r.Proto != header.ProtoUDP {
			return 0, fmt.Errorf("nat: rule %d: protocol %d is not tcp or udp", i, r.Proto)
		}
		to := netip.AddrPortFrom(r.To.Addr().Unmap(), r.To.Port())
		if r.Port == 0 || !to.Addr().Is4() || to.Port() == 0 {
			return 0, fmt.Errorf("nat: rule %d: %s port %d to %v: need a non-zero port and an IPv4 address:port", i, protoName(r.Proto), r.Port, r.To)
		}
		rk := ruleKey(r.Proto, r.Port)
		if _, dup := rs.to[rk]; dup {
			return 0, fmt.Errorf("nat: rule %d: %s port %d is published twice", i, protoName(r.Proto), r.Port)
		}
		rs.to[rk] = makeKey(r.Proto, addrBits(to.Addr()), 0, to.Port(), 0)
		rs.rules[i].To = to
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rules.Store(rs)
	for i := range t.entries {
		e := &t.entries[i]
		o := e.tuples[dirOrig]
		if !e.used || o.dst() != t.nat || (o.proto() != header.ProtoTCP && o.proto() != header.ProtoUDP) {
			continue
		}
		addr, port, ok := rs.lookup(o.proto(), o.dport())
		r := e.tuples[dirReply]
		if !ok || r.src() != addr || r.sport() != port {
			t.remove(int32(i))
			deleted++
		}
	}
	t.deleted.Add(uint64(deleted))
	return deleted, nil
}

// Rules returns a copy of the current publish rules.
func (t *Table) Rules() []Rule { return append([]Rule(nil), t.rules.Load().rules...) }

// Conn describes one tracked connection, in the shape of a conntrack -L
// line; `ferry conntrack` prints it.
type Conn struct {
	// Orig is the tuple of the connection's first packet, before
	// translation; Reply the tuple its answers carry, before translation.
	Orig  Tuple `json:"orig"`
	Reply Tuple `json:"reply"`
	// State is the TCP state; TCPNone for UDP and ICMP.
	State TCPState `json:"state"`
	// SeenReply: a packet matching Reply has been seen. Assured: the
	// connection is past the point where early drop may evict it.
	SeenReply bool `json:"seen_reply"`
	Assured   bool `json:"assured"`
	// SecondsLeft is the time until expiry, rounded up to whole seconds.
	SecondsLeft int64 `json:"seconds_left"`
}

// String formats c as conntrack -L does, e.g. "tcp 6 431999 ESTABLISHED
// src=… dst=… sport=… dport=… src=… dst=… sport=… dport=… [ASSURED]".
func (c Conn) String() string {
	s := fmt.Sprintf("%s %d %d ", protoName(c.Orig.Proto), uint8(c.Orig.Proto), c.SecondsLeft)
	if c.Orig.Proto == header.ProtoTCP {
		s += c.State.String() + " "
	}
	s += c.Orig.String()
	if !c.SeenReply {
		s += " [UNREPLIED]"
	}
	s += " " + c.Reply.String()
	if c.Assured {
		s += " [ASSURED]"
	}
	return s
}

// conn builds the Conn of entry e at time now.
func (e *entry) conn(now int64) Conn {
	st := e.state.Load()
	left := e.expires.Load() - now
	return Conn{
		Orig:        e.tuples[dirOrig].tuple(),
		Reply:       e.tuples[dirReply].tuple(),
		State:       TCPState(st & stTCPMask),
		SeenReply:   st&stSeenReply != 0,
		Assured:     st&stAssured != 0,
		SecondsLeft: (left + int64(time.Second) - 1) / int64(time.Second),
	}
}

// Snapshot appends every unexpired connection at time now to dst and
// returns it, in table order. It holds the read lock while it copies.
func (t *Table) Snapshot(now int64, dst []Conn) []Conn {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for i := range t.entries {
		e := &t.entries[i]
		if e.used && now < e.expires.Load() {
			dst = append(dst, e.conn(now))
		}
	}
	return dst
}

// DeleteMatching removes every connection (expired or not, judged at time
// now) for which match returns true, and returns how many it removed. It
// holds the write lock for one pass over the table, which stalls Process
// for about a millisecond per 100 000 entries: a control-path call.
func (t *Table) DeleteMatching(now int64, match func(Conn) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := range t.entries {
		e := &t.entries[i]
		if e.used && match(e.conn(now)) {
			t.remove(int32(i))
			n++
		}
	}
	t.deleted.Add(uint64(n))
	return n
}

// Lookup returns the unexpired connection (at time now) that has tu as its
// original or its reply tuple, and reports which: reply is true when tu is
// the reply tuple. It takes the read lock; the packet tracer calls it for
// traced packets only, never the fast path.
func (t *Table) Lookup(now int64, tu Tuple) (c Conn, reply, ok bool) {
	k, ok := keyOf(tu)
	if !ok {
		return Conn{}, false, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	idx, w := t.find(k)
	if idx < 0 || now >= t.entries[idx].expires.Load() {
		return Conn{}, false, false
	}
	return t.entries[idx].conn(now), w == dirReply, true
}

// Delete removes the connection with tuple tu as its original or its reply
// tuple and reports whether there was one.
func (t *Table) Delete(tu Tuple) bool {
	k, ok := keyOf(tu)
	if !ok {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	idx, _ := t.find(k)
	if idx < 0 {
		return false
	}
	t.remove(idx)
	t.deleted.Add(1)
	return true
}

// Flush removes every connection and returns how many there were.
func (t *Table) Flush() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := range t.entries {
		if t.entries[i].used {
			t.remove(int32(i))
			n++
		}
	}
	t.deleted.Add(uint64(n))
	return n
}

// Stats are a Table's gauges and counters. Counters only grow.
type Stats struct {
	// Entries in the table (expired ones not yet collected included),
	// and their split by protocol.
	Entries int `json:"entries"`
	TCP     int `json:"tcp"`
	UDP     int `json:"udp"`
	ICMP    int `json:"icmp"`
	// Max is Options.MaxEntries.
	Max int `json:"max"`
	// Inserts counts connections created.
	Inserts uint64 `json:"inserts"`
	// EarlyDrops counts unassured connections evicted to make room.
	EarlyDrops uint64 `json:"early_drops"`
	// TableFull counts new connections refused because nothing could be
	// evicted (each also a DropTableFull verdict).
	TableFull uint64 `json:"table_full"`
	// PortExhausted counts new connections refused for want of a port
	// (each also a DropPortExhausted verdict).
	PortExhausted uint64 `json:"port_exhausted"`
	// Expired counts connections removed because their timeout passed.
	Expired uint64 `json:"expired"`
	// Deleted counts connections removed by Delete, DeleteMatching,
	// Flush and SetRules.
	Deleted uint64 `json:"deleted"`
	// TCPInvalid counts TCP segments of known connections that did not
	// fit the state (translated, but left the state alone).
	TCPInvalid uint64 `json:"tcp_invalid"`
}

// Stats returns the table's current gauges and counters.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	s := Stats{
		TCP:  t.byProto[0],
		UDP:  t.byProto[1],
		ICMP: t.byProto[2],
		Max:  len(t.entries),
	}
	t.mu.RUnlock()
	s.Entries = s.TCP + s.UDP + s.ICMP
	s.Inserts = t.inserts.Load()
	s.EarlyDrops = t.earlyDrops.Load()
	s.TableFull = t.tableFull.Load()
	s.PortExhausted = t.portExhausted.Load()
	s.Expired = t.expired.Load()
	s.Deleted = t.deleted.Load()
	s.TCPInvalid = t.tcpInvalid.Load()
	return s
}
