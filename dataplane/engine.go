package dataplane

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-overlay/ferry/router"
	bridge "github.com/ferry-overlay/ferry/switch"
)

// NetworkSpec describes one L2 network for the engine: what the daemon
// derives from the config file.
type NetworkSpec struct {
	Name   string
	VNI    uint32
	MTU    int // largest IP packet on the network; frames up to MTU+14
	Ageing time.Duration
	FDBMax int
	Ports  []string     // names of the local ports, in order
	Peers  []netip.Addr // underlay addresses of the remote VTEPs
	Static []StaticEntry
	// Encap is the network's tunnel kind; the zero value is VXLAN. An l2
	// GRE network is found on receive by its GRE key, which is VNI.
	Encap TunnelKind
	// L3 makes the network an l3 (routed, flannel-style) one when set;
	// Ports then names exactly one port, its TUN device. See l3.go.
	L3 *L3Spec
	// Gateway and Subnet give the network a router (dataplane/router.go):
	// ferry answers ARP and ping for Gateway and routes frames sent to
	// its MAC. Zero Gateway: no router.
	Gateway netip.Addr
	Subnet  netip.Prefix
}

// StaticEntry is an FDB entry that never ages: a MAC pinned to a local port
// (by name) or to a peer (by underlay address). Exactly one of Port and Peer
// is set.
type StaticEntry struct {
	MAC  [6]byte
	Port string
	Peer netip.Addr
}

// Engine is the shared state of the dataplane: the networks with their
// ports, peers and FDBs, and every worker's counters.
//
// The tables that the fast path reads (which port and peer belongs where)
// live behind one atomic pointer that workers load once per batch; control
// operations build a new version and swap it in, so the fast path never
// takes a lock for them. FDBs are shared between versions.
type Engine struct {
	tables   atomic.Pointer[tables]
	counters []*Counters
	start    time.Time

	// obs is the observer (trace, captures) workers load once per batch;
	// nil when nothing observes, the common case.
	obs atomic.Pointer[observer]

	// ctlMu serialises control operations (table swaps, FDB changes,
	// trace and capture sessions).
	ctlMu sync.Mutex
	// trace is the latest trace session, running or stopped, kept so
	// its records can be shown after it stops; guarded by ctlMu.
	trace *traceSession
	// captures are the running capture sessions; guarded by ctlMu.
	captures []*captureSession

	// kernel reads ports' kernel drop counters (SetKernelStats); nil
	// until set.
	kernel atomic.Pointer[KernelStatsFunc]
}

type tables struct {
	nets  []*network
	ports []*port             // by global port id
	peers []*peer             // by global peer id
	byVNI map[uint32]*network // VXLAN networks, l2 and l3
	// routes maps destinations to networks with a gateway (router.go).
	routes  *router.Routes
	uplinks []*uplink // by id (nat.go)
	// greKey, l3GRE and l3UDP find the network of a GRE or flannel-UDP
	// packet (see l3.go, index).
	greKey map[uint32]*network
	l3GRE  []*network
	l3UDP  []*network
}

type network struct {
	id      uint16
	name    string
	vni     uint32
	mtu     int
	fdb     *bridge.Table
	ports   []uint16 // global ids of local ports
	peers   []uint16 // global ids of peers
	peerIdx map[netip.Addr]uint16
	// encap is the network's tunnel kind, l3 its routing state (nil on an
	// l2 network); see l3.go.
	encap  TunnelKind
	l3     *l3net
	gw     *gateway // nil: the network has no router (router.go)
	uplink *uplink  // masquerade target, nil if none (nat.go)
}

type port struct {
	id   uint16
	name string
	net  *network
}

type peer struct {
	id   uint16
	addr netip.Addr
	net  *network
	// subnet and mac are an l3 peer's subnet and VTEP MAC (l3.go).
	subnet netip.Prefix
	mac    [6]byte
	// removed marks a peer taken out by RemovePeer: its id stays in
	// tables.peers (ids are never reused) so old FDB entries and traces
	// can still name it.
	removed bool
}

// NewEngine builds an engine for the given networks with counters for the
// given number of workers.
func NewEngine(specs []NetworkSpec, workers int) (*Engine, error) {
	if workers < 1 {
		return nil, fmt.Errorf("engine: %d workers: need at least 1", workers)
	}
	e := &Engine{start: time.Now()}
	for range workers {
		e.counters = append(e.counters, new(Counters))
	}
	t := &tables{}
	vnis := make(map[uint32]bool)
	var err error
	for i, s := range specs {
		fdb, err := bridge.New(bridge.Options{Ageing: s.Ageing, Max: s.FDBMax})
		if err != nil {
			return nil, fmt.Errorf("engine: network %q: %w", s.Name, err)
		}
		n := &network{
			id:      uint16(i),
			name:    s.Name,
			vni:     s.VNI,
			mtu:     s.MTU,
			fdb:     fdb,
			peerIdx: make(map[netip.Addr]uint16),
			encap:   s.Encap,
		}
		if vnis[s.VNI] {
			return nil, fmt.Errorf("engine: network %q: VNI %d used twice", s.Name, s.VNI)
		}
		vnis[s.VNI] = true
		t.nets = append(t.nets, n)
		if n.gw, err = newGateway(s); err != nil { // router.go
			return nil, fmt.Errorf("engine: network %q: %w", s.Name, err)
		}
		for _, name := range s.Ports {
			if len(t.ports) == MaxPorts {
				return nil, fmt.Errorf("engine: network %q: more than %d ports", s.Name, MaxPorts)
			}
			p := &port{id: uint16(len(t.ports)), name: name, net: n}
			t.ports = append(t.ports, p)
			n.ports = append(n.ports, p.id)
		}
		for _, a := range s.Peers {
			if len(t.peers) == MaxPeers {
				return nil, fmt.Errorf("engine: network %q: more than %d peers", s.Name, MaxPeers)
			}
			if _, dup := n.peerIdx[a]; dup {
				return nil, fmt.Errorf("engine: network %q: peer %s listed twice", s.Name, a)
			}
			p := &peer{id: uint16(len(t.peers)), addr: a.Unmap(), net: n}
			t.peers = append(t.peers, p)
			n.peers = append(n.peers, p.id)
			n.peerIdx[p.addr] = p.id
		}
		if s.L3 != nil { // l3 network: routes to the peers' subnets (l3.go)
			if err := t.setupL3(n, s); err != nil {
				return nil, fmt.Errorf("engine: network %q: %w", s.Name, err)
			}
		}
		for _, st := range s.Static {
			loc, err := t.locate(n, st.Port, st.Peer)
			if err != nil {
				return nil, fmt.Errorf("engine: network %q: static entry %s: %w", s.Name, macString(st.MAC), err)
			}
			if err := n.fdb.AddStatic(e.now(), st.MAC, loc); err != nil {
				return nil, fmt.Errorf("engine: network %q: %w", s.Name, err)
			}
		}
	}
	t.index()
	if t.routes, err = buildRoutes(t.nets); err != nil { // router.go
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.tables.Store(t)
	return e, nil
}

// locate turns a port name or a peer address of network n into a bridge
// location.
func (t *tables) locate(n *network, portName string, peerAddr netip.Addr) (bridge.Location, error) {
	if portName != "" {
		for _, id := range n.ports {
			if t.ports[id].name == portName {
				return bridge.PortLocation(id), nil
			}
		}
		return 0, fmt.Errorf("no port %q in this network", portName)
	}
	if id, ok := n.peerIdx[peerAddr.Unmap()]; ok {
		return bridge.PeerLocation(id), nil
	}
	return 0, fmt.Errorf("no peer %s in this network", peerAddr)
}

// Workers returns the number of workers the engine counts for.
func (e *Engine) Workers() int { return len(e.counters) }

// now returns the engine's monotonic clock in nanoseconds.
func (e *Engine) now() int64 { return int64(time.Since(e.start)) }

// Uptime returns how long the engine has existed.
func (e *Engine) Uptime() time.Duration { return time.Since(e.start) }

// PortID returns the global id of the named port.
func (e *Engine) PortID(name string) (uint16, bool) {
	for _, p := range e.tables.Load().ports {
		if p.name == name {
			return p.id, true
		}
	}
	return 0, false
}

// NumPorts returns the number of local ports.
func (e *Engine) NumPorts() int { return len(e.tables.Load().ports) }

// Expire ages out FDB entries of every network; the daemon calls it about
// once a second.
func (e *Engine) Expire() {
	now := e.now()
	for _, n := range e.tables.Load().nets {
		n.fdb.Expire(now)
	}
}

func macString(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}
