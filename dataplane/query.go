package dataplane

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	bridge "github.com/ferry-overlay/ferry/switch"
)

// These are the read side of the engine for the control socket, the CLI and
// metrics. They sum every worker's counters with atomic loads and never stop
// the fast path. Their result types are the JSON the control API returns.

// Runtime returns per-stage packets, batches and time, in pipeline order,
// summed over workers.
func (e *Engine) Runtime() []StageStats { return stageStats(e.counters) }

// WorkerRuntime returns Runtime for each worker on its own, by worker
// number: how the load spreads over the workers (a flow runs on one
// worker per host, so a few heavy flows can leave a worker idle).
func (e *Engine) WorkerRuntime() []WorkerStats {
	out := make([]WorkerStats, len(e.counters))
	for i, c := range e.counters {
		out[i] = WorkerStats{Worker: i, Stages: stageStats([]*Counters{c})}
	}
	return out
}

// stageStats sums the stage counters of cs, in pipeline order.
func stageStats(cs []*Counters) []StageStats {
	out := make([]StageStats, NumStages)
	for s := range NumStages {
		st := StageStats{Stage: s.String()}
		for _, c := range cs {
			st.Packets += c.stage[s].packets.Load()
			st.Batches += c.stage[s].batches.Load()
			st.Nanos += c.stage[s].nanos.Load()
		}
		if st.Batches > 0 {
			st.PerBatch = float64(st.Packets) / float64(st.Batches)
		}
		if st.Packets > 0 {
			st.NsPerPkt = float64(st.Nanos) / float64(st.Packets)
		}
		out[s] = st
	}
	return out
}

// Errors returns every drop counter that is not zero, largest first.
func (e *Engine) Errors() []DropStats {
	var out []DropStats
	for s := range NumStages {
		for r := range NumReasons {
			var n uint64
			for _, c := range e.counters {
				n += c.drops[s][r].Load()
			}
			if n > 0 {
				out = append(out, DropStats{Stage: s.String(), Reason: r.String(), Help: r.Help(), Packets: n})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b DropStats) int { return cmp.Compare(b.Packets, a.Packets) })
	return out
}

// Drops returns the drop count of one (stage, reason), summed over workers.
func (e *Engine) Drops(s Stage, r Reason) uint64 {
	var n uint64
	for _, c := range e.counters {
		n += c.drops[s][r].Load()
	}
	return n
}

// ClearCounters zeroes the stage and drop counters (not the port and peer
// counters, which like interface counters only grow).
func (e *Engine) ClearCounters() {
	for _, c := range e.counters {
		c.reset()
	}
}

// PortInfo is one local port and its counters.
type PortInfo struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	EndpointStats
	// KernelTxDropped counts packets the container sent that the kernel
	// dropped before ferry read them (the TAP/TUN queue was full);
	// KernelRxDropped packets ferry wrote that the kernel dropped after
	// taking them. Both are the device's own counters, nil when they
	// could not be read (or nobody reads them: in-memory ports).
	KernelTxDropped *uint64 `json:"kernel_tx_dropped,omitempty"`
	KernelRxDropped *uint64 `json:"kernel_rx_dropped,omitempty"`
}

// KernelStatsFunc returns the kernel's drop counters of the device of the
// port named name (see PortInfo), or ok false when it cannot.
type KernelStatsFunc func(name string) (tx, rx uint64, ok bool)

// SetKernelStats makes Ports report the kernel's drop counters of each
// port, read with f when asked. Safe to call at any time.
func (e *Engine) SetKernelStats(f KernelStatsFunc) { e.kernel.Store(&f) }

// Ports returns every local port with its counters.
func (e *Engine) Ports() []PortInfo {
	t := e.tables.Load()
	kernel := e.kernel.Load()
	out := make([]PortInfo, 0, len(t.ports))
	for _, p := range t.ports {
		pi := PortInfo{
			Name:          p.name,
			Network:       p.net.name,
			EndpointStats: sumEndpoint(e.counters, func(c *Counters) *endpointCounters { return &c.ports[p.id] }),
		}
		if kernel != nil {
			if tx, rx, ok := (*kernel)(p.name); ok {
				pi.KernelTxDropped, pi.KernelRxDropped = &tx, &rx
			}
		}
		out = append(out, pi)
	}
	return out
}

// PeerInfo is one remote peer of one network and its counters.
type PeerInfo struct {
	Network string     `json:"network"`
	Address netip.Addr `json:"address"`
	// LastHeard is how long ago the last datagram arrived from the peer;
	// nil if none ever did.
	LastHeard *time.Duration `json:"last_heard_ns,omitempty"`
	EndpointStats
}

// Peers returns every peer with its counters.
func (e *Engine) Peers() []PeerInfo {
	t := e.tables.Load()
	now := e.now()
	out := make([]PeerInfo, 0, len(t.peers))
	for _, p := range t.peers {
		if p.removed {
			continue
		}
		s := sumEndpoint(e.counters, func(c *Counters) *endpointCounters { return &c.peers[p.id] })
		pi := PeerInfo{Network: p.net.name, Address: p.addr, EndpointStats: s}
		if s.LastRxNanos > 0 {
			d := time.Duration(now - s.LastRxNanos)
			pi.LastHeard = &d
		}
		out = append(out, pi)
	}
	return out
}

// FDBEntry is one MAC table entry as the API shows it.
type FDBEntry struct {
	Network string `json:"network"`
	MAC     string `json:"mac"`
	// Port is the local port's name, or Peer the remote host's underlay
	// address; exactly one is set.
	Port   string        `json:"port,omitempty"`
	Peer   string        `json:"peer,omitempty"`
	Age    time.Duration `json:"age_ns"`
	Static bool          `json:"static"`
}

// FDB returns the MAC table of the named network, or of every network when
// name is empty.
func (e *Engine) FDB(name string) ([]FDBEntry, error) {
	t := e.tables.Load()
	now := e.now()
	var out []FDBEntry
	found := false
	for _, n := range t.nets {
		if name != "" && n.name != name {
			continue
		}
		found = true
		for _, en := range n.fdb.Snapshot(now) {
			fe := FDBEntry{Network: n.name, MAC: macString(en.MAC), Age: en.Age, Static: en.Static}
			t.describe(en.Location, &fe)
			out = append(out, fe)
		}
	}
	if !found {
		return nil, fmt.Errorf("no network %q", name)
	}
	return out, nil
}

func (t *tables) describe(loc bridge.Location, fe *FDBEntry) {
	i := int(loc.Index())
	switch {
	case loc.IsPeer() && i < len(t.peers):
		fe.Peer = t.peers[i].addr.String()
	case !loc.IsPeer() && i < len(t.ports):
		fe.Port = t.ports[i].name
	default:
		fe.Port = loc.String()
	}
}

// NetworkInfo summarises one network.
type NetworkInfo struct {
	Name       string `json:"name"`
	VNI        uint32 `json:"vni"`
	MTU        int    `json:"mtu"`
	Ports      int    `json:"ports"`
	Peers      int    `json:"peers"`
	FDBEntries int    `json:"fdb_entries"`
}

// Networks returns a summary of every network.
func (e *Engine) Networks() []NetworkInfo {
	t := e.tables.Load()
	out := make([]NetworkInfo, 0, len(t.nets))
	for _, n := range t.nets {
		out = append(out, NetworkInfo{Name: n.name, VNI: n.vni, MTU: n.mtu, Ports: len(n.ports), Peers: len(n.peers), FDBEntries: n.fdb.Len()})
	}
	return out
}
