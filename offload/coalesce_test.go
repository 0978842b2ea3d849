package offload

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/ferry-overlay/ferry/header"
)

// bufCap is the capacity test packets get: room for a 64 KiB superpacket.
const bufCap = 65536 + 64

// flowSegs builds consecutive segments of the flow base with the given
// payload sizes: sequence numbers follow the bytes before, IP IDs count up.
// muts[i] mutates segment i's spec; raw[i] then edits its bytes.
func flowSegs(tb testing.TB, base spec, sizes []int, muts map[int]func(*spec), raw map[int]func([]byte)) [][]byte {
	tb.Helper()
	var pkts [][]byte
	seq := base.seq
	for i, n := range sizes {
		s := base
		s.seq, s.id, s.payload = seq, base.id+uint16(i), pattern(n, byte(i))
		seq += uint32(n)
		var p []byte
		if m := muts[i]; m != nil {
			p = build(tb, s, bufCap, m)
		} else {
			p = build(tb, s, bufCap)
		}
		if r := raw[i]; r != nil {
			r(p)
		}
		pkts = append(pkts, p)
	}
	return pkts
}

// repeat returns n copies of v.
func repeat(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// checkCoalesced checks Coalesce's result against the expected groups of
// input indices: outputs in the order of their first index, a packet that
// stands alone unchanged with a zero header, a group merged into its first
// packet with the right virtio-net header, and each group, segmented again
// by Segment, byte for byte equal to its inputs.
func checkCoalesced(tb testing.TB, linkLen int, in, pkts [][]byte, hdrs []VirtioNetHdr, n int, want [][]int) {
	tb.Helper()
	if n != len(want) {
		tb.Fatalf("Coalesce returned %d packets, want %d", n, len(want))
	}
	var firsts, gotFirsts []int
	for _, g := range want {
		firsts = append(firsts, g[0])
	}
	for i, p := range pkts {
		if len(p) > 0 {
			gotFirsts = append(gotFirsts, i)
		}
	}
	if !slices.Equal(firsts, gotFirsts) {
		tb.Fatalf("packets left at %v, want %v", gotFirsts, firsts)
	}
	out, sizes := outBufs(256, 2048)
	for _, g := range want {
		p, h := pkts[g[0]], hdrs[g[0]]
		if len(g) == 1 {
			if h != (VirtioNetHdr{}) || !bytes.Equal(p, in[g[0]]) {
				tb.Fatalf("packet %d should pass through unchanged with a zero header; header %+v, bytes equal %v", g[0], h, bytes.Equal(p, in[g[0]]))
			}
			continue
		}
		ip := p[linkLen:]
		wantGSO, l3, proto := GSOTCPv4, header.IPv4MinLen, ip[9]
		if ip[0]>>4 == 6 {
			wantGSO, l3, proto = GSOTCPv6, header.IPv6Len, ip[6]
		}
		l4 := linkLen + l3
		var wantHdr VirtioNetHdr
		if header.IPProto(proto) == header.ProtoUDP {
			hl := l4 + header.UDPLen
			wantHdr = VirtioNetHdr{Flags: FlagNeedsCsum, GSOType: GSOUDPL4, HdrLen: uint16(hl),
				GSOSize: uint16(len(in[g[0]]) - hl), CsumStart: uint16(l4), CsumOffset: udpCsumOffset}
		} else {
			if p[l4+13]&header.TCPFlagCWR != 0 {
				wantGSO |= GSOECN
			}
			hl := l4 + int(p[l4+12]>>4)*4
			wantHdr = VirtioNetHdr{Flags: FlagNeedsCsum, GSOType: wantGSO, HdrLen: uint16(hl),
				GSOSize: uint16(len(in[g[0]]) - hl), CsumStart: uint16(l4), CsumOffset: tcpCsumOffset}
		}
		if h != wantHdr {
			tb.Fatalf("group %v: header %+v, want %+v", g, h, wantHdr)
		}
		n, st := Segment(p, linkLen, h, 65535, out, sizes)
		if st != StatusOK || n != len(g) {
			tb.Fatalf("group %v: Segment = %d, %v", g, n, st)
		}
		for j, idx := range g {
			if !bytes.Equal(out[j][:sizes[j]], in[idx]) {
				tb.Fatalf("group %v: segment %d differs from input %d", g, j, idx)
			}
		}
	}
}

func TestCoalesce(t *testing.T) {
	v4, v6 := baseSpec(false), baseSpec(true)
	ether := v4
	ether.ether = true
	seq3 := []int{1000, 1000, 1000}
	cases := []struct {
		name  string
		base  spec
		sizes []int
		muts  map[int]func(*spec)
		raw   map[int]func([]byte)
		extra func(tb testing.TB, pkts [][]byte) [][]byte // rearranges or adds packets
		want  [][]int
	}{
		{name: "in-order segments merge", base: v4, sizes: seq3, want: [][]int{{0, 1, 2}}},
		{name: "short last segment merges", base: v4, sizes: []int{1000, 1000, 500}, want: [][]int{{0, 1, 2}}},
		{name: "nothing merges after a short segment", base: v4, sizes: []int{1000, 500, 1000}, want: [][]int{{0, 1}, {2}}},
		{name: "unequal sizes: larger after smaller", base: v4, sizes: []int{1000, 1200}, want: [][]int{{0}, {1}}},
		{name: "gap in sequence numbers", base: v4, sizes: seq3, muts: map[int]func(*spec){1: func(s *spec) { s.seq++ }}, want: [][]int{{0}, {1}, {2}}},
		{name: "different ACK", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.ack++ }}, want: [][]int{{0}, {1}}},
		{name: "ACK advances mid-batch: a new superpacket", base: v4, sizes: seq3,
			muts: map[int]func(*spec){1: func(s *spec) { s.ack++ }, 2: func(s *spec) { s.ack++ }}, want: [][]int{{0}, {1, 2}}},
		{name: "PSH in the middle", base: v4, sizes: seq3, muts: map[int]func(*spec){1: func(s *spec) { s.flags |= header.TCPFlagPSH }}, want: [][]int{{0, 1}, {2}}},
		{name: "PSH on the last merges", base: v4, sizes: seq3, muts: map[int]func(*spec){2: func(s *spec) { s.flags |= header.TCPFlagPSH }}, want: [][]int{{0, 1, 2}}},
		{name: "PSH on the first stands alone", base: v4, sizes: seq3, muts: map[int]func(*spec){0: func(s *spec) { s.flags |= header.TCPFlagPSH }}, want: [][]int{{0}, {1, 2}}},
		{name: "different TTL", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.ttl-- }}, want: [][]int{{0}, {1}}},
		{name: "different TOS", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.tos = 4 }}, want: [][]int{{0}, {1}}},
		{name: "different DF", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.df = false }}, want: [][]int{{0}, {1}}},
		{name: "IP ID not incrementing", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.id-- }}, want: [][]int{{0}, {1}}},
		{name: "TCP options mismatch (timestamp)", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.tsVal++ }}, want: [][]int{{0}, {1}}},
		{name: "TCP options length mismatch", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.noTS = true }}, want: [][]int{{0}, {1}}},
		{name: "different window", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.window++ }}, want: [][]int{{0}, {1}}},
		{name: "IPv4 options never merge", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){0: func(s *spec) { s.ipOpts = true }, 1: func(s *spec) { s.ipOpts = true }}, want: [][]int{{0}, {1}}},
		{name: "SYN never merges", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.flags |= header.TCPFlagSYN }}, want: [][]int{{0}, {1}}},
		{name: "FIN never merges", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.flags |= header.TCPFlagFIN }}, want: [][]int{{0}, {1}}},
		{name: "RST never merges", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.flags |= header.TCPFlagRST }}, want: [][]int{{0}, {1}}},
		{name: "URG never merges", base: v4, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.flags |= header.TCPFlagURG }}, want: [][]int{{0}, {1}}},
		{name: "CWR on the first sets ECN", base: v4, sizes: seq3,
			muts: map[int]func(*spec){0: func(s *spec) { s.flags |= header.TCPFlagCWR | header.TCPFlagECE }, 1: func(s *spec) { s.flags |= header.TCPFlagECE }, 2: func(s *spec) { s.flags |= header.TCPFlagECE }},
			want: [][]int{{0, 1, 2}}},
		{name: "CWR in the middle does not merge", base: v4, sizes: seq3, muts: map[int]func(*spec){1: func(s *spec) { s.flags |= header.TCPFlagCWR }}, want: [][]int{{0}, {1, 2}}},
		{name: "bad TCP checksum on the second", base: v4, sizes: seq3, raw: map[int]func([]byte){1: func(p []byte) { p[len(p)-1]++ }}, want: [][]int{{0}, {1}, {2}}},
		{name: "bad TCP checksum on the head", base: v4, sizes: seq3, raw: map[int]func([]byte){0: func(p []byte) { p[len(p)-1]++ }}, want: [][]int{{0}, {1, 2}}},
		{name: "bad IPv4 header checksum on the second", base: v4, sizes: seq3, raw: map[int]func([]byte){1: func(p []byte) { p[10]++ }}, want: [][]int{{0}, {1}, {2}}},
		{name: "different urgent pointer (URG unset)", base: v4, sizes: []int{1000, 1000}, raw: map[int]func([]byte){1: func(p []byte) { p[20+18] = 1; fixTCPChecksum(p) }}, want: [][]int{{0}, {1}}},
		{name: "different TCP reserved bits", base: v4, sizes: []int{1000, 1000}, raw: map[int]func([]byte){1: func(p []byte) { p[20+12] |= 1; fixTCPChecksum(p) }}, want: [][]int{{0}, {1}}},
		{name: "no room in the head's buffer", base: v4, sizes: seq3, extra: func(_ testing.TB, p [][]byte) [][]byte {
			p[0] = p[0][:len(p[0]):len(p[0])]
			return p
		}, want: [][]int{{0}, {1, 2}}},
		{name: "bounded by 64 KiB", base: v4, sizes: repeat(1000, 70), want: [][]int{
			{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
				33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64},
			{65, 66, 67, 68, 69}}},
		{name: "pure ACK of the flow ends the superpacket", base: v4, sizes: []int{1000, 0, 1000}, want: [][]int{{0}, {1}, {2}}},
		{name: "interleaved flows merge separately", base: v4, sizes: seq3, extra: func(tb testing.TB, p [][]byte) [][]byte {
			other := v4
			other.sport = 40001
			q := flowSegs(tb, other, []int{1000, 1000}, nil, nil)
			return [][]byte{p[0], q[0], p[1], q[1], p[2]}
		}, want: [][]int{{0, 2, 4}, {1, 3}}},
		{name: "UDP in between passes through in place", base: v4, sizes: []int{1000, 1000}, extra: func(tb testing.TB, p [][]byte) [][]byte {
			u := v4
			u.udp, u.payload = true, pattern(100, 0)
			return [][]byte{p[0], build(tb, u, bufCap), p[1]}
		}, want: [][]int{{0, 2}, {1}}},
		{name: "IPv6 in-order segments merge", base: v6, sizes: seq3, want: [][]int{{0, 1, 2}}},
		{name: "IPv6 different hop limit", base: v6, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.ttl-- }}, want: [][]int{{0}, {1}}},
		{name: "IPv6 different traffic class", base: v6, sizes: []int{1000, 1000}, muts: map[int]func(*spec){1: func(s *spec) { s.tos = 8 }}, want: [][]int{{0}, {1}}},
		{name: "IPv6 and IPv4 of the same ports do not mix", base: v4, sizes: []int{1000}, extra: func(tb testing.TB, p [][]byte) [][]byte {
			q := flowSegs(tb, v6, []int{1000, 1000}, nil, nil)
			return [][]byte{p[0], q[0], q[1]}
		}, want: [][]int{{0}, {1, 2}}},
		{name: "Ethernet frames merge", base: ether, sizes: seq3, want: [][]int{{0, 1, 2}}},
		{name: "Ethernet frames from another MAC", base: ether, sizes: []int{1000, 1000},
			muts: map[int]func(*spec){1: func(s *spec) { s.srcMAC = []byte{2, 0, 0, 0, 0, 9} }}, want: [][]int{{0}, {1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			coalesceCase(t, c.base, c.sizes, c.muts, c.raw, c.extra, false, false, c.want)
		})
	}
}

// TestCoalesceUDP covers the USO rules: datagrams of a flow of one size
// (the last may be shorter) merge, anything that the kernel would not cut
// back into the same datagrams does not, and nothing merges without SetUDP.
func TestCoalesceUDP(t *testing.T) {
	udp4, udp6 := baseSpec(false), baseSpec(true)
	udp4.udp, udp6.udp = true, true
	udpEther := udp4
	udpEther.ether = true
	noDF := udp4
	noDF.df = false
	three := []int{100, 100, 100}
	cases := []struct {
		name  string
		base  spec
		sizes []int
		noUDP bool // without SetUDP
		muts  map[int]func(*spec)
		raw   map[int]func([]byte)
		extra func(tb testing.TB, pkts [][]byte) [][]byte
		want  [][]int
		// plain: what the kernel cuts the superpacket into is the plain
		// flow (consecutive IP IDs, every checksum set), not the input.
		plain bool
	}{
		{name: "equal datagrams merge", base: udp4, sizes: three, want: [][]int{{0, 1, 2}}},
		{name: "not without SetUDP", base: udp4, sizes: three, noUDP: true, want: [][]int{{0}, {1}, {2}}},
		{name: "a shorter last one merges and ends it", base: udp4, sizes: []int{100, 100, 40, 100}, want: [][]int{{0, 1, 2}, {3}}},
		{name: "a longer one starts anew", base: udp4, sizes: []int{100, 200, 200}, want: [][]int{{0}, {1, 2}}},
		{name: "IPv6 datagrams merge", base: udp6, sizes: three, want: [][]int{{0, 1, 2}}},
		{name: "Ethernet frames merge", base: udpEther, sizes: three, want: [][]int{{0, 1, 2}}},
		{name: "with DF the IP ID may jump (and is renumbered)", base: udp4, sizes: three, muts: map[int]func(*spec){1: func(s *spec) { s.id += 7 }, 2: func(s *spec) { s.id += 8 }},
			want: [][]int{{0, 1, 2}}, plain: true},
		{name: "without DF the IP ID must follow", base: noDF, sizes: three, muts: map[int]func(*spec){1: func(s *spec) { s.id += 7 }, 2: func(s *spec) { s.id += 7 }}, want: [][]int{{0}, {1, 2}}},
		{name: "without DF following IDs merge", base: noDF, sizes: three, want: [][]int{{0, 1, 2}}},
		{name: "different TTL", base: udp4, sizes: []int{100, 100}, muts: map[int]func(*spec){1: func(s *spec) { s.ttl-- }}, want: [][]int{{0}, {1}}},
		{name: "different DF", base: udp4, sizes: []int{100, 100}, muts: map[int]func(*spec){1: func(s *spec) { s.df = false }}, want: [][]int{{0}, {1}}},
		{name: "bad UDP checksum on the second", base: udp4, sizes: three, raw: map[int]func([]byte){1: func(p []byte) { p[len(p)-1]++ }}, want: [][]int{{0}, {1}, {2}}},
		{name: "no UDP checksum over IPv4 merges", base: udp4, sizes: []int{100, 100}, raw: map[int]func([]byte){0: zeroUDPChecksum, 1: zeroUDPChecksum}, want: [][]int{{0, 1}}, plain: true},
		{name: "no UDP checksum over IPv6 never merges", base: udp6, sizes: []int{100, 100}, raw: map[int]func([]byte){1: zeroUDPChecksum}, want: [][]int{{0}, {1}}},
		{name: "UDP length disagreeing with the packet", base: udp4, sizes: []int{100, 100}, raw: map[int]func([]byte){1: func(p []byte) { p[20+5]-- }}, want: [][]int{{0}, {1}}},
		{name: "an empty datagram ends the superpacket", base: udp4, sizes: []int{100, 0, 100}, want: [][]int{{0}, {1}, {2}}},
		{name: "bounded by UDP_MAX_SEGMENTS", base: udp4, sizes: repeat(100, 66), want: [][]int{seq(0, 64), {64, 65}}},
		{name: "TCP and UDP of the same ports do not mix", base: udp4, sizes: []int{100, 100}, extra: func(tb testing.TB, p [][]byte) [][]byte {
			tcp := flowSegs(tb, baseSpec(false), []int{100, 100}, nil, nil)
			return [][]byte{p[0], tcp[0], p[1], tcp[1]}
		}, want: [][]int{{0, 2}, {1, 3}}},
		{name: "interleaved flows merge separately", base: udp4, sizes: three, extra: func(tb testing.TB, p [][]byte) [][]byte {
			other := udp4
			other.sport++
			q := flowSegs(tb, other, []int{100, 100}, nil, nil)
			return [][]byte{p[0], q[0], p[1], q[1], p[2]}
		}, want: [][]int{{0, 2, 4}, {1, 3}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			coalesceCase(t, c.base, c.sizes, c.muts, c.raw, c.extra, !c.noUDP, c.plain, c.want)
		})
	}
}

// coalesceCase builds the segments of flow base (flowSegs, then extra),
// coalesces them (with UDP if udp) and checks the result against want
// (checkCoalesced): against the input, or, if plain, against the flow
// built without muts and raw edits.
func coalesceCase(t *testing.T, base spec, sizes []int, muts map[int]func(*spec), raw map[int]func([]byte),
	extra func(tb testing.TB, pkts [][]byte) [][]byte, udp, plain bool, want [][]int) {
	t.Helper()
	pkts := flowSegs(t, base, sizes, muts, raw)
	if extra != nil {
		pkts = extra(t, pkts)
	}
	in := make([][]byte, len(pkts))
	for i, p := range pkts {
		in[i] = bytes.Clone(p)
	}
	co := NewCoalescer(base.linkLen(), 128)
	co.SetUDP(udp)
	hdrs := make([]VirtioNetHdr, len(pkts))
	n := co.Coalesce(pkts, hdrs)
	if plain {
		in = flowSegs(t, base, sizes, nil, nil)
	}
	checkCoalesced(t, base.linkLen(), in, pkts, hdrs, n, want)
}

// seq returns the indices from..to-1.
func seq(from, to int) []int {
	s := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// zeroUDPChecksum clears the UDP checksum of an IPv4 (20-byte header) or
// IPv6 datagram without a link-layer header.
func zeroUDPChecksum(p []byte) {
	l4 := 20
	if p[0]>>4 == 6 {
		l4 = 40
	}
	p[l4+6], p[l4+7] = 0, 0
}

// TestCoalesceRoundTrip is a property test with a fixed seed: superpackets
// of random flows, sizes and options are segmented, the segments of two
// flows are interleaved with UDP packets, and Coalesce must rebuild one
// superpacket per flow that Segment cuts back into exactly the same
// segments.
func TestCoalesceRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	co := NewCoalescer(0, 512)
	coEth := NewCoalescer(14, 512)
	out, sizes := outBufs(256, 2048)
	for iter := range 200 {
		v6 := rng.IntN(2) == 1
		ether := rng.IntN(2) == 1
		mtu := 576 + rng.IntN(1500-576+1)
		var flows [2][][]byte
		for f := range flows {
			s := baseSpec(v6)
			s.ether = ether
			s.sport = uint16(30000 + f)
			s.seq = rng.Uint32()
			s.ack = rng.Uint32()
			s.id = uint16(rng.Uint32())
			s.noTS = rng.IntN(3) == 0
			s.flags = header.TCPFlagACK
			if rng.IntN(4) == 0 {
				s.flags |= header.TCPFlagPSH
			}
			if rng.IntN(8) == 0 {
				s.flags |= header.TCPFlagCWR | header.TCPFlagECE
			}
			maxPayload := 65535 - 80
			s.payload = pattern(1+rng.IntN(maxPayload), byte(iter))
			sp, hdr := makeSuperpacket(t, s, 1460)
			n, st := Segment(sp, s.linkLen(), hdr, mtu, out, sizes)
			if st != StatusOK {
				t.Fatalf("iter %d: Segment: %v", iter, st)
			}
			for i := range n {
				p := make([]byte, sizes[i], bufCap)
				copy(p, out[i][:sizes[i]])
				flows[f] = append(flows[f], p)
			}
		}
		// Interleave the two flows, keeping each flow's order, with a UDP
		// packet now and then.
		var pkts [][]byte
		var owner []int
		a, b := 0, 0
		u := baseSpec(v6)
		u.ether, u.udp, u.payload = ether, true, pattern(64, 1)
		for a < len(flows[0]) || b < len(flows[1]) {
			switch {
			case rng.IntN(10) == 0:
				pkts, owner = append(pkts, build(t, u, bufCap)), append(owner, -1)
			case b == len(flows[1]) || (a < len(flows[0]) && rng.IntN(2) == 0):
				pkts, owner = append(pkts, flows[0][a]), append(owner, 0)
				a++
			default:
				pkts, owner = append(pkts, flows[1][b]), append(owner, 1)
				b++
			}
		}
		in := make([][]byte, len(pkts))
		for i, p := range pkts {
			in[i] = bytes.Clone(p)
		}
		c, linkLen := co, 0
		if ether {
			c, linkLen = coEth, 14
		}
		hdrs := make([]VirtioNetHdr, len(pkts))
		n := c.Coalesce(pkts, hdrs)
		var want [][]int
		var flowGroup [2]int
		flowGroup[0], flowGroup[1] = -1, -1
		for i, o := range owner {
			if o < 0 {
				want = append(want, []int{i})
				continue
			}
			if flowGroup[o] < 0 {
				flowGroup[o] = len(want)
				want = append(want, nil)
			}
			want[flowGroup[o]] = append(want[flowGroup[o]], i)
		}
		t.Run(fmt.Sprintf("iter%d", iter), func(t *testing.T) {
			checkCoalesced(t, linkLen, in, pkts, hdrs, n, want)
		})
	}
}

func TestCoalesceAllocs(t *testing.T) {
	pkts := flowSegs(t, baseSpec(false), repeat(1398, 44), nil, nil)
	orig := make([][]byte, len(pkts))
	for i, p := range pkts {
		orig[i] = bytes.Clone(p)
	}
	co := NewCoalescer(0, 64)
	hdrs := make([]VirtioNetHdr, len(pkts))
	allocs := testing.AllocsPerRun(100, func() {
		restore(pkts, orig)
		if n := co.Coalesce(pkts, hdrs); n != 1 {
			t.Fatalf("Coalesce left %d packets, want 1", n)
		}
	})
	if allocs != 0 {
		t.Fatalf("Coalesce allocates %v times per batch", allocs)
	}
}

// restore resets a batch Coalesce changed: every packet back to its
// original length and header bytes (Coalesce changes no payload byte of
// the original lengths).
func restore(pkts, orig [][]byte) {
	for i := range pkts {
		pkts[i] = pkts[i][:len(orig[i])]
		copy(pkts[i][:min(len(orig[i]), 128)], orig[i])
	}
}

func TestKeyHashSpreads(t *testing.T) {
	// Flows differing only in the source port must not all collide: the
	// table would still be correct, but every lookup would be linear.
	seen := map[uint32]bool{}
	addrs := netip.MustParseAddr("10.0.0.1").AsSlice()
	addrs = append(addrs, netip.MustParseAddr("10.0.0.2").AsSlice()...)
	for port := range 64 {
		ports := []byte{byte(port >> 8), byte(port), 0x14, 0x51}
		seen[keyHash(addrs, ports)&127] = true
	}
	if len(seen) < 32 {
		t.Fatalf("64 flows hash to only %d of 128 slots", len(seen))
	}
}

// fixTCPChecksum recomputes the TCP checksum of the IPv4 packet p (no link
// header, no IP options) after a test edited its header.
func fixTCPChecksum(p []byte) {
	p[36], p[37] = 0, 0
	sum := naiveSum(p[12:20], 0) + 6 + uint32(len(p)-20)
	c := ^uint16(naiveSum(p[20:], sum))
	p[36], p[37] = byte(c>>8), byte(c)
}
