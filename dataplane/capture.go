package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/nat"
)

// Packet capture. A capture session watches one point of the pipeline: a
// port's rx or tx, the tunnel's rx or tx (outer datagrams of VXLAN, GRE and
// flannel-UDP, optionally of one peer), drops, or the NAT stage (the IPv4
// packet just before and just after NAT rewrites it). When a packet passes the point and the filter, the worker
// copies at most snaplen bytes of it into a free slot of its own ring for
// the session — no lock, no allocation; when the ring is full (the reader
// is slow) the packet is not captured and counted in Dropped. The control
// plane drains the rings (Capture.Read).

// observer is what workers observe with: loaded once per batch from
// Engine.obs, immutable once published. A nil observer, the common case,
// costs the fast path that one atomic load.
type observer struct {
	trace    *traceSession // nil unless a session is selecting packets
	captures []*captureSession
	// at[point] reports whether some capture watches that point kind.
	at [numPoints]bool
}

// publishObserver rebuilds the observer from e.trace and e.captures; ctlMu
// held.
func (e *Engine) publishObserver() {
	o := &observer{captures: e.captures}
	if e.trace != nil && e.trace.remaining.Load() > 0 {
		o.trace = e.trace
	}
	for _, c := range e.captures {
		o.at[c.point] = true
	}
	if o.trace == nil && len(o.captures) == 0 {
		e.obs.Store(nil)
		return
	}
	e.obs.Store(o)
}

// pointKind is a kind of capture point.
type pointKind uint8

const (
	pointRx pointKind = iota
	pointTx
	pointTunnelRx
	pointTunnelTx
	pointDrop
	pointPreNAT
	pointPostNAT
	numPoints
)

// Capture limits.
const (
	// DefaultSnaplen is the snap length of a capture that names none.
	DefaultSnaplen = 65535
	// MaxSnaplen is the largest snap length.
	MaxSnaplen = 65535 + 128
	// captureBudget bounds the memory of one worker's capture ring.
	captureBudget = 4 << 20
	// MaxCaptures is how many captures may run at once.
	MaxCaptures = 8
)

// CaptureSpec is the request of `ferry pcap`.
type CaptureSpec struct {
	// Point is rx:PORT, tx:PORT, tunnel-rx[:PEER], tunnel-tx[:PEER],
	// drop, pre-nat or post-nat.
	Point string `json:"point"`
	// Filter is a filter expression on the (inner) frame; empty matches
	// all.
	Filter string `json:"filter,omitempty"`
	// Snaplen is the most bytes kept of each packet (outer headers
	// included at tunnel points); 0 means DefaultSnaplen.
	Snaplen int `json:"snaplen,omitempty"`
}

type capSlot struct {
	t       int64
	origLen int
	n       int
	data    []byte
	// outer marks a tunnel datagram whose outer headers Read
	// synthesizes: IPv4/IPv6 and UDP from src to dst for VXLAN and
	// flannel-UDP, IPv4 protocol 47 for GRE (kind).
	outer    bool
	kind     TunnelKind
	src, dst netip.AddrPort
	// ip marks a bare IP packet at the drop point, which Read gives a
	// synthesized Ethernet header (the drop point's link type is
	// Ethernet).
	ip     bool
	stage  Stage
	reason Reason
	port   uint16
	peer   netip.Addr // drop: the peer the packet was bound for
}

type capRing struct {
	slots []capSlot
	head  atomic.Uint64
	tail  atomic.Uint64
	// next is the worker's next slot to fill (head is published per
	// batch); only the worker touches it.
	next uint64
	// dirty reports unpublished slots; only the worker touches it.
	dirty bool
}

type captureSession struct {
	point   pointKind
	port    uint16
	peer    netip.Addr // tunnel points: only this peer, if valid
	filter  *Filter
	snaplen int
	// raw: the point carries bare IP packets (a TUN port, the NAT
	// points), written with link type RAW.
	raw     bool
	rings   []*capRing
	dropped atomic.Uint64
	spec    CaptureSpec
}

// Capture is a running capture session, read by one goroutine.
type Capture struct {
	e *Engine
	s *captureSession
}

// CapturedPacket is one captured packet, owned by the caller.
type CapturedPacket struct {
	Time time.Time
	// Data is the packet as seen at the point, cut to the snap length,
	// in the capture's LinkType. At tunnel points it is a whole
	// Ethernet/IP/UDP/VXLAN, Ethernet/IPv4/GRE or Ethernet/IPv4/UDP/IPv4
	// (flannel-UDP) packet: the sockets carry no outer headers, so the
	// outer Ethernet (placeholder MACs), IP and UDP headers are
	// synthesized with the real addresses, ports and protocol. At rx/tx
	// of a TUN port and at pre-nat/post-nat it is the bare IP packet.
	Data []byte
	// Length is the packet's length before cutting.
	Length int
	// Comment says, for drops, the stage and reason.
	Comment string
}

// StartCapture starts a capture session. Stop it with Capture.Stop.
func (e *Engine) StartCapture(spec CaptureSpec) (*Capture, error) {
	s := &captureSession{snaplen: spec.Snaplen, spec: spec}
	if s.snaplen == 0 {
		s.snaplen = DefaultSnaplen
	}
	if s.snaplen < 0 || s.snaplen > MaxSnaplen {
		return nil, fmt.Errorf("snaplen %d: want 1 to %d: %w", spec.Snaplen, MaxSnaplen, ErrInvalid)
	}
	kind, arg, _ := strings.Cut(spec.Point, ":")
	switch kind {
	case "rx", "tx":
		s.point = pointRx
		if kind == "tx" {
			s.point = pointTx
		}
		id, ok := e.PortID(arg)
		if !ok {
			return nil, fmt.Errorf("capture point %q: no port %q: %w", spec.Point, arg, ErrNotFound)
		}
		s.port = id
		s.raw = e.tables.Load().isL3Port(id)
	case "tunnel-rx", "tunnel-tx":
		s.point = pointTunnelRx
		if kind == "tunnel-tx" {
			s.point = pointTunnelTx
		}
		if arg != "" {
			a, err := netip.ParseAddr(arg)
			if err != nil {
				return nil, fmt.Errorf("capture point %q: %q is not a peer address: %w", spec.Point, arg, ErrInvalid)
			}
			s.peer = a.Unmap()
		}
	case "drop", "pre-nat", "post-nat":
		if arg != "" {
			return nil, fmt.Errorf("capture point %q: %s takes no argument: %w", spec.Point, kind, ErrInvalid)
		}
		switch kind {
		case "drop":
			s.point = pointDrop
		case "pre-nat":
			s.point, s.raw = pointPreNAT, true
		default:
			s.point, s.raw = pointPostNAT, true
		}
	default:
		return nil, fmt.Errorf("capture point %q: want rx:PORT, tx:PORT, tunnel-rx[:PEER], tunnel-tx[:PEER], drop, pre-nat or post-nat: %w", spec.Point, ErrInvalid)
	}
	f, err := ParseFilter(spec.Filter)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	s.filter = f
	slotLen := s.snaplen
	nslots := min(max(captureBudget/slotLen, 16), 1024)
	for range e.counters {
		r := &capRing{slots: make([]capSlot, nslots)}
		buf := make([]byte, nslots*slotLen)
		for i := range r.slots {
			r.slots[i].data = buf[i*slotLen : (i+1)*slotLen : (i+1)*slotLen]
		}
		s.rings = append(s.rings, r)
	}
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	if len(e.captures) == MaxCaptures {
		return nil, fmt.Errorf("%d captures are running already: %w", MaxCaptures, ErrInvalid)
	}
	e.captures = append(e.captures[:len(e.captures):len(e.captures)], s)
	e.publishObserver()
	return &Capture{e: e, s: s}, nil
}

// Stop ends the capture; packets already captured can still be Read.
func (c *Capture) Stop() {
	e := c.e
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	var keep []*captureSession
	for _, s := range e.captures {
		if s != c.s {
			keep = append(keep, s)
		}
	}
	e.captures = keep
	e.publishObserver()
}

// Dropped returns how many packets passed the point and filter but were
// not captured because the reader was too slow.
func (c *Capture) Dropped() uint64 { return c.s.dropped.Load() }

// Spec returns the capture's request.
func (c *Capture) Spec() CaptureSpec { return c.s.spec }

// LinkType is the link type of the captured packets' Data: RAW (bare IPv4
// or IPv6, LINKTYPE_RAW) at rx/tx of a TUN port and at pre-nat/post-nat,
// Ethernet everywhere else.
func (c *Capture) LinkType() layers.LinkType {
	if c.s.raw {
		return layers.LinkTypeRaw
	}
	return layers.LinkTypeEthernet
}

// Read appends the packets captured since the last Read, up to max (<= 0:
// no limit), to dst, each worker's in order, and returns dst. It does not
// block.
func (c *Capture) Read(dst []CapturedPacket, max int) []CapturedPacket {
	for _, r := range c.s.rings {
		head := r.head.Load()
		tail := r.tail.Load()
		for ; tail < head && (max <= 0 || len(dst) < max); tail++ {
			sl := &r.slots[tail%uint64(len(r.slots))]
			dst = append(dst, c.s.packet(c.e, sl))
		}
		r.tail.Store(tail)
	}
	return dst
}

func (s *captureSession) packet(e *Engine, sl *capSlot) CapturedPacket {
	cp := CapturedPacket{Time: e.start.Add(time.Duration(sl.t)), Length: sl.origLen}
	data := sl.data[:sl.n]
	switch {
	case sl.outer:
		outer := outerHeaders(sl.kind, sl.src, sl.dst, sl.origLen)
		cp.Data = append(outer, data...)
		cp.Length += len(outer)
	case sl.ip:
		eth := ipEthernet(data)
		cp.Data = append(eth, data...)
		cp.Length += len(eth)
	default:
		cp.Data = append([]byte(nil), data...)
	}
	if len(cp.Data) > s.snaplen {
		cp.Data = cp.Data[:s.snaplen]
	}
	if s.point == pointDrop {
		t := e.tables.Load()
		cp.Comment = fmt.Sprintf("dropped at %s: %s (%s)", sl.stage, sl.reason, sl.reason.Help())
		switch {
		case sl.peer.IsValid():
			cp.Comment += fmt.Sprintf("; bound for peer %s", sl.peer)
		case sl.stage == StagePortTx:
			cp.Comment += fmt.Sprintf("; bound for port %s", t.portName(sl.port))
		}
	}
	return cp
}

// --- worker side ---

// capture copies b into a slot of session s's ring for this worker, if
// its packet at innerOff (an Ethernet frame, or a bare IP packet when ip is
// set) in the network with VNI vni passes the filter.
func (w *Worker) capture(s *captureSession, b []byte, vni uint32, innerOff int, ip bool) *capSlot {
	if s.filter.root != nil {
		var inner []byte
		if innerOff <= len(b) {
			inner = b[innerOff:]
		}
		if !w.matches(s.filter, inner, ip, vni) {
			return nil
		}
	}
	r := s.rings[w.id]
	if r.next-r.tail.Load() >= uint64(len(r.slots)) {
		s.dropped.Add(1)
		return nil
	}
	sl := &r.slots[r.next%uint64(len(r.slots))]
	r.next++
	r.dirty = true
	sl.t = w.eng.now()
	sl.origLen = len(b)
	sl.n = copy(sl.data, b)
	sl.peer = netip.Addr{}
	sl.outer, sl.ip = false, false
	return sl
}

// publishCaptures makes the slots of the batch visible to readers.
func (w *Worker) publishCaptures(o *observer) {
	for _, s := range o.captures {
		r := s.rings[w.id]
		if r.dirty {
			r.head.Store(r.next)
			r.dirty = false
		}
	}
}

// capturePort captures pkts at port point kind k of port id.
func (w *Worker) capturePort(o *observer, k pointKind, id uint16, vni uint32, pkts []*Packet) {
	for _, s := range o.captures {
		if s.point != k || s.port != id {
			continue
		}
		for _, p := range pkts {
			w.capture(s, p.Bytes(), vni, 0, s.raw)
		}
	}
}

// captureTunnelRx captures datagrams received by the tunnel of kind k
// with their outer addresses.
func (w *Worker) captureTunnelRx(o *observer, k TunnelKind, pkts []*Packet) {
	tun := w.tunnels[k]
	local, _ := tunnelAddrs(tun, k)
	for _, s := range o.captures {
		if s.point != pointTunnelRx {
			continue
		}
		for i, p := range pkts {
			if s.peer.IsValid() && s.peer != p.Peer {
				continue
			}
			b := p.Bytes()
			off, ip, vni := w.tbl.tunnelInner(k, b)
			if sl := w.capture(s, b, vni, off, ip); sl != nil {
				sport := local.Port()
				if w.off.rxSportOn { // split from UDP_GRO buffers: offload.go
					if sp := w.off.rxSport[i]; sp != 0 {
						sport = sp
					}
				} else if a, ok := tun.(TunnelAddrs); ok && k != TunnelGRE {
					sport = a.RxSourcePort(i)
				}
				sl.outer, sl.kind = true, k
				sl.src = netip.AddrPortFrom(p.Peer, sport)
				sl.dst = local
			}
		}
	}
}

// txKind is the tunnel kind of the batch being sent, by its encap stage.
func (w *Worker) txKind() TunnelKind {
	switch w.txStage {
	case StageGREEncap:
		return TunnelGRE
	case StageUDPEncap:
		return TunnelFlannelUDP
	}
	return TunnelVXLAN
}

// captureTunnelTx captures the datagrams w.sort*[start:end] sent from
// source index src, except the refused ones (indices relative to start).
func (w *Worker) captureTunnelTx(o *observer, src, start, end int, refused []int) {
	k := w.txKind()
	local, srcPorts := tunnelAddrs(w.txTun, k)
	from := netip.AddrPortFrom(local.Addr(), local.Port())
	if src < len(srcPorts) {
		from = netip.AddrPortFrom(local.Addr(), srcPorts[src])
	}
	ri := 0
	for i := start; i < end; i++ {
		if ri < len(refused) && start+refused[ri] == i {
			ri++
			continue
		}
		w.captureTunnelTxAt(o, k, from, netip.AddrPortFrom(w.sortDst[i], local.Port()), w.sortPkts[i].Bytes())
	}
}

// captureTunnelTxDatagram captures datagram b (a tunnel header and the
// inner packet, as sent) sent from source index src to peer dst.
func (w *Worker) captureTunnelTxDatagram(o *observer, src int, dst netip.Addr, b []byte) {
	k := w.txKind()
	local, srcPorts := tunnelAddrs(w.txTun, k)
	from := netip.AddrPortFrom(local.Addr(), local.Port())
	if src < len(srcPorts) {
		from = netip.AddrPortFrom(local.Addr(), srcPorts[src])
	}
	w.captureTunnelTxAt(o, k, from, netip.AddrPortFrom(dst, local.Port()), b)
}

// captureTunnelTxAt hands datagram b of tunnel kind k, from → to, to every
// tunnel-tx capture that wants it.
func (w *Worker) captureTunnelTxAt(o *observer, k TunnelKind, from, to netip.AddrPort, b []byte) {
	for _, s := range o.captures {
		if s.point != pointTunnelTx || (s.peer.IsValid() && s.peer != to.Addr()) {
			continue
		}
		off, ip, vni := w.tbl.tunnelInner(k, b)
		if sl := w.capture(s, b, vni, off, ip); sl != nil {
			sl.outer, sl.kind = true, k
			sl.src, sl.dst = from, to
		}
	}
}

// decapKind is the tunnel kind whose datagrams stage st drops.
func decapKind(st Stage) (TunnelKind, bool) {
	switch st {
	case StageVXLANDecap, StageTunnelRx:
		return TunnelVXLAN, true
	case StageGREDecap:
		return TunnelGRE, true
	case StageUDPDecap:
		return TunnelFlannelUDP, true
	}
	return 0, false
}

// captureDrop captures p, dropped at stage st for reason r on its way to
// port id or peer (if valid). Tunnel datagrams (dropped at decap or
// tunnel-tx) get their outer headers, bare IP packets (w.rawDrops) an
// Ethernet header, so every drop reads as an Ethernet frame.
func (w *Worker) captureDrop(o *observer, p *Packet, st Stage, r Reason, port uint16, peer netip.Addr) {
	for _, s := range o.captures {
		if s.point != pointDrop {
			continue
		}
		b := p.Bytes()
		off, ip := 0, w.rawDrops
		vni := NoVNI
		if int(p.Network) < len(w.tbl.nets) {
			vni = w.tbl.nets[p.Network].vni
		}
		k, rx := decapKind(st)
		tx := st == StageTunnelTx
		if tx {
			k = w.txKind()
		}
		if rx || tx {
			off, ip, vni = w.tbl.tunnelInner(k, b)
		}
		sl := w.capture(s, b, vni, off, ip)
		if sl == nil {
			continue
		}
		sl.stage, sl.reason, sl.port, sl.peer = st, r, port, peer
		switch {
		case rx:
			tun := w.tunnels[k]
			local, _ := tunnelAddrs(tun, k)
			sl.outer, sl.kind = true, k
			sl.src, sl.dst = netip.AddrPortFrom(p.Peer, local.Port()), local
		case tx:
			local, _ := tunnelAddrs(w.txTun, k)
			sl.outer, sl.kind = true, k
			sl.src, sl.dst = local, netip.AddrPortFrom(peer, local.Port())
		default:
			sl.ip = ip
		}
	}
}

// captureNAT captures the packets of the NAT batch (w.nt.bufs, bare
// IPv4) at point k: pre-nat before Process, post-nat after it (translated
// packets only).
func (w *Worker) captureNAT(o *observer, k pointKind) {
	for _, s := range o.captures {
		if s.point != k {
			continue
		}
		for i, b := range w.nt.bufs {
			if k == pointPostNAT && w.nt.verd[i] != nat.Translated {
				continue
			}
			vni := NoVNI
			if w.nt.dirs[i] == nat.Outbound {
				if p := w.nt.pkts[i]; int(p.Network) < len(w.tbl.nets) {
					vni = w.tbl.nets[p.Network].vni
				}
			}
			w.capture(s, b, vni, 0, true)
		}
	}
}

// TunnelAddrs is implemented by a TunnelIO that knows its addresses, so
// tunnel captures can show the real outer headers.
type TunnelAddrs interface {
	// LocalAddr is the local underlay address and the VXLAN port
	// (datagrams are received on it and sent to it on the peers).
	LocalAddr() netip.AddrPort
	// SourcePorts are the outer source ports, by source index. The
	// slice is the tunnel's; do not modify it.
	SourcePorts() []uint16
	// RxSourcePort is the UDP source port of the i-th datagram of the
	// last ReadBatch; valid until the next ReadBatch.
	RxSourcePort(i int) uint16
}

// tunnelAddrs returns the local address and port and the source ports of
// tunnel t of kind k; a tunnel that does not say (an in-memory fake) is
// taken to be on 0.0.0.0 and the kind's standard port.
func tunnelAddrs(t TunnelIO, k TunnelKind) (netip.AddrPort, []uint16) {
	if a, ok := t.(TunnelAddrs); ok {
		return a.LocalAddr(), a.SourcePorts()
	}
	port := uint16(vxlanPort)
	switch k {
	case TunnelFlannelUDP:
		port = encap.FlannelUDPPort
	case TunnelGRE:
		port = 0
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), port), nil
}

// vxlanPort is the IANA VXLAN port, assumed when the tunnel does not say.
const vxlanPort = 4789

// Placeholder MACs of the synthesized outer Ethernet header: the socket
// never sees the underlay's link layer.
var (
	outerSrcMAC = [6]byte{0x02, 0, 0, 0, 0xfe, 0x01}
	outerDstMAC = [6]byte{0x02, 0, 0, 0, 0xfe, 0x02}
)

// ipEthernet returns an Ethernet header (placeholder MACs) for the bare IP
// packet pkt, with the EtherType of its version.
func ipEthernet(pkt []byte) []byte {
	b := make([]byte, header.EthernetLen, header.EthernetLen+len(pkt))
	copy(b[0:6], outerDstMAC[:])
	copy(b[6:12], outerSrcMAC[:])
	et := uint16(header.EtherTypeIPv4)
	if len(pkt) > 0 && pkt[0]>>4 == header.IPv6Version {
		et = header.EtherTypeIPv6
	}
	binary.BigEndian.PutUint16(b[12:], et)
	return b
}

// outerHeaders returns Ethernet, IPv4 or IPv6, and UDP headers for a UDP
// datagram of payloadLen bytes from src to dst, as the kernel would have
// sent it (TTL 64, DF clear, UDP checksum 0 — allowed for VXLAN over IPv4
// by RFC 7348 and for tunnels over IPv6 by RFC 6935); for kind GRE,
// Ethernet and an IPv4 header of protocol 47 around the GRE packet of
// payloadLen bytes (the ports of src and dst are not used).
func outerHeaders(kind TunnelKind, src, dst netip.AddrPort, payloadLen int) []byte {
	v6 := src.Addr().Is6() || dst.Addr().Is6()
	ipLen := 20
	if v6 {
		ipLen = 40
	}
	l4Len, proto := 8, byte(17)
	if kind == TunnelGRE {
		l4Len, proto = 0, 47
	}
	b := make([]byte, 14+ipLen+l4Len, 14+ipLen+l4Len+payloadLen)
	copy(b[0:6], outerDstMAC[:])
	copy(b[6:12], outerSrcMAC[:])
	udpLen := l4Len + payloadLen
	ip := b[14 : 14+ipLen]
	if v6 {
		binary.BigEndian.PutUint16(b[12:], header.EtherTypeIPv6)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(udpLen))
		ip[6] = proto
		ip[7] = 64
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	} else {
		binary.BigEndian.PutUint16(b[12:], header.EtherTypeIPv4)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+udpLen))
		ip[8] = 64
		ip[9] = proto
		s, d := src.Addr().Unmap().As4(), dst.Addr().Unmap().As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^header.FoldChecksum(header.Checksum(ip, 0)))
	}
	if kind == TunnelGRE {
		return b
	}
	udp := b[14+ipLen:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen))
	return b
}
