package offload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

// spec describes one test packet; build serialises it with gopacket, which
// is independent of the code under test, and computes every checksum.
type spec struct {
	v6       bool
	udp      bool
	ether    bool // prefix a 14-byte Ethernet header (a TAP frame)
	src, dst netip.Addr
	sport    uint16
	dport    uint16
	seq, ack uint32
	flags    uint8 // header.TCPFlag*
	window   uint16
	ttl, tos uint8
	id       uint16
	df       bool
	ipOpts   bool // add an IPv4 option (a 4-byte NOP/EOL word)
	tsVal    uint32
	noTS     bool // no TCP timestamp option
	payload  []byte
	srcMAC   net.HardwareAddr
}

// baseSpec is a TCP data segment over IPv4 (v6 picks IPv6 addresses) with
// the timestamp option, as Linux sends them.
func baseSpec(v6 bool) spec {
	s := spec{
		v6: v6, sport: 40000, dport: 5201, seq: 1000, ack: 777,
		flags: header.TCPFlagACK, window: 502, ttl: 64, id: 100, df: true,
		tsVal: 12345, src: netip.MustParseAddr("10.0.0.1"), dst: netip.MustParseAddr("10.0.0.2"),
		srcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
	}
	if v6 {
		s.src, s.dst = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	}
	return s
}

// linkLen returns the link-layer header length of packets built from s.
func (s *spec) linkLen() int {
	if s.ether {
		return 14
	}
	return 0
}

// pattern returns n payload bytes that differ from segment to segment.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed + byte(i>>8)
	}
	return b
}

// build serialises s into a buffer of capacity cp (at least the packet's
// length) after applying the mutation hooks to a copy of s.
func build(tb testing.TB, s spec, cp int, mut ...func(*spec)) []byte {
	tb.Helper()
	for _, m := range mut {
		m(&s)
	}
	var ls []gopacket.SerializableLayer
	if s.ether {
		et := layers.EthernetTypeIPv4
		if s.v6 {
			et = layers.EthernetTypeIPv6
		}
		ls = append(ls, &layers.Ethernet{SrcMAC: s.srcMAC, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: et})
	}
	proto := layers.IPProtocolTCP
	if s.udp {
		proto = layers.IPProtocolUDP
	}
	var nl gopacket.NetworkLayer
	if s.v6 {
		ip := &layers.IPv6{Version: 6, TrafficClass: s.tos, FlowLabel: 0x12345, HopLimit: s.ttl,
			NextHeader: proto, SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice()}
		ls, nl = append(ls, ip), ip
	} else {
		ip := &layers.IPv4{Version: 4, TOS: s.tos, Id: s.id, TTL: s.ttl, Protocol: proto,
			SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice()}
		if s.df {
			ip.Flags = layers.IPv4DontFragment
		}
		if s.ipOpts {
			ip.Options = []layers.IPv4Option{{OptionType: 1, OptionLength: 1}, {OptionType: 1, OptionLength: 1}, {OptionType: 1, OptionLength: 1}, {OptionType: 0, OptionLength: 1}}
		}
		ls, nl = append(ls, ip), ip
	}
	if s.udp {
		u := &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)}
		if err := u.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, u)
	} else {
		t := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport),
			Seq: s.seq, Ack: s.ack, Window: s.window,
			FIN: s.flags&header.TCPFlagFIN != 0, SYN: s.flags&header.TCPFlagSYN != 0,
			RST: s.flags&header.TCPFlagRST != 0, PSH: s.flags&header.TCPFlagPSH != 0,
			ACK: s.flags&header.TCPFlagACK != 0, URG: s.flags&header.TCPFlagURG != 0,
			ECE: s.flags&header.TCPFlagECE != 0, CWR: s.flags&header.TCPFlagCWR != 0}
		if !s.noTS {
			ts := make([]byte, 8)
			binary.BigEndian.PutUint32(ts, s.tsVal)
			binary.BigEndian.PutUint32(ts[4:], 999)
			t.Options = []layers.TCPOption{
				{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
				{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts},
			}
		}
		if err := t.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, t)
	}
	ls = append(ls, gopacket.Payload(s.payload))
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	b := sb.Bytes()
	out := make([]byte, len(b), max(cp, len(b)))
	copy(out, b)
	return out
}

// naiveSum is the RFC 1071 sum the slow, obvious way: the test's
// independent twin of header.Checksum.
func naiveSum(b []byte, sum uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return sum
}

// l4ChecksumOK verifies the TCP/UDP checksum of the IP packet ip the way a
// receiver does: pseudo-header plus segment, checksum field included, sums
// to 0xffff.
func l4ChecksumOK(ip []byte) bool {
	var sum uint32
	var l4 []byte
	var proto byte
	if ip[0]>>4 == 6 {
		sum = naiveSum(ip[8:40], 0)
		l4, proto = ip[40:], ip[6]
	} else {
		sum = naiveSum(ip[12:20], 0)
		l4, proto = ip[int(ip[0]&0xf)*4:binary.BigEndian.Uint16(ip[2:])], ip[9]
	}
	sum += uint32(proto) + uint32(len(l4))
	return naiveSum(l4, sum) == 0xffff
}

// ipv4HeaderOK verifies an IPv4 header checksum by recomputation.
func ipv4HeaderOK(ip []byte) bool {
	return naiveSum(ip[:int(ip[0]&0xf)*4], 0) == 0xffff
}

// makeSuperpacket builds a kernel-style superpacket from s: the IP and L4
// length fields cover the whole payload and, as the kernel leaves it for
// NEEDS_CSUM, the L4 checksum field holds the folded pseudo-header sum. It
// returns the packet and its virtio-net header.
func makeSuperpacket(tb testing.TB, s spec, gsoSize int) ([]byte, VirtioNetHdr) {
	tb.Helper()
	p := build(tb, s, 0)
	ll := s.linkLen()
	ip := p[ll:]
	l4 := ll + header.IPv4MinLen
	if s.v6 {
		l4 = ll + header.IPv6Len
	} else if s.ipOpts {
		l4 += 4
	}
	proto := header.ProtoTCP
	l4hl, csumOff, gso := int(p[l4+12]>>4)*4, tcpCsumOffset, GSOTCPv4
	if s.v6 {
		gso = GSOTCPv6
	}
	if s.udp {
		proto, l4hl, csumOff, gso = header.ProtoUDP, header.UDPLen, udpCsumOffset, GSOUDPL4
	}
	if s.flags&header.TCPFlagCWR != 0 {
		gso |= GSOECN
	}
	src, dst := addrs(ip, s.v6)
	pseudo := header.FoldChecksum(header.PseudoHeaderChecksum(proto, src, dst, uint16(len(p)-l4)))
	binary.BigEndian.PutUint16(p[l4+csumOff:], pseudo)
	return p, VirtioNetHdr{Flags: FlagNeedsCsum, GSOType: gso, HdrLen: uint16(l4 + l4hl),
		GSOSize: uint16(gsoSize), CsumStart: uint16(l4), CsumOffset: uint16(csumOff)}
}

// outBufs returns n output buffers of size bytes each, and a sizes slice.
func outBufs(n, size int) ([][]byte, []int) {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, size)
	}
	return out, make([]int, n)
}

// decoded is what checkSegment learned from one segment.
type decoded struct {
	seq     uint32
	id      uint16
	flags   uint8
	payload []byte
}

// checkSegment decodes one output segment with gopacket and verifies what
// any segment must satisfy: it decodes without error, fits mtu, its
// lengths agree with its size, and its checksums verify.
func checkSegment(tb testing.TB, seg []byte, linkLen, mtu int) decoded {
	tb.Helper()
	first := layers.LayerTypeIPv4
	switch {
	case linkLen == 14:
		first = layers.LayerTypeEthernet
	case seg[0]>>4 == 6:
		first = layers.LayerTypeIPv6
	}
	pk := gopacket.NewPacket(seg, first, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil {
		tb.Fatalf("gopacket decode: %v", el.Error())
	}
	ip := seg[linkLen:]
	if len(ip) > mtu {
		tb.Fatalf("segment of %d bytes exceeds mtu %d", len(ip), mtu)
	}
	var d decoded
	if v4, ok := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		if int(v4.Length) != len(ip) {
			tb.Fatalf("IPv4 total length %d, segment has %d", v4.Length, len(ip))
		}
		if !ipv4HeaderOK(ip) {
			tb.Fatalf("IPv4 header checksum %#04x does not verify", v4.Checksum)
		}
		d.id = v4.Id
	}
	if v6, ok := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok && int(v6.Length) != len(ip)-40 {
		tb.Fatalf("IPv6 payload length %d, segment has %d", v6.Length, len(ip)-40)
	}
	if !l4ChecksumOK(ip) {
		tb.Fatalf("L4 checksum does not verify")
	}
	if t, ok := pk.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		d.seq = t.Seq
		l4off := 40
		if ip[0]>>4 == 4 {
			l4off = int(ip[0]&0xf) * 4
		}
		d.flags = ip[l4off+13]
		d.payload = t.Payload
	}
	if u, ok := pk.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		if int(u.Length) != len(u.Payload)+8 {
			tb.Fatalf("UDP length %d for %d payload bytes", u.Length, len(u.Payload))
		}
		d.payload = u.Payload
	}
	return d
}

// segmentsString summarises segment sizes for failure messages.
func segmentsString(sizes []int) string {
	var b bytes.Buffer
	for _, s := range sizes {
		fmt.Fprintf(&b, "%d ", s)
	}
	return b.String()
}
