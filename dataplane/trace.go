package dataplane

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferry-overlay/ferry/header"
	bridge "github.com/ferry-overlay/ferry/switch"
)

// The packet tracer. A trace session selects packets at ingress (port rx or
// tunnel rx) by port and filter, up to a count; the worker then records, for
// each selected packet, one event per decision a stage takes about it, into
// a slot of its own per-session ring: no lock, no allocation, and nothing at
// all for packets that are not traced. The control plane collects the rings
// on demand and turns events into words with the tables of the moment.
//
// A stage added later plugs in with an event kind (evKind), a line in
// (*traceEvent).words, and a w.traceEvent call where the stage decides.

// Trace limits.
const (
	// MaxTraceCount is the most packets one trace session records: the
	// bound of the trace buffer.
	MaxTraceCount = 512
	// DefaultTraceCount is the count of a session started without one.
	DefaultTraceCount = 50
	// traceHeadLen is how many bytes of each traced packet are kept for
	// decoding headers when the trace is shown.
	traceHeadLen = 128
	// maxTraceEvents bounds the events of one packet; a packet flooded to
	// more destinations records how many events it lost.
	maxTraceEvents = 40
)

// evKind is what a stage decided about a traced packet.
type evKind uint8

const (
	evPortRx     evKind = iota // read from local port .port
	evTunnelRx                 // datagram from peer .addr
	evEthInput                 // accepted into network .num (vni .vni)
	evDecap                    // VXLAN .vni from peer .addr → network .num
	evFDBHit                   // dst MAC at local port .port
	evFDBHitPeer               // dst MAC behind peer .addr
	evFDBMiss                  // unknown unicast: flood
	evFDBBcast                 // broadcast/multicast: flood
	evFlood                    // flooded to .n1 ports and .n2 peers
	evPortTx                   // written to port .port
	evEncap                    // VXLAN header with VNI .vni
	evTunnelTx                 // sent to peer .addr from outer source port .n1 (0: unknown)
	evDrop                     // dropped: .reason (with .port/.addr context)
	// Routed (L3) events, described in trace_l3.go.
	evRouteL3     // l3 network: destination in peer .port's subnet, to peer .addr
	evRouteNet    // gateway: destination in network .num's subnet; TTL .n1 → .n2
	evRouteUplink // gateway: no local network; out of uplink .num; TTL .n1 → .n2
	evGatewayARP  // ARP request for gateway address .addr answered: it is at .mac
	evGatewayEcho // echo request to gateway address .addr answered
	evNeighbour   // next hop .addr is at .mac
	evNAT         // NAT on uplink .num, direction .n1, flags .n2: .tu[0] → .tu[1]
	evTTL         // TTL .n1 → .n2 (flannel-UDP's userspace hop)
	evICMPError   // ICMP type .n1 code .n2 sent to .addr
	evL3Encap     // tunnel header of the event's stage (GRE, flannel-UDP, l3 VXLAN)
	evL3Decap     // tunnel header of the event's stage removed, from peer .addr → network .num
	evUplinkRx    // read from uplink .port
	evUplinkTx    // written to uplink .port (a superpacket: as .n1 segments)
	evToGateway   // dst MAC is network .num's gateway: to the router
	// Offload events.
	evGSOSegment // superpacket of .vni bytes, GSO type .num, size .n1, cut into .n2 segments
	// What-if (dry run) events of the routed stages.
	evNeighbourMiss // next hop .addr not in the neighbour table
	evNATPlan       // new connection on uplink .num, direction .n1: .tu[0] would become .tu[1]; TCP state in .n2>>8
	// Receive offload events.
	evGROCoalesce // superpacket of .vni bytes, GSO type .num, size .n1, from .n2 segments, for port .port
	evGROMerged   // merged into the superpacket of its flow ahead of it, for port .port
)

// traceEvent is one decision, with the clock when it was taken.
type traceEvent struct {
	t      int64
	stage  Stage
	kind   evKind
	reason Reason
	port   uint16
	n1, n2 uint16
	num    uint16
	vni    uint32
	addr   netip.Addr
	// mac is a resolved next hop's address (evNeighbour) or a VTEP MAC
	// (evL3Encap); tu the tuples before and after a NAT rewrite (evNAT).
	mac [6]byte
	tu  [2]tuple4
}

// traceRec is the record of one traced packet: its first bytes at ingress
// and its events. It lives in a ring slot and is reused.
type traceRec struct {
	start   int64
	worker  uint16
	dry     bool
	headLen uint16
	origLen uint32
	head    [traceHeadLen]byte
	nev     uint16
	lost    uint16
	ev      [maxTraceEvents]traceEvent
}

func (r *traceRec) init(w *Worker, b []byte) {
	r.start = w.eng.now()
	r.worker = uint16(w.id)
	r.dry = w.dry
	r.origLen = uint32(len(b))
	r.headLen = uint16(copy(r.head[:], b))
	r.nev, r.lost = 0, 0
}

func (r *traceRec) add(ev traceEvent) {
	if int(r.nev) == maxTraceEvents {
		r.lost++
		return
	}
	r.ev[r.nev] = ev
	r.nev++
}

// traceRing is one worker's ring of trace records: the worker is the only
// producer (it fills slots past head and publishes them by storing head
// once per batch), the control plane, under Engine.ctlMu, the only
// consumer.
type traceRing struct {
	slots []traceRec
	head  atomic.Uint64
	tail  atomic.Uint64
}

// traceSession is one `ferry trace start`. Its configuration is immutable;
// remaining, the rings and overflow are shared with the workers.
type traceSession struct {
	filter  *Filter
	port    int // global port id to trace, or -1 for every ingress
	count   int
	started time.Time
	// remaining counts down as workers select packets; at <= 0 the
	// session selects no more.
	remaining atomic.Int64
	// overflow counts packets not traced because a ring was full.
	overflow atomic.Uint64
	rings    []*traceRing
	// collected are the records drained from the rings, in ingress
	// order; guarded by Engine.ctlMu.
	collected []TracePacket
	seq       uint64
}

// TraceSpec is the request of `ferry trace start`.
type TraceSpec struct {
	// Count is how many packets to trace, 1..MaxTraceCount; 0 means
	// DefaultTraceCount.
	Count int `json:"count,omitempty"`
	// Port limits tracing to frames read from this local port; empty
	// means every port and the tunnel.
	Port string `json:"port,omitempty"`
	// Filter is a filter expression (see Filter); empty matches all.
	Filter string `json:"filter,omitempty"`
}

// TraceStatus describes the current (or last) trace session.
type TraceStatus struct {
	Running bool   `json:"running"`
	Count   int    `json:"count"`
	Traced  int    `json:"traced"`
	Port    string `json:"port,omitempty"`
	Filter  string `json:"filter,omitempty"`
	// Overflow counts packets that were selected but not recorded
	// because the worker's trace buffer was full.
	Overflow uint64    `json:"overflow"`
	Started  time.Time `json:"started"`
}

// TraceStep is what one stage decided about a traced packet.
type TraceStep struct {
	Stage string `json:"stage"`
	// ElapsedNs is the time since the packet entered the pipeline.
	ElapsedNs int64  `json:"elapsed_ns"`
	Decision  string `json:"decision"`
}

// TracePacket is one traced packet: where it came in, its decoded headers,
// and every stage's decision, in order.
type TracePacket struct {
	// Seq numbers packets in the order they were collected.
	Seq    uint64    `json:"seq"`
	Worker int       `json:"worker"`
	Time   time.Time `json:"time"`
	// DryRun marks a what-if packet (trace inject): nothing was sent,
	// learned or counted.
	DryRun bool `json:"dry_run,omitempty"`
	// Length is the packet's length at ingress (datagram length for
	// tunnel rx).
	Length int         `json:"length"`
	Steps  []TraceStep `json:"steps"`
	// Path is the stages taken, joined by " > ": the key of `trace paths`.
	Path string `json:"path"`
	// Lost counts events not recorded for lack of room (a frame flooded
	// to very many destinations).
	Lost int `json:"lost_events,omitempty"`
}

// TracePath is one group of `trace paths`: the packets that took the same
// stages.
type TracePath struct {
	Path    string `json:"path"`
	Packets int    `json:"packets"`
}

// StartTrace starts a trace session, replacing any running or stopped one
// (its records are discarded).
func (e *Engine) StartTrace(spec TraceSpec) (TraceStatus, error) {
	count := spec.Count
	if count == 0 {
		count = DefaultTraceCount
	}
	if count < 0 || count > MaxTraceCount {
		return TraceStatus{}, fmt.Errorf("trace count %d: want 1 to %d: %w", spec.Count, MaxTraceCount, ErrInvalid)
	}
	f, err := ParseFilter(spec.Filter)
	if err != nil {
		return TraceStatus{}, fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	s := &traceSession{filter: f, port: -1, count: count, started: time.Now()}
	if spec.Port != "" {
		id, ok := e.PortID(spec.Port)
		if !ok {
			return TraceStatus{}, fmt.Errorf("no port %q: %w", spec.Port, ErrNotFound)
		}
		s.port = int(id)
	}
	s.remaining.Store(int64(count))
	for range e.counters {
		s.rings = append(s.rings, &traceRing{slots: make([]traceRec, count)})
	}
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	e.trace = s
	e.publishObserver()
	return e.traceStatus(), nil
}

// StopTrace stops selecting packets; the records stay for TraceShow.
func (e *Engine) StopTrace() TraceStatus {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	if e.trace != nil {
		e.collectTrace()
		e.trace.remaining.Store(0)
	}
	e.publishObserver()
	return e.traceStatus()
}

// ClearTrace discards the records collected so far; a running session goes
// on with what is left of its count.
func (e *Engine) ClearTrace() TraceStatus {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	if e.trace != nil {
		e.collectTrace()
		e.trace.collected = nil
	}
	return e.traceStatus()
}

// TraceStatus returns the state of the current or last session.
func (e *Engine) TraceStatus() TraceStatus {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	if e.trace != nil {
		e.collectTrace()
	}
	return e.traceStatus()
}

// TraceShow returns the traced packets collected so far, oldest first.
func (e *Engine) TraceShow() []TracePacket {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	if e.trace == nil {
		return nil
	}
	e.collectTrace()
	return slices.Clone(e.trace.collected)
}

// TracePaths groups the traced packets by the stages they took, most
// common path first.
func (e *Engine) TracePaths() []TracePath {
	pkts := e.TraceShow()
	counts := map[string]int{}
	for _, p := range pkts {
		counts[p.Path]++
	}
	out := make([]TracePath, 0, len(counts))
	for path, n := range counts {
		out = append(out, TracePath{Path: path, Packets: n})
	}
	slices.SortFunc(out, func(a, b TracePath) int {
		if c := cmp.Compare(b.Packets, a.Packets); c != 0 {
			return c
		}
		return cmp.Compare(a.Path, b.Path)
	})
	return out
}

// traceStatus describes e.trace; ctlMu held.
func (e *Engine) traceStatus() TraceStatus {
	s := e.trace
	if s == nil {
		return TraceStatus{}
	}
	st := TraceStatus{
		Running:  s.remaining.Load() > 0,
		Count:    s.count,
		Traced:   len(s.collected),
		Filter:   s.filter.String(),
		Overflow: s.overflow.Load(),
		Started:  s.started,
	}
	if s.port >= 0 {
		st.Port = e.tables.Load().ports[s.port].name
	}
	return st
}

// collectTrace drains every worker's ring into e.trace.collected; ctlMu
// held.
func (e *Engine) collectTrace() {
	s := e.trace
	t := e.tables.Load()
	start := len(s.collected)
	for _, r := range s.rings {
		head := r.head.Load()
		for i := r.tail.Load(); i < head; i++ {
			rec := &r.slots[i%uint64(len(r.slots))]
			s.collected = append(s.collected, e.describeTrace(t, rec))
		}
		r.tail.Store(head)
	}
	added := s.collected[start:]
	slices.SortStableFunc(added, func(a, b TracePacket) int { return a.Time.Compare(b.Time) })
	for i := range added {
		s.seq++
		added[i].Seq = s.seq
	}
	if over := len(s.collected) - MaxTraceCount; over > 0 {
		s.collected = slices.Delete(s.collected, 0, over)
	}
	if o := e.obs.Load(); o != nil && o.trace == s && s.remaining.Load() <= 0 {
		e.publishObserver() // done: workers need not look at it any more
	}
}

// describeTrace turns a record into words with the tables t.
func (e *Engine) describeTrace(t *tables, rec *traceRec) TracePacket {
	tp := TracePacket{
		Worker: int(rec.worker),
		Time:   e.start.Add(time.Duration(rec.start)),
		DryRun: rec.dry,
		Length: int(rec.origLen),
		Lost:   int(rec.lost),
		Steps:  make([]TraceStep, 0, rec.nev),
	}
	head := rec.head[:rec.headLen]
	var path []string
	for i := range rec.nev {
		ev := &rec.ev[i]
		st := TraceStep{Stage: ev.stage.String(), ElapsedNs: ev.t - rec.start, Decision: ev.words(t, head, rec.dry)}
		tp.Steps = append(tp.Steps, st)
		if len(path) == 0 || path[len(path)-1] != st.Stage {
			path = append(path, st.Stage)
		}
	}
	tp.Path = strings.Join(path, " > ")
	return tp
}

func (t *tables) portName(id uint16) string {
	if int(id) < len(t.ports) {
		return t.ports[id].name
	}
	return fmt.Sprintf("port#%d", id)
}

func (t *tables) netName(id uint16) string {
	if int(id) < len(t.nets) {
		return t.nets[id].name
	}
	return fmt.Sprintf("network#%d", id)
}

// words says in words what the event decided. head is the start of the
// packet as it entered (a frame, or a VXLAN datagram for tunnel rx).
func (ev *traceEvent) words(t *tables, head []byte, dry bool) string {
	would := func(s string) string {
		if dry {
			return "would be " + s
		}
		return s
	}
	switch ev.kind {
	case evPortRx:
		if t.isL3Port(ev.port) {
			return fmt.Sprintf("read from TUN port %s: %s", t.portName(ev.port), DescribeIP(head))
		}
		return fmt.Sprintf("read from port %s: %s", t.portName(ev.port), DescribeFrame(head))
	case evTunnelRx:
		return describeTunnelRx(TunnelKind(ev.n1), ev.addr, head)
	case evEthInput:
		return fmt.Sprintf("network %s (VNI %d)", t.netName(ev.num), ev.vni)
	case evDecap:
		return fmt.Sprintf("VXLAN VNI %d from peer %s: network %s", ev.vni, ev.addr, t.netName(ev.num))
	case evFDBHit:
		return fmt.Sprintf("FDB hit: destination MAC is at port %s", t.portName(ev.port))
	case evFDBHitPeer:
		return fmt.Sprintf("FDB hit: destination MAC is behind peer %s", ev.addr)
	case evFDBMiss:
		return "FDB miss: unknown destination MAC, flood"
	case evFDBBcast:
		return "broadcast/multicast destination, flood"
	case evFlood:
		return would(fmt.Sprintf("flooded to %d ports and %d peers", ev.n1, ev.n2))
	case evPortTx:
		return would(fmt.Sprintf("written to port %s", t.portName(ev.port)))
	case evEncap:
		return fmt.Sprintf("VXLAN header, VNI %d", ev.vni)
	case evGSOSegment:
		return fmt.Sprintf("superpacket of %d bytes, %s → %d segments", ev.vni, gsoWords(uint8(ev.num), ev.n1), ev.n2)
	case evGROCoalesce:
		return fmt.Sprintf("superpacket of %d bytes for port %s, %s ← %d segments coalesced",
			ev.vni, t.portName(ev.port), gsoWords(uint8(ev.num), ev.n1), ev.n2)
	case evGROMerged:
		return fmt.Sprintf("merged into the superpacket of its flow ahead of it, for port %s", t.portName(ev.port))
	case evTunnelTx:
		if ev.n1 == 0 {
			return would(fmt.Sprintf("sent to peer %s", ev.addr))
		}
		return would(fmt.Sprintf("sent to peer %s from UDP source port %d", ev.addr, ev.n1))
	case evDrop:
		where := ""
		switch {
		case ev.addr.IsValid():
			where = fmt.Sprintf(" (to peer %s)", ev.addr)
		case ev.stage == StagePortTx:
			where = fmt.Sprintf(" (to port %s)", t.portName(ev.port))
		}
		return fmt.Sprintf("%s: %s%s", would("dropped"), ev.reason, where) + ": " + ev.reason.Help()
	}
	return ev.l3Words(t, would)
}

// DescribeFrame decodes an Ethernet frame's headers in one line, tcpdump
// style: "02:42:0a:2a:00:02 > ff:ff:ff:ff:ff:ff, ARP who-has 10.42.0.3 tell
// 10.42.0.2". It never fails; undecodable parts are named.
func DescribeFrame(b []byte) string {
	var p header.Parsed
	p.Decode(b)
	if p.Status == header.DecodeRunt {
		return fmt.Sprintf("runt frame (%d bytes)", len(b))
	}
	var s strings.Builder
	fmt.Fprintf(&s, "%s > %s", p.SrcMAC, p.DstMAC)
	if p.HasVLAN {
		fmt.Fprintf(&s, ", vlan %d", p.VLANID)
	}
	switch {
	case p.EtherType == header.EtherTypeARP && p.Status == header.DecodeOK:
		switch p.ARPOp {
		case header.ARPRequest:
			fmt.Fprintf(&s, ", ARP who-has %s tell %s", p.DstIP, p.SrcIP)
		case header.ARPReply:
			fmt.Fprintf(&s, ", ARP reply %s is-at %s", p.SrcIP, macOfARP(b, p.L3Offset))
		default:
			fmt.Fprintf(&s, ", ARP op %d", p.ARPOp)
		}
	case p.IPVersion != 0:
		s.WriteString(", ")
		describeIPParsed(&s, &p)
	default:
		fmt.Fprintf(&s, ", ethertype 0x%04x", p.EtherType)
	}
	if p.Status != header.DecodeOK {
		fmt.Fprintf(&s, " [%s]", p.Status)
	}
	return s.String()
}

// DescribeIP decodes a bare IP packet (from a TUN port, an uplink, or
// carried by flannel-UDP or GRE) in one line, like DescribeFrame without the
// link layer: "IPv4 10.244.1.2 > 10.244.2.2 ICMP echo request id 7 ttl 64,
// length 84". It never fails; undecodable parts are named.
func DescribeIP(b []byte) string {
	var p header.Parsed
	p.DecodeIP(b)
	var s strings.Builder
	if p.IPVersion == 0 {
		fmt.Fprintf(&s, "not an IP packet (%d bytes) [%s]", len(b), p.Status)
		return s.String()
	}
	describeIPParsed(&s, &p)
	if p.Status != header.DecodeOK {
		fmt.Fprintf(&s, " [%s]", p.Status)
	}
	return s.String()
}

// describeIPParsed writes the IP part of a decoded packet (IPVersion != 0).
func describeIPParsed(s *strings.Builder, p *header.Parsed) {
	fmt.Fprintf(s, "IPv%d %s > %s", p.IPVersion, p.SrcIP, p.DstIP)
	switch {
	case p.Fragment:
		fmt.Fprintf(s, " proto %d fragment", p.IPProto)
	case p.HasPorts():
		name := "TCP"
		if p.IPProto == header.ProtoUDP {
			name = "UDP"
		}
		fmt.Fprintf(s, " %s %d > %d", name, p.SrcPort, p.DstPort)
		if p.IPProto == header.ProtoTCP {
			fmt.Fprintf(s, " flags %s", tcpFlags(p.TCPFlags))
		}
	case p.Status == header.DecodeOK && (p.IPProto == header.ProtoICMPv4 || p.IPProto == header.ProtoICMPv6):
		fmt.Fprintf(s, " %s", icmpWords(p))
	default:
		fmt.Fprintf(s, " proto %d", p.IPProto)
	}
	fmt.Fprintf(s, " ttl %d, length %d", p.TTL, p.IPLength)
}

func macOfARP(b []byte, l3 int) header.MAC {
	a := header.ARP(b[l3:])
	return a.SenderMAC()
}

func tcpFlags(f uint8) string {
	const names = "FSRPAUEC"
	var b []byte
	for i := range 8 {
		if f&(1<<i) != 0 {
			b = append(b, names[i])
		}
	}
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}

func icmpWords(p *header.Parsed) string {
	if p.IPVersion == 4 {
		switch p.ICMPType {
		case 8:
			return fmt.Sprintf("ICMP echo request id %d", p.ICMPIdent)
		case 0:
			return fmt.Sprintf("ICMP echo reply id %d", p.ICMPIdent)
		}
		return fmt.Sprintf("ICMP type %d code %d", p.ICMPType, p.ICMPCode)
	}
	switch p.ICMPType {
	case 128:
		return fmt.Sprintf("ICMPv6 echo request id %d", p.ICMPIdent)
	case 129:
		return fmt.Sprintf("ICMPv6 echo reply id %d", p.ICMPIdent)
	}
	return fmt.Sprintf("ICMPv6 type %d code %d", p.ICMPType, p.ICMPCode)
}

// --- worker side ---

// traceEvent records an event for a traced packet.
func (w *Worker) traceEvent(p *Packet, ev traceEvent) {
	ev.t = w.eng.now()
	p.tr.add(ev)
}

// selectTrace decides, at ingress, whether p is traced by session s: the
// port matches, the filter matches its frame (an Ethernet frame, or a
// bare IP packet when ip is set, in the network with VXLAN VNI vni), and
// the session's count and the worker's ring have room. It returns whether it
// traced p.
func (w *Worker) selectTrace(s *traceSession, p *Packet, inPort int, frame []byte, ip bool, vni uint32) bool {
	if s.remaining.Load() <= 0 || (s.port >= 0 && s.port != inPort) {
		return false
	}
	if s.filter.root != nil && !w.matches(s.filter, frame, ip, vni) {
		return false
	}
	r := s.rings[w.id]
	if w.trRing != r {
		w.trRing, w.trNext = r, r.head.Load()
	}
	if w.trNext-r.tail.Load() >= uint64(len(r.slots)) {
		s.overflow.Add(1)
		return false
	}
	if s.remaining.Add(-1) < 0 {
		return false
	}
	p.tr = &r.slots[w.trNext%uint64(len(r.slots))]
	w.trNext++
	p.Trace = true
	w.tracing = true
	p.tr.init(w, p.Bytes())
	return true
}

// publishTrace makes the records of the batch visible to the collector.
func (w *Worker) publishTrace() {
	if w.trRing != nil {
		w.trRing.head.Store(w.trNext)
	}
	w.tracing = false
}

// traceBridge records the bridge decisions of w.keep[:k] after forward's
// lookup loop. It runs only when a packet of the batch is traced.
func (w *Worker) traceBridge(t *tables, k int) {
	for i := range k {
		p := w.keep[i]
		if !p.Trace {
			continue
		}
		loc := w.out[i]
		var gw *gateway
		if int(p.Network) < len(t.nets) {
			gw = t.nets[p.Network].gw
		}
		switch {
		case gw != nil && header.MAC(w.dsts[i]) == gw.mac:
			w.traceEvent(p, traceEvent{stage: StageBridge, kind: evToGateway, num: p.Network})
		case w.dsts[i][0]&1 != 0:
			w.traceEvent(p, traceEvent{stage: StageBridge, kind: evFDBBcast})
		case !loc.IsValid():
			w.traceEvent(p, traceEvent{stage: StageBridge, kind: evFDBMiss})
		case loc.IsPeer():
			w.traceEvent(p, traceEvent{stage: StageBridge, kind: evFDBHitPeer, addr: t.peerAddr(loc)})
		default:
			w.traceEvent(p, traceEvent{stage: StageBridge, kind: evFDBHit, port: loc.Index()})
		}
	}
}

func (t *tables) peerAddr(loc bridge.Location) netip.Addr {
	if i := int(loc.Index()); i < len(t.peers) {
		return t.peers[i].addr
	}
	return netip.Addr{}
}
