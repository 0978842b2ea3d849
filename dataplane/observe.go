package dataplane

import (
	"net/netip"

	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/header"
)

// The worker's observation hooks. The pipeline calls them only when the
// batch's observer (w.obs) is not nil, or, for the trace* hooks, when a
// packet of the batch is traced (w.tracing): with nothing observing, the
// fast path pays one atomic pointer load per batch and a nil check at each
// hook site, never a per-packet cost.

// observePortRx selects packets for the trace and captures them at rx:PORT.
func (w *Worker) observePortRx(t *tables, id uint16, pkts []*Packet) {
	o := w.obs
	if int(id) >= len(t.ports) {
		return
	}
	vni := t.ports[id].net.vni
	ip := t.ports[id].net.l3 != nil // a TUN: bare IP packets
	if o.at[pointRx] {
		w.capturePort(o, pointRx, id, vni, pkts)
	}
	if s := o.trace; s != nil {
		for _, p := range pkts {
			if w.selectTrace(s, p, int(id), p.Bytes(), ip, vni) {
				w.traceEvent(p, traceEvent{stage: StagePortRx, kind: evPortRx, port: id})
			}
		}
	}
}

// observeTunnelRxKind selects datagrams received by the tunnel of kind k
// for the trace (by their inner packet and network) and captures them at
// tunnel-rx.
func (w *Worker) observeTunnelRxKind(k TunnelKind, pkts []*Packet) {
	o := w.obs
	if o.at[pointTunnelRx] {
		w.captureTunnelRx(o, k, pkts)
	}
	if s := o.trace; s != nil {
		for _, p := range pkts {
			b := p.Bytes()
			off, ip, vni := w.tbl.tunnelInner(k, b)
			if w.selectTrace(s, p, -1, b[off:], ip, vni) {
				w.traceEvent(p, traceEvent{stage: StageTunnelRx, kind: evTunnelRx, addr: p.Peer, n1: uint16(k)})
			}
		}
	}
}

// tunnelInner finds the inner packet of b, a datagram received by (or
// about to be sent by) the tunnel of kind k: its offset in b, whether it
// is a bare IP packet rather than an Ethernet frame, and the VNI of its
// network for filters (the VXLAN VNI or GRE key; the configured vni of the
// l3 network that owns its destination; NoVNI if none does).
func (t *tables) tunnelInner(k TunnelKind, b []byte) (off int, ip bool, vni uint32) {
	switch k {
	case TunnelFlannelUDP:
		return 0, true, t.l3VNI(t.l3UDP, b)
	case TunnelGRE:
		proto, key, hasKey, hlen, st := encap.DecodeGRE(b)
		switch {
		case st != encap.GREOK:
			return len(b), false, NoVNI
		case proto == encap.GREProtoTEB && hasKey:
			return hlen, false, key
		case proto == encap.GREProtoTEB:
			return hlen, false, NoVNI
		}
		return hlen, true, t.l3VNI(t.l3GRE, b[hlen:])
	}
	v, _ := encap.DecodeVXLAN(b)
	return min(encap.VXLANHeaderLen, len(b)), false, v
}

// l3VNI returns the vni of the network of nets whose subnet holds the
// destination of the bare IPv4 packet b, or NoVNI.
func (t *tables) l3VNI(nets []*network, b []byte) uint32 {
	if len(b) < header.IPv4MinLen {
		return NoVNI
	}
	if n := l3ByDst(nets, ipv4Dst(b)); n != nil {
		return n.vni
	}
	return NoVNI
}

// observeUplinkRx selects packets read from uplink u for the trace. Only a
// session that names no port traces uplink packets; their vni is NoVNI.
func (w *Worker) observeUplinkRx(u *uplink, pkts []*Packet) {
	s := w.obs.trace
	if s == nil || s.port >= 0 {
		return
	}
	for _, p := range pkts {
		if w.selectTrace(s, p, -1, p.Bytes(), true, NoVNI) {
			w.traceEvent(p, traceEvent{stage: StageUplinkRx, kind: evUplinkRx, port: u.id})
		}
	}
}

// endObserve publishes the batch's trace records and captured packets.
func (w *Worker) endObserve() {
	if w.tracing {
		w.publishTrace()
	}
	w.publishCaptures(w.obs)
}

// traceEthInput records that w.keep[:k] were accepted into network n.
func (w *Worker) traceEthInput(n *network, k int) {
	for _, p := range w.keep[:k] {
		if p.Trace {
			w.traceEvent(p, traceEvent{stage: StageEthernetInput, kind: evEthInput, num: n.id, vni: n.vni})
		}
	}
}

// traceDecap records the network and peer that decap found for pkts.
func (w *Worker) traceDecap(t *tables, pkts []*Packet) {
	for _, p := range pkts {
		if p.Trace {
			w.traceEvent(p, traceEvent{stage: StageVXLANDecap, kind: evDecap, num: p.Network, vni: t.nets[p.Network].vni, addr: p.Peer})
		}
	}
}

// traceEncap records the VXLAN header, or on an l2 GRE network the GRE
// header keyed by the VNI, given to the traced packets of w.encap.
func (w *Worker) traceEncap(n *network) {
	for _, p := range w.encap {
		if !p.Trace || p.encapDrop != ReasonNone {
			continue
		}
		if n.encap == TunnelGRE {
			w.traceGRE(p, encap.GREProtoTEB, n.vni, true)
			continue
		}
		w.traceEvent(p, traceEvent{stage: StageVXLANEncap, kind: evEncap, vni: n.vni})
	}
}

// lookupOnly is the dry-run bridge lookup: the destinations of w.keep[:k],
// without learning the sources.
func (w *Worker) lookupOnly(n *network, k int) {
	for i := range k {
		loc, _ := n.fdb.Lookup(w.t, w.dsts[i])
		w.out[i] = loc
	}
}

// observeDrop shows a dropped packet to the trace and the drop captures.
// port or peer say where the packet was bound, for drops on the way out.
func (w *Worker) observeDrop(p *Packet, s Stage, r Reason, port uint16, peer netip.Addr) {
	if p.Trace {
		w.traceEvent(p, traceEvent{stage: s, kind: evDrop, reason: r, port: port, addr: peer})
	}
	if w.obs.at[pointDrop] {
		w.captureDrop(w.obs, p, s, r, port, peer)
	}
}

// observeDrops is observeDrop for several packets.
func (w *Worker) observeDrops(pkts []*Packet, s Stage, r Reason, port uint16, peer netip.Addr) {
	for _, p := range pkts {
		w.observeDrop(p, s, r, port, peer)
	}
}

// observePortTx shows pkts, written to port id, to the trace and the
// tx:PORT captures.
func (w *Worker) observePortTx(id uint16, pkts []*Packet) {
	o := w.obs
	if o.at[pointTx] && int(id) < len(w.tbl.ports) {
		w.capturePort(o, pointTx, id, w.tbl.ports[id].net.vni, pkts)
	}
	if w.tracing {
		for _, p := range pkts {
			if p.Trace {
				w.traceEvent(p, traceEvent{stage: StagePortTx, kind: evPortTx, port: id})
			}
		}
	}
}

// observeTunnelTx shows the datagrams w.sort*[start:end], sent from source
// index src except those refused (indices relative to start), to the trace
// and the tunnel-tx captures.
func (w *Worker) observeTunnelTx(src, start, end int, refused []int) {
	o := w.obs
	if o.at[pointTunnelTx] {
		w.captureTunnelTx(o, src, start, end, refused)
	}
	if !w.tracing {
		return
	}
	_, srcPorts := tunnelAddrs(w.txTun, w.txKind())
	var sport uint16
	if src < len(srcPorts) {
		sport = srcPorts[src]
	}
	ri := 0
	for i := start; i < end; i++ {
		if ri < len(refused) && start+refused[ri] == i {
			ri++
			continue
		}
		if p := w.sortPkts[i]; p.Trace {
			w.traceEvent(p, traceEvent{stage: StageTunnelTx, kind: evTunnelTx, addr: w.sortDst[i], n1: sport})
		}
	}
}

// observeTunnelDrops shows the datagrams w.sort*[start:end], dropped at
// tunnel-tx for reason r.
func (w *Worker) observeTunnelDrops(start, end int, r Reason) {
	for i := start; i < end; i++ {
		w.observeDrop(w.sortPkts[i], StageTunnelTx, r, 0, w.sortDst[i])
	}
}
