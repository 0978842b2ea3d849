package header

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// ipv6FragHeader builds an IPv6 Fragment extension header in front of proto.
func ipv6FragHeader(next layers.IPProtocol, offset uint16) gopacket.Payload {
	h := make([]byte, 8)
	h[0] = byte(next)
	binary.BigEndian.PutUint16(h[2:], offset&0xfff8)
	binary.BigEndian.PutUint32(h[4:], 0xabcd)
	return h
}

func TestParsedDecodeGopacketFrames(t *testing.T) {
	base := Parsed{DstMAC: macB, SrcMAC: macA, L3Offset: EthernetLen}
	with := func(f func(*Parsed)) Parsed { p := base; f(&p); return p }
	v4 := func(p *Parsed, proto IPProto, l4len int) {
		p.EtherType, p.IPVersion, p.IPProto, p.SrcIP, p.DstIP, p.TTL = EtherTypeIPv4, 4, proto, ip4A, ip4B, 64
		p.IPLength = IPv4MinLen + l4len
		p.L4Offset = EthernetLen + IPv4MinLen
	}
	v6 := func(p *Parsed, proto IPProto, l4len int) {
		p.EtherType, p.IPVersion, p.IPProto, p.SrcIP, p.DstIP, p.TTL = EtherTypeIPv6, 6, proto, ip6A, ip6B, 63
		p.IPLength = IPv6Len + l4len
		p.L4Offset = EthernetLen + IPv6Len
	}

	tests := []struct {
		name  string
		frame func(t *testing.T) []byte
		want  Parsed
		// gopacket does not decode the transport layer of a fragment.
		gopacketNoL4 bool
	}{
		{
			name:  "ipv4 tcp",
			frame: func(t *testing.T) []byte { return tcp4Frame(t, 40000, 443) },
			want: with(func(p *Parsed) {
				v4(p, ProtoTCP, 30)
				p.SrcPort, p.DstPort, p.TCPFlags = 40000, 443, TCPFlagSYN|TCPFlagACK
			}),
		},
		{
			name:  "ipv4 udp",
			frame: func(t *testing.T) []byte { return udp4Frame(t, 5000, 53) },
			want:  with(func(p *Parsed) { v4(p, ProtoUDP, 18); p.SrcPort, p.DstPort = 5000, 53 }),
		},
		{
			name: "ipv4 udp in vlan 100",
			frame: func(t *testing.T) []byte {
				ip := ip4(layers.IPProtocolUDP)
				return serialize(t, eth(layers.EthernetTypeDot1Q),
					&layers.Dot1Q{Priority: 5, VLANIdentifier: 100, Type: layers.EthernetTypeIPv4},
					ip, udp(ip, 1, 2))
			},
			want: with(func(p *Parsed) {
				v4(p, ProtoUDP, 8)
				p.HasVLAN, p.VLANID, p.L3Offset, p.L4Offset = true, 100, 18, 18+IPv4MinLen
				p.SrcPort, p.DstPort = 1, 2
			}),
		},
		{
			name: "ipv4 icmp echo request",
			frame: func(t *testing.T) []byte {
				return serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
					&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 99, Seq: 1})
			},
			want: with(func(p *Parsed) { v4(p, ProtoICMPv4, 8); p.ICMPType, p.ICMPIdent = ICMPv4EchoRequest, 99 }),
		},
		{
			name: "ipv4 non-first fragment",
			frame: func(t *testing.T) []byte {
				ip := ip4(layers.IPProtocolUDP)
				ip.Flags, ip.FragOffset = layers.IPv4MoreFragments, 185
				return serialize(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload("0123456789abcdef"))
			},
			want: with(func(p *Parsed) { v4(p, ProtoUDP, 16); p.Fragment, p.L4Offset = true, 0 }),
		},
		{
			name: "ipv4 first fragment keeps ports",
			frame: func(t *testing.T) []byte {
				ip := ip4(layers.IPProtocolUDP)
				ip.Flags = layers.IPv4MoreFragments
				return serialize(t, eth(layers.EthernetTypeIPv4), ip, udp(ip, 7, 8), gopacket.Payload("xx"))
			},
			want:         with(func(p *Parsed) { v4(p, ProtoUDP, 10); p.SrcPort, p.DstPort = 7, 8 }),
			gopacketNoL4: true,
		},
		{
			name: "ipv6 tcp",
			frame: func(t *testing.T) []byte {
				ip := ip6(layers.IPProtocolTCP)
				return serialize(t, eth(layers.EthernetTypeIPv6), ip, tcp(ip, 33000, 22))
			},
			want: with(func(p *Parsed) {
				v6(p, ProtoTCP, 20)
				p.SrcPort, p.DstPort, p.TCPFlags = 33000, 22, TCPFlagSYN|TCPFlagACK
			}),
		},
		{
			name: "ipv6 hop-by-hop then udp",
			frame: func(t *testing.T) []byte {
				ip := ip6(layers.IPProtocolIPv6HopByHop)
				hbh := &layers.IPv6HopByHop{}
				hbh.NextHeader = layers.IPProtocolUDP
				hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
				return serialize(t, eth(layers.EthernetTypeIPv6), ip, hbh, udp(ip, 546, 547))
			},
			want: with(func(p *Parsed) {
				v6(p, ProtoUDP, 8+8)
				p.L4Offset += 8
				p.SrcPort, p.DstPort = 546, 547
			}),
		},
		{
			name: "ipv6 non-first fragment",
			frame: func(t *testing.T) []byte {
				return serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolIPv6Fragment),
					ipv6FragHeader(layers.IPProtocolUDP, 1232), gopacket.Payload("data"))
			},
			want: with(func(p *Parsed) { v6(p, ProtoUDP, 12); p.Fragment, p.L4Offset = true, 0 }),
		},
		{
			name: "ipv6 icmpv6 echo",
			frame: func(t *testing.T) []byte {
				ip := ip6(layers.IPProtocolICMPv6)
				ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
				if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
					t.Fatal(err)
				}
				return serialize(t, eth(layers.EthernetTypeIPv6), ip, ic, &layers.ICMPv6Echo{Identifier: 42, SeqNumber: 1})
			},
			want: with(func(p *Parsed) { v6(p, ProtoICMPv6, 8); p.ICMPType, p.ICMPIdent = ICMPv6EchoRequest, 42 }),
		},
		{
			name: "arp request",
			frame: func(t *testing.T) []byte {
				return serialize(t, eth(layers.EthernetTypeARP),
					&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6,
						ProtAddressSize: 4, Operation: layers.ARPRequest, SourceHwAddress: macA[:],
						SourceProtAddress: ip4A.AsSlice(), DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: ip4B.AsSlice()})
			},
			want: with(func(p *Parsed) { p.EtherType, p.ARPOp, p.SrcIP, p.DstIP = EtherTypeARP, ARPRequest, ip4A, ip4B }),
		},
		{
			name: "unknown ethertype",
			frame: func(t *testing.T) []byte {
				return serialize(t, eth(layers.EthernetType(0x88cc)), gopacket.Payload("lldp"))
			},
			want: with(func(p *Parsed) { p.EtherType = 0x88cc }),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.frame(t)
			var p Parsed
			p.Decode(frame)
			if p != tc.want {
				t.Errorf("Decode:\n got %+v\nwant %+v", p, tc.want)
			}
			// The L4 offset points where gopacket found the transport layer.
			if tc.want.HasPorts() && !tc.gopacketNoL4 {
				pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
				tl := pkt.TransportLayer()
				if tl == nil {
					t.Fatal("gopacket found no transport layer")
				}
				if &frame[p.L4Offset] != &tl.LayerContents()[0] {
					t.Errorf("L4Offset %d is not where gopacket's transport layer starts", p.L4Offset)
				}
			}
			if n := testing.AllocsPerRun(100, func() { p.Decode(frame) }); n != 0 {
				t.Errorf("Decode allocates %v times", n)
			}
		})
	}
}

func TestParsedDecodeIP(t *testing.T) {
	frame := udp4Frame(t, 8285, 8285)
	pkt := frame[EthernetLen : EthernetLen+IPv4MinLen+UDPLen+10]
	var p Parsed
	p.DecodeIP(pkt)
	want := Parsed{EtherType: EtherTypeIPv4, IPVersion: 4, IPLength: len(pkt), IPProto: ProtoUDP, SrcIP: ip4A,
		DstIP: ip4B, TTL: 64, L4Offset: IPv4MinLen, SrcPort: 8285, DstPort: 8285}
	if p != want {
		t.Errorf("DecodeIP:\n got %+v\nwant %+v", p, want)
	}
	if n := testing.AllocsPerRun(100, func() { p.DecodeIP(pkt) }); n != 0 {
		t.Errorf("DecodeIP allocates %v times", n)
	}
	ip := ip6(layers.IPProtocolTCP)
	pkt6 := serialize(t, ip, tcp(ip, 1, 2))
	p.DecodeIP(pkt6)
	if p.Status != DecodeOK || p.EtherType != EtherTypeIPv6 || p.L4Offset != IPv6Len || p.SrcPort != 1 || p.DstIP != ip6B {
		t.Errorf("DecodeIP IPv6: %+v", p)
	}
	for _, bad := range [][]byte{nil, {0x00}, {0x50, 0, 0, 0}, {0x45}} {
		p.DecodeIP(bad)
		wantStatus := DecodeBadIPVersion
		if len(bad) > 0 && bad[0]>>4 == 4 {
			wantStatus = DecodeBadIPv4
		}
		if p.Status != wantStatus || p.IPVersion != 0 {
			t.Errorf("DecodeIP(% x): status %v, IPVersion %d; want %v", bad, p.Status, p.IPVersion, wantStatus)
		}
	}
}

func TestParsedDecodeMalformed(t *testing.T) {
	tests := []struct {
		name   string
		frame  func(t *testing.T) []byte
		status DecodeStatus
	}{
		{name: "empty", frame: func(*testing.T) []byte { return nil }, status: DecodeRunt},
		{name: "13 bytes", frame: func(t *testing.T) []byte { return tcp4Frame(t, 1, 2)[:13] }, status: DecodeRunt},
		{name: "vlan tag cut", frame: func(t *testing.T) []byte {
			f := tcp4Frame(t, 1, 2)[:16]
			binary.BigEndian.PutUint16(f[12:], EtherTypeVLAN)
			return f
		}, status: DecodeTruncatedVLAN},
		{name: "ipv4 header cut", frame: func(t *testing.T) []byte { return tcp4Frame(t, 1, 2)[:EthernetLen+19] }, status: DecodeBadIPv4},
		{name: "ipv4 wrong version", frame: func(t *testing.T) []byte {
			f := tcp4Frame(t, 1, 2)
			f[EthernetLen] = 0x65
			return f
		}, status: DecodeBadIPv4},
		{name: "ipv4 total length past frame", frame: func(t *testing.T) []byte {
			f := tcp4Frame(t, 1, 2)
			binary.BigEndian.PutUint16(f[EthernetLen+2:], 1500)
			return f
		}, status: DecodeBadIPv4},
		{name: "tcp header cut by total length", frame: func(t *testing.T) []byte {
			f := tcp4Frame(t, 1, 2)
			binary.BigEndian.PutUint16(f[EthernetLen+2:], IPv4MinLen+19)
			return f
		}, status: DecodeTruncatedL4},
		{name: "tcp data offset 4", frame: func(t *testing.T) []byte {
			f := tcp4Frame(t, 1, 2)
			f[EthernetLen+IPv4MinLen+12] = 0x40
			return f
		}, status: DecodeBadL4},
		{name: "tcp data offset past packet", frame: func(t *testing.T) []byte {
			f := tcp4Frame(t, 1, 2)
			f[EthernetLen+IPv4MinLen+12] = 0xf0
			return f
		}, status: DecodeTruncatedL4},
		{name: "udp header cut", frame: func(t *testing.T) []byte {
			f := udp4Frame(t, 1, 2)
			binary.BigEndian.PutUint16(f[EthernetLen+2:], IPv4MinLen+7)
			return f
		}, status: DecodeTruncatedL4},
		{name: "ipv6 header cut", frame: func(t *testing.T) []byte {
			ip := ip6(layers.IPProtocolUDP)
			return serialize(t, eth(layers.EthernetTypeIPv6), ip, udp(ip, 1, 2))[:EthernetLen+39]
		}, status: DecodeBadIPv6},
		{name: "ipv6 extension header past payload", frame: func(t *testing.T) []byte {
			return serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolIPv6Destination),
				gopacket.Payload{byte(layers.IPProtocolUDP), 4, 0, 0, 0, 0, 0, 0})
		}, status: DecodeBadIPv6},
		{name: "ipv6 endless extension chain", frame: func(t *testing.T) []byte {
			chain := make(gopacket.Payload, 8*(maxIPv6ExtHeaders+1))
			return serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolIPv6HopByHop), chain)
		}, status: DecodeBadIPv6},
		{name: "arp for ipv6-sized addresses", frame: func(t *testing.T) []byte {
			f := serialize(t, eth(layers.EthernetTypeARP), gopacket.Payload(make([]byte, ARPLen)))
			ARP(f[EthernetLen:]).Encode(&ARPFields{Op: ARPRequest, SenderIP: ip4A, TargetIP: ip4B})
			f[EthernetLen+5] = 16
			return f
		}, status: DecodeBadARP},
		{name: "arp cut", frame: func(t *testing.T) []byte {
			f := make([]byte, EthernetLen+ARPLen-1)
			Ethernet(f).Encode(bcast, macA, EtherTypeARP)
			return f
		}, status: DecodeBadARP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Parsed
			p.Decode(tc.frame(t))
			if p.Status != tc.status {
				t.Fatalf("Status = %v, want %v (%+v)", p.Status, tc.status, p)
			}
			if p.HasPorts() {
				t.Error("HasPorts true on a malformed frame")
			}
		})
	}
}

func TestDecodeStatusString(t *testing.T) {
	seen := map[string]bool{}
	for s := DecodeOK; s <= DecodeBadL4; s++ {
		name := s.String()
		if name == "unknown" || seen[name] {
			t.Errorf("status %d has name %q", s, name)
		}
		seen[name] = true
	}
	if DecodeStatus(200).String() != "unknown" {
		t.Error("out-of-range status not named unknown")
	}
}

func BenchmarkParsedDecode(b *testing.B) {
	ip6l := ip6(layers.IPProtocolUDP)
	frames := []struct {
		name  string
		frame []byte
	}{
		{"tcp4", tcp4Frame(b, 40000, 443)},
		{"udp4", udp4Frame(b, 5000, 53)},
		{"udp6", serialize(b, eth(layers.EthernetTypeIPv6), ip6l, udp(ip6l, 1, 2))},
		{"icmp4", serialize(b, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)})},
		{"arp", serialize(b, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet,
			Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
			SourceHwAddress: macA[:], SourceProtAddress: ip4A.AsSlice(), DstHwAddress: macB[:], DstProtAddress: ip4B.AsSlice()})},
	}
	for _, f := range frames {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			var p Parsed
			for b.Loop() {
				p.Decode(f.frame)
			}
			if p.Status != DecodeOK {
				b.Fatalf("status %v", p.Status)
			}
		})
	}
}

func FuzzParsedDecode(f *testing.F) {
	f.Add(tcp4Frame(f, 1, 2))
	f.Add(udp4Frame(f, 3, 4))
	ip := ip6(layers.IPProtocolTCP)
	f.Add(serialize(f, eth(layers.EthernetTypeIPv6), ip, tcp(ip, 5, 6)))
	f.Add(serialize(f, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolIPv6Fragment), ipv6FragHeader(layers.IPProtocolUDP, 0), gopacket.Payload("12345678")))
	f.Add(serialize(f, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeARP}, gopacket.Payload(make([]byte, 28))))
	f.Add([]byte{})
	f.Add(make([]byte, 14))
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p Parsed
		p.Decode(frame)
		checkParsedInvariants(t, &p, len(frame), false)
		p.DecodeIP(frame)
		checkParsedInvariants(t, &p, len(frame), true)
	})
}

func checkParsedInvariants(t *testing.T, p *Parsed, n int, bareIP bool) {
	t.Helper()
	if p.Status.String() == "unknown" {
		t.Fatalf("unnamed status %d", p.Status)
	}
	if p.Status == DecodeRunt && !bareIP && n >= EthernetLen {
		t.Fatalf("runt with %d bytes", n)
	}
	if p.IPVersion != 0 {
		if p.IPVersion != 4 && p.IPVersion != 6 {
			t.Fatalf("IPVersion %d", p.IPVersion)
		}
		if p.L3Offset+p.IPLength > n {
			t.Fatalf("IP packet [%d:+%d] beyond %d bytes", p.L3Offset, p.IPLength, n)
		}
		if p.SrcIP.Is4() != (p.IPVersion == 4) || !p.SrcIP.IsValid() {
			t.Fatalf("SrcIP %v for IP version %d", p.SrcIP, p.IPVersion)
		}
	}
	if p.Status == DecodeOK && p.IPVersion != 0 && !p.Fragment {
		end := p.L3Offset + p.IPLength
		var need int
		switch p.IPProto {
		case ProtoTCP:
			need = TCPMinLen
		case ProtoUDP:
			need = UDPLen
		}
		if p.L4Offset < p.L3Offset || p.L4Offset+need > end {
			t.Fatalf("L4 header [%d:+%d] outside IP packet ending at %d", p.L4Offset, need, end)
		}
	}
	if p.HasPorts() && (p.IPVersion == 0 || p.Fragment) {
		t.Fatal("HasPorts without a whole IP packet")
	}
}
