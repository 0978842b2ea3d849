package dataplane

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/nat"
	"github.com/ferry-overlay/ferry/router"
)

// Uplinks and NAT. An uplink is an L3 port (a TUN device): IPv4 packets
// without an Ethernet header. Traffic routed by a masquerading network's
// gateway to an address that is no local network goes through the
// uplink's nat.Table (Outbound) and then out of the uplink, or, when the
// translated destination is a local network (hairpin to a published port),
// back into the router's neighbour stage. Packets read from an uplink go
// through the table (Inbound) and are routed into the network of their
// translated destination:
//
//	router ──► nat (outbound) ──┬──► uplink-tx
//	                            └──► neighbour (hairpin)
//	uplink-rx ──► nat (inbound) ──► router ──► neighbour ──► port-tx | vxlan-encap

// UplinkSpec describes one uplink for Engine.SetUplinks.
type UplinkSpec struct {
	// Name is the uplink's device name, for logs and the control API.
	Name string
	// NAT is the uplink's connection tracker, built with its
	// nat_address; shared by all workers.
	NAT *nat.Table
	// MTU is the largest packet the uplink carries; 0: no check.
	MTU int
	// Networks names the networks that masquerade through the uplink;
	// each must have a gateway.
	Networks []string
}

type uplink struct {
	id   uint16
	name string
	nat  *nat.Table
	mtu  int
}

// SetUplinks attaches the uplinks to the engine's networks. Call it before
// the workers run; it replaces any uplinks set before.
func (e *Engine) SetUplinks(specs []UplinkSpec) error {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	t := e.tables.Load().clone()
	t.uplinks = nil
	for _, n := range t.nets {
		n.uplink = nil
	}
	for i, s := range specs {
		if s.NAT == nil {
			return fmt.Errorf("uplink %q: no NAT table", s.Name)
		}
		u := &uplink{id: uint16(i), name: s.Name, nat: s.NAT, mtu: s.MTU}
		t.uplinks = append(t.uplinks, u)
		for _, name := range s.Networks {
			var found *network
			for _, n := range t.nets {
				if n.name == name {
					found = n
				}
			}
			switch {
			case found == nil:
				return fmt.Errorf("uplink %q: no network %q", s.Name, name)
			case found.gw == nil:
				return fmt.Errorf("uplink %q: network %q has no gateway", s.Name, name)
			case found.uplink != nil:
				return fmt.Errorf("uplink %q: network %q already masquerades through %q", s.Name, name, found.uplink.name)
			}
			found.uplink = u
		}
	}
	e.tables.Store(t)
	return nil
}

// NATTable returns the connection tracker of the named uplink.
func (e *Engine) NATTable(uplinkName string) (*nat.Table, bool) {
	for _, u := range e.tables.Load().uplinks {
		if u.name == uplinkName {
			return u.nat, true
		}
	}
	return nil, false
}

// Uplinks returns the names of the uplinks, by id.
func (e *Engine) Uplinks() []string {
	var out []string
	for _, u := range e.tables.Load().uplinks {
		out = append(out, u.name)
	}
	return out
}

// natReasons maps nat's drop verdicts to drop reasons.
var natReasons = [...]Reason{
	nat.DropMalformed:     ReasonNATMalformed,
	nat.DropFragment:      ReasonNATFragment,
	nat.DropUnsupported:   ReasonNATUnsupported,
	nat.DropInvalid:       ReasonNATInvalid,
	nat.DropBadICMPError:  ReasonNATBadICMPError,
	nat.DropNoFlow:        ReasonNATNoFlow,
	nat.DropPortExhausted: ReasonNATPortExhausted,
	nat.DropConflict:      ReasonNATConflict,
	nat.DropTableFull:     ReasonNATTableFull,
}

func natReason(v nat.Verdict) Reason {
	if int(v) < len(natReasons) && natReasons[v] != ReasonNone {
		return natReasons[v]
	}
	return ReasonNATMalformed
}

// natScratch is the worker's scratch space for the NAT stages.
type natScratch struct {
	ios  []PortIO  // by uplink id
	out  []*Packet // routed to an uplink, waiting for nat (p.InPort: uplink id)
	pkts []*Packet // one nat.Process call's packets
	bufs [][]byte  // their IPv4 bytes
	dirs []nat.Dir // their direction
	verd []nat.Verdict
	tx   []*Packet    // translated, to one uplink
	pre  []tuple4     // traced packets' tuples before translation (trace_l3.go)
	psum []partialSum // partial checksums kept across NAT (offload_route.go)
}

func (s *natScratch) init() {
	s.out = make([]*Packet, 0, MaxBatch)
	s.pkts = make([]*Packet, 0, MaxBatch)
	s.bufs = make([][]byte, 0, MaxBatch)
	s.dirs = make([]nat.Dir, MaxBatch)
	s.verd = make([]nat.Verdict, MaxBatch)
	s.tx = make([]*Packet, 0, MaxBatch)
	s.pre = make([]tuple4, MaxBatch)
	s.psum = make([]partialSum, MaxBatch)
}

// SetUplink attaches this worker's queue of uplink id.
func (w *Worker) SetUplink(id uint16, io PortIO) {
	for len(w.nt.ios) <= int(id) {
		w.nt.ios = append(w.nt.ios, nil)
	}
	w.nt.ios[id] = io
}

// toUplink is the router's last step for a packet of network n to an
// address outside every local network: with an uplink, it is checked
// against the uplink's MTU and queued for NAT; without, it is answered
// with net unreachable. Forward has already decremented its TTL.
func (w *Worker) toUplink(t *tables, n *network, p *Packet) {
	u := n.uplink
	if u == nil {
		undoTTL(p.Bytes()[header.EthernetLen:])
		w.icmpError(t, n, p, ReasonNoRoute, router.NetUnreachable)
		return
	}
	if u.mtu > 0 && routeTooBig(p, p.Bytes()[header.EthernetLen:], u.mtu) {
		undoTTL(p.Bytes()[header.EthernetLen:])
		w.fragNeeded(t, n, p, u.mtu)
		return
	}
	if w.tracing && p.Trace {
		ttl := ttlOf(p.Bytes()[header.EthernetLen:])
		w.traceEvent(p, traceEvent{stage: StageRouter, kind: evRouteUplink, num: u.id, n1: ttl + 1, n2: ttl})
	}
	p.InPort = u.id
	w.nt.out = append(w.nt.out, p)
}

// natOutStage translates the packets queued for uplinks, one uplink at a
// time, and writes them out of it, or hands hairpin packets (translated to
// a local destination) to the neighbour stage.
func (w *Worker) natOutStage(t *tables) {
	rest := w.nt.out
	for len(rest) > 0 {
		u := t.uplinks[rest[0].InPort]
		other := 0
		w.nt.pkts, w.nt.bufs = w.nt.pkts[:0], w.nt.bufs[:0]
		for _, p := range rest {
			if p.InPort != u.id {
				rest[other] = p
				other++
				continue
			}
			w.nt.pkts = append(w.nt.pkts, p)
			w.nt.bufs = append(w.nt.bufs, p.Bytes()[header.EthernetLen:])
		}
		k := len(w.nt.pkts)
		for i := range k {
			w.nt.dirs[i] = nat.Outbound
		}
		for i, p := range w.nt.pkts {
			w.nt.psum[i].save(p, w.nt.bufs[i], header.EthernetLen)
		}
		w.processNAT(u, k)
		for i, p := range w.nt.pkts {
			switch v := w.nt.verd[i]; v {
			case nat.Translated:
				w.nt.psum[i].restore(w.nt.bufs[i])
				dst := netip.AddrFrom4([4]byte(w.nt.bufs[i][16:20]))
				if hop, ok := t.routes.Lookup(dst); ok && hop.Kind == router.ToNetwork {
					p.Network = uint16(hop.Index)
					w.rt.routed = append(w.rt.routed, p)
					continue
				}
				stripEthernet(p)
				w.nt.tx = append(w.nt.tx, p)
			case nat.NoMatch:
				w.dropPkt(p, StageNAT, ReasonNATNoMatch)
			default:
				w.dropPkt(p, StageNAT, natReason(v))
			}
		}
		w.mark(StageNAT, k)
		clear(w.nt.bufs)
		clear(w.nt.pkts)
		w.uplinkTx(u)
		rest = rest[:other]
	}
	clear(w.nt.out)
	w.nt.out = w.nt.out[:0]
}

// processNAT runs the k packets of w.nt.bufs through u's table, showing
// them to the pre-nat and post-nat captures and recording the traced
// packets' rewrites.
func (w *Worker) processNAT(u *uplink, k int) {
	o := w.obs
	if o != nil && o.at[pointPreNAT] {
		w.captureNAT(o, pointPreNAT)
	}
	if w.tracing {
		w.traceNATPre()
	}
	if w.dry {
		w.dryNAT(u, k)
		return
	}
	u.nat.Process(w.t, w.nt.bufs, w.nt.dirs[:k], w.nt.verd[:k])
	if o != nil && o.at[pointPostNAT] {
		w.captureNAT(o, pointPostNAT)
	}
	if w.tracing {
		w.traceNAT(u)
	}
}

// uplinkTx writes w.nt.tx out of uplink u.
func (w *Worker) uplinkTx(u *uplink) {
	pkts := w.nt.tx
	if len(pkts) == 0 {
		return
	}
	w.rawDrops = true
	defer func() { w.rawDrops = false }()
	var io PortIO
	if int(u.id) < len(w.nt.ios) {
		io = w.nt.ios[u.id]
	}
	// An uplink that takes superpackets gets them whole; otherwise each is
	// cut and its segments written in its place (offload_route.go).
	from := 0
	for i, p := range pkts {
		if p.isGSO() && !takesWhole(io, p) {
			w.writeUplink(u, io, pkts[from:i])
			// The segments are not traced themselves: p's trace says how
			// many of them went out.
			if n := w.writeUplink(u, io, w.cutForUplink(u, p)); n > 0 && w.tracing && p.Trace {
				w.traceEvent(p, traceEvent{stage: StageUplinkTx, kind: evUplinkTx, port: u.id, n1: uint16(n)})
			}
			from = i + 1
		}
	}
	w.writeUplink(u, io, pkts[from:])
	w.mark(StageUplinkTx, len(pkts))
	clear(pkts)
	w.nt.tx = pkts[:0]
}

// writeUplink writes pkts out of uplink u through io (nil: this worker has
// no queue), counting what it does not take. It returns how many it wrote.
func (w *Worker) writeUplink(u *uplink, io PortIO, pkts []*Packet) int {
	written := 0
	for rest := pkts; len(rest) > 0; {
		if io == nil {
			r := w.dropTx(StageUplinkTx, errNoQueue, len(rest))
			if w.obs != nil {
				w.observeDrops(rest, StageUplinkTx, r, 0, netip.Addr{})
			}
			break
		}
		n, err := io.WriteBatch(rest)
		written += n
		if w.tracing {
			for _, p := range rest[:n] {
				if p.Trace {
					w.traceEvent(p, traceEvent{stage: StageUplinkTx, kind: evUplinkTx, port: u.id})
				}
			}
		}
		rest = rest[n:]
		if len(rest) == 0 {
			break
		}
		lost := 1
		if errors.Is(err, ErrTxFull) {
			lost = len(rest)
		}
		r := w.dropTx(StageUplinkTx, err, lost)
		if w.obs != nil {
			w.observeDrops(rest[:lost], StageUplinkTx, r, 0, netip.Addr{})
		}
		rest = rest[lost:]
	}
	return written
}

// PollUplink reads one batch from this worker's queue of uplink id and runs
// it to completion: NAT (inbound), routing into the destination's network,
// neighbour resolution and that network's output. It returns the number of
// packets read.
func (w *Worker) PollUplink(id uint16) (int, error) {
	n, err := w.readBatch(w.nt.ios[id])
	if n == 0 {
		return 0, err
	}
	b := &w.rx
	w.mark(StageUplinkRx, n)
	t := w.eng.tables.Load()
	w.tbl = t
	w.obs = w.obsSrc.Load()
	if int(id) < len(t.uplinks) {
		u := t.uplinks[id]
		if w.obs != nil {
			w.observeUplinkRx(u, b.Slice())
		}
		w.fromUplink(t, u, b.Slice())
	}
	if w.obs != nil {
		w.endObserve()
	}
	w.obs = nil
	b.Free()
	return n, err
}

// fromUplink is nat (inbound) and the router for packets read from uplink
// u.
func (w *Worker) fromUplink(t *tables, u *uplink, pkts []*Packet) {
	w.rawDrops = true // until the Ethernet header is prepended
	w.nt.bufs = w.nt.bufs[:0]
	w.nt.pkts = w.nt.pkts[:0]
	k := 0
	for _, p := range pkts {
		if p.rxDrop != ReasonNone { // bad virtio-net header (offload.go)
			w.dropPkt(p, StageUplinkRx, p.rxDrop)
			continue
		}
		if b := p.Bytes(); len(b) == 0 || b[0]>>4 != 4 {
			w.dropPkt(p, StageUplinkRx, ReasonUplinkNotIPv4)
			continue
		}
		// NAT and the router see whole packets; a superpacket keeps its
		// partial checksum across NAT (offload_route.go).
		if r := finishChecksum(p); r != ReasonNone {
			w.dropPkt(p, StageUplinkRx, r)
			continue
		}
		w.nt.psum[k].save(p, p.Bytes(), 0)
		pkts[k] = p
		w.nt.pkts = append(w.nt.pkts, p)
		w.nt.bufs = append(w.nt.bufs, p.Bytes())
		w.nt.dirs[k] = nat.Inbound
		k++
	}
	pkts = pkts[:k]
	w.processNAT(u, k)
	w.mark(StageNAT, k)
	for i, p := range pkts {
		switch v := w.nt.verd[i]; v {
		case nat.Translated:
			w.nt.psum[i].restore(w.nt.bufs[i])
		case nat.NoMatch:
			w.dropPkt(p, StageNAT, ReasonNATNoMatch)
			continue
		default:
			w.dropPkt(p, StageNAT, natReason(v))
			continue
		}
		pkt := w.nt.bufs[i]
		hop, ok := t.routes.Lookup(netip.AddrFrom4([4]byte(pkt[16:20])))
		if !ok || hop.Kind != router.ToNetwork {
			w.dropPkt(p, StageRouter, ReasonNoRoute)
			continue
		}
		m := t.nets[hop.Index]
		if st := router.Forward(pkt); st != router.OK {
			w.dropPkt(p, StageRouter, forwardReason(st))
			if st == router.TTLExpired {
				w.errorToUplink(u, p, pkt, router.TimeExceeded)
			}
			continue
		}
		if w.tracing && p.Trace {
			ttl := ttlOf(pkt)
			w.traceEvent(p, traceEvent{stage: StageRouter, kind: evRouteNet, num: m.id, n1: ttl + 1, n2: ttl})
		}
		if m.mtu > 0 && routeTooBig(p, pkt, m.mtu) {
			undoTTL(pkt)
			w.dropPkt(p, StageRouter, ReasonFragNeeded)
			mtu := uint16(m.mtu)
			w.errorToUplink(u, p, pkt, func(out, orig []byte, src netip.Addr) (int, router.Status) {
				return router.FragNeeded(out, orig, mtu, src)
			})
			continue
		}
		h := p.Prepend(header.EthernetLen)
		if h == nil {
			w.dropPkt(p, StageRouter, ReasonNoHeadroom)
			continue
		}
		header.Ethernet(h).Encode(header.MAC{}, m.gw.mac, header.EtherTypeIPv4)
		p.shiftOffsets(header.EthernetLen)
		p.Network = m.id
		w.rt.routed = append(w.rt.routed, p)
	}
	w.mark(StageRouter, k)
	w.rawDrops = false
	clear(w.nt.bufs)
	w.nt.bufs = w.nt.bufs[:0]
	clear(w.nt.pkts)
	w.nt.pkts = w.nt.pkts[:0]
	if len(w.nt.out) > 0 {
		w.natOutStage(t)
	}
	if len(w.rt.routed) > 0 {
		w.neighbourStage(t)
	}
	if len(w.rt.gen) > 0 {
		w.freeGenerated()
	}
}

// errorToUplink sends the outside sender of pkt (an IPv4 packet that came
// in from uplink u, already translated by its NAT) the ICMP error build
// makes about it, from the nat_address. The error goes through NAT as an
// Outbound packet, which translates the quoted packet back to what the
// sender sent (package router's doc: "ICMP error ... leave through the
// uplink as Outbound packets").
func (w *Worker) errorToUplink(u *uplink, p *Packet, pkt []byte, build func(out, orig []byte, src netip.Addr) (int, router.Status)) {
	g := w.newPacket(p)
	if g == nil {
		return
	}
	buf := g.RxBuffer()
	m, st := build(buf[header.EthernetLen:], pkt, u.nat.NATAddr())
	if st != router.OK {
		return
	}
	g.SetLen(header.EthernetLen + m)
	g.InPort = u.id
	if w.tracing && p.Trace {
		w.traceICMPError(p, StageRouter, buf[header.EthernetLen:header.EthernetLen+m])
	}
	w.nt.out = append(w.nt.out, g)
}

// forwardReason is the drop reason for a router.Forward status other than
// OK.
func forwardReason(st router.Status) Reason {
	switch st {
	case router.TTLExpired:
		return ReasonTTLExpired
	case router.BadChecksum:
		return ReasonIPBadChecksum
	case router.MartianSource:
		return ReasonMartianSource
	case router.MartianDestination:
		return ReasonMartianDestination
	}
	return ReasonIPMalformed
}

// PublishInfo is one published port, as the control API lists it.
type PublishInfo struct {
	Uplink string         `json:"uplink"`
	Proto  string         `json:"proto"`
	Port   uint16         `json:"port"`
	To     netip.AddrPort `json:"to"`
}

// ConnInfo is one tracked connection of an uplink, as the control API
// lists it (see nat.Conn).
type ConnInfo struct {
	Uplink      string `json:"uplink"`
	Orig        string `json:"orig"`
	Reply       string `json:"reply"`
	State       string `json:"state"`
	SeenReply   bool   `json:"seen_reply"`
	Assured     bool   `json:"assured"`
	SecondsLeft int64  `json:"seconds_left"`
	// Text is the conntrack -L style line.
	Text string `json:"text"`
}

// uplinkNamed returns the uplink called name; "" names the only uplink.
func (t *tables) uplinkNamed(name string) (*uplink, error) {
	if name == "" {
		if len(t.uplinks) == 1 {
			return t.uplinks[0], nil
		}
		return nil, fmt.Errorf("%d uplinks: name one", len(t.uplinks))
	}
	for _, u := range t.uplinks {
		if u.name == name {
			return u, nil
		}
	}
	return nil, fmt.Errorf("no uplink %q", name)
}

func protoOf(s string) (header.IPProto, error) {
	switch s {
	case "tcp":
		return header.ProtoTCP, nil
	case "udp":
		return header.ProtoUDP, nil
	}
	return 0, fmt.Errorf("protocol %q: want tcp or udp", s)
}

func protoString(p header.IPProto) string {
	if p == header.ProtoUDP {
		return "udp"
	}
	return "tcp"
}

// Published lists the published ports of every uplink.
func (e *Engine) Published() []PublishInfo {
	out := []PublishInfo{}
	for _, u := range e.tables.Load().uplinks {
		for _, r := range u.nat.Rules() {
			out = append(out, PublishInfo{Uplink: u.name, Proto: protoString(r.Proto), Port: r.Port, To: r.To})
		}
	}
	return out
}

// AddPublish publishes proto port of the uplink's nat_address to to,
// replacing any rule for the same (proto, port), whose connections end.
// It returns the uplink's name and how many connections ended.
func (e *Engine) AddPublish(uplinkName, proto string, port uint16, to netip.AddrPort) (string, int, error) {
	return e.editPublish(uplinkName, proto, port, func(rest []nat.Rule, p header.IPProto, _ bool) ([]nat.Rule, error) {
		return append(rest, nat.Rule{Proto: p, Port: port, To: to}), nil
	})
}

// DeletePublish removes the publish rule for proto port of the uplink and
// ends the connections it created. It returns the uplink's name and how
// many connections ended.
func (e *Engine) DeletePublish(uplinkName, proto string, port uint16) (string, int, error) {
	return e.editPublish(uplinkName, proto, port, func(rest []nat.Rule, _ header.IPProto, had bool) ([]nat.Rule, error) {
		if !had {
			return nil, fmt.Errorf("%s port %d is not published", proto, port)
		}
		return rest, nil
	})
}

// editPublish installs edit(rest, proto, had) as the uplink's rules, where
// rest are its rules without the one for (proto, port) and had says
// whether there was one.
func (e *Engine) editPublish(uplinkName, proto string, port uint16, edit func(rest []nat.Rule, p header.IPProto, had bool) ([]nat.Rule, error)) (string, int, error) {
	p, err := protoOf(proto)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		return "", 0, errors.New("port 0 cannot be published")
	}
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	u, err := e.tables.Load().uplinkNamed(uplinkName)
	if err != nil {
		return "", 0, err
	}
	var rest []nat.Rule
	had := false
	for _, r := range u.nat.Rules() {
		if r.Proto == p && r.Port == port {
			had = true
			continue
		}
		rest = append(rest, r)
	}
	rules, err := edit(rest, p, had)
	if err != nil {
		return u.name, 0, fmt.Errorf("uplink %q: %w", u.name, err)
	}
	n, err := u.nat.SetRules(rules)
	if err != nil {
		return u.name, 0, fmt.Errorf("uplink %q: %w", u.name, err)
	}
	return u.name, n, nil
}

// Conntrack lists the tracked connections of the named uplink, or of every
// uplink for "".
func (e *Engine) Conntrack(uplinkName string) ([]ConnInfo, error) {
	now := e.now()
	out := []ConnInfo{}
	for _, u := range e.tables.Load().uplinks {
		if uplinkName != "" && u.name != uplinkName {
			continue
		}
		for _, c := range u.nat.Snapshot(now, nil) {
			out = append(out, ConnInfo{
				Uplink: u.name, Orig: c.Orig.String(), Reply: c.Reply.String(), State: c.State.String(),
				SeenReply: c.SeenReply, Assured: c.Assured, SecondsLeft: c.SecondsLeft, Text: c.String(),
			})
		}
	}
	return out, nil
}

// FlushConntrack removes the tracked connections of the named uplink, or
// of every uplink for "", and returns how many.
func (e *Engine) FlushConntrack(uplinkName string) (int, error) {
	n, found := 0, false
	for _, u := range e.tables.Load().uplinks {
		if uplinkName != "" && u.name != uplinkName {
			continue
		}
		found = true
		n += u.nat.Flush()
	}
	if uplinkName != "" && !found {
		return 0, fmt.Errorf("no uplink %q", uplinkName)
	}
	return n, nil
}

// ConntrackFilter selects tracked connections by their original tuple,
// in the shape of conntrack -D: every field that is set must match; Proto
// is "tcp", "udp" or "icmp" (empty: any); ports apply to TCP and UDP.
type ConntrackFilter struct {
	Proto string     `json:"proto,omitempty"`
	Src   netip.Addr `json:"src,omitzero"`
	Dst   netip.Addr `json:"dst,omitzero"`
	Sport uint16     `json:"sport,omitempty"`
	Dport uint16     `json:"dport,omitempty"`
}

// matcher checks f and returns its test of a connection.
func (f ConntrackFilter) matcher() (func(nat.Conn) bool, error) {
	var proto header.IPProto
	switch f.Proto {
	case "":
	case "tcp", "udp":
		proto, _ = protoOf(f.Proto)
	case "icmp":
		proto = header.ProtoICMPv4
		if f.Sport != 0 || f.Dport != 0 {
			return nil, errors.New("icmp connections have no ports: drop --sport and --dport")
		}
	default:
		return nil, fmt.Errorf("protocol %q: want tcp, udp or icmp", f.Proto)
	}
	if f == (ConntrackFilter{}) {
		return nil, errors.New("no protocol, address or port given: name the connections to delete (or flush them all)")
	}
	for _, a := range []netip.Addr{f.Src, f.Dst} {
		if a.IsValid() && !a.Unmap().Is4() {
			return nil, fmt.Errorf("address %s: conntrack holds IPv4 connections only", a)
		}
	}
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	return func(c nat.Conn) bool {
		o := c.Orig
		return (f.Proto == "" || o.Proto == proto) &&
			(!src.IsValid() || o.Src.Addr() == src) && (!dst.IsValid() || o.Dst.Addr() == dst) &&
			(f.Sport == 0 || (o.Proto != header.ProtoICMPv4 && o.Src.Port() == f.Sport)) &&
			(f.Dport == 0 || (o.Proto != header.ProtoICMPv4 && o.Dst.Port() == f.Dport))
	}, nil
}

// DeleteConntrack removes the tracked connections of the named uplink (""
// for every uplink) whose original tuple matches f, and returns how many.
func (e *Engine) DeleteConntrack(uplinkName string, f ConntrackFilter) (int, error) {
	match, err := f.matcher()
	if err != nil {
		return 0, err
	}
	now := e.now()
	n, found := 0, false
	for _, u := range e.tables.Load().uplinks {
		if uplinkName != "" && u.name != uplinkName {
			continue
		}
		found = true
		n += u.nat.DeleteMatching(now, match)
	}
	if uplinkName != "" && !found {
		return 0, fmt.Errorf("no uplink %q", uplinkName)
	}
	return n, nil
}

// ConntrackStats is one uplink's connection-tracking statistics.
type ConntrackStats struct {
	Uplink string `json:"uplink"`
	nat.Stats
}

// ConntrackStats returns the statistics of every uplink's tracker.
func (e *Engine) ConntrackStats() []ConntrackStats {
	var out []ConntrackStats
	for _, u := range e.tables.Load().uplinks {
		out = append(out, ConntrackStats{Uplink: u.name, Stats: u.nat.Stats()})
	}
	return out
}

// dryNAT is the NAT stage of a what-if worker for the k packets of
// w.nt.bufs: each is planned by its uplink's table (nat.Table.Plan), which
// rewrites the worker's own copy as Process would and changes nothing in
// the table — no connection created or advanced, no port taken. A traced
// packet of a tracked connection gets the live path's words for its
// rewrite; a new connection the translation its first packet would get.
// Then the packets go on by their verdicts, as on the live path.
func (w *Worker) dryNAT(u *uplink, k int) {
	for i, p := range w.nt.pkts[:k] {
		pl := u.nat.Plan(w.t, w.nt.bufs[i], w.nt.dirs[i])
		w.nt.verd[i] = pl.Verdict
		if !w.tracing || !p.Trace || pl.Kind == nat.PlanNone {
			continue
		}
		post, _ := w.tupleOf(w.nt.bufs[i])
		ev := traceEvent{stage: StageNAT, kind: evNAT, num: u.id, n1: uint16(w.nt.dirs[i]), tu: [2]tuple4{w.nt.pre[i], post}}
		switch {
		case pl.Kind == nat.PlanICMPError:
			ev.n2 = natEvICMPErr
		case pl.Kind == nat.PlanNew:
			ev.kind = evNATPlan
		case pl.Reply:
			ev.n2 = natEvReply
		case !pl.Conn.SeenReply:
			ev.n2 = natEvNew
		}
		if pl.Kind != nat.PlanICMPError && pl.Conn.Orig.Proto == header.ProtoTCP {
			ev.n2 |= uint16(pl.Conn.State) << 8
		}
		w.traceEvent(p, ev)
	}
}
