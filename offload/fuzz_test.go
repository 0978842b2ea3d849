package offload

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/ferry-overlay/ferry/header"
)

// fuzzOut is the fuzz targets' preallocated output space. A superpacket
// cut into more segments (a tiny MTU) gets StatusTooManySegments.
var fuzzOut, fuzzSizes = outBufs(256, 65536+64)

// FuzzSegment feeds what a TAP/TUN read returns — a virtio-net header and
// a packet — to Decode and Segment. Invariants: no panic, the input is not
// modified, and on success every segment fits the MTU, its lengths agree
// with its size and its IPv4 header and TCP/UDP checksums verify.
func FuzzSegment(f *testing.F) {
	seed := func(s spec, gso int, mtu uint16) {
		p, h := makeSuperpacket(f, s, gso)
		b := make([]byte, VirtioNetHdrLen, VirtioNetHdrLen+len(p))
		h.Encode(b)
		f.Add(append(b, p...), mtu, s.ether)
	}
	s := baseSpec(false)
	s.payload = pattern(5000, 1)
	seed(s, 1398, 1450)
	s.flags |= header.TCPFlagPSH | header.TCPFlagCWR
	seed(s, 1000, 1450)
	s.ether = true
	seed(s, 1398, 1450)
	s6 := baseSpec(true)
	s6.payload = pattern(3000, 2)
	seed(s6, 1378, 1450)
	s6.udp = true
	seed(s6, 1402, 1450)
	s.udp, s.ether = true, false
	seed(s, 1422, 1450)
	f.Fuzz(func(t *testing.T, data []byte, mtu uint16, ether bool) {
		var hdr VirtioNetHdr
		if hdr.Decode(data) != StatusOK {
			return
		}
		pkt := data[VirtioNetHdrLen:]
		linkLen := 0
		if ether {
			linkLen = 14
		}
		orig := bytes.Clone(pkt)
		n, st := Segment(pkt, linkLen, hdr, int(mtu), fuzzOut, fuzzSizes)
		if !bytes.Equal(pkt, orig) {
			t.Fatal("Segment modified its input")
		}
		if st != StatusOK {
			if n != 0 {
				t.Fatalf("status %v with %d segments", st, n)
			}
			return
		}
		if n < 1 {
			t.Fatalf("ok with %d segments", n)
		}
		for i := range n {
			seg := fuzzOut[i][:fuzzSizes[i]]
			if len(seg)-linkLen > int(mtu) {
				t.Fatalf("segment %d: %d bytes of IP packet, mtu %d", i, len(seg)-linkLen, mtu)
			}
			if hdr.GSOType == GSONone {
				continue
			}
			ip := seg[linkLen:]
			if ip[0]>>4 == 4 {
				if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) || !ipv4HeaderOK(ip) {
					t.Fatalf("segment %d: bad IPv4 length or header checksum", i)
				}
			} else if int(binary.BigEndian.Uint16(ip[4:])) != len(ip)-40 {
				t.Fatalf("segment %d: bad IPv6 payload length", i)
			}
			if !l4ChecksumOK(ip) {
				t.Fatalf("segment %d: L4 checksum does not verify", i)
			}
		}
	})
}

// FuzzCoalesce feeds a batch of packets (each prefixed by a 2-byte length)
// to Coalesce. Invariants: no panic; the count returned matches the packets
// left; a packet left with a zero header is unchanged; a superpacket's
// header is consistent and Segment cuts it, at MTU 1500, into segments with
// verifying checksums; and, cut at its own GSO size, all outputs together
// are exactly the inputs again (checksum fields aside, where 0 and 0xffff
// are the same value). With udp (SetUDP), UDP datagrams take part too; their
// IP IDs are compared only where no DF bit frees them, and their checksums
// not at all (a datagram without one gets one).
func FuzzCoalesce(f *testing.F) {
	enc := func(pkts [][]byte) []byte {
		var b []byte
		for _, p := range pkts {
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
			b = append(b, p...)
		}
		return b
	}
	v4, v6 := baseSpec(false), baseSpec(true)
	f.Add(enc(flowSegs(f, v4, []int{1000, 1000, 700}, nil, nil)), false, false)
	f.Add(enc(flowSegs(f, v6, []int{500, 500, 500, 500}, map[int]func(*spec){2: func(s *spec) { s.flags |= header.TCPFlagPSH }}, nil)), false, false)
	u4, u6 := v4, v6
	u4.udp, u6.udp = true, true
	f.Add(enc(flowSegs(f, u4, []int{100, 100, 100, 30}, nil, nil)), false, true)
	f.Add(enc(flowSegs(f, u6, []int{64, 64, 64}, nil, nil)), false, true)
	eth := v4
	eth.ether = true
	f.Add(enc(flowSegs(f, eth, []int{300, 300, 300}, map[int]func(*spec){1: func(s *spec) { s.ack++ }}, nil)), true, false)
	other := v4
	other.sport = 1
	a, b := flowSegs(f, v4, []int{200, 200, 100}, nil, nil), flowSegs(f, other, []int{200, 200}, nil, nil)
	f.Add(enc([][]byte{a[0], b[0], a[1], b[1], a[2]}), false, true)

	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, bufCap)
	}
	coalescers := [2]*Coalescer{NewCoalescer(0, len(bufs)), NewCoalescer(14, len(bufs))}
	f.Fuzz(func(t *testing.T, data []byte, ether, udp bool) {
		var pkts, in [][]byte
		for len(data) >= 2 && len(pkts) < len(bufs) {
			l := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			p := bufs[len(pkts)][:l]
			copy(p, data[2:2+l])
			pkts, in = append(pkts, p), append(in, bytes.Clone(p))
			data = data[2+l:]
		}
		linkLen, co := 0, coalescers[0]
		if ether {
			linkLen, co = 14, coalescers[1]
		}
		co.SetUDP(udp)
		hdrs := make([]VirtioNetHdr, len(pkts))
		n := co.Coalesce(pkts, hdrs)
		left := 0
		var again [][]byte
		for i, p := range pkts {
			if len(p) == 0 {
				if len(in[i]) == 0 {
					again = append(again, nil) // empty input stays empty
				}
				continue
			}
			left++
			h := hdrs[i]
			if h == (VirtioNetHdr{}) {
				if !bytes.Equal(p, in[i]) {
					t.Fatalf("packet %d passed through changed", i)
				}
				again = append(again, p)
				continue
			}
			csumOff := uint16(tcpCsumOffset)
			if h.GSOType == GSOUDPL4 {
				csumOff = udpCsumOffset
			}
			if h.Flags != FlagNeedsCsum || h.CsumOffset != csumOff || int(h.CsumStart) >= int(h.HdrLen) || int(h.HdrLen) >= len(p) || h.GSOSize == 0 {
				t.Fatalf("packet %d: inconsistent header %+v for %d bytes", i, h, len(p))
			}
			m, st := Segment(p, linkLen, h, 1500, fuzzOut, fuzzSizes)
			if st != StatusOK {
				t.Fatalf("packet %d: Segment of a coalesced superpacket: %v", i, st)
			}
			for j := range m {
				seg := fuzzOut[j][linkLen:fuzzSizes[j]]
				if len(seg) > 1500 || !l4ChecksumOK(seg) || (seg[0]>>4 == 4 && !ipv4HeaderOK(seg)) {
					t.Fatalf("packet %d segment %d: too big or bad checksum", i, j)
				}
			}
			m, st = Segment(p, linkLen, h, 65535, fuzzOut, fuzzSizes)
			if st != StatusOK {
				t.Fatalf("packet %d: Segment at GSO size: %v", i, st)
			}
			for j := range m {
				again = append(again, bytes.Clone(fuzzOut[j][:fuzzSizes[j]]))
			}
		}
		if n != left {
			t.Fatalf("Coalesce returned %d, %d packets left", n, left)
		}
		norm := func(ps [][]byte) [][]byte {
			out := make([][]byte, len(ps))
			for i, p := range ps {
				out[i] = bytes.Clone(p)
				seg, kind := co.candidate(out[i])
				switch {
				case kind == kindSegment && seg.udp:
					out[i][seg.l4+6], out[i][seg.l4+7] = 0, 0
					if !seg.v6 {
						out[i][linkLen+10], out[i][linkLen+11] = 0, 0
						if out[i][linkLen+6]&0x40 != 0 { // DF: the ID is free
							out[i][linkLen+4], out[i][linkLen+5] = 0, 0
						}
					}
				case kind == kindSegment:
					out[i][seg.l4+16], out[i][seg.l4+17] = 0, 0
					if !seg.v6 {
						out[i][linkLen+10], out[i][linkLen+11] = 0, 0
					}
				}
			}
			slices.SortFunc(out, bytes.Compare)
			return out
		}
		if got, want := norm(again), norm(in); !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("outputs cut at their GSO size are not the inputs (%d vs %d packets)", len(got), len(want))
		}
	})
}
