package router

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

func TestGatewayMAC(t *testing.T) {
	// The value is fixed by the documented rule; a change would change
	// every container's gateway MAC on upgrade.
	if got, want := GatewayMAC("blue").String(), GatewayMAC("blue").String(); got != want {
		t.Fatalf("not deterministic: %s vs %s", got, want)
	}
	seen := map[header.MAC]string{}
	for _, name := range []string{"", "blue", "red", "blue2", "a-very-long-network-name-indeed"} {
		m := GatewayMAC(name)
		if m[0] != 0x02 {
			t.Errorf("GatewayMAC(%q) = %s: first octet %#02x, want 0x02 (local, unicast)", name, m, m[0])
		}
		if prev, dup := seen[m]; dup {
			t.Errorf("GatewayMAC(%q) == GatewayMAC(%q) = %s", name, prev, m)
		}
		seen[m] = name
	}
}

func TestGatewayMACMatchesFNV(t *testing.T) {
	for _, name := range []string{"", "blue", "red"} {
		h := fnv64a(name)
		want := header.MAC{0x02, byte(h >> 56), byte(h >> 48), byte(h >> 40), byte(h >> 32), byte(h >> 24)}
		if got := GatewayMAC(name); got != want {
			t.Errorf("GatewayMAC(%q) = %s, want %s", name, got, want)
		}
	}
}

func arpFrame(tb testing.TB, ethDst header.MAC, op uint16, sha header.MAC, spa, tpa netip.Addr, pad int) []byte {
	tb.Helper()
	f := serialize(tb,
		&layers.Ethernet{DstMAC: hw(ethDst), SrcMAC: hw(sha), EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: op, SourceHwAddress: sha[:], SourceProtAddress: spa.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: tpa.AsSlice()})
	return append(f, make([]byte, pad)...)
}

func TestAnswerARP(t *testing.T) {
	zero := netip.MustParseAddr("0.0.0.0")
	cases := []struct {
		name   string
		frame  []byte
		answer bool
		tpa    netip.Addr // the reply's target address, when answered
	}{
		{"broadcast request for the gateway", arpFrame(t, header.BroadcastMAC, 1, c1MAC, c1IP, gwIP, 0), true, c1IP},
		{"unicast refresh to the gateway MAC", arpFrame(t, gwMAC, 1, c1MAC, c1IP, gwIP, 0), true, c1IP},
		{"padded to 60 bytes", arpFrame(t, header.BroadcastMAC, 1, c1MAC, c1IP, gwIP, 18), true, c1IP},
		{"RFC 5227 probe for the gateway address", arpFrame(t, header.BroadcastMAC, 1, c1MAC, zero, gwIP, 0), true, zero},
		{"request for another container", arpFrame(t, header.BroadcastMAC, 1, c1MAC, c1IP, c2IP, 0), false, netip.Addr{}},
		{"gratuitous ARP for the gateway address", arpFrame(t, header.BroadcastMAC, 1, c1MAC, gwIP, gwIP, 0), false, netip.Addr{}},
		{"reply for the gateway address", arpFrame(t, header.BroadcastMAC, 2, c1MAC, c1IP, gwIP, 0), false, netip.Addr{}},
		{"unicast to another MAC", arpFrame(t, c2MAC, 1, c1MAC, c1IP, gwIP, 0), false, netip.Addr{}},
		{"multicast sender", arpFrame(t, header.BroadcastMAC, 1, header.MAC{0x01, 0, 0x5e, 0, 0, 1}, c1IP, gwIP, 0), false, netip.Addr{}},
		{"truncated", arpFrame(t, header.BroadcastMAC, 1, c1MAC, c1IP, gwIP, 0)[:41], false, netip.Addr{}},
		{"IPv4 frame", ethernet(t, header.BroadcastMAC, c1MAC, layers.EthernetTypeIPv4, icmpPacket(t, c1IP, gwIP, 8, 0, nil)), false, netip.Addr{}},
		{"empty", nil, false, netip.Addr{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(tc.frame)
			out := make([]byte, 64)
			n, ok := AnswerARP(tc.frame, gwIP, gwMAC, out)
			if ok != tc.answer {
				t.Fatalf("answered %v, want %v", ok, tc.answer)
			}
			if !bytes.Equal(tc.frame, orig) {
				t.Fatal("frame modified")
			}
			if !ok {
				if n != 0 || !bytes.Equal(out, make([]byte, 64)) {
					t.Fatalf("n = %d, out written without an answer", n)
				}
				return
			}
			if n != 42 {
				t.Fatalf("n = %d, want 42", n)
			}
			checkARPReply(t, out[:n], tc.tpa)
			// In place gives the same bytes.
			inPlace := bytes.Clone(tc.frame)
			if m, ok := AnswerARP(inPlace, gwIP, gwMAC, inPlace); !ok || !bytes.Equal(inPlace[:m], out[:n]) {
				t.Fatalf("in place: ok %v, % x; want % x", ok, inPlace[:m], out[:n])
			}
		})
	}
}

func checkARPReply(t *testing.T, b []byte, tpa netip.Addr) {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("decode: %v", el.Error())
	}
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if arp == nil {
		t.Fatal("no ARP layer")
	}
	if !bytes.Equal(eth.DstMAC, c1MAC[:]) || !bytes.Equal(eth.SrcMAC, gwMAC[:]) {
		t.Errorf("ethernet %s -> %s, want %s -> %s", eth.SrcMAC, eth.DstMAC, gwMAC, c1MAC)
	}
	if arp.Operation != layers.ARPReply ||
		!bytes.Equal(arp.SourceHwAddress, gwMAC[:]) || !bytes.Equal(arp.SourceProtAddress, gwIP.AsSlice()) ||
		!bytes.Equal(arp.DstHwAddress, c1MAC[:]) || !bytes.Equal(arp.DstProtAddress, tpa.AsSlice()) {
		t.Errorf("reply op %d %x/%v -> %x/%v; want 2 %s/%v -> %s/%v", arp.Operation,
			arp.SourceHwAddress, arp.SourceProtAddress, arp.DstHwAddress, arp.DstProtAddress, gwMAC, gwIP, c1MAC, tpa)
	}
}

func echoFrame(tb testing.TB, dstMAC header.MAC, src, dst netip.Addr, typ uint8, mut func(*layers.IPv4)) []byte {
	return ethernet(tb, dstMAC, c1MAC, layers.EthernetTypeIPv4, icmpPacket(tb, src, dst, typ, 0, mut))
}

func TestAnswerEcho(t *testing.T) {
	withOptions := func(ip *layers.IPv4) {
		// Record route with room for two addresses (copied flag clear).
		ip.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 11, OptionData: []byte{4, 0, 0, 0, 0, 0, 0, 0, 0}}}
	}
	badSum := echoFrame(t, gwMAC, c1IP, gwIP, 8, nil)
	badSum[14+10] ^= 0xff
	cases := []struct {
		name   string
		frame  []byte
		answer bool
	}{
		{"echo request to the gateway", echoFrame(t, gwMAC, c1IP, gwIP, 8, nil), true},
		{"with IP options", echoFrame(t, gwMAC, c1IP, gwIP, 8, withOptions), true},
		{"TTL 1", echoFrame(t, gwMAC, c1IP, gwIP, 8, func(ip *layers.IPv4) { ip.TTL = 1 }), true},
		{"with link padding", append(echoFrame(t, gwMAC, c1IP, gwIP, 8, nil), 0, 0, 0, 0), true},
		{"echo reply", echoFrame(t, gwMAC, c1IP, gwIP, 0, nil), false},
		{"to another address", echoFrame(t, gwMAC, c1IP, c2IP, 8, nil), false},
		{"to another MAC", echoFrame(t, c2MAC, c1IP, gwIP, 8, nil), false},
		{"from 0.0.0.0", echoFrame(t, gwMAC, netip.MustParseAddr("0.0.0.0"), gwIP, 8, nil), false},
		{"bad IP checksum", badSum, false},
		{"fragment", echoFrame(t, gwMAC, c1IP, gwIP, 8, func(ip *layers.IPv4) { ip.Flags = layers.IPv4MoreFragments }), false},
		{"UDP", ethernet(t, gwMAC, c1MAC, layers.EthernetTypeIPv4, udpPacket(t, c1IP, gwIP, 10, nil)), false},
		{"truncated", echoFrame(t, gwMAC, c1IP, gwIP, 8, nil)[:40], false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := bytes.Clone(tc.frame)
			n, ok := AnswerEcho(f, gwIP, gwMAC)
			if ok != tc.answer {
				t.Fatalf("answered %v, want %v", ok, tc.answer)
			}
			if !ok {
				if !bytes.Equal(f, tc.frame) {
					t.Fatal("frame modified without an answer")
				}
				return
			}
			reqIP := header.IPv4(tc.frame[14:])
			if n != 14+int(reqIP.TotalLength()) {
				t.Fatalf("n = %d, want %d", n, 14+reqIP.TotalLength())
			}
			p := gopacket.NewPacket(f[:n], layers.LayerTypeEthernet, gopacket.Default)
			if el := p.ErrorLayer(); el != nil {
				t.Fatalf("decode: %v", el.Error())
			}
			decodeIPv4(t, f[14:n])
			if !icmpChecksumOK(f[14:n]) {
				t.Fatal("ICMP checksum does not verify")
			}
			eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if !bytes.Equal(eth.SrcMAC, gwMAC[:]) || !bytes.Equal(eth.DstMAC, c1MAC[:]) {
				t.Errorf("ethernet %s -> %s", eth.SrcMAC, eth.DstMAC)
			}
			if !ip.SrcIP.Equal(nip(gwIP)) || !ip.DstIP.Equal(nip(c1IP)) || ip.TTL != 64 {
				t.Errorf("ip %v -> %v ttl %d", ip.SrcIP, ip.DstIP, ip.TTL)
			}
			if icmp.TypeCode != layers.CreateICMPv4TypeCode(0, 0) || icmp.Id != 0x77 || icmp.Seq != 5 || !bytes.Equal(icmp.Payload, payload) {
				t.Errorf("icmp %v id %d seq %d payload %q", icmp.TypeCode, icmp.Id, icmp.Seq, icmp.Payload)
			}
			// Everything but the rewritten fields is as it came: options,
			// ID, TOS, flags, padding.
			if hl := reqIP.HeaderLength(); !bytes.Equal(f[14+20:14+hl], tc.frame[14+20:14+hl]) || !bytes.Equal(f[n:], tc.frame[n:]) ||
				!bytes.Equal(f[14:14+8], tc.frame[14:14+8]) {
				t.Error("unrelated bytes changed")
			}
		})
	}
}
