package header

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Addresses used by the test builders. They only ever live in memory.
var (
	macA  = MAC{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	macB  = MAC{0x02, 0x42, 0xac, 0x11, 0x00, 0x03}
	ip4A  = netip.MustParseAddr("10.1.0.2")
	ip4B  = netip.MustParseAddr("10.1.0.3")
	ip6A  = netip.MustParseAddr("fd00::2")
	ip6B  = netip.MustParseAddr("fd00::3")
	bcast = BroadcastMAC
)

// serialize builds a packet from gopacket layers with lengths and checksums
// filled in, failing the test on error.
func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(etype layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: net.HardwareAddr(macA[:]), DstMAC: net.HardwareAddr(macB[:]), EthernetType: etype}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: ip4A.AsSlice(), DstIP: ip4B.AsSlice()}
}

func ip6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 63, NextHeader: next, SrcIP: ip6A.AsSlice(), DstIP: ip6B.AsSlice()}
}

func tcp(net gopacket.NetworkLayer, sport, dport uint16) *layers.TCP {
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Ack: 2000,
		SYN: true, ACK: true, Window: 65535}
	if err := t.SetNetworkLayerForChecksum(net); err != nil {
		panic(err)
	}
	return t
}

func udp(net gopacket.NetworkLayer, sport, dport uint16) *layers.UDP {
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := u.SetNetworkLayerForChecksum(net); err != nil {
		panic(err)
	}
	return u
}

// tcp4Frame is an Ethernet/IPv4/TCP frame with a 10-byte payload.
func tcp4Frame(tb testing.TB, sport, dport uint16) []byte {
	ip := ip4(layers.IPProtocolTCP)
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip, tcp(ip, sport, dport), gopacket.Payload("0123456789"))
}

// udp4Frame is an Ethernet/IPv4/UDP frame with a 10-byte payload.
func udp4Frame(tb testing.TB, sport, dport uint16) []byte {
	ip := ip4(layers.IPProtocolUDP)
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip, udp(ip, sport, dport), gopacket.Payload("0123456789"))
}
