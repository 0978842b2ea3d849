package dataplane

import (
	"net/netip"

	"github.com/ferry-overlay/ferry/encap"
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
	if o.at[pointRx] {
		w.capturePort(o, pointRx, id, vni, pkts)
	}
	if s := o.trace; s != nil {
		for _, p := range pkts {
			if w.selectTrace(s, p, int(id), p.Bytes(), vni) {
				w.traceEvent(p, traceEvent{stage: StagePortRx, kind: evPortRx, port: id})
			}
		}
	}
}

// observeTunnelRx selects datagrams for the trace (by their inner frame and
// VNI) and captures them at tunnel-rx.
func (w *Worker) observeTunnelRx(pkts []*Packet) {
	o := w.obs
	if o.at[pointTunnelRx] {
		w.captureTunnelRx(o, pkts)
	}
	if s := o.trace; s != nil {
		for _, p := range pkts {
			b := p.Bytes()
			vni, _ := encap.DecodeVXLAN(b)
			var inner []byte
			if len(b) >= encap.VXLANHeaderLen {
				inner = b[encap.VXLANHeaderLen:]
			}
			if w.selectTrace(s, p, -1, inner, vni) {
				w.traceEvent(p, traceEvent{stage: StageTunnelRx, kind: evTunnelRx, addr: p.Peer})
			}
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

// traceEncap records the VXLAN header given to the traced packets of
// w.encap.
func (w *Worker) traceEncap(n *network) {
	for _, p := range w.encap {
		if p.Trace && p.encapDrop == ReasonNone {
			w.traceEvent(p, traceEvent{stage: StageVXLANEncap, kind: evEncap, vni: n.vni})
		}
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
	_, srcPorts := tunnelAddrs(w.txTun)
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
