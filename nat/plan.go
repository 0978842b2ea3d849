package nat

import (
	"encoding/binary"
	"time"

	"github.com/ferry-overlay/ferry/header"
)

// What-if translation, for `ferry trace inject`: Plan works out what
// Process would do with one packet now — the same parse, the same rules,
// the same lookups and port choice — without changing the table: no entry
// is created, refreshed, advanced or collected, no port is taken, and no
// counter moves. It is a control-path call, never made by the fast path.

// PlanKind is what Plan found a packet to be.
type PlanKind uint8

// Plan kinds.
const (
	// PlanNone: the verdict is NoMatch or a drop; nothing is translated.
	PlanNone PlanKind = iota
	// PlanTracked: the packet belongs to a tracked connection, Plan.Conn.
	PlanTracked
	// PlanICMPError: an ICMP error about the tracked connection whose
	// tuples Plan.Conn holds, translated for its addressee.
	PlanICMPError
	// PlanNew: the packet would start the connection Plan.Conn.
	PlanNew
)

// Plan is the outcome Table.Plan foresees for one packet.
type Plan struct {
	// Verdict is what Process would return for the packet now.
	Verdict Verdict
	// Kind says what Conn is; with PlanNone, Conn is the zero value.
	Kind PlanKind
	// Conn is the connection as the packet would leave it: for
	// PlanTracked the entry with the TCP state the packet moves it to and
	// SeenReply set by a reply; for PlanNew the entry Process would insert
	// (Reply holds the port free now: Process picks the port when the
	// packet is really sent, and another connection may take this one
	// first); for PlanICMPError the entry as it is.
	Conn Conn
	// Reply: the packet matches Conn.Reply, so it is translated back.
	Reply bool
}

// Plan foresees what Process would do at time now with the IPv4 packet b
// travelling dir, and rewrites b in place exactly as Process would (the
// caller passes its own copy), so the caller can carry the packet on to
// where the translation sends it. The table is left unchanged (see the
// file comment). Plan takes the read lock and allocates nothing; it never
// panics, whatever b holds. One outcome it does not foresee: with the table
// full, Process would first reclaim or evict an entry, or drop the packet
// with DropTableFull; Plan reports the connection as if there were room.
func (t *Table) Plan(now int64, b []byte, dir Dir) Plan {
	var p parsed
	if v := parse(b, &p); v != Translated {
		return Plan{Verdict: v}
	}
	switch dir {
	case Inbound:
		if p.k.dst() != t.nat {
			return Plan{Verdict: NoMatch}
		}
	case Outbound:
	default:
		return Plan{Verdict: DropInvalid}
	}
	rules := t.rules.Load()
	t.mu.RLock()
	defer t.mu.RUnlock()
	if p.icmpErr {
		v := t.icmpError(now, b, &p, dir)
		if v != Translated {
			return Plan{Verdict: v}
		}
		// The quote, now translated, names the connection.
		idx := t.errorConn(now, b, &p)
		if idx < 0 {
			return Plan{Verdict: v}
		}
		return Plan{Verdict: v, Kind: PlanICMPError, Conn: t.entries[idx].conn(now)}
	}
	if idx, w := t.find(p.k); idx >= 0 && now < t.entries[idx].expires.Load() {
		e := &t.entries[idx]
		if e.dirs[w] != dir {
			return Plan{Verdict: DropInvalid}
		}
		c := t.planTrack(now, e, w, &p)
		rewrite(b, &p, e.tuples[1-w].reverse())
		return Plan{Verdict: Translated, Kind: PlanTracked, Conn: c, Reply: w == dirReply}
	}
	return t.planNew(now, b, &p, dir, rules)
}

// planTrack is track's read-only form: the connection of entry e as a
// packet matching its tuple w would leave it (state, flags, expiry). Call
// with the lock held.
func (t *Table) planTrack(now int64, e *entry, w int, p *parsed) Conn {
	old := e.state.Load()
	nw, timeout, tr := t.transition(old, w, p)
	if tr != 0 {
		return e.conn(now) // track leaves such an entry alone
	}
	exp := e.expires.Load()
	if nw != old || now+timeout-exp >= refreshSlack {
		exp = now + timeout
	}
	c := e.conn(now)
	c.State, c.SeenReply, c.Assured = TCPState(nw&stTCPMask), nw&stSeenReply != 0, nw&stAssured != 0
	c.SecondsLeft = (exp - now + int64(time.Second) - 1) / int64(time.Second)
	return c
}

// planNew is Plan for a packet of no tracked connection: slow's decisions,
// with read-only lookups. Call with the read lock held.
func (t *Table) planNew(now int64, b []byte, p *parsed, dir Dir, rules *ruleSet) Plan {
	k := p.k
	proto := k.proto()
	toNAT := k.dst() == t.nat
	addr, port, published := rules.lookup(proto, k.dport())
	if !published && (toNAT || dir == Inbound) {
		return Plan{Verdict: NoMatch}
	}
	state, timeout, ok := t.opening(p, proto)
	if !ok {
		return Plan{Verdict: DropInvalid}
	}
	reply, _, _, v := t.newReply(now, k, dir, addr, port, published, rules, true)
	if v != Translated {
		return Plan{Verdict: v}
	}
	rewrite(b, p, reply.reverse())
	return Plan{Verdict: Translated, Kind: PlanNew, Conn: Conn{
		Orig: k.tuple(), Reply: reply.tuple(), State: state,
		SecondsLeft: (timeout + int64(time.Second) - 1) / int64(time.Second),
	}}
}

// liveRO reports whether k belongs to an unexpired entry, leaving expired
// ones where they are (live's read-only form). Call with the lock held.
func (t *Table) liveRO(now int64, k key) bool {
	idx, _ := t.find(k)
	return idx >= 0 && now < t.entries[idx].expires.Load()
}

// errorConn returns the entry an ICMP error b, already translated by
// icmpError, is about, or -1: its quote now carries the tuple the
// connection's addressee sent. Call with the lock held.
func (t *Table) errorConn(now int64, b []byte, p *parsed) int32 {
	q := b[p.l4+header.ICMPv4MinLen : p.l4e]
	hl := header.IPv4(q).HeaderLength()
	il4 := q[hl:]
	proto := header.IPv4(q).Protocol()
	sport, dport := binary.BigEndian.Uint16(il4[0:]), binary.BigEndian.Uint16(il4[2:])
	if proto == header.ProtoICMPv4 {
		sport = binary.BigEndian.Uint16(il4[offICMPIdent:])
		dport = sport
	}
	idx, _ := t.find(makeKey(proto, binary.BigEndian.Uint32(q[offIPSrc:]), binary.BigEndian.Uint32(q[offIPDst:]), sport, dport))
	if idx < 0 || now >= t.entries[idx].expires.Load() {
		return -1
	}
	return idx
}
