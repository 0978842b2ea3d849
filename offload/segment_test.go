package offload

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/ferry-overlay/ferry/header"
)

func TestVirtioNetHdrRoundTrip(t *testing.T) {
	h := VirtioNetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv6 | GSOECN, HdrLen: 86, GSOSize: 1378, CsumStart: 54, CsumOffset: 16}
	var b [VirtioNetHdrLen]byte
	h.Encode(b[:])
	var got VirtioNetHdr
	if st := got.Decode(b[:]); st != StatusOK || got != h {
		t.Fatalf("Decode(Encode(%+v)) = %+v, %v", h, got, st)
	}
	want := [VirtioNetHdrLen]byte{1, 0x84}
	binary.NativeEndian.PutUint16(want[2:], 86)
	binary.NativeEndian.PutUint16(want[4:], 1378)
	binary.NativeEndian.PutUint16(want[6:], 54)
	binary.NativeEndian.PutUint16(want[8:], 16)
	if b != want {
		t.Fatalf("Encode = % x, want % x", b, want)
	}
}

func TestVirtioNetHdrDecodeBad(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		want Status
	}{
		{"nine bytes", make([]byte, 9), StatusVnetShort},
		{"unknown flag bit", []byte{8, 0, 0, 0, 0, 0, 0, 0, 0, 0}, StatusVnetBadFlags},
		{"UFO", []byte{1, GSOUDP, 0, 0, 0, 0, 0, 0, 0, 0}, StatusVnetBadGSOType},
		{"unknown GSO type 2", []byte{1, 2, 0, 0, 0, 0, 0, 0, 0, 0}, StatusVnetBadGSOType},
		{"ECN on USO", []byte{1, GSOUDPL4 | GSOECN, 0, 0, 0, 0, 0, 0, 0, 0}, StatusVnetBadGSOType},
		{"ECN alone", []byte{1, GSOECN, 0, 0, 0, 0, 0, 0, 0, 0}, StatusVnetBadGSOType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h VirtioNetHdr
			if got := h.Decode(c.b); got != c.want {
				t.Fatalf("Decode = %v, want %v", got, c.want)
			}
		})
	}
}

func TestStatusNames(t *testing.T) {
	seen := map[string]bool{}
	for s := range numStatuses {
		name := s.String()
		if name == "" || name == "unknown" || seen[name] || s.Help() == "" {
			t.Errorf("status %d: name %q help %q (duplicate or missing)", s, name, s.Help())
		}
		seen[name] = true
	}
	if numStatuses.String() != "unknown" || numStatuses.Help() != "" {
		t.Errorf("out-of-range status: %q %q", numStatuses.String(), numStatuses.Help())
	}
}

func TestSegment(t *testing.T) {
	cases := []struct {
		name     string
		mut      func(*spec)
		payload  int
		gso, mtu int
		noCsum   bool // clear NEEDS_CSUM and put garbage in the checksum field
		wantSegs int
		wantMSS  int
		wantLast int
	}{
		{name: "TCPv4 64 KiB at MTU 1450", payload: 65535 - 20 - 32, gso: 1398, mtu: 1450, wantSegs: 47, wantMSS: 1398, wantLast: 1175},
		{name: "TCPv6 64 KiB at MTU 1450", mut: func(s *spec) { s.v6 = true; s.src, s.dst = baseSpec(true).src, baseSpec(true).dst },
			payload: 65535 - 40 - 32, gso: 1378, mtu: 1450, wantSegs: 48, wantMSS: 1378, wantLast: 697},
		{name: "UDPv4 USO 1422-byte datagrams at MTU 1450", mut: func(s *spec) { s.udp = true },
			payload: 64000, gso: 1422, mtu: 1450, wantSegs: 46, wantMSS: 1422, wantLast: 10},
		{name: "UDPv6 USO at MTU 1450", mut: func(s *spec) { s.udp = true; s.v6 = true; s.src, s.dst = baseSpec(true).src, baseSpec(true).dst },
			payload: 50000, gso: 1402, mtu: 1450, wantSegs: 36, wantMSS: 1402, wantLast: 930},
		{name: "TCPv4 Ethernet frame from a TAP", mut: func(s *spec) { s.ether = true },
			payload: 10000, gso: 1398, mtu: 1450, wantSegs: 8, wantMSS: 1398, wantLast: 214},
		{name: "TCPv6 Ethernet frame from a TAP", mut: func(s *spec) { s.ether = true; s.v6 = true; s.src, s.dst = baseSpec(true).src, baseSpec(true).dst },
			payload: 10000, gso: 1378, mtu: 1450, wantSegs: 8, wantMSS: 1378, wantLast: 354},
		{name: "gso_size above the MTU is cut at the MTU", payload: 20000, gso: 8948, mtu: 1450, wantSegs: 15, wantMSS: 1398, wantLast: 428},
		{name: "gso_size below the MTU is kept", payload: 3000, gso: 536, mtu: 1450, wantSegs: 6, wantMSS: 536, wantLast: 320},
		{name: "exact multiple: last segment full", payload: 4 * 1398, gso: 1398, mtu: 1450, wantSegs: 4, wantMSS: 1398, wantLast: 1398},
		{name: "one segment only", payload: 100, gso: 1398, mtu: 1450, wantSegs: 1, wantMSS: 1398, wantLast: 100},
		{name: "sequence number wraps", mut: func(s *spec) { s.seq = 0xffffff00 }, payload: 5000, gso: 1398, mtu: 1450, wantSegs: 4, wantMSS: 1398, wantLast: 806},
		{name: "IPv4 ID wraps", mut: func(s *spec) { s.id = 0xfffe }, payload: 5000, gso: 1398, mtu: 1450, wantSegs: 4, wantMSS: 1398, wantLast: 806},
		{name: "PSH and FIN only on the last", mut: func(s *spec) { s.flags |= header.TCPFlagPSH | header.TCPFlagFIN },
			payload: 5000, gso: 1398, mtu: 1450, wantSegs: 4, wantMSS: 1398, wantLast: 806},
		{name: "CWR only on the first (ECN)", mut: func(s *spec) { s.flags |= header.TCPFlagCWR | header.TCPFlagECE },
			payload: 5000, gso: 1398, mtu: 1450, wantSegs: 4, wantMSS: 1398, wantLast: 806},
		{name: "IPv4 options repeated in every segment", mut: func(s *spec) { s.ipOpts = true },
			payload: 5000, gso: 1394, mtu: 1450, wantSegs: 4, wantMSS: 1394, wantLast: 818},
		{name: "no TCP options", mut: func(s *spec) { s.noTS = true }, payload: 5000, gso: 1410, mtu: 1450, wantSegs: 4, wantMSS: 1410, wantLast: 770},
		{name: "without NEEDS_CSUM checksums are computed anyway", payload: 5000, gso: 1398, mtu: 1450, noCsum: true, wantSegs: 4, wantMSS: 1398, wantLast: 806},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := baseSpec(false)
			if c.mut != nil {
				c.mut(&s)
			}
			s.payload = pattern(c.payload, 3)
			pkt, hdr := makeSuperpacket(t, s, c.gso)
			if c.noCsum {
				hdr.Flags = 0
				binary.BigEndian.PutUint16(pkt[int(hdr.CsumStart)+int(hdr.CsumOffset):], 0xbeef)
			}
			orig := bytes.Clone(pkt)
			out, sizes := outBufs(64, 2048)
			n, st := Segment(pkt, s.linkLen(), hdr, c.mtu, out, sizes)
			if st != StatusOK {
				t.Fatalf("Segment: %v", st)
			}
			if !bytes.Equal(pkt, orig) {
				t.Fatal("Segment modified its input")
			}
			if n != c.wantSegs {
				t.Fatalf("got %d segments (%s), want %d", n, segmentsString(sizes[:n]), c.wantSegs)
			}
			var all []byte
			for i := range n {
				d := checkSegment(t, out[i][:sizes[i]], s.linkLen(), c.mtu)
				wantLen := c.wantMSS
				if i == n-1 {
					wantLen = c.wantLast
				}
				if len(d.payload) != wantLen {
					t.Fatalf("segment %d: payload %d bytes, want %d", i, len(d.payload), wantLen)
				}
				all = append(all, d.payload...)
				if !s.v6 && d.id != s.id+uint16(i) {
					t.Fatalf("segment %d: IP ID %d, want %d", i, d.id, s.id+uint16(i))
				}
				if s.udp {
					continue
				}
				if want := s.seq + uint32(i*c.wantMSS); d.seq != want {
					t.Fatalf("segment %d: seq %d, want %d", i, d.seq, want)
				}
				wantFlags := s.flags
				if i > 0 {
					wantFlags &^= header.TCPFlagCWR
				}
				if i < n-1 {
					wantFlags &^= header.TCPFlagPSH | header.TCPFlagFIN
				}
				if d.flags != wantFlags {
					t.Fatalf("segment %d: flags %#02x, want %#02x", i, d.flags, wantFlags)
				}
			}
			if !bytes.Equal(all, s.payload) {
				t.Fatal("concatenated segment payloads differ from the superpacket's payload")
			}
		})
	}
}

func TestSegmentBadInput(t *testing.T) {
	type input struct {
		pkt  []byte
		hdr  VirtioNetHdr
		mtu  int
		nOut int
		size int
	}
	tcp4 := func(tb testing.TB, mut ...func(*spec)) input {
		s := baseSpec(false)
		s.payload = pattern(3000, 1)
		for _, m := range mut {
			m(&s)
		}
		p, h := makeSuperpacket(tb, s, 1398)
		return input{p, h, 1450, 8, 2048}
	}
	cases := []struct {
		name string
		in   func(tb testing.TB) input
		want Status
	}{
		{"UFO GSO type", func(tb testing.TB) input { in := tcp4(tb); in.hdr.GSOType = GSOUDP; return in }, StatusVnetBadGSOType},
		{"unknown GSO type 7", func(tb testing.TB) input { in := tcp4(tb); in.hdr.GSOType = 7; return in }, StatusVnetBadGSOType},
		{"TCPV6 type on an IPv4 packet", func(tb testing.TB) input { in := tcp4(tb); in.hdr.GSOType = GSOTCPv6; return in }, StatusVnetBadGSOType},
		{"gso_size 0", func(tb testing.TB) input { in := tcp4(tb); in.hdr.GSOSize = 0; return in }, StatusVnetBadGSOSize},
		{"hdr_len past the end", func(tb testing.TB) input { in := tcp4(tb); in.hdr.HdrLen = uint16(len(in.pkt) + 1); return in }, StatusVnetBadHdrLen},
		{"csum_start not at the TCP header", func(tb testing.TB) input { in := tcp4(tb); in.hdr.CsumStart = 24; return in }, StatusVnetBadCsumStart},
		{"csum_offset of UDP on TCP", func(tb testing.TB) input { in := tcp4(tb); in.hdr.CsumOffset = 6; return in }, StatusVnetBadCsumOffset},
		{"csum_offset huge", func(tb testing.TB) input { in := tcp4(tb); in.hdr.CsumOffset = 0xffff; return in }, StatusVnetBadCsumOffset},
		{"IPv4 total length beyond the packet", func(tb testing.TB) input {
			in := tcp4(tb)
			in.pkt = in.pkt[:len(in.pkt)-1]
			return in
		}, StatusBadLength},
		{"IPv4 total length short of the packet", func(tb testing.TB) input {
			in := tcp4(tb)
			binary.BigEndian.PutUint16(in.pkt[2:], uint16(len(in.pkt)-5))
			return in
		}, StatusBadLength},
		{"IPv6 payload length wrong", func(tb testing.TB) input {
			in := tcp4(tb, func(s *spec) { s.v6 = true; s.src, s.dst = baseSpec(true).src, baseSpec(true).dst })
			binary.BigEndian.PutUint16(in.pkt[4:], 7)
			return in
		}, StatusBadLength},
		{"truncated to the IP header", func(tb testing.TB) input { in := tcp4(tb); in.pkt = in.pkt[:20]; in.hdr.HdrLen = 0; return in }, StatusBadLength},
		{"empty packet", func(tb testing.TB) input { in := tcp4(tb); in.pkt = nil; in.hdr.HdrLen = 0; return in }, StatusBadLength},
		{"headers only, no payload", func(tb testing.TB) input {
			in := tcp4(tb, func(s *spec) { s.payload = nil })
			in.hdr.HdrLen = 0
			return in
		}, StatusBadLength},
		{"IPv4 fragment", func(tb testing.TB) input { in := tcp4(tb); in.pkt[6] |= 0x20; return in }, StatusBadIP},
		{"UDP under a TCPV4 header", func(tb testing.TB) input { in := tcp4(tb); in.pkt[9] = 17; return in }, StatusBadIP},
		{"IP version 5", func(tb testing.TB) input { in := tcp4(tb); in.hdr.GSOType = GSOUDPL4; in.pkt[0] = 0x55; return in }, StatusBadIP},
		{"IPv4 IHL 4", func(tb testing.TB) input { in := tcp4(tb); in.pkt[0] = 0x44; return in }, StatusBadIP},
		{"TCP data offset 4 words", func(tb testing.TB) input { in := tcp4(tb); in.pkt[32] = 0x40; return in }, StatusBadL4},
		{"TCP data offset past the packet", func(tb testing.TB) input {
			in := tcp4(tb, func(s *spec) { s.payload = pattern(10, 0) })
			in.pkt[32] = 0xf0
			in.hdr.HdrLen = 0
			return in
		}, StatusBadL4},
		{"MTU smaller than the headers", func(tb testing.TB) input { in := tcp4(tb); in.mtu = 52; return in }, StatusMTUTooSmall},
		{"UDP datagram larger than the MTU", func(tb testing.TB) input {
			in := tcp4(tb, func(s *spec) { s.udp = true })
			in.hdr.GSOSize = 1500
			return in
		}, StatusMTUTooSmall},
		{"non-GSO packet larger than the MTU", func(tb testing.TB) input { in := tcp4(tb); in.hdr.GSOType = GSONone; return in }, StatusMTUTooSmall},
		{"too few output buffers", func(tb testing.TB) input { in := tcp4(tb); in.nOut = 2; return in }, StatusTooManySegments},
		{"output buffer too small", func(tb testing.TB) input { in := tcp4(tb); in.size = 1000; return in }, StatusBufferTooSmall},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.in(t)
			out, sizes := outBufs(in.nOut, in.size)
			n, st := Segment(in.pkt, 0, in.hdr, in.mtu, out, sizes)
			if st != c.want || n != 0 {
				t.Fatalf("Segment = %d, %v; want 0, %v", n, st, c.want)
			}
		})
	}
}

func TestFinishChecksum(t *testing.T) {
	cases := []struct {
		name string
		mut  func(*spec)
	}{
		{"TCPv4", nil},
		{"TCPv6", func(s *spec) { s.v6 = true; s.src, s.dst = baseSpec(true).src, baseSpec(true).dst }},
		{"UDPv4", func(s *spec) { s.udp = true }},
		{"UDPv6 in an Ethernet frame", func(s *spec) {
			s.udp, s.v6, s.ether = true, true, true
			s.src, s.dst = baseSpec(true).src, baseSpec(true).dst
		}},
		{"odd payload length", func(s *spec) { s.payload = pattern(1001, 9) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := baseSpec(false)
			s.payload = pattern(1200, 5)
			if c.mut != nil {
				c.mut(&s)
			}
			want := build(t, s, 0)
			pkt, hdr := makeSuperpacket(t, s, 1)
			hdr.GSOType, hdr.GSOSize = GSONone, 0
			if bytes.Equal(pkt, want) {
				t.Fatal("partial checksum equals the full one; the test proves nothing")
			}
			out, sizes := outBufs(1, 2048)
			n, st := Segment(pkt, s.linkLen(), hdr, 1500, out, sizes)
			if st != StatusOK || n != 1 || !bytes.Equal(out[0][:sizes[0]], want) {
				t.Fatalf("Segment(GSONone) = %d, %v; packet equal to gopacket's: %v", n, st, bytes.Equal(out[0][:sizes[0]], want))
			}
			if st := FinishChecksum(pkt, hdr); st != StatusOK {
				t.Fatalf("FinishChecksum: %v", st)
			}
			if !bytes.Equal(pkt, want) {
				t.Fatalf("completed checksum differs from gopacket's")
			}
		})
	}
	t.Run("bad offsets", func(t *testing.T) {
		pkt := make([]byte, 60)
		for _, c := range []struct {
			start, off uint16
			want       Status
		}{{60, 0, StatusVnetBadCsumStart}, {40, 19, StatusVnetBadCsumOffset}, {0xffff, 0xffff, StatusVnetBadCsumStart}, {20, 0xffff, StatusVnetBadCsumOffset}} {
			hdr := VirtioNetHdr{Flags: FlagNeedsCsum, CsumStart: c.start, CsumOffset: c.off}
			if st := FinishChecksum(pkt, hdr); st != c.want {
				t.Errorf("start %d offset %d: %v, want %v", c.start, c.off, st, c.want)
			}
		}
		if st := FinishChecksum(pkt, VirtioNetHdr{CsumStart: 0xffff}); st != StatusOK {
			t.Errorf("without NEEDS_CSUM: %v, want ok", st)
		}
	})
}

func TestSegmentAllocs(t *testing.T) {
	s := baseSpec(false)
	s.payload = pattern(65535-52, 1)
	pkt, hdr := makeSuperpacket(t, s, 1398)
	out, sizes := outBufs(64, 2048)
	allocs := testing.AllocsPerRun(100, func() {
		if _, st := Segment(pkt, 0, hdr, 1450, out, sizes); st != StatusOK {
			t.Fatal(st)
		}
	})
	if allocs != 0 {
		t.Fatalf("Segment allocates %v times per call", allocs)
	}
	hdr.GSOType, hdr.GSOSize = GSONone, 0
	small := pkt[:1452]
	binary.BigEndian.PutUint16(small[2:], 1452)
	allocs = testing.AllocsPerRun(100, func() {
		if st := FinishChecksum(small, hdr); st != StatusOK {
			t.Fatal(st)
		}
	})
	if allocs != 0 {
		t.Fatalf("FinishChecksum allocates %v times per call", allocs)
	}
}
