package header

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestIPv4EncodeAcceptedByGopacket(t *testing.T) {
	tests := []struct {
		name string
		f    IPv4Fields
	}{
		{name: "tcp with DF", f: IPv4Fields{TOS: 0x10, TotalLength: 60, ID: 0xbeef, Flags: IPv4FlagDontFragment,
			TTL: 64, Protocol: ProtoTCP, Src: ip4A, Dst: ip4B}},
		{name: "udp outer header", f: IPv4Fields{TotalLength: 1500, ID: 1, TTL: 255, Protocol: ProtoUDP,
			Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.254")}},
		{name: "fragment", f: IPv4Fields{TotalLength: 576, ID: 7, Flags: IPv4FlagMoreFragments, FragmentOffset: 1480,
			TTL: 1, Protocol: ProtoICMPv4, Src: ip4B, Dst: ip4A}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := make(IPv4, IPv4MinLen)
			b.Encode(&tc.f)

			var g layers.IPv4
			if err := g.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
				t.Fatalf("gopacket rejects the header: %v", err)
			}
			if g.Version != 4 || g.IHL != 5 || g.TOS != tc.f.TOS || g.Length != tc.f.TotalLength ||
				g.Id != tc.f.ID || uint8(g.Flags) != tc.f.Flags || g.FragOffset*8 != tc.f.FragmentOffset ||
				g.TTL != tc.f.TTL || IPProto(g.Protocol) != tc.f.Protocol ||
				!g.SrcIP.Equal(tc.f.Src.AsSlice()) || !g.DstIP.Equal(tc.f.Dst.AsSlice()) {
				t.Errorf("gopacket decoded %+v from %+v", g, tc.f)
			}
			// gopacket, serializing the same fields, computes the same
			// checksum, so the whole header is byte-identical.
			buf := gopacket.NewSerializeBuffer()
			g.Checksum = 0
			if err := g.SerializeTo(buf, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), b) {
				t.Errorf("gopacket header % x\nours             % x", buf.Bytes(), []byte(b))
			}
			if FoldChecksum(Checksum(b, 0)) != 0xffff {
				t.Error("header with its checksum does not sum to 0xffff")
			}
			if b.CalculateChecksum() != b.Checksum() {
				t.Error("CalculateChecksum disagrees with the encoded checksum")
			}
		})
	}
}

func TestIPv4Accessors(t *testing.T) {
	frame := tcp4Frame(t, 1234, 80)
	ip := IPv4(frame[EthernetLen:])
	if !ip.IsValid(len(ip)) {
		t.Fatal("IsValid false for a gopacket header")
	}
	if ip.Version() != 4 || ip.HeaderLength() != 20 || ip.TotalLength() != 20+20+10 || ip.ID() != 0x1234 ||
		!ip.DF() || ip.MoreFragments() || ip.IsFragment() || ip.TTL() != 64 || ip.Protocol() != ProtoTCP ||
		ip.Src() != ip4A || ip.Dst() != ip4B || len(ip.Payload()) != 30 {
		t.Errorf("accessors disagree with the gopacket-built header % x", []byte(ip))
	}
	if ip.CalculateChecksum() != ip.Checksum() {
		t.Errorf("checksum %#x, calculated %#x", ip.Checksum(), ip.CalculateChecksum())
	}
	// A router hop: decrement TTL and patch the checksum incrementally.
	oldWord := uint16(ip.TTL())<<8 | uint16(ip.Protocol())
	ip.SetTTL(ip.TTL() - 1)
	ip.SetChecksum(UpdateChecksum16(ip.Checksum(), oldWord, oldWord-0x100))
	if ip.CalculateChecksum() != ip.Checksum() {
		t.Error("incremental TTL update left a wrong checksum")
	}
	// NAT: rewrite the source and patch the checksum.
	newSrc := netip.MustParseAddr("192.0.2.7")
	ip.SetChecksum(UpdateChecksumAddr(ip.Checksum(), ip.Src(), newSrc))
	ip.SetSrc(newSrc)
	if ip.Src() != newSrc || ip.CalculateChecksum() != ip.Checksum() {
		t.Error("incremental address update left a wrong checksum")
	}
}

func TestIPv4IsValid(t *testing.T) {
	good := func() IPv4 {
		b := make(IPv4, 40)
		b.Encode(&IPv4Fields{TotalLength: 40, TTL: 1, Protocol: ProtoUDP, Src: ip4A, Dst: ip4B})
		return b
	}
	tests := []struct {
		name   string
		mutate func(IPv4) IPv4
		pktLen int // 0: len of the mutated slice
		want   bool
	}{
		{name: "good", mutate: func(b IPv4) IPv4 { return b }, want: true},
		{name: "ethernet padding after total length", mutate: func(b IPv4) IPv4 { return append(b, 0, 0, 0, 0, 0, 0) }, want: true},
		{name: "shorter than 20 bytes", mutate: func(b IPv4) IPv4 { return b[:19] }},
		{name: "version 6", mutate: func(b IPv4) IPv4 { b[0] = 0x65; return b }},
		{name: "ihl 4", mutate: func(b IPv4) IPv4 { b[0] = 0x44; return b }},
		{name: "ihl beyond buffer", mutate: func(b IPv4) IPv4 { b[0] = 0x4f; return b[:40] }, pktLen: 40},
		{name: "total length below ihl", mutate: func(b IPv4) IPv4 { b[3] = 19; return b }},
		{name: "total length beyond packet", mutate: func(b IPv4) IPv4 { b[3] = 41; return b }},
		{name: "ihl 15 with options in buffer", mutate: func(b IPv4) IPv4 {
			b = append(b, make([]byte, 40)...)
			b[0], b[3] = 0x4f, 60
			return b
		}, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(good())
			n := tc.pktLen
			if n == 0 {
				n = len(b)
			}
			if got := b.IsValid(n); got != tc.want {
				t.Errorf("IsValid(%d) = %v, want %v", n, got, tc.want)
			}
		})
	}
}

func TestUDPTCPViewsMatchGopacket(t *testing.T) {
	frame := tcp4Frame(t, 40000, 443)
	tc := TCP(frame[EthernetLen+IPv4MinLen:])
	if tc.SrcPort() != 40000 || tc.DstPort() != 443 || tc.Seq() != 1000 || tc.Ack() != 2000 ||
		tc.DataOffset() != 20 || tc.Flags() != TCPFlagSYN|TCPFlagACK || tc.Window() != 65535 {
		t.Errorf("TCP accessors wrong on % x", []byte(tc[:20]))
	}
	// The TCP checksum gopacket computed verifies with our pseudo-header.
	seg := frame[EthernetLen+IPv4MinLen:]
	if got := FoldChecksum(Checksum(seg, PseudoHeaderChecksum(ProtoTCP, ip4A, ip4B, uint16(len(seg))))); got != 0xffff {
		t.Errorf("TCP segment with pseudo-header sums to %#x", got)
	}

	frame6 := serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolUDP),
		udp(ip6(layers.IPProtocolUDP), 5353, 53), gopacket.Payload("hello"))
	u := UDP(frame6[EthernetLen+IPv6Len:])
	if u.SrcPort() != 5353 || u.DstPort() != 53 || u.Length() != 13 {
		t.Errorf("UDP accessors wrong on % x", []byte(u[:8]))
	}
	seg6 := frame6[EthernetLen+IPv6Len:]
	if got := FoldChecksum(Checksum(seg6, PseudoHeaderChecksum(ProtoUDP, ip6A, ip6B, uint16(len(seg6))))); got != 0xffff {
		t.Errorf("UDP/IPv6 datagram with pseudo-header sums to %#x", got)
	}

	// UDP.Encode, checked by gopacket.
	out := make(UDP, UDPLen)
	out.Encode(&UDPFields{SrcPort: 49152, DstPort: 4789, Length: 58, Checksum: 0})
	var g layers.UDP
	if err := g.DecodeFromBytes(out, gopacket.NilDecodeFeedback); err != nil {
		t.Fatal(err)
	}
	if g.SrcPort != 49152 || g.DstPort != 4789 || g.Length != 58 || g.Checksum != 0 {
		t.Errorf("gopacket decoded %+v", g)
	}
}

func TestIPv6View(t *testing.T) {
	frame := serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolNoNextHeader), gopacket.Payload("abcd"))
	ip := IPv6(frame[EthernetLen:])
	if !ip.IsValid(len(ip)) || ip.PayloadLength() != 4 || ip.NextHeader() != 59 || ip.HopLimit() != 63 ||
		ip.Src() != ip6A || ip.Dst() != ip6B {
		t.Errorf("IPv6 accessors wrong on % x", []byte(ip))
	}
	if !ip.IsValid(IPv6Len+4) || ip.IsValid(IPv6Len+3) {
		t.Error("IsValid wrong at the payload boundary")
	}
	if IPv6(frame[EthernetLen : EthernetLen+39]).IsValid(39) {
		t.Error("IsValid true on 39 bytes")
	}
}

func TestARPEncodeDecodeWithGopacket(t *testing.T) {
	// Ours -> gopacket.
	a := make(ARP, ARPLen)
	a.Encode(&ARPFields{Op: ARPReply, SenderMAC: macA, SenderIP: ip4A, TargetMAC: macB, TargetIP: ip4B})
	var g layers.ARP
	if err := g.DecodeFromBytes(a, gopacket.NilDecodeFeedback); err != nil {
		t.Fatal(err)
	}
	if g.AddrType != layers.LinkTypeEthernet || g.Protocol != layers.EthernetTypeIPv4 || g.Operation != ARPReply ||
		!bytes.Equal(g.SourceHwAddress, macA[:]) || !bytes.Equal(g.SourceProtAddress, ip4A.AsSlice()) ||
		!bytes.Equal(g.DstHwAddress, macB[:]) || !bytes.Equal(g.DstProtAddress, ip4B.AsSlice()) {
		t.Errorf("gopacket decoded %+v", g)
	}
	// gopacket -> ours.
	frame := serialize(t, &layers.Ethernet{SrcMAC: macA[:], DstMAC: bcast[:], EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6,
			ProtAddressSize: 4, Operation: layers.ARPRequest, SourceHwAddress: macA[:],
			SourceProtAddress: ip4A.AsSlice(), DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: ip4B.AsSlice()})
	r := ARP(frame[EthernetLen:])
	if !r.IsValid() || r.Op() != ARPRequest || r.SenderMAC() != macA || r.SenderIP() != ip4A ||
		!r.TargetMAC().IsZero() || r.TargetIP() != ip4B {
		t.Errorf("ARP accessors wrong on % x", []byte(r))
	}
	bad := append(ARP(nil), r...)
	bad[5] = 16 // IPv6-sized protocol addresses
	if bad.IsValid() || r[:27].IsValid() {
		t.Error("IsValid accepted a non-Ethernet/IPv4 or short ARP packet")
	}
}

func TestICMPv4View(t *testing.T) {
	ip := ip4(layers.IPProtocolICMPv4)
	frame := serialize(t, eth(layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 77, Seq: 3},
		gopacket.Payload("ping"))
	m := ICMPv4(frame[EthernetLen+IPv4MinLen:])
	if m.Type() != ICMPv4EchoRequest || m.Code() != 0 || m.Ident() != 77 || m.Seq() != 3 {
		t.Errorf("ICMP accessors wrong on % x", []byte(m))
	}
	if m.CalculateChecksum() != m.Checksum() {
		t.Errorf("checksum %#x, calculated %#x", m.Checksum(), m.CalculateChecksum())
	}
	// Answer the ping the way the router will.
	m.SetType(ICMPv4EchoReply)
	m.SetChecksum(UpdateChecksum16(m.Checksum(), uint16(ICMPv4EchoRequest)<<8, uint16(ICMPv4EchoReply)<<8))
	if m.CalculateChecksum() != m.Checksum() {
		t.Error("incremental type change left a wrong checksum")
	}
}

func TestEthernetView(t *testing.T) {
	b := make(Ethernet, EthernetLen)
	b.Encode(macB, macA, EtherTypeARP)
	var g layers.Ethernet
	if err := g.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.DstMAC, macB[:]) || !bytes.Equal(g.SrcMAC, macA[:]) || g.EthernetType != layers.EthernetTypeARP {
		t.Errorf("gopacket decoded %+v", g)
	}
	if b.Dst() != macB || b.Src() != macA || b.EtherType() != EtherTypeARP {
		t.Error("accessors disagree with Encode")
	}
}
