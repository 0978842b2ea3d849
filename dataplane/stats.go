package dataplane

import (
	"sync/atomic"

	"github.com/ferry-overlay/ferry/offload"
)

// Stage names one step of the pipeline. Every packet and batch is counted
// per stage, and every drop is counted per (stage, reason).
type Stage uint8

// The pipeline's stages, in the order a packet meets them.
const (
	StagePortRx Stage = iota
	StageEthernetInput
	StageBridge
	StageFlood
	StagePortTx
	StageVXLANEncap
	StageTunnelTx
	StageTunnelRx
	StageVXLANDecap
	// Stages of l3 networks and of GRE and flannel-UDP tunnels (l3.go,
	// gre.go).
	StageIPInput
	StageRoute
	StageGREEncap
	StageGREDecap
	StageUDPEncap
	StageUDPDecap
	StageL3VXLANEncap
	StageL3VXLANDecap
	// Offload stages (offload.go): superpackets cut for peers, tunnel
	// datagrams coalesced for ports.
	StageGSOSegment
	StageGROCoalesce
	// Router stages (dataplane/router.go).
	StageGateway
	StageRouter
	StageNeighbour
	// Uplink and NAT stages (dataplane/nat.go).
	StageNAT
	StageUplinkRx
	StageUplinkTx
	NumStages
)

var stageNames = [NumStages]string{
	StagePortRx:        "port-rx",
	StageEthernetInput: "ethernet-input",
	StageBridge:        "bridge",
	StageFlood:         "flood",
	StagePortTx:        "port-tx",
	StageVXLANEncap:    "vxlan-encap",
	StageTunnelTx:      "tunnel-tx",
	StageTunnelRx:      "tunnel-rx",
	StageVXLANDecap:    "vxlan-decap",
	StageIPInput:       "ip-input",
	StageRoute:         "route",
	StageGREEncap:      "gre-encap",
	StageGREDecap:      "gre-decap",
	StageUDPEncap:      "udp-encap",
	StageUDPDecap:      "udp-decap",
	StageL3VXLANEncap:  "l3-vxlan-encap",
	StageL3VXLANDecap:  "l3-vxlan-decap",
	StageGSOSegment:    "gso-segment",
	StageGROCoalesce:   "gro-coalesce",
	// Router stages (dataplane/router.go).
	StageGateway:   "gateway",
	StageRouter:    "router",
	StageNeighbour: "neighbour",
	// Uplink and NAT stages (dataplane/nat.go).
	StageNAT:      "nat",
	StageUplinkRx: "uplink-rx",
	StageUplinkTx: "uplink-tx",
}

// String returns the stage's name as shown by `ferry runtime` and in the
// `stage` metric label.
func (s Stage) String() string {
	if s < NumStages {
		return stageNames[s]
	}
	return "unknown"
}

// Reason says why a packet was dropped. Every place in the pipeline that
// drops a packet uses its own reason; nothing is dropped silently.
type Reason uint8

// Drop reasons.
const (
	ReasonNone Reason = iota
	ReasonRunt
	ReasonMulticastSource
	ReasonSameSegment
	ReasonSplitHorizon
	ReasonNoFloodTarget
	ReasonTooBig
	ReasonVXLANShort
	ReasonVXLANBadFlags
	ReasonUnknownVNI
	ReasonUnknownPeer
	ReasonRxTruncated
	ReasonTxFull
	ReasonTxError
	ReasonPortDown
	ReasonNoHeadroom
	ReasonPoolEmpty
	// Reasons of l3 networks and of GRE and flannel-UDP tunnels.
	ReasonBadIPv4
	ReasonNotIPv4
	ReasonNotInNetwork
	ReasonLocalSubnet
	ReasonNotLocalSubnet
	ReasonNoRoute
	ReasonTTLExpired
	ReasonGREShort
	ReasonGREBadVersion
	ReasonGRERouting
	ReasonGREUnsupportedFlags
	ReasonGREUnknownProtocol
	ReasonGREBadChecksum
	ReasonGRENoKey
	ReasonUnknownGREKey
	ReasonFlannelUDPShort
	ReasonFlannelUDPNotIPv4
	ReasonFlannelUDPBadLength
	ReasonVTEPMACMismatch
	ReasonL3VXLANShort
	// Offload reasons (offload.go): one per offload.Status, named by it,
	// and a UDP_GRO buffer whose segment size cannot be right.
	ReasonVnetShort
	ReasonVnetBadFlags
	ReasonVnetBadGSOType
	ReasonVnetBadGSOSize
	ReasonVnetBadHdrLen
	ReasonVnetBadCsumStart
	ReasonVnetBadCsumOffset
	ReasonSuperpacketBadLength
	ReasonSuperpacketBadIP
	ReasonSuperpacketBadL4
	ReasonSegmentMTUTooSmall
	ReasonSegmentTooMany
	ReasonSegmentBufferTooSmall
	ReasonGROBadSize
	// Router reasons (dataplane/router.go).
	ReasonIPMalformed
	ReasonIPBadChecksum
	ReasonMartianSource
	ReasonMartianDestination
	ReasonFragNeeded
	ReasonNeighbourUnresolved
	ReasonGatewayConsumed
	ReasonGatewayUnhandled
	// NAT reasons (dataplane/nat.go), one per nat.Verdict drop.
	ReasonNATNoMatch
	ReasonNATMalformed
	ReasonNATFragment
	ReasonNATUnsupported
	ReasonNATInvalid
	ReasonNATBadICMPError
	ReasonNATNoFlow
	ReasonNATPortExhausted
	ReasonNATConflict
	ReasonNATTableFull
	ReasonUplinkNotIPv4
	NumReasons
)

var reasonInfo = [NumReasons]struct{ name, help string }{
	ReasonNone:            {"none", "not dropped"},
	ReasonRunt:            {"runt", "frame shorter than an Ethernet header"},
	ReasonMulticastSource: {"multicast-source", "source MAC is multicast or broadcast"},
	ReasonSameSegment:     {"same-segment", "destination MAC was learned on the port the frame came from"},
	ReasonSplitHorizon:    {"split-horizon", "frame from a peer to a MAC behind another peer (never tunnel to tunnel)"},
	ReasonNoFloodTarget:   {"no-flood-target", "flooded frame had no port or peer to go to"},
	ReasonTooBig:          {"too-big", "frame larger than the network MTU allows"},
	ReasonVXLANShort:      {"vxlan-short", "datagram too short for a VXLAN header and an inner Ethernet header"},
	ReasonVXLANBadFlags:   {"vxlan-bad-flags", "VXLAN flags invalid (I flag missing or reserved flags set)"},
	ReasonUnknownVNI:      {"unknown-vni", "VXLAN VNI matches no network on this node"},
	ReasonUnknownPeer:     {"unknown-peer", "datagram from an address that is not a peer of the VNI's network"},
	ReasonRxTruncated:     {"rx-truncated", "datagram larger than the receive buffer"},
	ReasonTxFull:          {"tx-full", "device or socket send queue full"},
	ReasonTxError:         {"tx-error", "device or socket refused the packet"},
	ReasonPortDown:        {"port-down", "the port's link is down (its container unplugged it)"},
	ReasonNoHeadroom:      {"no-headroom", "no room in front of the packet for the outer header"},
	ReasonPoolEmpty:       {"pool-empty", "no free packet buffer"},

	ReasonBadIPv4:               {"bad-ipv4", "IPv4 header invalid (version, header length, or total length beyond the packet)"},
	ReasonNotIPv4:               {"not-ipv4", "packet on an l3 network is not IPv4 (IPv6 is not carried)"},
	ReasonNotInNetwork:          {"not-in-network", "destination outside the l3 network's prefix"},
	ReasonLocalSubnet:           {"local-subnet", "packet from the TUN device to this host's own subnet (a routing loop)"},
	ReasonNotLocalSubnet:        {"not-local-subnet", "packet from a peer to a destination outside this host's subnet"},
	ReasonNoRoute:               {"no-route", "no route for the destination (l3: no peer owns its subnet; gateway: no local network or uplink); ICMP net unreachable sent back"},
	ReasonTTLExpired:            {"ttl-expired", "TTL would reach 0 when decremented (at a gateway, ICMP time exceeded is sent back; flannel-UDP also decrements it)"},
	ReasonGREShort:              {"gre-short", "GRE packet too short for its header and inner packet"},
	ReasonGREBadVersion:         {"gre-bad-version", "GRE version is not 0"},
	ReasonGRERouting:            {"gre-routing", "GRE routing present (RFC 1701 source routing, not supported)"},
	ReasonGREUnsupportedFlags:   {"gre-unsupported-flags", "GRE sequence number or recursion control set"},
	ReasonGREUnknownProtocol:    {"gre-unknown-protocol", "GRE protocol is neither IPv4 nor transparent Ethernet bridging"},
	ReasonGREBadChecksum:        {"gre-bad-checksum", "GRE checksum present and wrong"},
	ReasonGRENoKey:              {"gre-no-key", "GRE Ethernet packet without the key that names its network"},
	ReasonUnknownGREKey:         {"unknown-gre-key", "GRE key matches no l2 gre network on this node"},
	ReasonFlannelUDPShort:       {"flannel-udp-short", "flannel-UDP payload shorter than an IPv4 header"},
	ReasonFlannelUDPNotIPv4:     {"flannel-udp-not-ipv4", "flannel-UDP payload is not an IPv4 packet"},
	ReasonFlannelUDPBadLength:   {"flannel-udp-bad-length", "flannel-UDP payload length differs from the inner IPv4 total length"},
	ReasonVTEPMACMismatch:       {"vtep-mac-mismatch", "l3 VXLAN frame not addressed to this host's VTEP MAC"},
	ReasonL3VXLANShort:          {"l3-vxlan-short", "l3 VXLAN frame too short for an Ethernet header"},
	ReasonVnetShort:             offloadReason(offload.StatusVnetShort),
	ReasonVnetBadFlags:          offloadReason(offload.StatusVnetBadFlags),
	ReasonVnetBadGSOType:        offloadReason(offload.StatusVnetBadGSOType),
	ReasonVnetBadGSOSize:        offloadReason(offload.StatusVnetBadGSOSize),
	ReasonVnetBadHdrLen:         offloadReason(offload.StatusVnetBadHdrLen),
	ReasonVnetBadCsumStart:      offloadReason(offload.StatusVnetBadCsumStart),
	ReasonVnetBadCsumOffset:     offloadReason(offload.StatusVnetBadCsumOffset),
	ReasonSuperpacketBadLength:  offloadReason(offload.StatusBadLength),
	ReasonSuperpacketBadIP:      offloadReason(offload.StatusBadIP),
	ReasonSuperpacketBadL4:      offloadReason(offload.StatusBadL4),
	ReasonSegmentMTUTooSmall:    offloadReason(offload.StatusMTUTooSmall),
	ReasonSegmentTooMany:        offloadReason(offload.StatusTooManySegments),
	ReasonSegmentBufferTooSmall: offloadReason(offload.StatusBufferTooSmall),
	ReasonGROBadSize:            {"gro-bad-size", "UDP_GRO buffer with a segment size too small for a VXLAN datagram"},
	// Router reasons (dataplane/router.go).
	ReasonIPMalformed:         {"ip-malformed", "IPv4 packet to the gateway with a bad header or lengths"},
	ReasonIPBadChecksum:       {"ip-bad-checksum", "IPv4 header checksum does not verify (RFC 1812 5.2.2)"},
	ReasonMartianSource:       {"martian-source", "source address may not be routed (0/8, 127/8, 169.254/16, multicast, 240/4)"},
	ReasonMartianDestination:  {"martian-destination", "destination address may not be routed (0/8, 127/8, 169.254/16, multicast, 240/4)"},
	ReasonFragNeeded:          {"frag-needed", "DF packet larger than the egress MTU; ICMP fragmentation needed sent back"},
	ReasonNeighbourUnresolved: {"neighbour-unresolved", "destination MAC not known yet; ARP request sent"},
	ReasonGatewayConsumed:     {"gateway-consumed", "ARP frame for the gateway, consumed after learning its sender"},
	ReasonGatewayUnhandled:    {"gateway-unhandled", "packet to a gateway address that is not an echo request"},
	// NAT reasons (dataplane/nat.go), one per nat.Verdict drop.
	ReasonNATNoMatch:       {"nat-no-match", "packet to the nat_address that is neither a tracked flow nor a published port"},
	ReasonNATMalformed:     {"nat-malformed", "IPv4 or TCP/UDP/ICMP header cut off or inconsistent"},
	ReasonNATFragment:      {"nat-fragment", "IPv4 fragment; NAT does not reassemble"},
	ReasonNATUnsupported:   {"nat-unsupported", "protocol or ICMP type NAT cannot translate"},
	ReasonNATInvalid:       {"nat-invalid", "packet that cannot start a connection, or from the wrong side of one"},
	ReasonNATBadICMPError:  {"nat-bad-icmp-error", "ICMP error quoting a cut-off or untranslatable packet"},
	ReasonNATNoFlow:        {"nat-no-flow", "outbound ICMP error about no tracked connection"},
	ReasonNATPortExhausted: {"nat-port-exhausted", "no free masquerade port on the nat_address"},
	ReasonNATConflict:      {"nat-tuple-conflict", "published port would reuse the reply tuple of another connection"},
	ReasonNATTableFull:     {"nat-table-full", "conntrack table full and nothing to evict"},
	ReasonUplinkNotIPv4:    {"uplink-not-ipv4", "packet from an uplink that is not IPv4 (IPv6 is not routed)"},
}

// String returns the reason's kebab-case name, as shown by `ferry errors`
// and in the `reason` metric label.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonInfo[r].name
	}
	return "unknown"
}

// Help returns a one-line description of the reason.
func (r Reason) Help() string {
	if r < NumReasons {
		return reasonInfo[r].help
	}
	return ""
}

// Limits on the per-worker counter tables. Ports and peers are numbered
// node-wide; the numbers are never reused while the daemon runs.
const (
	MaxPorts = 1024
	MaxPeers = 1024
)

type stageCounters struct {
	packets, batches, nanos atomic.Uint64
}

// IOCounters count one direction of one port or peer.
type ioCounters struct {
	packets, bytes atomic.Uint64
}

type endpointCounters struct {
	rx, tx ioCounters
	drops  atomic.Uint64
	// lastRx is the monotonic clock (ns since the engine started) of the
	// last packet received; peers only.
	lastRx atomic.Int64
}

// Counters are one worker's counters. The worker is the only writer; it adds
// once per batch where it can, never takes a lock, and readers (the control
// socket, metrics) load the atomics at any time. Engine.Stats sums all
// workers.
type Counters struct {
	stage [NumStages]stageCounters
	drops [NumStages][NumReasons]atomic.Uint64
	ports [MaxPorts]endpointCounters
	peers [MaxPeers]endpointCounters
}

func (c *Counters) addStage(s Stage, packets int, nanos int64) {
	st := &c.stage[s]
	st.packets.Add(uint64(packets))
	st.batches.Add(1)
	st.nanos.Add(uint64(nanos))
}

func (c *Counters) drop(s Stage, r Reason, n int) {
	c.drops[s][r].Add(uint64(n))
}

func (c *Counters) reset() {
	for i := range c.stage {
		c.stage[i].packets.Store(0)
		c.stage[i].batches.Store(0)
		c.stage[i].nanos.Store(0)
	}
	for i := range c.drops {
		for j := range c.drops[i] {
			c.drops[i][j].Store(0)
		}
	}
}

// StageStats is the runtime of one stage, summed over workers (or of one
// worker, in WorkerStats).
type StageStats struct {
	Stage    string  `json:"stage"`
	Packets  uint64  `json:"packets"`
	Batches  uint64  `json:"batches"`
	Nanos    uint64  `json:"nanoseconds"`
	PerBatch float64 `json:"packets_per_batch"`
	NsPerPkt float64 `json:"ns_per_packet"`
}

// WorkerStats is the runtime of one worker: its stages, in pipeline order.
type WorkerStats struct {
	Worker int          `json:"worker"`
	Stages []StageStats `json:"stages"`
}

// DropStats is one (stage, reason) drop counter, summed over workers.
type DropStats struct {
	Stage   string `json:"stage"`
	Reason  string `json:"reason"`
	Help    string `json:"help"`
	Packets uint64 `json:"packets"`
}

// EndpointStats are the counters of one port or peer, summed over workers.
type EndpointStats struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	Drops     uint64 `json:"drops"`
	// LastRxNanos is the engine clock of the last packet received, 0 if
	// none; peers only.
	LastRxNanos int64 `json:"-"`
}

func sumEndpoint(cs []*Counters, get func(*Counters) *endpointCounters) EndpointStats {
	var s EndpointStats
	for _, c := range cs {
		e := get(c)
		s.RxPackets += e.rx.packets.Load()
		s.RxBytes += e.rx.bytes.Load()
		s.TxPackets += e.tx.packets.Load()
		s.TxBytes += e.tx.bytes.Load()
		s.Drops += e.drops.Load()
		s.LastRxNanos = max(s.LastRxNanos, e.lastRx.Load())
	}
	return s
}
