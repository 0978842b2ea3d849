package router

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

func TestBuildICMPError(t *testing.T) {
	small := udpPacket(t, c1IP, outIP, 10, nil)                   // 38 bytes: quoted whole
	big := udpPacket(t, c1IP, outIP, 1472, nil)                   // 1500 bytes: quoted up to 548
	exact := udpPacket(t, c1IP, outIP, MaxQuoteLen-28, nil)       // exactly MaxQuoteLen
	padded := append(udpPacket(t, c1IP, outIP, 10, nil), 9, 9, 9) // padding is not quoted
	opts := udpPacket(t, c1IP, outIP, 10, func(ip *layers.IPv4) {
		ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}} // router alert
	})
	firstFrag := udpPacket(t, c1IP, outIP, 100, func(ip *layers.IPv4) { ip.Flags = layers.IPv4MoreFragments })
	cases := []struct {
		name       string
		orig       []byte
		typ, code  uint8
		mtu        uint16
		wantQuoted int
	}{
		{"time exceeded quotes a small packet whole", small, 11, 0, 0, 38},
		{"frag needed quotes 548 bytes of a big packet", big, 3, 4, 1450, MaxQuoteLen},
		{"net unreachable quotes exactly MaxQuoteLen", exact, 3, 0, 0, MaxQuoteLen},
		{"host unreachable ignores link padding", padded, 3, 1, 0, 38},
		{"quotes IP options", opts, 11, 0, 0, 42},
		{"first fragment gets an error", firstFrag, 11, 0, 0, 128},
		{"echo request gets an error", icmpPacket(t, c1IP, outIP, 8, 0, nil), 11, 0, 0, 64},
		{"echo reply gets an error", icmpPacket(t, c1IP, outIP, 0, 0, nil), 3, 0, 0, 64},
		{"timestamp request gets an error", icmpPacket(t, c1IP, outIP, 13, 0, nil), 3, 1, 0, 64},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]byte, 1600)
			n, st := BuildICMPError(out, tc.orig, tc.typ, tc.code, tc.mtu, gwIP)
			if st != OK {
				t.Fatalf("status %v", st)
			}
			if n != 28+tc.wantQuoted || n > MaxICMPErrorLen {
				t.Fatalf("n = %d, want %d", n, 28+tc.wantQuoted)
			}
			p := decodeIPv4(t, out[:n])
			if !icmpChecksumOK(out[:n]) {
				t.Fatal("ICMP checksum does not verify")
			}
			ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if !ip.SrcIP.Equal(nip(gwIP)) || !ip.DstIP.Equal(nip(c1IP)) || ip.TTL != 64 || ip.Protocol != layers.IPProtocolICMPv4 ||
				ip.IHL != 5 || ip.Length != uint16(n) || ip.Flags != layers.IPv4DontFragment || ip.TOS != 0xc0|(tc.orig[1]&0x1c) {
				t.Errorf("IP header %+v", ip)
			}
			icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if icmp.TypeCode != layers.CreateICMPv4TypeCode(tc.typ, tc.code) {
				t.Errorf("type/code %v", icmp.TypeCode)
			}
			// Second word: zero, or the MTU in its low half (RFC 1191).
			if got := binary.BigEndian.Uint32(out[24:28]); got != uint32(tc.mtu) {
				t.Errorf("second word %#08x, want %#08x", got, tc.mtu)
			}
			if !bytes.Equal(out[28:n], tc.orig[:tc.wantQuoted]) {
				t.Error("quoted bytes differ from the original's first bytes")
			}
		})
	}
}

func TestBuildICMPErrorNeverSent(t *testing.T) {
	nonFirst := udpPacket(t, c1IP, outIP, 100, func(ip *layers.IPv4) { ip.FragOffset = 10 })
	lastFrag := udpPacket(t, c1IP, outIP, 100, func(ip *layers.IPv4) { ip.FragOffset = 10; ip.Flags = 0 })
	emptyICMP := udpPacket(t, c1IP, outIP, 0, func(ip *layers.IPv4) { ip.Protocol = layers.IPProtocolICMPv4 })[:20]
	emptyICMP[3] = 20
	header.IPv4(emptyICMP).SetChecksum(header.IPv4(emptyICMP).CalculateChecksum())
	cases := []struct {
		name string
		orig []byte
		src  netip.Addr
		want Status
	}{
		{"about destination unreachable", icmpPacket(t, c1IP, outIP, 3, 1, nil), gwIP, NoErrorAboutICMPError},
		{"about time exceeded", icmpPacket(t, c1IP, outIP, 11, 0, nil), gwIP, NoErrorAboutICMPError},
		{"about redirect", icmpPacket(t, c1IP, outIP, 5, 0, nil), gwIP, NoErrorAboutICMPError},
		{"about parameter problem", icmpPacket(t, c1IP, outIP, 12, 0, nil), gwIP, NoErrorAboutICMPError},
		{"about an unknown ICMP type", icmpPacket(t, c1IP, outIP, 42, 0, nil), gwIP, NoErrorAboutICMPError},
		{"about an ICMP packet with no ICMP bytes", emptyICMP, gwIP, NoErrorAboutICMPError},
		{"about a middle fragment", nonFirst, gwIP, NoErrorAboutFragment},
		{"about a last fragment", lastFrag, gwIP, NoErrorAboutFragment},
		{"to broadcast", udpPacket(t, c1IP, netip.MustParseAddr("255.255.255.255"), 10, nil), gwIP, NoErrorToGroup},
		{"to multicast", udpPacket(t, c1IP, netip.MustParseAddr("224.0.0.251"), 10, nil), gwIP, NoErrorToGroup},
		{"from 0.0.0.0", udpPacket(t, netip.MustParseAddr("0.0.0.0"), outIP, 10, nil), gwIP, NoErrorToSource},
		{"from loopback", udpPacket(t, netip.MustParseAddr("127.0.0.1"), outIP, 10, nil), gwIP, NoErrorToSource},
		{"from multicast", udpPacket(t, netip.MustParseAddr("224.1.1.1"), outIP, 10, nil), gwIP, NoErrorToSource},
		{"from broadcast", udpPacket(t, netip.MustParseAddr("255.255.255.255"), outIP, 10, nil), gwIP, NoErrorToSource},
		{"from class E", udpPacket(t, netip.MustParseAddr("250.0.0.1"), outIP, 10, nil), gwIP, NoErrorToSource},
		{"router source not IPv4", udpPacket(t, c1IP, outIP, 10, nil), netip.MustParseAddr("fd00::1"), NoErrorToSource},
		{"malformed original", []byte{0x45, 0, 0}, gwIP, Malformed},
		{"empty original", nil, gwIP, Malformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]byte, 600)
			n, st := BuildICMPError(out, tc.orig, 11, 0, 0, tc.src)
			if st != tc.want || n != 0 {
				t.Fatalf("got (%d, %v), want (0, %v)", n, st, tc.want)
			}
			if !bytes.Equal(out, make([]byte, 600)) {
				t.Fatal("out written")
			}
		})
	}
}

func TestBuildICMPErrorShortBuffer(t *testing.T) {
	orig := udpPacket(t, c1IP, outIP, 10, nil) // error is 28+38 = 66 bytes
	if n, st := BuildICMPError(make([]byte, 65), orig, 11, 0, 0, gwIP); st != ShortBuffer || n != 0 {
		t.Fatalf("65 bytes: (%d, %v), want (0, short-buffer)", n, st)
	}
	if n, st := BuildICMPError(make([]byte, 66), orig, 11, 0, 0, gwIP); st != OK || n != 66 {
		t.Fatalf("66 bytes: (%d, %v), want (66, ok)", n, st)
	}
}

func TestICMPHelpers(t *testing.T) {
	orig := udpPacket(t, c1IP, outIP, 1472, nil)
	cases := []struct {
		name      string
		build     func(out []byte) (int, Status)
		typ, code uint8
		word      uint32
	}{
		{"TimeExceeded", func(o []byte) (int, Status) { return TimeExceeded(o, orig, gwIP) }, 11, 0, 0},
		{"FragNeeded", func(o []byte) (int, Status) { return FragNeeded(o, orig, 1450, gwIP) }, 3, 4, 1450},
		{"NetUnreachable", func(o []byte) (int, Status) { return NetUnreachable(o, orig, gwIP) }, 3, 0, 0},
		{"HostUnreachable", func(o []byte) (int, Status) { return HostUnreachable(o, orig, gwIP) }, 3, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]byte, MaxICMPErrorLen)
			n, st := tc.build(out)
			if st != OK || n != MaxICMPErrorLen {
				t.Fatalf("(%d, %v)", n, st)
			}
			p := decodeIPv4(t, out[:n])
			icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if icmp.TypeCode != layers.CreateICMPv4TypeCode(tc.typ, tc.code) || binary.BigEndian.Uint32(out[24:28]) != tc.word {
				t.Fatalf("type/code %v, word %#x", icmp.TypeCode, binary.BigEndian.Uint32(out[24:28]))
			}
			// gopacket decodes the quoted header as the original's.
			inner := decodeIPv4(t, append(bytes.Clone(out[28:n]), make([]byte, 1500)...)[:len(orig)])
			if ip := inner.Layer(layers.LayerTypeIPv4).(*layers.IPv4); !ip.SrcIP.Equal(nip(c1IP)) || !ip.DstIP.Equal(nip(outIP)) {
				t.Fatalf("quoted header %v -> %v", ip.SrcIP, ip.DstIP)
			}
		})
	}
}

// TestFragNeededAfterForward is the path MTU discovery sequence: a packet
// with DF passes Forward, is too big for the overlay's MTU, and the error
// carries that MTU and quotes the packet with its decremented TTL.
func TestFragNeededAfterForward(t *testing.T) {
	pkt := udpPacket(t, c1IP, outIP, 1472, nil)
	if st := Forward(pkt); st != OK {
		t.Fatal(st)
	}
	if !NeedsFrag(pkt, 1450) {
		t.Fatal("NeedsFrag false")
	}
	out := make([]byte, MaxICMPErrorLen)
	n, st := FragNeeded(out, pkt, 1450, gwIP)
	if st != OK {
		t.Fatal(st)
	}
	icmp := decodeIPv4(t, out[:n]).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if icmp.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || binary.BigEndian.Uint16(out[26:28]) != 1450 || out[28+8] != 63 {
		t.Fatalf("type %v mtu %d quoted ttl %d", icmp.TypeCode, binary.BigEndian.Uint16(out[26:28]), out[28+8])
	}
}
