package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/offload"
)

// Offloads in the pipeline (node.offload), in the order a packet meets them:
//
//	port rx (TAP with IFF_VNET_HDR) ──► a frame or a TCP/UDP superpacket of up
//	    to 64 KiB, its virtio-net header in Packet.vnet (a bad header is a
//	    port-rx drop named after its offload.Status)
//	bridge ──► port-tx: written with its virtio-net header as it is; the
//	    kernel finishes the checksum or segments it if the container needs it
//	       ──► vxlan-encap: a partial checksum is completed in place; a
//	    superpacket skips the MTU check and gets one VXLAN header
//	       ──► gso-segment: cut at the network MTU into equal-size frames with
//	    full checksums, each behind a copy of the VXLAN header, back to back in
//	    the worker's scratch ──► tunnel-tx: one UDP_SEGMENT send per
//	    superpacket (SegmentWriter), so peers — ferry or the kernel's VXLAN —
//	    see ordinary MTU-sized datagrams
//	tunnel rx (UDP_GRO) ──► a buffer that is one TCP flow's consecutive
//	    segments (one superpacket as the peer cut it) merged in place into a
//	    superpacket (offload.Coalescer.Train, while no trace or capture
//	    runs); any other buffer split into its
//	    datagrams by the segment size the kernel reported ──► vxlan-decap
//	    ──► bridge
//	    ──► gro-coalesce: consecutive TCP segments (and, for a TAP with
//	    USO, equal-size UDP datagrams) of a flow bound for one port merged
//	    into a superpacket with a virtio-net header ──► port-tx
//
// A superpacket replicated to several peers (flood) is segmented once and
// sent to each. Coalescing only touches packets from peers that go to a
// single port, so a flooded frame is never changed under another output.

// SegmentWriter is implemented by a TunnelIO that can send many datagrams
// of one size to one destination at once (UDP_SEGMENT).
type SegmentWriter interface {
	// WriteSegmented sends buf, datagrams of segSize bytes laid out back
	// to back (the last may be shorter), to dst from source port index
	// src. It returns how many datagrams were sent; when fewer than all,
	// err says why the rest were not (ErrTxFull, or another error: they
	// were refused). buf is not retained.
	WriteSegmented(src int, buf []byte, segSize int, dst netip.Addr) (int, error)
}

// vnetPort is implemented by a PortIO whose writes carry Packet.vnet (a
// TAP with IFF_VNET_HDR), and which may therefore be given TCP
// superpackets; UDP ones only if takesUSO says so.
type vnetPort interface {
	writesVnet()
	takesUSO() bool
}

const (
	// gsoScratch is the size of a worker's segmentation scratch: the
	// datagrams of one superpacket. At a 1450-byte MTU it holds about 178
	// segments, four times what a 64 KiB superpacket needs.
	gsoScratch = 256 << 10
	// maxGSOSegments bounds the segments of one superpacket.
	maxGSOSegments = 256
	// defaultSegmentMTU is the MTU superpackets are cut at when the
	// network has none configured (a 1500-byte underlay minus VXLAN).
	defaultSegmentMTU = 1450
)

// offloadState is a worker's offload scratch; all of it is allocated by
// EnableOffload, so the fast path allocates nothing.
type offloadState struct {
	on bool

	// Segmentation: scratch for the datagrams of one superpacket, the
	// per-segment windows given to offload.Segment, and the last
	// superpacket segmented (reused when it is replicated to more peers),
	// valid until endBatch.
	buf      []byte
	out      [][]byte
	sizes    []int
	last     *Packet
	lastLen  int
	lastSeg  int
	lastNSeg int
	// upSegs are packets over buf for the segments of a superpacket cut
	// for an uplink (offload_route.go); they belong to no pool.
	upSegs []*Packet

	// Receive: the batch of UDP_GRO buffers read at once. Splitting a
	// buffer shifts the datagrams' indices from those of the read, so
	// while a capture or trace runs (rxAddrs set, checked once per read),
	// rxSport keeps each w.rx datagram's outer source port by its index:
	// the datagrams from rxFrom on came from port rxCur. rxSportOn says
	// rxSport is valid for the batch being observed (0: port unknown).
	gro       Batch
	trains    bool // merge whole UDP_GRO trains (splitGRO): nothing observed
	rxAddrs   TunnelAddrs
	rxSport   []uint16
	rxFrom    int
	rxCur     uint16
	rxSportOn bool

	// Coalescing: the coalescers (Ethernet frames for TAP ports, bare IP
	// packets for the TUN of an l3 network) and their per-batch arguments,
	// and the list of packets left to write.
	coal   *offload.Coalescer
	coalIP *offload.Coalescer
	bufs   [][]byte
	hdrs   []offload.VirtioNetHdr
	wrOut  []*Packet
}

// EnableOffload turns on the offload path for this worker: superpackets
// from ports are segmented for peers, tunnel reads may be UDP_GRO buffers,
// and TCP segments from peers are coalesced before port-tx. Call it before
// the worker runs; ports given superpackets should implement writesVnet
// (TAPVnetQueue), and the tunnel SegmentWriter.
func (w *Worker) EnableOffload() {
	o := &w.off
	o.on = true
	o.buf = make([]byte, gsoScratch)
	o.out = make([][]byte, maxGSOSegments)
	o.sizes = make([]int, maxGSOSegments)
	o.upSegs = make([]*Packet, maxGSOSegments)
	for i := range o.upSegs {
		o.upSegs[i] = &Packet{}
	}
	o.coal = offload.NewCoalescer(header.EthernetLen, MaxBatch)
	o.coalIP = offload.NewCoalescer(0, MaxBatch)
	o.bufs = make([][]byte, MaxBatch)
	o.hdrs = make([]offload.VirtioNetHdr, MaxBatch)
	o.wrOut = make([]*Packet, 0, MaxBatch)
	o.rxSport = make([]uint16, MaxBatch)
}

// reasonOf maps an offload status to its drop reason.
func reasonOf(st offload.Status) Reason {
	switch st {
	case offload.StatusVnetShort:
		return ReasonVnetShort
	case offload.StatusVnetBadFlags:
		return ReasonVnetBadFlags
	case offload.StatusVnetBadGSOType:
		return ReasonVnetBadGSOType
	case offload.StatusVnetBadGSOSize:
		return ReasonVnetBadGSOSize
	case offload.StatusVnetBadHdrLen:
		return ReasonVnetBadHdrLen
	case offload.StatusVnetBadCsumStart:
		return ReasonVnetBadCsumStart
	case offload.StatusVnetBadCsumOffset:
		return ReasonVnetBadCsumOffset
	case offload.StatusBadLength:
		return ReasonSuperpacketBadLength
	case offload.StatusBadIP:
		return ReasonSuperpacketBadIP
	case offload.StatusBadL4:
		return ReasonSuperpacketBadL4
	case offload.StatusMTUTooSmall:
		return ReasonSegmentMTUTooSmall
	case offload.StatusTooManySegments:
		return ReasonSegmentTooMany
	case offload.StatusBufferTooSmall:
		return ReasonSegmentBufferTooSmall
	}
	return ReasonNone
}

// offloadReason is the reason table entry of an offload status.
func offloadReason(st offload.Status) struct{ name, help string } {
	return struct{ name, help string }{st.String(), st.Help()}
}

// takeVnet consumes the virtio-net header at the start of a frame read
// from a port with offloads: decoded into p.vnet, or, if it is nonsense, a
// reason in p.rxDrop.
func (p *Packet) takeVnet() {
	if st := p.vnet.Decode(p.Bytes()); st != offload.StatusOK {
		p.rxDrop = reasonOf(st)
		return
	}
	p.Advance(offload.VirtioNetHdrLen)
	if p.vnet.GSOType != offload.GSONone && p.vnet.GSOSize == 0 {
		p.rxDrop = ReasonVnetBadGSOSize
	}
}

// isGSO reports whether p is a superpacket that must be segmented before
// it goes on a wire.
func (p *Packet) isGSO() bool { return p.vnet.GSOType != offload.GSONone }

// isUDPGSO reports whether p is a UDP superpacket, which only a device
// with UDP segmentation offload takes whole.
func (p *Packet) isUDPGSO() bool { return p.vnet.GSOType&^offload.GSOECN == offload.GSOUDPL4 }

// takesWhole reports whether io may be given superpacket p as it is: it
// writes virtio-net headers, and takes UDP superpackets if p is one.
func takesWhole(io PortIO, p *Packet) bool {
	vp, ok := io.(vnetPort)
	return ok && (!p.isUDPGSO() || vp.takesUSO())
}

// wireCount returns how many packets p stands for on a wire, and their
// bytes: 1 and its length, or for a superpacket its segments, each with a
// copy of the headers. Port counters count these, so a container's
// counters and ferry's agree whether or not offloads merged its packets.
func (p *Packet) wireCount() (pkts, bytes int) {
	if !p.isGSO() {
		return 1, p.Len()
	}
	hl := int(p.vnet.HdrLen)
	if p.vnet.Flags&offload.FlagNeedsCsum != 0 {
		// HdrLen may be the kernel's linear length; csum_start is the
		// exact start of the L4 header.
		l4 := int(p.vnet.CsumStart)
		switch {
		case p.isUDPGSO():
			hl = l4 + header.UDPLen
		case l4+header.TCPMinLen <= p.Len():
			hl = l4 + header.TCP(p.Bytes()[l4:]).DataOffset()
		}
	}
	gs, payload := int(p.vnet.GSOSize), p.Len()-hl
	if hl <= 0 || gs <= 0 || payload <= 0 {
		return 1, p.Len()
	}
	n := (payload + gs - 1) / gs
	return n, p.Len() + (n-1)*hl
}

// wireTotal sums wireCount over pkts.
func wireTotal(pkts []*Packet) (n, bytes int) {
	for _, p := range pkts {
		k, b := p.wireCount()
		n += k
		bytes += b
	}
	return n, bytes
}

// finishChecksum completes, in place, the partial checksum of a frame that
// is not a superpacket and is bound for a peer (a wire wants the real
// checksum), and returns the drop reason if the header's offsets are bad.
// Port-tx has already written the frame as it was.
func finishChecksum(p *Packet) Reason {
	if p.isGSO() || p.vnet.Flags&offload.FlagNeedsCsum == 0 {
		return ReasonNone
	}
	if st := offload.FinishChecksum(p.Bytes(), p.vnet); st != offload.StatusOK {
		return reasonOf(st)
	}
	p.vnet.Flags &^= offload.FlagNeedsCsum
	return ReasonNone
}

// endBatch forgets the segmented superpacket at the end of tunnel-tx: the
// packet goes back to its pool with the batch.
func (o *offloadState) endBatch() { o.last = nil }

// sendSuper is gso-segment and tunnel-tx for superpacket p (its tunnel
// header already prepended) to the peer with id peer at dst: it cuts the
// inner packet at the network's MTU into o.buf as [tunnel header +
// segment] datagrams of equal size (but the last) and sends them with one
// SegmentWriter call, or drops p with a counted reason.
func (w *Worker) sendSuper(p *Packet, dst netip.Addr, peer uint16, spread int) {
	o := &w.off
	if o.last != p {
		w.mark(StageTunnelTx, 0)
		mtu := defaultSegmentMTU
		if n := w.tbl.nets[p.Network]; n.mtu > 0 {
			mtu = n.mtu
		}
		hdrLen, linkLen := tunnelFraming(w.txStage, p.Bytes())
		if linkLen > header.EthernetLen {
			// The frame's 802.1Q tags take their room from the IP
			// packet's: a segment's frame must fit where an untagged
			// frame of the network's MTU does.
			mtu -= linkLen - header.EthernetLen
		}
		total, seg, nseg, st := o.segment(p.Bytes(), hdrLen, linkLen, p.vnet, mtu)
		w.mark(StageGSOSegment, nseg)
		if st != offload.StatusOK {
			r := reasonOf(st)
			w.c.drop(StageGSOSegment, r, 1)
			w.c.peers[peer].drops.Add(1)
			if w.obs != nil {
				w.observeDrop(p, StageGSOSegment, r, 0, dst)
			}
			return
		}
		o.last, o.lastLen, o.lastSeg, o.lastNSeg = p, total, seg, nseg
	}
	sw, ok := w.txTun.(SegmentWriter)
	if !ok {
		w.dropTx(StageTunnelTx, errNoQueue, o.lastNSeg)
		w.c.peers[peer].drops.Add(uint64(o.lastNSeg))
		return
	}
	src := bucket(p.Hash, spread)
	sent, err := sw.WriteSegmented(src, o.buf[:o.lastLen], o.lastSeg, dst)
	if w.obs != nil {
		w.observeSuper(p, src, dst, sent)
	}
	pc := &w.c.peers[peer]
	if sent > 0 {
		pc.tx.packets.Add(uint64(sent))
		pc.tx.bytes.Add(uint64(min(sent*o.lastSeg, o.lastLen)))
	}
	if lost := o.lastNSeg - sent; lost > 0 {
		if err == nil {
			err = errRefused
		}
		w.dropTx(StageTunnelTx, err, lost)
		pc.drops.Add(uint64(lost))
	}
	w.mark(StageTunnelTx, sent)
}

// observeSuper shows superpacket p, segmented into o.buf and sent (its
// first sent datagrams) from source index src to dst, to the trace and
// the tunnel-tx captures: a capture gets each datagram as it went on the
// wire, a trace the segmentation and the send.
func (w *Worker) observeSuper(p *Packet, src int, dst netip.Addr, sent int) {
	o := &w.off
	obs := w.obs
	if obs.at[pointTunnelTx] {
		for i := range sent {
			w.captureTunnelTxDatagram(obs, src, dst, o.buf[i*o.lastSeg:min((i+1)*o.lastSeg, o.lastLen)])
		}
	}
	if !p.Trace {
		return
	}
	hdrLen, _ := tunnelFraming(w.txStage, p.Bytes())
	w.traceEvent(p, traceEvent{stage: StageGSOSegment, kind: evGSOSegment,
		vni: uint32(p.Len() - hdrLen), num: uint16(p.vnet.GSOType), n1: p.vnet.GSOSize, n2: uint16(o.lastNSeg)})
	if sent > 0 {
		_, srcPorts := tunnelAddrs(w.txTun, w.txKind())
		var sport uint16
		if src < len(srcPorts) {
			sport = srcPorts[src]
		}
		w.traceEvent(p, traceEvent{stage: StageTunnelTx, kind: evTunnelTx, addr: dst, n1: sport})
	}
}

// gsoWords says, for a trace, what a virtio-net GSO type t with segment
// size size asks for: "gso tcp mss 1410", "gso tcp6 mss 1390", "gso udp
// size 1400".
func gsoWords(t uint8, size uint16) string {
	switch t &^ offload.GSOECN {
	case offload.GSOTCPv4:
		return fmt.Sprintf("gso tcp mss %d", size)
	case offload.GSOTCPv6:
		return fmt.Sprintf("gso tcp6 mss %d", size)
	case offload.GSOUDPL4:
		return fmt.Sprintf("gso udp size %d", size)
	}
	return fmt.Sprintf("gso type %d size %d", t, size)
}

// tunnelFraming returns, for a datagram d that encap stage st built around
// a superpacket, the length of its tunnel header and of the link-layer
// header of the packet inside: VXLAN 8 and an Ethernet frame (l2, and l3
// VXLAN's inner Ethernet header); flannel-UDP nothing and a bare IP
// packet; GRE 4 or 8 (with a key) and an Ethernet frame (protocol 0x6558)
// or a bare IP packet. An Ethernet header's length includes its VLAN tags.
func tunnelFraming(st Stage, d []byte) (hdrLen, linkLen int) {
	switch st {
	case StageUDPEncap:
		return 0, 0
	case StageGREEncap:
		hdrLen = encap.GREHeaderLen
		if len(d) >= encap.GREHeaderLen && d[0]&0x20 != 0 { // K bit
			hdrLen = encap.GREKeyHeaderLen
		}
		if len(d) >= 4 && binary.BigEndian.Uint16(d[2:4]) == encap.GREProtoTEB {
			linkLen = header.EthernetHeaderLen(d[hdrLen:])
		}
		return hdrLen, linkLen
	}
	// A container's VLAN device on its port hands ferry superpackets whose
	// IP header starts after the tags (the virtio-net header's offsets
	// count them); a frame too short for its tags is left to Segment to
	// refuse.
	return encap.VXLANHeaderLen, header.EthernetHeaderLen(d[min(encap.VXLANHeaderLen, len(d)):])
}

// segment cuts the datagram d (a tunnel header of hdrLen bytes, then a
// superpacket that hdr describes, behind a link-layer header of linkLen
// bytes) at mtu into o.buf: datagram i is the tunnel header and segment i,
// at i*seg. It returns the bytes used, the datagram size of every segment
// but the last (seg), and the number of segments.
func (o *offloadState) segment(d []byte, hdrLen, linkLen int, hdr offload.VirtioNetHdr, mtu int) (total, seg, nseg int, st offload.Status) {
	vx := hdrLen
	if len(d) < vx {
		return 0, 0, 0, offload.StatusBadLength
	}
	// Segment writes each segment in a slot big enough for any, then the
	// slots are packed back to back if the segments came out smaller.
	slot := vx + linkLen + mtu
	slots := min(len(o.buf)/slot, len(o.out))
	for i := range slots {
		o.out[i] = o.buf[i*slot+vx : (i+1)*slot]
	}
	nseg, st = offload.Segment(d[vx:], linkLen, hdr, mtu, o.out[:slots], o.sizes[:slots])
	clear(o.out[:slots])
	if st != offload.StatusOK {
		return 0, 0, 0, st
	}
	seg = vx + o.sizes[0]
	if seg != slot {
		for i := 1; i < nseg; i++ {
			copy(o.buf[i*seg+vx:], o.buf[i*slot+vx:i*slot+vx+o.sizes[i]])
		}
	}
	for i := range nseg {
		copy(o.buf[i*seg:], d[:vx])
	}
	total = (nseg-1)*seg + vx + o.sizes[nseg-1]
	return total, seg, nseg, offload.StatusOK
}

// pollTunnelGRO is PollTunnel with offloads: it reads a batch of buffers,
// each one datagram or a UDP_GRO train of them, splits the trains into
// packets and runs them through the pipeline in batches of up to MaxBatch.
// It returns the number of datagrams.
func (w *Worker) pollTunnelGRO(k TunnelKind) (int, error) {
	g := &w.off.gro
	w.t = w.eng.now()
	if w.pool.GetBatch(g) == 0 {
		return 0, nil
	}
	n, err := w.tunnels[k].ReadBatch(g.Slice())
	for _, p := range g.Pkts[n:g.Len] {
		p.pool.Put(p)
	}
	clear(g.Pkts[n:g.Len])
	g.Len = n
	if n == 0 {
		return 0, err
	}
	t := w.eng.tables.Load()
	w.tbl = t
	b := &w.rx
	o := &w.off
	o.rxAddrs = nil
	if w.obsSrc.Load() != nil {
		o.rxAddrs, _ = w.tunnels[k].(TunnelAddrs)
	}
	total := 0
	if o.rxAddrs == nil {
		o.trains = w.obsSrc.Load() == nil
		for _, gp := range g.Slice() {
			total += w.splitGRO(t, k, gp)
		}
		o.trains = false
	} else {
		for gi, gp := range g.Slice() {
			o.fillRxPorts(b.Len)
			o.rxCur = o.rxAddrs.RxSourcePort(gi)
			total += w.splitGRO(t, k, gp)
		}
	}
	g.Clear()
	if b.Len > 0 {
		w.runTunnelBatch(t, k)
	}
	return total, err
}

// minDatagram is the least a datagram of tunnel kind k can hold: a UDP_GRO
// segment size below it is nonsense.
func minDatagram(k TunnelKind) int {
	if k == TunnelFlannelUDP {
		return header.IPv4MinLen
	}
	return encap.VXLANHeaderLen + header.EthernetLen
}

// splitGRO moves the datagrams of buffer gp into w.rx, running the batch
// whenever it fills, and returns how many datagrams gp held. The first
// datagram stays in gp's buffer when every datagram fits in the batch at
// once (they are all copied out before the batch runs and coalescing
// reuses that buffer); otherwise each is copied into a packet of its own.
func (w *Worker) splitGRO(t *tables, k TunnelKind, gp *Packet) int {
	b := &w.rx
	seg, size := gp.groSize, gp.Len()
	if seg == 0 || seg >= size || gp.truncated {
		if b.Full() {
			w.runTunnelBatch(t, k)
		}
		b.Push(gp)
		return 1
	}
	m := (size + seg - 1) / seg
	if seg < minDatagram(k) {
		w.c.drop(StageTunnelRx, ReasonGROBadSize, m)
		gp.pool.Put(gp)
		return m
	}
	d := gp.Bytes()
	if co, skip := w.trainCoalescer(t, k, d, seg); co != nil {
		if n, hdr, ok := co.Train(d, seg, skip); ok {
			if b.Full() {
				w.runTunnelBatch(t, k)
			}
			gp.SetLen(n)
			gp.vnet = hdr
			b.Push(gp)
			return m
		}
	}
	first := 0
	if m <= MaxBatch {
		if b.Len+m > MaxBatch {
			w.runTunnelBatch(t, k)
		}
		gp.SetLen(seg)
		b.Push(gp)
		first = 1
	}
	for i := first; i < m; i++ {
		if b.Full() {
			w.runTunnelBatch(t, k)
		}
		p := w.pool.Get()
		if p == nil {
			w.c.drop(StageTunnelRx, ReasonPoolEmpty, m-i)
			break
		}
		p.SetBytes(d[i*seg : min((i+1)*seg, size)])
		p.Peer = gp.Peer
		b.Push(p)
	}
	if first == 0 {
		gp.pool.Put(gp)
	}
	return m
}

// trainCoalescer returns the coalescer and tunnel header length with
// which the UDP_GRO train d of datagrams of seg bytes from a tunnel of kind
// k may be merged whole before the pipeline (Coalescer.Train), or nil:
// not while a trace or capture runs; for VXLAN, when every datagram has
// the same VXLAN header and its VNI is a network's (the packets inside are
// Ethernet frames, l3 networks' included); for flannel-UDP, bare IP
// packets.
func (w *Worker) trainCoalescer(t *tables, k TunnelKind, d []byte, seg int) (*offload.Coalescer, int) {
	o := &w.off
	if !o.trains {
		return nil, 0
	}
	switch k {
	case TunnelFlannelUDP:
		return o.coalIP, 0
	case TunnelVXLAN:
		vni, st := encap.DecodeVXLAN(d[:seg])
		if st != encap.VXLANOK || t.byVNI[vni] == nil {
			return nil, 0
		}
		h := d[:encap.VXLANHeaderLen]
		for i := seg; i < len(d); i += seg {
			if len(d)-i < encap.VXLANHeaderLen || !bytes.Equal(d[i:i+encap.VXLANHeaderLen], h) {
				return nil, 0
			}
		}
		return o.coal, encap.VXLANHeaderLen
	}
	return nil, 0
}

// runTunnelBatch runs the datagrams in w.rx, from the tunnel of kind k,
// through the pipeline from tunnel-rx on and frees them.
func (w *Worker) runTunnelBatch(t *tables, k TunnelKind) {
	b := &w.rx
	o := &w.off
	w.mark(StageTunnelRx, b.Len)
	w.obs = w.obsSrc.Load()
	if w.obs != nil {
		if o.rxAddrs != nil {
			o.fillRxPorts(b.Len)
		} else {
			clear(o.rxSport[:b.Len])
		}
		o.rxSportOn = true
		w.observeTunnelRxKind(k, b.Slice())
		o.rxSportOn = false
	}
	if k == TunnelFlannelUDP {
		w.fromFlannelUDP(t, b.Slice()) // gre.go
	} else {
		w.fromTunnel(t, b.Slice())
	}
	if w.obs != nil {
		w.endObserve()
	}
	b.Free()
	o.rxFrom = 0
}

// fillRxPorts records rxCur as the source port of the datagrams in w.rx
// from rxFrom up to n.
func (o *offloadState) fillRxPorts(n int) {
	for i := o.rxFrom; i < n; i++ {
		o.rxSport[i] = o.rxCur
	}
	o.rxFrom = n
}

// coalesce is gro-coalesce for the frames bound for port id: when the port
// takes superpackets and every frame came from a peer and goes to this
// port alone, consecutive TCP segments of a flow are merged into
// superpackets with their virtio-net header. It returns the packets to
// write: pkts itself when nothing was merged, else the worker's list of
// the survivors (the merged packets stay in the batch and are freed with
// it).
func (w *Worker) coalesce(id uint16, pkts []*Packet) []*Packet {
	o := &w.off
	if !o.on || len(pkts) < 2 || int(id) >= len(w.ports) {
		return pkts
	}
	vp, ok := w.ports[id].(vnetPort)
	if !ok {
		return pkts
	}
	for _, p := range pkts {
		if !p.From.IsPeer() || p.portRefs != 1 || p.vnet != (offload.VirtioNetHdr{}) {
			return pkts
		}
	}
	bufs, hdrs := o.bufs[:len(pkts)], o.hdrs[:len(pkts)]
	for i, p := range pkts {
		bufs[i] = p.buf[p.off:p.end] // capacity to the end of p's own buffer
	}
	co := o.coal
	if w.tbl.isL3Port(id) {
		co = o.coalIP
	}
	co.SetUDP(vp.takesUSO())
	left := co.Coalesce(bufs, hdrs)
	if left == len(pkts) {
		clear(bufs)
		w.mark(StageGROCoalesce, len(pkts))
		return pkts
	}
	out := o.wrOut[:0]
	for i, p := range pkts {
		if len(bufs[i]) == 0 {
			continue
		}
		p.SetLen(len(bufs[i]))
		p.vnet = hdrs[i]
		out = append(out, p)
	}
	if w.tracing {
		w.traceCoalesce(id, pkts, bufs)
	}
	clear(bufs)
	o.wrOut = out
	w.mark(StageGROCoalesce, len(pkts))
	return out
}

// traceCoalesce records gro-coalesce for the traced packets of pkts, bound
// for port id, after Coalesce left bufs: a packet merged into the
// superpacket of its flow (its buffer emptied) says so, and a packet that
// became a superpacket says how big and of how many segments.
func (w *Worker) traceCoalesce(id uint16, pkts []*Packet, bufs [][]byte) {
	for i, p := range pkts {
		switch {
		case !p.Trace:
		case len(bufs[i]) == 0:
			w.traceEvent(p, traceEvent{stage: StageGROCoalesce, kind: evGROMerged, port: id})
		case p.isGSO():
			n, _ := p.wireCount()
			w.traceEvent(p, traceEvent{stage: StageGROCoalesce, kind: evGROCoalesce, port: id,
				vni: uint32(p.Len()), num: uint16(p.vnet.GSOType), n1: p.vnet.GSOSize, n2: uint16(n)})
		}
	}
}
