package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/router"
)

// The router, for networks with a gateway (package router explains each
// function it calls):
//
//	bridge ──► gateway ──┬──► ARP / echo reply ──► port-tx | vxlan-encap (back to the sender)
//	                     └──► router ──┬──► ICMP error ──► back to the sender
//	                                   └──► neighbour ──► bridge lookup of the egress network
//	                                                      ──► port-tx | flood | vxlan-encap
//
// The bridge hands the gateway stage every frame addressed to the
// gateway MAC and every broadcast ARP request for the gateway address;
// other broadcast ARP frames are flooded as usual and teach the network's
// neighbour table their sender. Frames for the gateway MAC are routed after
// the bridge stage has flushed the ingress network's own output, one
// egress network at a time, so each network's frames are encapsulated with
// its own VNI. Packets the router makes (ICMP errors, ARP requests) come
// from the worker's pool and go back to it once written.

// gateway is the router state of one network.
type gateway struct {
	ip     netip.Addr
	ip4    [4]byte
	mac    header.MAC
	subnet netip.Prefix
	neigh  *router.Neighbours
}

// newGateway returns the router state of the network s describes, or nil
// when it has no gateway.
func newGateway(s NetworkSpec) (*gateway, error) {
	if !s.Gateway.IsValid() {
		return nil, nil
	}
	if !s.Gateway.Is4() || !s.Subnet.Contains(s.Gateway) {
		return nil, fmt.Errorf("gateway %s is not an IPv4 address inside subnet %s", s.Gateway, s.Subnet)
	}
	neigh, err := router.NewNeighbours(router.NeighbourOptions{Ageing: s.Ageing})
	if err != nil {
		return nil, err
	}
	return &gateway{ip: s.Gateway, ip4: s.Gateway.As4(), mac: router.GatewayMAC(s.Name), subnet: s.Subnet.Masked(), neigh: neigh}, nil
}

// buildRoutes routes each network's subnet into it, for networks with a
// gateway.
func buildRoutes(nets []*network) (*router.Routes, error) {
	var rs []router.Route
	for _, n := range nets {
		if n.gw != nil {
			rs = append(rs, router.Route{Prefix: n.gw.subnet, NextHop: router.NextHop{Kind: router.ToNetwork, Index: uint32(n.id)}})
		}
	}
	return router.NewRoutes(rs)
}

// routerScratch is the worker's scratch space for the router stages,
// allocated once.
type routerScratch struct {
	gwIn  []*Packet // frames for the gateway MAC, this batch
	binds []router.Binding
	// routed packets waiting for the neighbour stage; p.Network is the
	// egress network.
	routed []*Packet
	// per egress network being resolved
	rIPs    []netip.Addr
	rMACs   []header.MAC
	rSolict []bool
	rPkts   []*Packet
	gen     []*Packet // packets the router made, returned to the pool after tx
}

func (r *routerScratch) init() {
	r.gwIn = make([]*Packet, 0, MaxBatch)
	r.binds = make([]router.Binding, 0, MaxBatch)
	r.routed = make([]*Packet, 0, MaxBatch)
	r.rIPs = make([]netip.Addr, 0, MaxBatch)
	r.rMACs = make([]header.MAC, 0, MaxBatch)
	r.rSolict = make([]bool, 0, MaxBatch)
	r.rPkts = make([]*Packet, 0, MaxBatch)
	r.gen = make([]*Packet, 0, 2*MaxBatch)
}

// toGateway is called by the bridge stage for frame i of a network with a
// gateway. It reports whether the gateway took the frame: frames to the
// gateway MAC are queued for the router, a broadcast ARP request for the
// gateway is answered in place and sent back. Other broadcast ARP frames
// teach the neighbour table and stay with the bridge.
func (w *Worker) toGateway(t *tables, gw *gateway, i int) bool {
	p := w.keep[i]
	if header.MAC(w.dsts[i]) == gw.mac {
		w.rt.gwIn = append(w.rt.gwIn, p)
		return true
	}
	b := p.Bytes()
	if w.dsts[i] != [6]byte(header.BroadcastMAC) || len(b) < header.EthernetLen+header.ARPLen ||
		header.Ethernet(b).EtherType() != header.EtherTypeARP {
		return false
	}
	w.learnARP(gw, b)
	n, ok := router.AnswerARP(b, gw.ip, gw.mac, b)
	if !ok {
		return false
	}
	p.SetLen(n)
	if w.tracing && p.Trace {
		w.traceEvent(p, traceEvent{stage: StageGateway, kind: evGatewayARP, addr: gw.ip, mac: gw.mac})
	}
	w.sendBack(t, p)
	return true
}

// learnARP queues the sender of an ARP frame for the neighbour table, when
// it is a host of the network's subnet.
func (w *Worker) learnARP(gw *gateway, b []byte) {
	a := header.ARP(b[header.EthernetLen:])
	if !a.IsValid() || w.dry { // a what-if teaches nothing
		return
	}
	if ip := a.SenderIP(); gw.subnet.Contains(ip) && ip != gw.ip {
		w.rt.binds = append(w.rt.binds, router.Binding{IP: ip, MAC: a.SenderMAC()})
	}
}

// sendBack queues p to the location it came from, in the ingress network.
func (w *Worker) sendBack(t *tables, p *Packet) {
	if p.From.IsPeer() {
		w.toPeer(t, p, p.From.Index())
	} else {
		w.toPort(p.From.Index(), p)
	}
}

// gatewayStage handles the frames the bridge gave the gateway in network
// n: it learns their senders, answers ARP and pings, and routes the rest
// into w.rt.routed. Called before the ingress network's output is
// flushed, so replies and ICMP errors go out with it.
func (w *Worker) gatewayStage(t *tables, n *network) {
	gw := n.gw
	for _, p := range w.rt.gwIn {
		b := p.Bytes()
		if len(b) < header.EthernetLen {
			w.dropPkt(p, StageGateway, ReasonIPMalformed)
			continue
		}
		switch header.Ethernet(b).EtherType() {
		case header.EtherTypeARP:
			if len(b) < header.EthernetLen+header.ARPLen {
				w.dropPkt(p, StageGateway, ReasonIPMalformed)
				continue
			}
			w.learnARP(gw, b)
			if m, ok := router.AnswerARP(b, gw.ip, gw.mac, b); ok {
				p.SetLen(m)
				if w.tracing && p.Trace {
					w.traceEvent(p, traceEvent{stage: StageGateway, kind: evGatewayARP, addr: gw.ip, mac: gw.mac})
				}
				w.sendBack(t, p)
				continue
			}
			w.dropPkt(p, StageGateway, ReasonGatewayConsumed)
		case header.EtherTypeIPv4:
			if r := finishChecksum(p); r != ReasonNone { // offload_route.go
				w.dropPkt(p, StageGateway, r)
				continue
			}
			w.routeIPv4(t, n, p)
		default:
			w.dropPkt(p, StageGateway, ReasonGatewayUnhandled)
		}
	}
	w.mark(StageGateway, len(w.rt.gwIn))
	clear(w.rt.gwIn)
	w.rt.gwIn = w.rt.gwIn[:0]
	if len(w.rt.binds) > 0 {
		gw.neigh.Learn(w.rt.binds, w.t)
		w.rt.binds = w.rt.binds[:0]
	}
}

// routeIPv4 is the router stage for one IPv4 frame to the gateway MAC of
// network n.
func (w *Worker) routeIPv4(t *tables, n *network, p *Packet) {
	b := p.Bytes()
	pkt := b[header.EthernetLen:]
	if len(pkt) < header.IPv4MinLen {
		w.dropPkt(p, StageRouter, ReasonIPMalformed)
		return
	}
	src := netip.AddrFrom4([4]byte(pkt[12:16]))
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	if n.gw.subnet.Contains(src) && src != n.gw.ip && !w.dry {
		w.rt.binds = append(w.rt.binds, router.Binding{IP: src, MAC: header.MAC(b[6:12])})
	}
	hop, ok := t.routes.Lookup(dst)
	if !ok || hop.Kind != router.ToNetwork {
		if dst == n.gw.ip {
			w.answerEcho(t, n.gw, n.gw.ip, p)
			return
		}
		if st := router.Forward(pkt); st != router.OK {
			w.forwardFailed(t, n, p, st)
			return
		}
		w.toUplink(t, n, p) // nat.go
		return
	}
	m := t.nets[hop.Index]
	if dst == m.gw.ip {
		w.answerEcho(t, n.gw, m.gw.ip, p)
		return
	}
	if st := router.Forward(pkt); st != router.OK {
		w.forwardFailed(t, n, p, st)
		return
	}
	if m.mtu > 0 && routeTooBig(p, pkt, m.mtu) { // a superpacket by its segments (offload_route.go)
		// Forward decremented the TTL; the quote shows the packet as it
		// arrived, so undo it (RFC 1624 update back).
		undoTTL(pkt)
		w.fragNeeded(t, n, p, m.mtu)
		return
	}
	if w.tracing && p.Trace {
		ttl := ttlOf(pkt)
		w.traceEvent(p, traceEvent{stage: StageRouter, kind: evRouteNet, num: m.id, n1: ttl + 1, n2: ttl})
	}
	p.Network = m.id
	w.rt.routed = append(w.rt.routed, p)
}

// undoTTL increments the TTL of a valid IPv4 header and updates its
// checksum incrementally: the inverse of router.Forward's change.
func undoTTL(pkt []byte) {
	old := binary.BigEndian.Uint16(pkt[8:10])
	pkt[8]++
	header.IPv4(pkt).SetChecksum(header.UpdateChecksum16(header.IPv4(pkt).Checksum(), old, binary.BigEndian.Uint16(pkt[8:10])))
}

// answerEcho answers a ping to the gateway address ip (of network n's or
// another local network's gateway) in place, or drops what is not one.
func (w *Worker) answerEcho(t *tables, gw *gateway, ip netip.Addr, p *Packet) {
	m, ok := router.AnswerEcho(p.Bytes(), ip, gw.mac)
	if !ok {
		w.dropPkt(p, StageGateway, ReasonGatewayUnhandled)
		return
	}
	p.SetLen(m)
	if w.tracing && p.Trace {
		w.traceEvent(p, traceEvent{stage: StageGateway, kind: evGatewayEcho, addr: ip})
	}
	w.sendBack(t, p)
}

// forwardFailed drops a packet router.Forward refused, and sends time
// exceeded for an expired TTL.
func (w *Worker) forwardFailed(t *tables, n *network, p *Packet, st router.Status) {
	if st == router.TTLExpired {
		w.icmpError(t, n, p, ReasonTTLExpired, router.TimeExceeded)
		return
	}
	w.dropPkt(p, StageRouter, forwardReason(st))
}

// icmpError drops p under reason r and sends the sender the ICMP error
// build makes about it, from n's gateway.
func (w *Worker) icmpError(t *tables, n *network, p *Packet, r Reason, build func(out, orig []byte, src netip.Addr) (int, router.Status)) {
	w.dropPkt(p, StageRouter, r)
	g := w.newPacket(p)
	if g == nil {
		return
	}
	buf := g.RxBuffer()
	m, st := build(buf[header.EthernetLen:], p.Bytes()[header.EthernetLen:], n.gw.ip)
	w.sendError(t, n, p, g, m, st)
}

// fragNeeded drops p as frag-needed and sends its sender fragmentation
// needed with the egress MTU.
func (w *Worker) fragNeeded(t *tables, n *network, p *Packet, mtu int) {
	w.dropPkt(p, StageRouter, ReasonFragNeeded)
	g := w.newPacket(p)
	if g == nil {
		return
	}
	buf := g.RxBuffer()
	m, st := router.FragNeeded(buf[header.EthernetLen:], p.Bytes()[header.EthernetLen:], uint16(mtu), n.gw.ip)
	w.sendError(t, n, p, g, m, st)
}

// newPacket takes a packet from the pool for a reply about p, or counts a
// pool-empty drop.
func (w *Worker) newPacket(p *Packet) *Packet {
	g := w.pool.Get()
	if g == nil {
		w.c.drop(StageRouter, ReasonPoolEmpty, 1)
		return nil
	}
	g.From, g.InPort, g.Network = p.From, p.InPort, p.Network
	w.rt.gen = append(w.rt.gen, g)
	return g
}

// sendError finishes the ICMP error g (m bytes of IP built with status st)
// about p with an Ethernet header back to p's sender and queues it.
func (w *Worker) sendError(t *tables, n *network, p, g *Packet, m int, st router.Status) {
	if st != router.OK {
		return // RFC 1812 4.3.2.7: no error about this packet
	}
	buf := g.RxBuffer()
	header.Ethernet(buf).Encode(header.MAC(p.Bytes()[6:12]), n.gw.mac, header.EtherTypeIPv4)
	g.SetLen(header.EthernetLen + m)
	if w.tracing && p.Trace {
		w.traceICMPError(p, StageRouter, buf[header.EthernetLen:header.EthernetLen+m])
	}
	w.sendBack(t, g)
}

// neighbourStage resolves the routed packets' destinations, one egress
// network at a time, rewrites their Ethernet headers and sends them through
// the egress network's bridge. Misses are dropped and solicited with an
// ARP request flooded into the network.
func (w *Worker) neighbourStage(t *tables) {
	rest := w.rt.routed
	for len(rest) > 0 {
		m := t.nets[rest[0].Network]
		ips, macs, sol, pk := w.rt.rIPs[:0], w.rt.rMACs[:0], w.rt.rSolict[:0], w.rt.rPkts[:0]
		other := 0
		for _, p := range rest {
			if p.Network != m.id {
				rest[other] = p
				other++
				continue
			}
			ips = append(ips, netip.AddrFrom4([4]byte(p.Bytes()[header.EthernetLen+16:header.EthernetLen+20])))
			macs = append(macs, header.MAC{})
			sol = append(sol, false)
			pk = append(pk, p)
		}
		if w.dry {
			w.dryResolve(m, ips, macs)
		} else {
			m.gw.neigh.Resolve(ips, macs, sol, w.t)
		}
		for i, p := range pk {
			if macs[i].IsZero() && w.dry {
				w.dryUnresolved(p, ips[i])
				continue
			}
			if macs[i].IsZero() {
				w.dropPkt(p, StageNeighbour, ReasonNeighbourUnresolved)
				if sol[i] {
					w.solicit(t, m, p, ips[i])
				}
				continue
			}
			if w.tracing && p.Trace {
				w.traceEvent(p, traceEvent{stage: StageNeighbour, kind: evNeighbour, addr: ips[i], mac: macs[i]})
			}
			b := p.Bytes()
			copy(b[0:6], macs[i][:])
			copy(b[6:12], m.gw.mac[:])
			loc, ok := m.fdb.Lookup(w.t, [6]byte(macs[i]))
			switch {
			case !ok || !loc.IsValid():
				w.floodInto(t, m, p)
			case loc.IsPeer():
				w.toPeer(t, p, loc.Index())
			default:
				w.toPort(loc.Index(), p)
			}
		}
		w.mark(StageNeighbour, len(pk))
		clear(pk)
		w.flushPorts()
		w.encapsulate(m)
		w.flushTunnel()
		rest = rest[:other]
	}
	clear(w.rt.routed)
	w.rt.routed = w.rt.routed[:0]
}

// dryResolve is the neighbour lookup of a what-if worker: it reads the
// table and records no request.
func (w *Worker) dryResolve(m *network, ips []netip.Addr, macs []header.MAC) {
	for i, ip := range ips {
		macs[i], _ = m.gw.neigh.Lookup(ip, w.t)
	}
}

// dryUnresolved ends a what-if packet whose next hop is not in the
// neighbour table: the live path would hold it back and ask with ARP.
func (w *Worker) dryUnresolved(p *Packet, ip netip.Addr) {
	if w.tracing && p.Trace {
		w.traceEvent(p, traceEvent{stage: StageNeighbour, kind: evNeighbourMiss, addr: ip})
	}
	w.dropPkt(p, StageNeighbour, ReasonNeighbourUnresolved)
}

// solicit floods an ARP request for target from m's gateway into m.
func (w *Worker) solicit(t *tables, m *network, p *Packet, target netip.Addr) {
	g := w.newPacket(p)
	if g == nil {
		return
	}
	g.From = 0
	g.SetLen(router.BuildARPRequest(g.RxBuffer(), m.gw.ip, m.gw.mac, target))
	w.floodInto(t, m, g)
}

// floodInto sends p to every port and peer of network m.
func (w *Worker) floodInto(t *tables, m *network, p *Packet) {
	for _, id := range m.ports {
		w.toPort(id, p)
	}
	for _, id := range m.peers {
		w.toPeer(t, p, id)
	}
}

// freeGenerated returns the packets the router made to the pool, once
// every output has been written.
func (w *Worker) freeGenerated() {
	for _, g := range w.rt.gen {
		w.pool.Put(g)
	}
	clear(w.rt.gen)
	w.rt.gen = w.rt.gen[:0]
}
