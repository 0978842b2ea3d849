package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	bridge "github.com/ferry-overlay/ferry/switch"
)

// These are the write side of the engine for the control socket: static FDB
// entries, FDB flushes, and peers added and removed at runtime. They are
// serialised by Engine.ctlMu; none of them stops the fast path. Peer changes
// build a new tables version and swap it in (workers load the tables once
// per batch, so a batch runs entirely on the old or the new version).

// ErrNotFound is wrapped by control operations whose network, port, peer or
// MAC does not exist; the control socket answers it with 404.
var ErrNotFound = errors.New("not found")

// ErrInvalid is wrapped by control operations given a malformed or
// conflicting argument (a multicast MAC, a peer listed twice, a full peer
// table); the control socket answers it with 400.
var ErrInvalid = errors.New("invalid request")

// quiesceWait is how long RemovePeer waits for batches that loaded the old
// tables to finish.
const quiesceWait = 10 * time.Millisecond

// network returns the network called name in t.
func (t *tables) network(name string) (*network, error) {
	for _, n := range t.nets {
		if n.name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no network %q: %w", name, ErrNotFound)
}

// AddStaticFDB pins mac in the named network to a local port (portName) or a
// peer (peerAddr); exactly one must be given. An existing entry for mac,
// learned or static, is replaced.
func (e *Engine) AddStaticFDB(networkName string, mac [6]byte, portName string, peerAddr netip.Addr) error {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	t := e.tables.Load()
	n, err := t.network(networkName)
	if err != nil {
		return err
	}
	if (portName == "") == !peerAddr.IsValid() {
		return fmt.Errorf("static entry %s: give exactly one of a port and a peer: %w", macString(mac), ErrInvalid)
	}
	loc, err := t.locate(n, portName, peerAddr)
	if err != nil {
		return fmt.Errorf("static entry %s: %w: %w", macString(mac), err, ErrNotFound)
	}
	if err := n.fdb.AddStatic(e.now(), mac, loc); err != nil {
		return fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	return nil
}

// DeleteFDB removes mac's entry, static or learned, from the named network.
func (e *Engine) DeleteFDB(networkName string, mac [6]byte) error {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	n, err := e.tables.Load().network(networkName)
	if err != nil {
		return err
	}
	if !n.fdb.Delete(mac) {
		return fmt.Errorf("no FDB entry %s in network %q: %w", macString(mac), networkName, ErrNotFound)
	}
	return nil
}

// FlushFDB removes the learned entries of the named network, or of every
// network for "", keeping static ones, and returns how many it removed.
func (e *Engine) FlushFDB(networkName string) (int, error) {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	t := e.tables.Load()
	if networkName != "" {
		n, err := t.network(networkName)
		if err != nil {
			return 0, err
		}
		return n.fdb.Flush(), nil
	}
	total := 0
	for _, n := range t.nets {
		total += n.fdb.Flush()
	}
	return total, nil
}

// clone returns a copy of t whose networks, ports and peers are new values
// (so one network's peer list can change without workers seeing a half
// change), sharing the FDBs.
func (t *tables) clone() *tables {
	c := &tables{
		nets:  make([]*network, len(t.nets)),
		ports: make([]*port, len(t.ports)),
		peers: make([]*peer, len(t.peers)),
		// routes index networks by id, which clone keeps.
		routes:  t.routes,
		uplinks: t.uplinks,
	}
	for i, n := range t.nets {
		nn := *n
		nn.ports = append([]uint16(nil), n.ports...)
		nn.peers = append([]uint16(nil), n.peers...)
		nn.peerIdx = make(map[netip.Addr]uint16, len(n.peerIdx))
		for a, id := range n.peerIdx {
			nn.peerIdx[a] = id
		}
		c.nets[i] = &nn
	}
	for i, p := range t.ports {
		pp := *p
		pp.net = c.nets[p.net.id]
		c.ports[i] = &pp
	}
	for i, p := range t.peers {
		pp := *p
		pp.net = c.nets[p.net.id]
		c.peers[i] = &pp
	}
	c.index()
	return c
}

// AddPeer adds the remote host at addr to the named network: it receives
// the network's flooded frames from the next batch on, and its datagrams are
// accepted. The peer gets a new id (ids are never reused, so counters and
// FDB entries of a removed peer never leak into a new one); at most MaxPeers
// peers are ever added.
func (e *Engine) AddPeer(networkName string, addr netip.Addr) error {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	addr = addr.Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsMulticast() {
		return fmt.Errorf("peer %v: not a unicast address: %w", addr, ErrInvalid)
	}
	t := e.tables.Load().clone()
	n, err := t.network(networkName)
	if err != nil {
		return err
	}
	if n.l3 != nil { // an l3 peer needs a subnet: config only
		return fmt.Errorf("network %q is l3: its peers and their subnets come from the config file: %w", networkName, ErrInvalid)
	}
	if _, dup := n.peerIdx[addr]; dup {
		return fmt.Errorf("peer %s is already in network %q: %w", addr, networkName, ErrInvalid)
	}
	if len(t.peers) == MaxPeers {
		return fmt.Errorf("peer %s: all %d peer ids are used (ids are not reused until restart): %w", addr, MaxPeers, ErrInvalid)
	}
	p := &peer{id: uint16(len(t.peers)), addr: addr, net: n}
	t.peers = append(t.peers, p)
	n.peers = append(n.peers, p.id)
	n.peerIdx[addr] = p.id
	e.tables.Store(t)
	return nil
}

// RemovePeer removes the remote host at addr from the named network: no
// more frames are sent to it, its datagrams are dropped as unknown-peer,
// and the FDB entries that point at it are flushed. Its counters stay
// readable no longer (it leaves `ferry peers`).
//
// A batch that loaded the previous tables just before the swap may still
// learn a MAC at the removed peer after the first flush, so RemovePeer
// flushes a second time quiesceWait later, far longer than one batch takes.
func (e *Engine) RemovePeer(networkName string, addr netip.Addr) error {
	return e.removePeer(networkName, addr, quiesceWait)
}

// removePeer is RemovePeer with the wait before the second flush.
func (e *Engine) removePeer(networkName string, addr netip.Addr, wait time.Duration) error {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	addr = addr.Unmap()
	t := e.tables.Load().clone()
	n, err := t.network(networkName)
	if err != nil {
		return err
	}
	if n.l3 != nil { // its routes would still name the peer
		return fmt.Errorf("network %q is l3: its peers and their subnets come from the config file: %w", networkName, ErrInvalid)
	}
	id, ok := n.peerIdx[addr]
	if !ok {
		return fmt.Errorf("no peer %s in network %q: %w", addr, networkName, ErrNotFound)
	}
	delete(n.peerIdx, addr)
	for i, pid := range n.peers {
		if pid == id {
			n.peers = append(n.peers[:i], n.peers[i+1:]...)
			break
		}
	}
	t.peers[id].removed = true
	e.tables.Store(t)
	loc := bridge.PeerLocation(id)
	n.fdb.FlushLocation(loc)
	time.Sleep(wait)
	n.fdb.FlushLocation(loc)
	return nil
}
