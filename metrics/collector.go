// Package metrics exports ferry's counters to Prometheus and serves the
// daemon's HTTP observability endpoints: /metrics, /healthz, /readyz and,
// when asked for on a loopback address only, /debug/pprof/.
//
// The counters are read from the engine when Prometheus scrapes, never
// pushed per packet: the dataplane keeps its own per-worker atomics, and
// Collector sums them through the engine's read API (the same one the
// control socket serves). Metric names follow Prometheus conventions: the
// ferry_ prefix, base units (bytes, seconds), _total on counters, and only
// low-cardinality labels (port, network, peer, stage, reason). docs/api.md
// lists every metric.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/dataplane"
)

// Backend is the part of the engine's read API that the metrics read.
// *dataplane.Engine and every ctl.Backend implement it. Its methods are
// called from the scraping goroutine, concurrently with the dataplane and
// with each other.
type Backend interface {
	Networks() []dataplane.NetworkInfo
	Ports() []dataplane.PortInfo
	Peers() []dataplane.PeerInfo
	Runtime() []dataplane.StageStats
	Errors() []dataplane.DropStats
	Uptime() time.Duration
}

// The engine and every control-socket backend can be scraped.
var (
	_ Backend = (*dataplane.Engine)(nil)
	_ Backend = ctl.Backend(nil)
)

// Collector is a prometheus.Collector that reads a Backend at each scrape.
// It is safe for concurrent scrapes.
type Collector struct {
	b    Backend
	info ctl.NodeInfo
}

// NewCollector returns a collector of b's counters; info labels ferry_info.
func NewCollector(b Backend, info ctl.NodeInfo) *Collector {
	return &Collector{b: b, info: info}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	portLabels  = []string{"port", "network"}
	peerLabels  = []string{"peer", "network"}
	stageLabels = []string{"stage"}

	portRxPackets = desc("ferry_port_rx_packets_total", "Packets received from a local port.", portLabels...)
	portRxBytes   = desc("ferry_port_rx_bytes_total", "Bytes received from a local port.", portLabels...)
	portTxPackets = desc("ferry_port_tx_packets_total", "Packets sent to a local port.", portLabels...)
	portTxBytes   = desc("ferry_port_tx_bytes_total", "Bytes sent to a local port.", portLabels...)
	portDrops     = desc("ferry_port_drops_total", "Packets dropped on a local port.", portLabels...)
	portKernel    = desc("ferry_port_kernel_drops_total", "Packets the kernel dropped on a local port's device: direction tx, sent by the container but not read by ferry in time (queue full); rx, written by ferry and dropped by the kernel.", "port", "network", "direction")

	peerRxPackets = desc("ferry_peer_rx_packets_total", "Packets received from a remote peer.", peerLabels...)
	peerTxPackets = desc("ferry_peer_tx_packets_total", "Packets sent to a remote peer.", peerLabels...)
	peerRxBytes   = desc("ferry_peer_rx_bytes_total", "Bytes received from a remote peer.", peerLabels...)
	peerTxBytes   = desc("ferry_peer_tx_bytes_total", "Bytes sent to a remote peer.", peerLabels...)
	peerLastHeard = desc("ferry_peer_last_heard_seconds", "Seconds since the last datagram from a remote peer; absent if none ever arrived.", peerLabels...)

	stagePackets = desc("ferry_stage_packets_total", "Packets processed by a pipeline stage.", stageLabels...)
	stageBatches = desc("ferry_stage_batches_total", "Batches processed by a pipeline stage.", stageLabels...)
	stageSeconds = desc("ferry_stage_seconds_total", "Time spent in a pipeline stage.", stageLabels...)

	dropPackets = desc("ferry_drop_packets_total", "Packets dropped, by pipeline stage and reason.", "stage", "reason")

	fdbEntries = desc("ferry_fdb_entries", "MAC table entries of a network.", "network")
	info       = desc("ferry_info", "Build and node information; always 1.", "version", "node")
	uptime     = desc("ferry_uptime_seconds", "Seconds since the dataplane engine started.")

	conntrackEntries = desc("ferry_conntrack_entries", "Connections tracked by an uplink's NAT, by protocol.", "uplink", "proto")
)

// natBackend is what a backend with uplinks adds; the collector emits
// ferry_conntrack_entries only for backends that implement it.
type natBackend interface {
	ConntrackStats() []dataplane.ConntrackStats
}

var allDescs = []*prometheus.Desc{
	portRxPackets, portRxBytes, portTxPackets, portTxBytes, portDrops, portKernel,
	peerRxPackets, peerTxPackets, peerRxBytes, peerTxBytes, peerLastHeard,
	stagePackets, stageBatches, stageSeconds,
	dropPackets, fdbEntries, info, uptime, conntrackEntries,
}

// Describe sends the descriptors of every metric the collector can emit.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads the backend once and sends the current values.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	gauge(info, 1, c.info.Version, c.info.Name)
	gauge(uptime, c.b.Uptime().Seconds())
	for _, n := range c.b.Networks() {
		gauge(fdbEntries, float64(n.FDBEntries), n.Name)
	}
	for _, p := range c.b.Ports() {
		counter(portRxPackets, p.RxPackets, p.Name, p.Network)
		counter(portRxBytes, p.RxBytes, p.Name, p.Network)
		counter(portTxPackets, p.TxPackets, p.Name, p.Network)
		counter(portTxBytes, p.TxBytes, p.Name, p.Network)
		counter(portDrops, p.Drops, p.Name, p.Network)
		if p.KernelTxDropped != nil {
			counter(portKernel, *p.KernelTxDropped, p.Name, p.Network, "tx")
			counter(portKernel, *p.KernelRxDropped, p.Name, p.Network, "rx")
		}
	}
	for _, p := range c.b.Peers() {
		addr := p.Address.String()
		counter(peerRxPackets, p.RxPackets, addr, p.Network)
		counter(peerTxPackets, p.TxPackets, addr, p.Network)
		counter(peerRxBytes, p.RxBytes, addr, p.Network)
		counter(peerTxBytes, p.TxBytes, addr, p.Network)
		if p.LastHeard != nil {
			gauge(peerLastHeard, p.LastHeard.Seconds(), addr, p.Network)
		}
	}
	for _, s := range c.b.Runtime() {
		counter(stagePackets, s.Packets, s.Stage)
		counter(stageBatches, s.Batches, s.Stage)
		ch <- prometheus.MustNewConstMetric(stageSeconds, prometheus.CounterValue, float64(s.Nanos)/1e9, s.Stage)
	}
	for _, d := range c.b.Errors() {
		counter(dropPackets, d.Packets, d.Stage, d.Reason)
	}
	if nb, ok := c.b.(natBackend); ok {
		for _, s := range nb.ConntrackStats() {
			gauge(conntrackEntries, float64(s.TCP), s.Uplink, "tcp")
			gauge(conntrackEntries, float64(s.UDP), s.Uplink, "udp")
			gauge(conntrackEntries, float64(s.ICMP), s.Uplink, "icmp")
		}
	}
}
