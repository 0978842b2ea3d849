package dataplane

import (
	"errors"
	"net/netip"
	"sync/atomic"

	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/header"
	bridge "github.com/ferry-overlay/ferry/switch"
)

// The pipeline, run to completion one batch at a time by each worker:
//
//	port rx ──► ethernet-input ──► bridge ──┬──► port-tx
//	                                        ├──► flood ──► port-tx, vxlan-encap
//	                                        └──► vxlan-encap ──► tunnel-tx
//	tunnel rx ──► vxlan-decap ──► ethernet-input ──► bridge ──► port-tx | flood
//
// Ordering rules: port-tx runs before vxlan-encap within a batch, because a
// flooded frame is written to local ports as it is and then, in the same
// buffer, gets its outer header prepended for the peers. A frame that came
// from a peer is never sent to a peer (split horizon: the overlay is a full
// mesh and every host floods to every other itself). A packet is dropped at
// exactly one place and counted there under its (stage, reason).
//
// Buffer ownership: a worker owns the packets of the batch it is running;
// every output list holds borrowed pointers, and the batch is freed back to
// the worker's pool once every output has been written.

// ErrTxFull is returned by PortIO and TunnelIO writes when the device or
// socket queue is full; the packets not written are counted as tx-full drops.
var ErrTxFull = errors.New("transmit queue full")

// PortIO is one queue of a local port (a TAP queue, or an in-memory fake),
// used by exactly one worker.
type PortIO interface {
	// ReadBatch reads up to len(pkts) frames, each into a packet's
	// RxBuffer, and returns how many it read. It does not block: with
	// nothing to read it returns 0, nil.
	ReadBatch(pkts []*Packet) (int, error)
	// WriteBatch writes each packet's Bytes as one frame, in order. It
	// returns how many it wrote before it stopped; when that is less than
	// len(pkts), err says why the next one failed: ErrTxFull (the queue
	// is full: the worker drops the rest as tx-full) or another error
	// (that frame is dropped as tx-error and the worker writes on). It
	// does not retain the packets.
	WriteBatch(pkts []*Packet) (int, error)
}

// TunnelIO is one worker's tunnel socket(s) for encapsulated traffic.
type TunnelIO interface {
	// ReadBatch reads up to len(pkts) datagrams, each into a packet's
	// RxBuffer with Peer set to the sender's address, and returns how many
	// it read. Without data it returns 0, nil. A datagram that did not fit
	// is marked with MarkTruncated.
	ReadBatch(pkts []*Packet) (int, error)
	// Spread returns how many outer source ports the tunnel sends from.
	// The worker sends a packet from source Hash % Spread, so one inner
	// flow keeps one outer source port and different flows spread over
	// receive queues and ECMP paths (RFC 7348 §5).
	Spread() int
	// WriteBatch sends each packet's Bytes as one datagram to the peer at
	// dst[i] from source src (0 <= src < Spread), with the same result
	// rules as PortIO.WriteBatch, except that a datagram the kernel
	// refuses on its own (no route, too big) does not stop the batch: it
	// counts among the n handled and its index is listed by Refused.
	WriteBatch(src int, pkts []*Packet, dst []netip.Addr) (int, error)
	// Refused returns the ascending indices, into the pkts of the last
	// WriteBatch, of datagrams that were refused; valid until the next
	// WriteBatch.
	Refused() []int
}

// Worker runs batches through the pipeline. A worker is one goroutine's: it
// owns its pool, its queues and its scratch space, and shares only the
// engine's tables (read per batch) and the FDBs (batch-locked).
type Worker struct {
	id     int
	eng    *Engine
	c      *Counters
	pool   *Pool
	ports  []PortIO // by global port id; nil where this worker has no queue
	tunnel TunnelIO // the VXLAN tunnel, tunnels[TunnelVXLAN]
	// tunnels are the worker's tunnel sockets by kind; txTun and txStage
	// are the tunnel and encap stage of the batch being sent (one batch
	// is one network, so one kind).
	tunnels [NumTunnelKinds]TunnelIO
	txTun   TunnelIO
	txStage Stage

	rx Batch
	t  int64 // clock at the end of the last timed stage

	// Observation (trace, capture), see trace.go and capture.go. obs is
	// loaded from obsSrc once per batch; everything else is only touched
	// when obs is not nil.
	obsSrc  *atomic.Pointer[observer]
	obs     *observer
	tbl     *tables // the batch's tables, for observers
	tracing bool    // some packet of this batch is traced
	trRing  *traceRing
	trNext  uint64
	parsed  header.Parsed
	// rawDrops says that packets dropped now are bare IP packets (l3
	// and uplink stages), for drop captures; only read when obs is set.
	rawDrops bool
	// dry marks a what-if worker (trace inject): it looks the FDB up
	// without learning, reads the neighbour and conntrack tables without
	// changing them (router.go, nat.go), and its ports, tunnels and
	// uplinks are in-memory fakes.
	dry bool

	// Scratch for one batch, allocated once.
	keep       [MaxBatch]*Packet
	srcs, dsts [MaxBatch][6]byte
	from, out  [MaxBatch]bridge.Location
	flood      []*Packet
	portTx     [MaxPorts][]*Packet
	portDirty  []uint16
	// made holds packets the worker built during the batch (ICMP errors);
	// they are freed with the batch.
	made    []*Packet
	encap   []*Packet
	tunPkts []*Packet
	tunDst  []netip.Addr
	tunPeer []uint16
	// sort* is the list being sent: tun* itself, or grp* when the
	// datagrams had to be grouped by source port.
	sortPkts []*Packet
	sortDst  []netip.Addr
	sortPeer []uint16
	grpPkts  []*Packet
	grpDst   []netip.Addr
	grpPeer  []uint16

	off offloadState  // GSO/GRO scratch, see offload.go
	rt  routerScratch // router stages (router.go)
	nt  natScratch    // uplink and NAT stages (nat.go)
}

// NewWorker returns worker id (0 <= id < eng.Workers()) with its own pool of
// poolSize packets of frameRoom bytes (0: DefaultFrameRoom).
func (e *Engine) NewWorker(id, poolSize, frameRoom int) *Worker {
	w := &Worker{
		id:        id,
		eng:       e,
		c:         e.counters[id],
		obsSrc:    &e.obs,
		pool:      NewPool(poolSize, frameRoom),
		flood:     make([]*Packet, 0, MaxBatch),
		portDirty: make([]uint16, 0, 16),
		encap:     make([]*Packet, 0, MaxBatch),
		tunPkts:   make([]*Packet, 0, 4*MaxBatch),
		tunDst:    make([]netip.Addr, 0, 4*MaxBatch),
		tunPeer:   make([]uint16, 0, 4*MaxBatch),
		grpPkts:   make([]*Packet, 0, 4*MaxBatch),
		grpDst:    make([]netip.Addr, 0, 4*MaxBatch),
		grpPeer:   make([]uint16, 0, 4*MaxBatch),
	}
	w.rt.init() // router stages (router.go)
	w.nt.init() // uplink and NAT stages (nat.go)
	return w
}

// SetPort attaches this worker's queue of the port with the given global id.
func (w *Worker) SetPort(id uint16, io PortIO) {
	for len(w.ports) <= int(id) {
		w.ports = append(w.ports, nil)
	}
	w.ports[id] = io
}

// SetTunnel attaches this worker's VXLAN tunnel socket.
func (w *Worker) SetTunnel(io TunnelIO) { w.SetTunnelKind(TunnelVXLAN, io) }

// SetTunnelKind attaches this worker's tunnel socket of kind k.
func (w *Worker) SetTunnelKind(k TunnelKind, io TunnelIO) {
	w.tunnels[k] = io
	if k == TunnelVXLAN {
		w.tunnel = io
	}
}

// Tunnel returns this worker's tunnel socket of kind k, or nil.
func (w *Worker) Tunnel(k TunnelKind) TunnelIO { return w.tunnels[k] }

// Pool returns the worker's packet pool.
func (w *Worker) Pool() *Pool { return w.pool }

// mark ends a timed stage that handled n packets.
func (w *Worker) mark(s Stage, n int) {
	now := w.eng.now()
	if n > 0 {
		w.c.addStage(s, n, now-w.t)
	}
	w.t = now
}

// batchReader is what the poll functions read a batch from: a port queue,
// a tunnel socket or an uplink queue.
type batchReader interface {
	ReadBatch(pkts []*Packet) (int, error)
}

// readBatch starts a batch: it reads its clock, fills w.rx from the pool,
// reads into it from r, and returns the buffers r did not fill to the pool.
// It returns how many packets w.rx now holds.
func (w *Worker) readBatch(r batchReader) (int, error) {
	b := &w.rx
	w.t = w.eng.now()
	if w.pool.GetBatch(b) == 0 {
		return 0, nil
	}
	n, err := r.ReadBatch(b.Slice())
	for _, p := range b.Pkts[n:b.Len] {
		p.pool.Put(p)
	}
	clear(b.Pkts[n:b.Len])
	b.Len = n
	return n, err
}

// PollPort reads one batch from this worker's queue of port id and runs it
// to completion. It returns the number of frames read.
func (w *Worker) PollPort(id uint16) (int, error) {
	n, err := w.readBatch(w.ports[id])
	if n == 0 {
		return 0, err
	}
	b := &w.rx
	wire, bytes := wireTotal(b.Slice())
	pc := &w.c.ports[id].rx
	pc.packets.Add(uint64(wire))
	pc.bytes.Add(uint64(bytes))
	w.mark(StagePortRx, n)
	t := w.eng.tables.Load()
	w.tbl = t
	w.obs = w.obsSrc.Load()
	if w.obs != nil {
		w.observePortRx(t, id, b.Slice())
	}
	w.fromPort(t, id, b.Slice())
	if w.obs != nil {
		w.endObserve()
	}
	b.Free()
	for _, p := range w.made {
		p.pool.Put(p)
	}
	clear(w.made)
	w.made = w.made[:0]
	return n, err
}

// PollTunnel reads one batch from this worker's VXLAN tunnel socket and
// runs it to completion. It returns the number of datagrams read.
func (w *Worker) PollTunnel() (int, error) { return w.PollTunnelKind(TunnelVXLAN) }

// PollTunnelKind reads one batch from this worker's tunnel socket of kind k
// and runs it to completion. It returns the number of datagrams read.
func (w *Worker) PollTunnelKind(k TunnelKind) (int, error) {
	if k != TunnelGRE && w.off.on {
		return w.pollTunnelGRO(k) // datagrams may be UDP_GRO buffers (offload.go)
	}
	n, err := w.readBatch(w.tunnels[k])
	if n == 0 {
		return 0, err
	}
	b := &w.rx
	w.mark(StageTunnelRx, n)
	t := w.eng.tables.Load()
	w.tbl = t
	w.obs = w.obsSrc.Load()
	if w.obs != nil {
		w.observeTunnelRxKind(k, b.Slice())
	}
	switch k { // gre.go
	case TunnelGRE:
		w.fromGRE(t, b.Slice())
	case TunnelFlannelUDP:
		w.fromFlannelUDP(t, b.Slice())
	default:
		w.fromTunnel(t, b.Slice())
	}
	if w.obs != nil {
		w.endObserve()
	}
	b.Free()
	return n, err
}

// fromPort is ethernet-input for frames read from a local port.
func (w *Worker) fromPort(t *tables, id uint16, pkts []*Packet) {
	if int(id) >= len(t.ports) {
		return
	}
	n := t.ports[id].net
	if n.l3 != nil { // an l3 network's TUN: l3.go
		w.fromTUN(t, n, id, pkts)
		return
	}
	from := bridge.PortLocation(id)
	k := 0
	for _, p := range pkts {
		if p.rxDrop != ReasonNone { // bad virtio-net header (offload.go)
			w.dropPkt(p, StagePortRx, p.rxDrop)
			continue
		}
		b := p.Bytes()
		if len(b) < header.EthernetLen {
			w.dropPkt(p, StageEthernetInput, ReasonRunt)
			continue
		}
		if b[6]&1 != 0 {
			w.dropPkt(p, StageEthernetInput, ReasonMulticastSource)
			continue
		}
		p.InPort, p.Network, p.From = id, n.id, from
		w.keep[k] = p
		w.dsts[k] = [6]byte(b[0:6])
		w.srcs[k] = [6]byte(b[6:12])
		w.from[k] = from
		k++
	}
	w.mark(StageEthernetInput, len(pkts))
	if w.tracing {
		w.traceEthInput(n, k)
	}
	w.forward(t, n, k)
}

// fromTunnel is vxlan-decap: it validates the header, finds the network by
// VNI, checks that the sender is a peer of that network, strips the header
// and hands the inner frames, grouped by network, to ethernet-input.
func (w *Worker) fromTunnel(t *tables, pkts []*Packet) {
	valid := 0
	// One-entry cache of the last (VNI, sender) verdict: a batch nearly
	// always comes from a few peers of one network.
	var (
		lastVNI  uint32 = 1 << 24 // no VNI is this large
		lastPeer netip.Addr
		lastNet  *network
		lastPID  uint16
	)
	for _, p := range pkts {
		if p.truncated {
			w.dropPkt(p, StageVXLANDecap, ReasonRxTruncated)
			continue
		}
		vni, st := encap.DecodeVXLAN(p.Bytes())
		switch st {
		case encap.VXLANOK:
		case encap.VXLANBadFlags:
			w.dropPkt(p, StageVXLANDecap, ReasonVXLANBadFlags)
			continue
		default:
			w.dropPkt(p, StageVXLANDecap, ReasonVXLANShort)
			continue
		}
		n, pid := lastNet, lastPID
		if vni != lastVNI || p.Peer != lastPeer {
			n = t.byVNI[vni]
			if n == nil {
				w.dropPkt(p, StageVXLANDecap, ReasonUnknownVNI)
				continue
			}
			var ok bool
			if pid, ok = n.peerIdx[p.Peer]; !ok {
				w.dropPkt(p, StageVXLANDecap, ReasonUnknownPeer)
				continue
			}
			lastVNI, lastPeer, lastNet, lastPID = vni, p.Peer, n, pid
		}
		p.Advance(encap.VXLANHeaderLen)
		p.Network, p.From = n.id, bridge.PeerLocation(pid)
		pkts[valid] = p
		valid++
	}
	w.countPeerRx(pkts[:valid])
	w.mark(StageVXLANDecap, len(pkts))
	if w.tracing {
		w.traceDecap(t, pkts[:valid])
	}
	w.decapped(t, pkts[:valid])
}

// decapped takes decapsulated packets (Network and From set) one network at
// a time (a batch nearly always holds one) to ethernet-input and the bridge,
// or on l3 networks into the TUN. Packets of other networks are compacted to
// the front of rest.
func (w *Worker) decapped(t *tables, rest []*Packet) {
	for len(rest) > 0 {
		n := t.nets[rest[0].Network]
		if n.l3 != nil {
			rest = w.l3FromTunnel(n, rest)
			continue
		}
		k, other := 0, 0
		for _, p := range rest {
			if p.Network != n.id {
				rest[other] = p
				other++
				continue
			}
			b := p.Bytes()
			if b[6]&1 != 0 {
				w.dropPkt(p, StageEthernetInput, ReasonMulticastSource)
				continue
			}
			w.keep[k] = p
			w.dsts[k] = [6]byte(b[0:6])
			w.srcs[k] = [6]byte(b[6:12])
			w.from[k] = p.From
			k++
		}
		w.mark(StageEthernetInput, len(rest)-other)
		if w.tracing {
			w.traceEthInput(n, k)
		}
		w.forward(t, n, k)
		rest = rest[:other]
	}
}

// countPeerRx adds the packets to their peers' rx counters, one atomic add
// per run of packets from the same peer. A packet's received size is what
// lies between its receive offset (Headroom) and its end, whatever headers
// decap has stripped since.
func (w *Worker) countPeerRx(pkts []*Packet) {
	now := w.eng.now()
	for i := 0; i < len(pkts); {
		loc := pkts[i].From
		j, bytes := i, 0
		k := 0
		for ; j < len(pkts) && pkts[j].From == loc; j++ {
			p := pkts[j]
			if !p.isGSO() {
				k++
				bytes += p.end - Headroom
				continue
			}
			// A UDP_GRO train merged at tunnel rx: count the datagrams
			// it was, each with its tunnel header (p.off-Headroom).
			n, b := p.wireCount()
			k += n
			bytes += b + n*(p.off-Headroom)
		}
		pc := &w.c.peers[loc.Index()]
		pc.rx.packets.Add(uint64(k))
		pc.rx.bytes.Add(uint64(bytes))
		pc.lastRx.Store(now)
		i = j
	}
}

// forward is the bridge stage for w.keep[:k], all of network n: learn the
// sources, look up the destinations, and sort each frame to a port, a peer
// or the flood list. Then it runs flood, port-tx, vxlan-encap and tunnel-tx.
func (w *Worker) forward(t *tables, n *network, k int) {
	if k == 0 {
		return
	}
	if w.dry {
		w.lookupOnly(n, k)
	} else {
		n.fdb.LearnLookup(w.t, w.srcs[:k], w.dsts[:k], w.from[:k], w.out[:k])
	}
	if w.tracing {
		w.traceBridge(t, k)
	}
	gw := n.gw // router.go: frames for the gateway leave the bridge here
	for i := range k {
		p := w.keep[i]
		if gw != nil && w.toGateway(t, gw, i) {
			continue
		}
		if w.dsts[i][0]&1 != 0 || !w.out[i].IsValid() {
			w.flood = append(w.flood, p)
			continue
		}
		loc, from := w.out[i], w.from[i]
		switch {
		case loc == from:
			w.dropPkt(p, StageBridge, ReasonSameSegment)
		case loc.IsPeer() && from.IsPeer():
			w.dropPkt(p, StageBridge, ReasonSplitHorizon)
		case loc.IsPeer():
			w.toPeer(t, p, loc.Index())
		default:
			w.toPort(loc.Index(), p)
		}
	}
	w.mark(StageBridge, k)

	if len(w.flood) > 0 {
		for _, p := range w.flood {
			ports, peers := 0, 0
			for _, id := range n.ports {
				if bridge.PortLocation(id) != p.From {
					w.toPort(id, p)
					ports++
				}
			}
			if !p.From.IsPeer() {
				for _, id := range n.peers {
					w.toPeer(t, p, id)
					peers++
				}
			}
			if w.tracing && p.Trace {
				w.traceEvent(p, traceEvent{stage: StageFlood, kind: evFlood, n1: uint16(ports), n2: uint16(peers)})
			}
			if ports+peers == 0 {
				w.dropPkt(p, StageFlood, ReasonNoFloodTarget)
			}
		}
		w.mark(StageFlood, len(w.flood))
		clear(w.flood)
		w.flood = w.flood[:0]
	}
	if gw != nil && len(w.rt.gwIn)+len(w.rt.binds) > 0 { // router.go
		w.gatewayStage(t, n)
	}
	w.flushPorts()
	w.encapsulate(n)
	w.txTun, w.txStage = w.tunnels[n.encap], StageVXLANEncap
	if n.encap == TunnelGRE {
		w.txStage = StageGREEncap
	}
	w.flushTunnel()
	if len(w.nt.out) > 0 { // nat.go
		w.natOutStage(t)
	}
	if len(w.rt.routed) > 0 { // router.go
		w.neighbourStage(t)
	}
	if len(w.rt.gen) > 0 {
		w.freeGenerated()
	}
}

func (w *Worker) toPort(id uint16, p *Packet) {
	if len(w.portTx[id]) == 0 {
		w.portDirty = append(w.portDirty, id)
	}
	w.portTx[id] = append(w.portTx[id], p)
	p.portRefs++ // GRO coalesces only packets bound for one port (offload.go)
}

func (w *Worker) toPeer(t *tables, p *Packet, id uint16) {
	if !p.encapPending {
		p.encapPending = true
		w.encap = append(w.encap, p)
	}
	w.tunPkts = append(w.tunPkts, p)
	w.tunDst = append(w.tunDst, t.peers[id].addr)
	w.tunPeer = append(w.tunPeer, id)
}

// flushPorts is port-tx: one WriteBatch per port with pending frames.
func (w *Worker) flushPorts() {
	total := 0
	for _, id := range w.portDirty {
		pkts := w.portTx[id]
		total += len(pkts)
		out := w.coalesce(id, pkts) // TCP GRO into superpackets (offload.go)
		var io PortIO
		if int(id) < len(w.ports) {
			io = w.ports[id]
		}
		wire, bytes := 0, 0
		for rest := out; len(rest) > 0; {
			if io == nil {
				r := w.dropTx(StagePortTx, errNoQueue, len(rest))
				w.c.ports[id].drops.Add(uint64(len(rest)))
				if w.obs != nil {
					w.observeDrops(rest, StagePortTx, r, id, netip.Addr{})
				}
				break
			}
			n, err := io.WriteBatch(rest)
			k, b := wireTotal(rest[:n])
			wire += k
			bytes += b
			if w.obs != nil && n > 0 {
				w.observePortTx(id, rest[:n])
			}
			rest = rest[n:]
			if len(rest) == 0 {
				break
			}
			lost := 1
			if errors.Is(err, ErrTxFull) {
				lost = len(rest)
			}
			r := w.dropTx(StagePortTx, err, lost)
			w.c.ports[id].drops.Add(uint64(lost))
			if w.obs != nil {
				w.observeDrops(rest[:lost], StagePortTx, r, id, netip.Addr{})
			}
			rest = rest[lost:]
		}
		pc := &w.c.ports[id].tx
		pc.packets.Add(uint64(wire))
		pc.bytes.Add(uint64(bytes))
		clear(pkts)
		w.portTx[id] = pkts[:0]
	}
	w.portDirty = w.portDirty[:0]
	w.mark(StagePortTx, total)
}

// ErrPortDown is returned by PortIO writes when the device's link is down
// (an unplugged container); the frame is counted as a port-down drop.
var ErrPortDown = errors.New("port link is down")

// dropTx counts n packets a device or socket did not take, and returns the
// reason it counted them under.
func (w *Worker) dropTx(s Stage, err error, n int) Reason {
	r := ReasonTxError
	switch {
	case errors.Is(err, ErrTxFull):
		r = ReasonTxFull
	case errors.Is(err, ErrPortDown):
		r = ReasonPortDown
	}
	w.c.drop(s, r, n)
	return r
}

// dropPkt counts p as dropped at stage s for reason r, and shows it to the
// observers, if any.
func (w *Worker) dropPkt(p *Packet, s Stage, r Reason) {
	w.c.drop(s, r, 1)
	if w.obs != nil {
		w.observeDrop(p, s, r, 0, netip.Addr{})
	}
}

var (
	errNoQueue = errors.New("port has no queue on this worker")
	errRefused = errors.New("datagram refused by the kernel")
)

// encapsulate is vxlan-encap: each frame bound for one or more peers gets
// its VXLAN header prepended once, in its headroom; replication to several
// peers sends the same bytes.
func (w *Worker) encapsulate(n *network) {
	if len(w.encap) == 0 {
		return
	}
	maxFrame := n.mtu + header.EthernetLen + 4 // one 802.1Q tag
	gre := n.encap == TunnelGRE                // l2 GRE: TEB keyed by VNI
	for _, p := range w.encap {
		p.encapPending = false
		if r := finishChecksum(p); r != ReasonNone { // partial checksum from a port (offload.go)
			p.encapDrop = r
			continue
		}
		if p.Len() > maxFrame && n.mtu > 0 && !p.isGSO() {
			p.encapDrop = ReasonTooBig
			continue
		}
		if gre {
			h := p.Prepend(encap.GREKeyHeaderLen)
			if h == nil {
				p.encapDrop = ReasonNoHeadroom
				continue
			}
			encap.PutGRE(h, encap.GREProtoTEB, n.vni, true)
			continue
		}
		h := p.Prepend(encap.VXLANHeaderLen)
		if h == nil {
			p.encapDrop = ReasonNoHeadroom
			continue
		}
		encap.PutVXLAN(h, n.vni)
		p.Hash = header.FlowHash(p.Bytes()[encap.VXLANHeaderLen:])
	}
	if gre {
		w.mark(StageGREEncap, len(w.encap))
	} else {
		w.mark(StageVXLANEncap, len(w.encap))
	}
	if w.tracing {
		w.traceEncap(n)
	}
	clear(w.encap)
	w.encap = w.encap[:0]
}

// flushTunnel is tunnel-tx: the datagrams of the batch, grouped by outer
// source port (bucket of Hash, stable), one WriteBatch per group. Packets
// that encap refused are dropped here under the encap stage. When every
// datagram falls in one group (one flow, the common case for a busy
// stream) the list is sent as it is, without the grouping copy.
func (w *Worker) flushTunnel() {
	if len(w.tunPkts) == 0 {
		return
	}
	defer w.off.endBatch() // forget the segmented superpacket (offload.go)
	spread := 1
	if w.txTun != nil {
		spread = min(max(w.txTun.Spread(), 1), MaxSpread)
	}
	var count [MaxSpread + 1]int
	k := 0
	for i, p := range w.tunPkts {
		if p.encapDrop != ReasonNone {
			w.c.drop(w.txStage, p.encapDrop, 1)
			if w.obs != nil {
				w.observeDrop(p, w.txStage, p.encapDrop, 0, w.tunDst[i])
			}
			continue
		}
		if p.isGSO() { // a superpacket: segmented and sent on its own (offload.go)
			w.sendSuper(p, w.tunDst[i], w.tunPeer[i], spread)
			continue
		}
		b := bucket(p.Hash, spread)
		count[b+1]++
		w.tunPkts[k], w.tunDst[k], w.tunPeer[k] = p, w.tunDst[i], w.tunPeer[i]
		k++
	}
	w.sortPkts, w.sortDst, w.sortPeer = w.tunPkts[:k], w.tunDst[:k], w.tunPeer[:k]
	single := -1
	for b := range spread {
		if count[b+1] == k {
			single = b
		}
	}
	if single >= 0 {
		w.sendGroup(single, 0, k)
	} else {
		for i := 1; i <= spread; i++ {
			count[i] += count[i-1]
		}
		w.sortPkts = append(w.grpPkts[:0], w.tunPkts[:k]...)
		w.sortDst = append(w.grpDst[:0], w.tunDst[:k]...)
		w.sortPeer = append(w.grpPeer[:0], w.tunPeer[:k]...)
		for i, p := range w.tunPkts[:k] {
			b := bucket(p.Hash, spread)
			j := count[b]
			count[b]++
			w.sortPkts[j], w.sortDst[j], w.sortPeer[j] = p, w.tunDst[i], w.tunPeer[i]
		}
		// count[b] is now the end of group b; group b starts at count[b-1].
		start := 0
		for b := range spread {
			w.sendGroup(b, start, count[b])
			start = count[b]
		}
		w.grpPkts, w.grpDst, w.grpPeer = w.sortPkts, w.sortDst, w.sortPeer
		clear(w.grpPkts)
	}
	w.mark(StageTunnelTx, k)
	clear(w.tunPkts)
	w.tunPkts, w.tunDst, w.tunPeer = w.tunPkts[:0], w.tunDst[:0], w.tunPeer[:0]
	w.sortPkts, w.sortDst, w.sortPeer = nil, nil, nil
}

// bucket maps a flow hash onto [0, n) with a multiply and a shift (cheaper
// than a division, and as even for a well-mixed hash).
func bucket(hash uint32, n int) int { return int(uint64(hash) * uint64(n) >> 32) }

// MaxSpread bounds the number of outer source ports a tunnel may use.
const MaxSpread = 64

// sendGroup writes w.sort*[start:end], all from source port src, and counts
// each datagram sent or dropped against its peer.
func (w *Worker) sendGroup(src, start, end int) {
	for start < end {
		if w.txTun == nil {
			r := w.dropTx(StageTunnelTx, errNoQueue, end-start)
			w.countPeerDrops(start, end)
			if w.obs != nil {
				w.observeTunnelDrops(start, end, r)
			}
			return
		}
		n, err := w.txTun.WriteBatch(src, w.sortPkts[start:end], w.sortDst[start:end])
		if w.obs != nil {
			w.observeTunnelTx(src, start, start+n, w.txTun.Refused())
		}
		i := start
		for _, r := range w.txTun.Refused() {
			w.countPeerTx(i, start+r)
			reason := w.dropTx(StageTunnelTx, errRefused, 1)
			w.countPeerDrops(start+r, start+r+1)
			if w.obs != nil {
				w.observeTunnelDrops(start+r, start+r+1, reason)
			}
			i = start + r + 1
		}
		w.countPeerTx(i, start+n)
		start += n
		if start == end {
			return
		}
		lost := 1
		if errors.Is(err, ErrTxFull) {
			lost = end - start
		}
		r := w.dropTx(StageTunnelTx, err, lost)
		w.countPeerDrops(start, start+lost)
		if w.obs != nil {
			w.observeTunnelDrops(start, start+lost, r)
		}
		start += lost
	}
}

// countPeerTx adds w.sort*[i:j] to their peers' tx counters, one atomic add
// per run of the same peer.
func (w *Worker) countPeerTx(i, j int) {
	for i < j {
		id := w.sortPeer[i]
		k, bytes := i, 0
		for ; k < j && w.sortPeer[k] == id; k++ {
			bytes += w.sortPkts[k].Len()
		}
		pc := &w.c.peers[id].tx
		pc.packets.Add(uint64(k - i))
		pc.bytes.Add(uint64(bytes))
		i = k
	}
}

func (w *Worker) countPeerDrops(i, j int) {
	for _, id := range w.sortPeer[i:j] {
		w.c.peers[id].drops.Add(1)
	}
}
