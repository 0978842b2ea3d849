package nat

import (
	"encoding/binary"

	"github.com/ferry-overlay/ferry/header"
)

// parsed is what Process reads from a packet, once, into a struct on the
// worker's stack.
type parsed struct {
	k        key // the packet's tuple (ports 0 for an ICMP error)
	l4, l4e  int // the transport header's start and the IP packet's end
	flags    uint8
	icmpType uint8
	icmpErr  bool // an ICMP error (destination unreachable, time exceeded, parameter problem)
}

// ICMPv4 error types Process translates (RFC 792).
const (
	icmpParamProblem = 12
	offIPChecksum    = 10
	offIPSrc         = 12
	offIPDst         = 16
	offTCPChecksum   = 16
	offUDPChecksum   = 6
	offICMPChecksum  = 2
	offICMPIdent     = 4
)

// parse validates b as an IPv4 packet NAT can handle and fills p. It
// returns Translated on success, else the drop verdict. It never panics,
// whatever b holds.
func parse(b []byte, p *parsed) Verdict {
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) {
		return DropMalformed
	}
	if ip.IsFragment() {
		return DropFragment
	}
	p.l4, p.l4e = ip.HeaderLength(), int(ip.TotalLength())
	l4 := b[p.l4:p.l4e]
	src := binary.BigEndian.Uint32(b[offIPSrc:])
	dst := binary.BigEndian.Uint32(b[offIPDst:])
	proto := ip.Protocol()
	switch proto {
	case header.ProtoTCP:
		if len(l4) < header.TCPMinLen {
			return DropMalformed
		}
		t := header.TCP(l4)
		if off := t.DataOffset(); off < header.TCPMinLen || off > len(l4) {
			return DropMalformed
		}
		p.flags = t.Flags()
		p.k = makeKey(proto, src, dst, t.SrcPort(), t.DstPort())
	case header.ProtoUDP:
		if len(l4) < header.UDPLen {
			return DropMalformed
		}
		u := header.UDP(l4)
		if ul := int(u.Length()); ul < header.UDPLen || ul > len(l4) {
			return DropMalformed
		}
		p.k = makeKey(proto, src, dst, u.SrcPort(), u.DstPort())
	case header.ProtoICMPv4:
		if len(l4) < header.ICMPv4MinLen {
			return DropMalformed
		}
		m := header.ICMPv4(l4)
		p.icmpType = m.Type()
		switch p.icmpType {
		case header.ICMPv4EchoRequest, header.ICMPv4EchoReply:
			p.k = makeKey(proto, src, dst, m.Ident(), m.Ident())
		case header.ICMPv4DestUnreachable, header.ICMPv4TimeExceeded, icmpParamProblem:
			p.icmpErr = true
			p.k = makeKey(proto, src, dst, 0, 0)
		default:
			return DropUnsupported
		}
	default:
		return DropUnsupported
	}
	return Translated
}

// Process tracks and translates a batch of IPv4 packets in place at time
// now (a monotonic clock in nanoseconds, the same one for every call on the
// table). pkts[i] holds one IPv4 packet from its first header byte (bytes
// past its Total Length are allowed and left alone), dirs[i] says which
// way it travels, and Process stores its outcome in verdicts[i]; dirs and
// verdicts must be at least as long as pkts.
//
// Process rewrites only packets whose verdict is Translated, and never
// changes a packet's length. It keeps no reference to any slice after it
// returns and allocates nothing. Packets of one flow keep their order
// relative to each other. It takes the read lock once for the batch and the
// write lock at most once, only if the batch starts connections or a
// collection step is due (see the package comment).
func (t *Table) Process(now int64, pkts [][]byte, dirs []Dir, verdicts []Verdict) {
	dirs, verdicts = dirs[:len(pkts)], verdicts[:len(pkts)]
	rules := t.rules.Load()
	pending := false
	t.mu.RLock()
	for i, b := range pkts {
		v := t.fast(now, b, dirs[i], rules)
		verdicts[i] = v
		pending = pending || v == verdictPending
	}
	t.mu.RUnlock()
	next := t.nextGC.Load()
	gc := now >= next && t.nextGC.CompareAndSwap(next, now+t.gcInterval)
	if !pending && !gc {
		return
	}
	t.mu.Lock()
	if pending {
		// The rule set is reloaded under the write lock so that SetRules,
		// which stores it under the same lock, never races a new flow.
		rules = t.rules.Load()
		for i, v := range verdicts {
			if v == verdictPending {
				verdicts[i] = t.slow(now, pkts[i], dirs[i], rules)
			}
		}
	}
	if gc {
		t.expireLocked(now, t.opts.GCBatch)
	}
	t.mu.Unlock()
}

// fast handles one packet under the read lock: packets of known flows,
// ICMP errors about them, and the quick refusals. It returns
// verdictPending for a packet that may start a flow.
func (t *Table) fast(now int64, b []byte, dir Dir, rules *ruleSet) Verdict {
	var p parsed
	if v := parse(b, &p); v != Translated {
		return v
	}
	switch dir {
	case Inbound:
		if p.k.dst() != t.nat {
			return NoMatch
		}
	case Outbound:
	default:
		return DropInvalid
	}
	if p.icmpErr {
		return t.icmpError(now, b, &p, dir)
	}
	idx, w := t.find(p.k)
	if idx < 0 || now >= t.entries[idx].expires.Load() {
		// Not tracked (or expired). Decide without the write lock what
		// cannot start a flow.
		toNAT := p.k.dst() == t.nat
		if dir == Inbound || toNAT {
			if p.k.proto() == header.ProtoICMPv4 {
				return NoMatch
			}
			if _, _, ok := rules.lookup(p.k.proto(), p.k.dport()); !ok {
				return NoMatch
			}
		}
		return verdictPending
	}
	e := &t.entries[idx]
	if e.dirs[w] != dir {
		return DropInvalid
	}
	t.track(now, e, w, &p)
	rewrite(b, &p, e.tuples[1-w].reverse())
	return Translated
}

// track advances the state of entry e for a packet matching its tuple w
// and refreshes its expiry. Safe under the read lock: it changes only the
// atomic fields.
func (t *Table) track(now int64, e *entry, w int, p *parsed) {
	for {
		old := e.state.Load()
		nw, timeout, tr := t.transition(old, w, p)
		switch tr {
		case tcpInvalid:
			t.tcpInvalid.Add(1)
			return
		case tcpIgnore:
			return
		}
		exp := now + timeout
		if nw == old {
			if exp-e.expires.Load() >= refreshSlack {
				e.expires.Store(exp)
			}
			return
		}
		if e.state.CompareAndSwap(old, nw) {
			e.expires.Store(exp)
			return
		}
	}
}

// transition returns the state word an entry in state old moves to for a
// packet matching its tuple w, and the connection's new timeout; tr is
// tcpInvalid or tcpIgnore for a TCP packet that must leave the entry
// alone (nw and timeout are then meaningless), else 0.
func (t *Table) transition(old uint32, w int, p *parsed) (nw uint32, timeout int64, tr TCPState) {
	st := TCPState(old & stTCPMask)
	flags := old &^ stTCPMask
	if w == dirReply {
		flags |= stSeenReply
	}
	switch p.k.proto() {
	case header.ProtoTCP:
		switch n := tcpTransitions[w][classify(p.flags)][st]; n {
		case tcpInvalid, tcpIgnore:
			return old, 0, n
		default:
			st = n
		}
		if flags&stSeenReply != 0 && st == TCPEstablished {
			flags |= stAssured
		}
		timeout = t.tcpTimeout[st]
	case header.ProtoUDP:
		timeout = t.udpUnrep
		if flags&stSeenReply != 0 {
			flags |= stAssured
			timeout = t.udpAssured
		}
	default:
		timeout = t.icmp
	}
	return flags | uint32(st), timeout, 0
}

// opening returns the state and timeout a connection starts with when
// packet p (of protocol proto, not of a tracked connection) opens it, or
// false when it may not open one: a TCP packet that is no valid first
// packet, or ICMP other than an echo request (only outbound ICMP not
// addressed to the nat_address gets here). slow and Plan share it.
func (t *Table) opening(p *parsed, proto header.IPProto) (TCPState, int64, bool) {
	switch proto {
	case header.ProtoTCP:
		st := tcpTransitions[dirOrig][classify(p.flags)][TCPNone]
		if st >= numTCPStates {
			return 0, 0, false
		}
		return st, t.tcpTimeout[st], true
	case header.ProtoUDP:
		return TCPNone, t.udpUnrep, true
	}
	if p.icmpType != header.ICMPv4EchoRequest {
		return 0, 0, false
	}
	return TCPNone, t.icmp, true
}

// slow handles, under the write lock, a packet fast could not: it may
// start a connection.
func (t *Table) slow(now int64, b []byte, dir Dir, rules *ruleSet) Verdict {
	var p parsed
	parse(b, &p) // succeeded in fast
	// Another worker may have created the flow since fast looked.
	if idx := t.live(now, p.k); idx >= 0 {
		e := &t.entries[idx]
		_, w := t.find(p.k)
		if e.dirs[w] != dir {
			return DropInvalid
		}
		t.track(now, e, w, &p)
		rewrite(b, &p, e.tuples[1-w].reverse())
		return Translated
	}
	k := p.k
	proto := k.proto()
	toNAT := k.dst() == t.nat
	addr, port, published := rules.lookup(proto, k.dport())
	if !published && (toNAT || dir == Inbound) {
		// The rule went away since fast looked.
		return NoMatch
	}
	st, timeout, ok := t.opening(&p, proto)
	if !ok {
		return DropInvalid
	}
	state := uint32(st)
	reply, d0, d1, v := t.newReply(now, k, dir, addr, port, published, rules, false)
	if v == DropPortExhausted {
		t.portExhausted.Add(1)
	}
	if v != Translated {
		return v
	}
	if v = t.insert(now, k, reply, d0, d1, state, timeout); v != Translated {
		return v
	}
	rewrite(b, &p, reply.reverse())
	return Translated
}

// newReply decides the reply tuple of a new connection whose original
// tuple is k, seen in direction dir, and the directions of its original
// and reply tuples; addr, port and published are its destination port's
// publish rule. Publish keeps the client's address and makes the
// container the destination; hairpin (a container to a published port)
// publishes and masquerades the source, so the answer comes back through
// ferry; masquerade gives the source a port on the nat_address. It returns
// DropConflict or DropPortExhausted when there is no such tuple to take.
// slow and Plan share it: with ro (Plan, under the read lock) it only
// looks and leaves expired entries where they are.
func (t *Table) newReply(now int64, k key, dir Dir, addr uint32, port uint16, published bool, rules *ruleSet, ro bool) (reply key, d0, d1 Dir, v Verdict) {
	proto := k.proto()
	switch {
	case published && dir == Inbound:
		reply = makeKey(proto, addr, k.src(), port, k.sport())
		if t.inUse(now, reply, ro) {
			return reply, 0, 0, DropConflict
		}
		return reply, Inbound, Outbound, Translated
	case published:
		np, ok := t.pickPort(now, proto, addr, port, k.sport(), rules, ro)
		if !ok {
			return reply, 0, 0, DropPortExhausted
		}
		return makeKey(proto, addr, t.nat, port, np), Outbound, Outbound, Translated
	default:
		np, ok := t.pickPort(now, proto, k.dst(), k.dport(), k.sport(), rules, ro)
		if !ok {
			return reply, 0, 0, DropPortExhausted
		}
		if proto == header.ProtoICMPv4 {
			return makeKey(proto, k.dst(), t.nat, np, np), Outbound, Inbound, Translated
		}
		return makeKey(proto, k.dst(), t.nat, k.dport(), np), Outbound, Inbound, Translated
	}
}

// inUse reports whether k belongs to an unexpired entry; without ro, an
// expired one it finds is removed (live), with ro it is left (liveRO).
func (t *Table) inUse(now int64, k key, ro bool) bool {
	if ro {
		return t.liveRO(now, k)
	}
	return t.live(now, k) >= 0
}

// pickPort picks the port (or ICMP identifier) on the nat_address for a
// new masqueraded flow to remote:rport: want (the flow's own) if no
// connection's reply tuple uses it, else one from the configured range,
// starting at a point hashed from the flow and trying up to
// maxPortAttempts. A published port is never handed out. With ro it only
// looks (see inUse): the port the write-locked pick would take now.
func (t *Table) pickPort(now int64, proto header.IPProto, remote uint32, rport, want uint16, rules *ruleSet, ro bool) (uint16, bool) {
	free := func(c uint16) bool {
		if proto == header.ProtoICMPv4 {
			return !t.inUse(now, makeKey(proto, remote, t.nat, c, c), ro)
		}
		if _, _, published := rules.lookup(proto, c); published {
			return false
		}
		return !t.inUse(now, makeKey(proto, remote, t.nat, rport, c), ro)
	}
	if free(want) {
		return want, true
	}
	lo := uint32(t.opts.PortMin)
	size := uint32(t.opts.PortMax) - lo + 1
	start := uint32(hash(makeKey(proto, remote, t.nat, rport, want), t.seed)>>32) % size
	for i := range min(size, maxPortAttempts) {
		if c := uint16(lo + (start+i)%size); free(c) {
			return c, true
		}
	}
	return 0, false
}

// rewrite changes packet b, whose tuple is p.k, to tuple to: addresses,
// ports or echo identifier, with incremental updates (RFC 1624) of the
// IPv4 header checksum and of the TCP/UDP checksum (pseudo-header
// included) or the ICMP checksum. A UDP checksum of 0 (none) stays 0.
func rewrite(b []byte, p *parsed, to key) {
	from := p.k
	l4 := b[p.l4:p.l4e]
	ipc := binary.BigEndian.Uint16(b[offIPChecksum:])
	var csOff int
	switch from.proto() {
	case header.ProtoTCP:
		csOff = offTCPChecksum
	case header.ProtoUDP:
		csOff = offUDPChecksum
	default:
		csOff = offICMPChecksum
	}
	l4c := binary.BigEndian.Uint16(l4[csOff:])
	// The pseudo-header is TCP's and UDP's; a UDP checksum of 0 means
	// none was sent and must stay 0.
	pseudo := from.proto() != header.ProtoICMPv4
	update := !(from.proto() == header.ProtoUDP && l4c == 0)
	if s, ns := from.src(), to.src(); s != ns {
		ipc = header.UpdateChecksum32(ipc, s, ns)
		if pseudo && update {
			l4c = header.UpdateChecksum32(l4c, s, ns)
		}
		binary.BigEndian.PutUint32(b[offIPSrc:], ns)
	}
	if d, nd := from.dst(), to.dst(); d != nd {
		ipc = header.UpdateChecksum32(ipc, d, nd)
		if pseudo && update {
			l4c = header.UpdateChecksum32(l4c, d, nd)
		}
		binary.BigEndian.PutUint32(b[offIPDst:], nd)
	}
	binary.BigEndian.PutUint16(b[offIPChecksum:], ipc)
	if pseudo {
		if s, ns := from.sport(), to.sport(); s != ns {
			if update {
				l4c = header.UpdateChecksum16(l4c, s, ns)
			}
			binary.BigEndian.PutUint16(l4[0:], ns)
		}
		if d, nd := from.dport(), to.dport(); d != nd {
			if update {
				l4c = header.UpdateChecksum16(l4c, d, nd)
			}
			binary.BigEndian.PutUint16(l4[2:], nd)
		}
	} else if id, nid := from.sport(), to.sport(); id != nid {
		l4c = header.UpdateChecksum16(l4c, id, nid)
		binary.BigEndian.PutUint16(l4[offICMPIdent:], nid)
	}
	if update {
		if l4c == 0 && from.proto() == header.ProtoUDP {
			l4c = 0xffff // RFC 768: a computed 0 is sent as all ones
		}
		binary.BigEndian.PutUint16(l4[csOff:], l4c)
	}
}
