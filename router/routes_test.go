package router

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestRoutesLookup(t *testing.T) {
	blue := NextHop{ToNetwork, 0}
	red := NextHop{ToNetwork, 1}
	up := NextHop{ToUplink, 0}
	peer := NextHop{ToPeer, 3}
	rt, err := NewRoutes([]Route{
		{pfx("0.0.0.0/0"), up},
		{pfx("10.42.0.0/24"), blue},
		{pfx("10.43.0.0/24"), red},
		{pfx("10.43.0.128/25"), peer},
		{pfx("10.43.0.200/32"), red},
		{pfx("255.255.255.255/32"), blue},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		dst  string
		want NextHop
	}{
		{"10.42.0.2", blue},
		{"10.42.0.255", blue},
		{"10.42.1.0", up},
		{"10.43.0.127", red},
		{"10.43.0.128", peer},
		{"10.43.0.199", peer},
		{"10.43.0.200", red},
		{"10.43.0.201", peer},
		{"10.43.1.0", up},
		{"0.0.0.0", up},
		{"255.255.255.254", up},
		{"255.255.255.255", blue},
	}
	for _, tc := range cases {
		t.Run(tc.dst, func(t *testing.T) {
			got, ok := rt.Lookup(netip.MustParseAddr(tc.dst))
			if !ok || got != tc.want {
				t.Fatalf("Lookup = %v %v, want %v", got, ok, tc.want)
			}
		})
	}
	if rt.Len() != 6 || len(rt.Routes()) != 6 || rt.Routes()[0].Prefix != pfx("0.0.0.0/0") {
		t.Fatalf("Len %d Routes %v", rt.Len(), rt.Routes())
	}
}

func TestRoutesNoDefault(t *testing.T) {
	rt, err := NewRoutes([]Route{{pfx("10.42.0.7/24"), NextHop{ToNetwork, 0}}}) // host bits masked
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dst string
		ok  bool
	}{{"10.42.0.0", true}, {"10.42.0.255", true}, {"10.41.255.255", false}, {"10.42.1.0", false}, {"::1", false}} {
		if _, ok := rt.Lookup(netip.MustParseAddr(tc.dst)); ok != tc.ok {
			t.Errorf("Lookup(%s) ok = %v, want %v", tc.dst, ok, tc.ok)
		}
	}
	var empty *Routes
	if _, ok := empty.Lookup(c1IP); ok || empty.Len() != 0 || empty.Routes() != nil {
		t.Error("nil table not empty")
	}
}

func TestNewRoutesErrors(t *testing.T) {
	hop := NextHop{ToUplink, 0}
	cases := []struct {
		name   string
		routes []Route
		want   error
	}{
		{"IPv6 prefix", []Route{{pfx("fd00::/64"), hop}}, ErrNotIPv4Route},
		{"zero prefix", []Route{{netip.Prefix{}, hop}}, ErrNotIPv4Route},
		{"no next hop", []Route{{pfx("10.0.0.0/8"), NextHop{}}}, ErrNoNextHop},
		{"duplicate after masking", []Route{{pfx("10.0.0.0/8"), hop}, {pfx("10.1.2.3/8"), hop}}, ErrDuplicateRoute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewRoutes(tc.routes); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// naiveLookup is the reference: scan every route, keep the longest match.
func naiveLookup(routes []Route, dst netip.Addr) (NextHop, bool) {
	best := -1
	var hop NextHop
	for _, r := range routes {
		if r.Prefix.Contains(dst) && r.Prefix.Bits() > best {
			best, hop = r.Prefix.Bits(), r.NextHop
		}
	}
	return hop, best >= 0
}

// randomRoutes returns n distinct random prefixes, clustered under a few
// /8s so that they nest, with random next hops.
func randomRoutes(rng *rand.Rand, n int) []Route {
	seen := map[netip.Prefix]bool{}
	var rs []Route
	for len(rs) < n {
		a := uint32(rng.IntN(4)+10)<<24 | rng.Uint32()&0x00ffffff
		bits := rng.IntN(33)
		if rng.IntN(4) > 0 {
			bits = 16 + rng.IntN(17)
		}
		p := netip.PrefixFrom(u32Addr(a), bits).Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		rs = append(rs, Route{p, NextHop{NextHopKind(1 + rng.IntN(3)), uint32(rng.IntN(8))}})
	}
	return rs
}

func u32Addr(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

func TestRoutesMatchNaiveModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 10, 100, 1000} {
		t.Run(fmt.Sprint(n, " routes"), func(t *testing.T) {
			for round := 0; round < 5; round++ {
				routes := randomRoutes(rng, n)
				rt, err := NewRoutes(routes)
				if err != nil {
					t.Fatal(err)
				}
				if len(rt.starts) > 2*n+1 {
					t.Fatalf("%d ranges for %d routes", len(rt.starts), n)
				}
				check := func(a uint32) {
					dst := u32Addr(a)
					got, gok := rt.Lookup(dst)
					want, wok := naiveLookup(routes, dst)
					if got != want || gok != wok {
						t.Fatalf("Lookup(%v) = %v %v, naive %v %v", dst, got, gok, want, wok)
					}
				}
				// Random addresses, and every prefix's first and last
				// address and their outside neighbours.
				for i := 0; i < 2000; i++ {
					check(uint32(rng.IntN(4)+10)<<24 | rng.Uint32()&0x00ffffff)
				}
				for _, r := range routes {
					first := addrU32(r.Prefix.Addr())
					last := first + uint32(uint64(1)<<(32-r.Prefix.Bits())-1)
					check(first)
					check(last)
					check(first - 1)
					check(last + 1)
				}
			}
		})
	}
}

func BenchmarkRoutesLookup(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprint(n, " routes"), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			rt, err := NewRoutes(randomRoutes(rng, n))
			if err != nil {
				b.Fatal(err)
			}
			dsts := make([]netip.Addr, 1024)
			for i := range dsts {
				dsts[i] = u32Addr(uint32(rng.IntN(4)+10)<<24 | rng.Uint32()&0x00ffffff)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var hits int
			for i := 0; i < b.N; i++ {
				if _, ok := rt.Lookup(dsts[i&1023]); ok {
					hits++
				}
			}
			sink = hits
		})
	}
}

var sink int
