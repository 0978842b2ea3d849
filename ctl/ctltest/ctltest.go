// Package ctltest provides a fake of the engine's read API (ctl.Backend and
// metrics.Backend) for tests of the control socket, the metrics endpoint and
// the CLI, so none of them needs a running dataplane or root.
package ctltest

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/ferry-overlay/ferry/dataplane"
)

// Backend is a fake engine that returns the values in its fields. Set the
// fields before handing it to a server; afterwards only ClearCounters
// changes it. It is safe for concurrent use, like the engine.
type Backend struct {
	NetworkList []dataplane.NetworkInfo
	PortList    []dataplane.PortInfo
	PeerList    []dataplane.PeerInfo
	// FDBEntries are returned by FDB, filtered by their Network field.
	FDBEntries []dataplane.FDBEntry
	StageList  []dataplane.StageStats
	DropList   []dataplane.DropStats
	WorkerList []dataplane.WorkerStats
	Up         time.Duration
	NumWorkers int

	mu     sync.Mutex
	clears int
}

// New returns a Backend filled with a small, realistic node: two networks,
// three ports, two peers, FDB entries on both kinds of location, stage
// runtimes and two drop counters, all with distinct non-zero values so a
// test can tell them apart.
func New() *Backend {
	heard := 12 * time.Second
	return &Backend{
		NetworkList: []dataplane.NetworkInfo{
			{Name: "blue", VNI: 42, MTU: 1450, Ports: 2, Peers: 1, FDBEntries: 2},
			{Name: "red", VNI: 7, MTU: 1400, Ports: 1, Peers: 1, FDBEntries: 1},
		},
		PortList: []dataplane.PortInfo{
			{Name: "tap-a", Network: "blue", EndpointStats: dataplane.EndpointStats{RxPackets: 101, RxBytes: 10100, TxPackets: 102, TxBytes: 10200, Drops: 3},
				KernelTxDropped: ptr(uint64(7)), KernelRxDropped: ptr(uint64(0))},
			{Name: "tap-b", Network: "blue", EndpointStats: dataplane.EndpointStats{RxPackets: 201, RxBytes: 20100, TxPackets: 202, TxBytes: 20200, Drops: 0}},
			{Name: "tap-c", Network: "red", EndpointStats: dataplane.EndpointStats{RxPackets: 301, RxBytes: 1_234_567, TxPackets: 302, TxBytes: 30200, Drops: 5}},
		},
		PeerList: []dataplane.PeerInfo{
			{Network: "blue", Address: netip.MustParseAddr("192.0.2.10"), LastHeard: &heard, EndpointStats: dataplane.EndpointStats{RxPackets: 401, RxBytes: 40100, TxPackets: 402, TxBytes: 40200}},
			{Network: "red", Address: netip.MustParseAddr("192.0.2.11"), EndpointStats: dataplane.EndpointStats{TxPackets: 502, TxBytes: 50200}},
		},
		FDBEntries: []dataplane.FDBEntry{
			{Network: "blue", MAC: "02:00:00:00:00:01", Port: "tap-a", Age: 3 * time.Second},
			{Network: "blue", MAC: "02:00:00:00:00:02", Peer: "192.0.2.10", Age: 90 * time.Second},
			{Network: "red", MAC: "02:00:00:00:00:03", Port: "tap-c", Static: true},
		},
		StageList: []dataplane.StageStats{
			{Stage: "port-rx", Packets: 1000, Batches: 10, Nanos: 250_000, PerBatch: 100, NsPerPkt: 250},
			{Stage: "bridge", Packets: 990, Batches: 10, Nanos: 49_500, PerBatch: 99, NsPerPkt: 50},
		},
		WorkerList: []dataplane.WorkerStats{
			{Worker: 0, Stages: []dataplane.StageStats{
				{Stage: "port-rx", Packets: 600, Batches: 6, Nanos: 150_000, PerBatch: 100, NsPerPkt: 250},
				{Stage: "bridge", Packets: 594, Batches: 6, Nanos: 29_700, PerBatch: 99, NsPerPkt: 50}}},
			{Worker: 1, Stages: []dataplane.StageStats{
				{Stage: "port-rx", Packets: 400, Batches: 4, Nanos: 100_000, PerBatch: 100, NsPerPkt: 250},
				{Stage: "bridge", Packets: 396, Batches: 4, Nanos: 19_800, PerBatch: 99, NsPerPkt: 50}}},
		},
		DropList: []dataplane.DropStats{
			{Stage: "bridge", Reason: "same-segment", Help: "destination MAC was learned on the port the frame came from", Packets: 8},
			{Stage: "port-rx", Reason: "runt", Help: "frame shorter than an Ethernet header", Packets: 2},
		},
		Up:         90*time.Minute + 5*time.Second,
		NumWorkers: 2,
	}
}

// Networks returns NetworkList.
func (b *Backend) Networks() []dataplane.NetworkInfo { return b.NetworkList }

// Ports returns PortList.
func (b *Backend) Ports() []dataplane.PortInfo { return b.PortList }

// Peers returns PeerList.
func (b *Backend) Peers() []dataplane.PeerInfo { return b.PeerList }

// FDB returns the entries of the named network, or all of them for "", and
// an error for a name that is not in NetworkList, as the engine does.
func (b *Backend) FDB(network string) ([]dataplane.FDBEntry, error) {
	if network == "" {
		return b.FDBEntries, nil
	}
	known := false
	for _, n := range b.NetworkList {
		known = known || n.Name == network
	}
	if !known {
		return nil, fmt.Errorf("no network %q", network)
	}
	var out []dataplane.FDBEntry
	for _, e := range b.FDBEntries {
		if e.Network == network {
			out = append(out, e)
		}
	}
	return out, nil
}

// Runtime returns StageList.
func (b *Backend) Runtime() []dataplane.StageStats { return b.StageList }

// WorkerRuntime returns WorkerList.
func (b *Backend) WorkerRuntime() []dataplane.WorkerStats { return b.WorkerList }

// Errors returns DropList.
func (b *Backend) Errors() []dataplane.DropStats { return b.DropList }

// ClearCounters counts the call; see Clears. It leaves the fields alone so
// a test can still compare against them.
func (b *Backend) ClearCounters() {
	b.mu.Lock()
	b.clears++
	b.mu.Unlock()
}

// Clears reports how often ClearCounters was called.
func (b *Backend) Clears() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.clears
}

// Uptime returns Up.
func (b *Backend) Uptime() time.Duration { return b.Up }

// Workers returns NumWorkers.
func (b *Backend) Workers() int { return b.NumWorkers }

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }
