package router

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// NextHopKind says what a NextHop's Index indexes.
type NextHopKind uint8

// Next-hop kinds. The zero kind is no next hop.
const (
	// ToNetwork: the destination is on one of the host's L2 networks (an
	// index into the caller's list of networks); the router resolves the
	// destination address itself with that network's Neighbours.
	ToNetwork NextHopKind = iota + 1
	// ToUplink: the packet leaves through an uplink (an index into the
	// caller's list of uplinks), an L3 link that needs no MAC.
	ToUplink
	// ToPeer: the packet goes to another ferry host (an index into the
	// caller's list of peers).
	ToPeer
)

// String returns "network", "uplink", "peer" or "none".
func (k NextHopKind) String() string {
	switch k {
	case ToNetwork:
		return "network"
	case ToUplink:
		return "uplink"
	case ToPeer:
		return "peer"
	}
	return "none"
}

// NextHop is where a route sends packets: a kind and an index the caller
// gives meaning to. It is a small value, compared with ==.
type NextHop struct {
	Kind  NextHopKind
	Index uint32
}

// Route is one entry of a routing table: packets whose destination is in
// Prefix go to NextHop.
type Route struct {
	Prefix  netip.Prefix
	NextHop NextHop
}

// Routes is an IPv4 routing table that answers longest-prefix-match
// lookups. It is immutable: the control plane builds a new one with
// NewRoutes for every change and publishes it through an atomic.Pointer
// that workers load once per batch, so lookups take no lock. A nil *Routes
// is an empty table.
//
// How it works: NewRoutes flattens the prefixes into the sorted list of
// disjoint address ranges that cover the whole IPv4 space, each labelled
// with the next hop of its longest matching prefix (or none), merging
// neighbours with equal labels. A lookup is then a binary search for the
// range holding the address: at most 2n+1 ranges for n routes, so about
// log2(2n) probes of a packed []uint32, with no pointers to chase and no
// allocation. Building costs O(n log n).
type Routes struct {
	starts []uint32  // ascending; starts[0] == 0
	hops   []NextHop // hops[i] covers [starts[i], starts[i+1])
	routes []Route   // as given, masked, sorted by prefix
}

// Errors returned by NewRoutes, wrapped with the offending route.
var (
	// ErrNotIPv4Route: a prefix that is not a valid IPv4 prefix.
	ErrNotIPv4Route = errors.New("not an IPv4 prefix")
	// ErrNoNextHop: a route whose NextHop has the zero Kind.
	ErrNoNextHop = errors.New("no next hop")
	// ErrDuplicateRoute: two routes for the same prefix.
	ErrDuplicateRoute = errors.New("duplicate prefix")
)

// NewRoutes builds a table from routes, which it does not retain. Each
// prefix must be a valid IPv4 prefix (host bits are masked off) and appear
// once, and each next hop must have a kind.
func NewRoutes(routes []Route) (*Routes, error) {
	rs := make([]Route, len(routes))
	for i, r := range routes {
		if !r.Prefix.IsValid() || !r.Prefix.Addr().Is4() {
			return nil, fmt.Errorf("route %v: %w", r.Prefix, ErrNotIPv4Route)
		}
		if r.NextHop.Kind == 0 {
			return nil, fmt.Errorf("route %v: %w", r.Prefix, ErrNoNextHop)
		}
		rs[i] = Route{Prefix: r.Prefix.Masked(), NextHop: r.NextHop}
	}
	// Enclosing prefixes sort before the prefixes they hold: by start
	// address, then shorter first.
	slices.SortFunc(rs, func(a, b Route) int {
		if c := cmp.Compare(addrU32(a.Prefix.Addr()), addrU32(b.Prefix.Addr())); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
	for i := 1; i < len(rs); i++ {
		if rs[i].Prefix == rs[i-1].Prefix {
			return nil, fmt.Errorf("route %v: %w", rs[i].Prefix, ErrDuplicateRoute)
		}
	}
	t := &Routes{routes: rs}
	// Sweep the sorted prefixes, keeping the stack of those that enclose
	// the current position; the innermost one labels the addresses until
	// a nested prefix starts or it ends. Positions are uint64 so the end
	// of 255.255.255.255 (1<<32) is representable.
	type open struct {
		end uint64
		hop NextHop
	}
	stack := make([]open, 0, 33)
	var pos uint64
	top := func() NextHop {
		if len(stack) == 0 {
			return NextHop{}
		}
		return stack[len(stack)-1].hop
	}
	emit := func(end uint64, hop NextHop) {
		if end <= pos {
			return
		}
		if n := len(t.hops); n == 0 || t.hops[n-1] != hop {
			t.starts = append(t.starts, uint32(pos))
			t.hops = append(t.hops, hop)
		}
		pos = end
	}
	for _, r := range rs {
		start := uint64(addrU32(r.Prefix.Addr()))
		for len(stack) > 0 && stack[len(stack)-1].end <= start {
			emit(stack[len(stack)-1].end, top())
			stack = stack[:len(stack)-1]
		}
		emit(start, top())
		stack = append(stack, open{end: start + 1<<(32-r.Prefix.Bits()), hop: r.NextHop})
	}
	for len(stack) > 0 {
		emit(stack[len(stack)-1].end, top())
		stack = stack[:len(stack)-1]
	}
	emit(1<<32, NextHop{})
	return t, nil
}

// Lookup returns the next hop of the longest prefix holding dst, and
// false if no route holds it or dst is not IPv4. It does not allocate and
// is safe for concurrent use.
func (t *Routes) Lookup(dst netip.Addr) (NextHop, bool) {
	if t == nil || !dst.Is4() {
		return NextHop{}, false
	}
	a := addrU32(dst)
	// Find the last range starting at or before a: starts[0] == 0 <= a,
	// so lo stays valid.
	lo, hi := 0, len(t.starts)
	for hi-lo > 1 {
		mid := int(uint(lo+hi) >> 1)
		if t.starts[mid] <= a {
			lo = mid
		} else {
			hi = mid
		}
	}
	h := t.hops[lo]
	return h, h.Kind != 0
}

// Len returns the number of routes.
func (t *Routes) Len() int {
	if t == nil {
		return 0
	}
	return len(t.routes)
}

// Routes returns a copy of the table's routes, prefixes masked, sorted by
// address and then prefix length: what the control plane lists.
func (t *Routes) Routes() []Route {
	if t == nil {
		return nil
	}
	return slices.Clone(t.routes)
}
