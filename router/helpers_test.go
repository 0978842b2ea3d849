package router

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

// The test topology: network blue with gateway gw, containers c1 and c2;
// an outside host.
var (
	gwIP    = netip.MustParseAddr("10.42.0.1")
	gwMAC   = GatewayMAC("blue")
	c1IP    = netip.MustParseAddr("10.42.0.2")
	c1MAC   = header.MAC{0x02, 0x42, 0x0a, 0x2a, 0x00, 0x02}
	c2IP    = netip.MustParseAddr("10.42.0.3")
	c2MAC   = header.MAC{0x02, 0x42, 0x0a, 0x2a, 0x00, 0x03}
	outIP   = netip.MustParseAddr("192.0.2.7")
	redIP   = netip.MustParseAddr("10.43.0.2")
	payload = []byte("0123456789abcdefghijklmnopqrstuvwxyz")
)

func nip(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }
func hw(m header.MAC) net.HardwareAddr {
	return net.HardwareAddr(m[:])
}

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// ipv4 returns a test IPv4 layer from src to dst; mutate it before
// serializing.
func ipv4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, TOS: 0x2b,
		Flags: layers.IPv4DontFragment, Protocol: proto, SrcIP: nip(src), DstIP: nip(dst)}
}

// udpPacket returns an IPv4/UDP packet from src to dst with n payload
// bytes, after mut has adjusted the IP layer.
func udpPacket(tb testing.TB, src, dst netip.Addr, n int, mut func(*layers.IPv4)) []byte {
	tb.Helper()
	ip := ipv4(src, dst, layers.IPProtocolUDP)
	if mut != nil {
		mut(ip)
	}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9999}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*7 + 3)
	}
	return serialize(tb, ip, udp, gopacket.Payload(data))
}

// icmpPacket returns an IPv4/ICMP packet of the given type and code with
// the test payload.
func icmpPacket(tb testing.TB, src, dst netip.Addr, typ, code uint8, mut func(*layers.IPv4)) []byte {
	tb.Helper()
	ip := ipv4(src, dst, layers.IPProtocolICMPv4)
	if mut != nil {
		mut(ip)
	}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: 0x77, Seq: 5}
	return serialize(tb, ip, icmp, gopacket.Payload(payload))
}

// ethernet prepends an Ethernet header to pkt.
func ethernet(tb testing.TB, dst, src header.MAC, etype layers.EthernetType, pkt []byte) []byte {
	tb.Helper()
	return serialize(tb, &layers.Ethernet{DstMAC: hw(dst), SrcMAC: hw(src), EthernetType: etype}, gopacket.Payload(pkt))
}

// decodeIPv4 decodes an IPv4 packet with gopacket and fails on any error
// layer or a header checksum that does not verify.
func decodeIPv4(tb testing.TB, b []byte) gopacket.Packet {
	tb.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.DecodeOptions{NoCopy: true})
	if el := p.ErrorLayer(); el != nil {
		tb.Fatalf("decode: %v", el.Error())
	}
	if got := header.IPv4(b).CalculateChecksum(); got != header.IPv4(b).Checksum() {
		tb.Fatalf("IPv4 checksum %#04x, want %#04x", header.IPv4(b).Checksum(), got)
	}
	return p
}

// icmpChecksumOK reports whether the ICMP message of an IPv4 packet
// verifies.
func icmpChecksumOK(b []byte) bool {
	ip := header.IPv4(b)
	return header.FoldChecksum(header.Checksum(ip.Payload(), 0)) == 0xffff
}
