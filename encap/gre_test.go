package encap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/ferry-overlay/ferry/header"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	outerSrc   = netip.MustParseAddr("192.0.2.1")
	outerDst   = netip.MustParseAddr("192.0.2.2")
	innerIPSrc = netip.MustParseAddr("10.244.1.2")
	innerIPDst = netip.MustParseAddr("10.244.2.3")
)

// innerIPv4 returns an IPv4 packet of n bytes (n >= 20) from innerIPSrc to
// innerIPDst with a valid header checksum; from n >= 28 on it is an ICMP
// echo request (ident 0x4242, sequence 1) with a recognisable payload and
// a valid ICMP checksum.
func innerIPv4(n int) []byte {
	b := make([]byte, n)
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(n), ID: 7, TTL: 64,
		Protocol: header.ProtoICMPv4, Src: innerIPSrc, Dst: innerIPDst})
	if n < header.IPv4MinLen+header.ICMPv4MinLen {
		return b
	}
	icmp := header.ICMPv4(b[header.IPv4MinLen:])
	icmp.SetType(8)
	binary.BigEndian.PutUint16(icmp[4:], 0x4242)
	binary.BigEndian.PutUint16(icmp[6:], 1)
	for i := header.ICMPv4MinLen; i < len(icmp); i++ {
		icmp[i] = byte(i)
	}
	icmp.SetChecksum(icmp.CalculateChecksum())
	return b
}

// innerEthIPv4 returns an Ethernet frame from innerSrc to innerDst carrying
// innerIPv4(n).
func innerEthIPv4(n int) []byte {
	f := make([]byte, header.EthernetLen, header.EthernetLen+n)
	header.Ethernet(f).Encode(header.MAC(innerDst), header.MAC(innerSrc), header.EtherTypeIPv4)
	return append(f, innerIPv4(n)...)
}

// greEncapsulate lays out a buffer the way the pipeline does (headroom,
// then the inner packet), prepends the GRE header in place with PutGRE and
// returns the GRE packet, header first.
func greEncapsulate(proto uint16, key uint32, hasKey bool, inner []byte) []byte {
	const headroom = 64
	buf := make([]byte, headroom+len(inner))
	copy(buf[headroom:], inner)
	n := GRELen(hasKey)
	if got := PutGRE(buf[headroom-n:headroom], proto, key, hasKey); got != n {
		panic(fmt.Sprintf("PutGRE returned %d, GRELen %d", got, n))
	}
	return buf[headroom-n:]
}

// greRaw builds a GRE packet by hand: the flag word f, protocol proto,
// then a zero checksum word if f has C, key if f has K, seq if f has S,
// then inner. With C set the checksum is filled in correctly.
func greRaw(f, proto uint16, key, seq uint32, inner []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, f)
	b = binary.BigEndian.AppendUint16(b, proto)
	if f&greFlagChecksum != 0 {
		b = append(b, 0, 0, 0, 0)
	}
	if f&greFlagKey != 0 {
		b = binary.BigEndian.AppendUint32(b, key)
	}
	if f&greFlagSeq != 0 {
		b = binary.BigEndian.AppendUint32(b, seq)
	}
	b = append(b, inner...)
	if f&greFlagChecksum != 0 {
		binary.BigEndian.PutUint16(b[4:], ^header.FoldChecksum(header.Checksum(b, 0)))
	}
	return b
}

// outerIPv4 wraps payload in a 20-byte IPv4 header of protocol proto from
// outerSrc to outerDst.
func outerIPv4(proto header.IPProto, payload []byte) []byte {
	b := make([]byte, header.IPv4MinLen+len(payload))
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), ID: 1, TTL: 64,
		Flags: header.IPv4FlagDontFragment, Protocol: proto, Src: outerSrc, Dst: outerDst})
	copy(b[header.IPv4MinLen:], payload)
	return b
}

func TestGRERoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		proto  uint16
		key    uint32
		hasKey bool
		inner  []byte
	}{
		{name: "teb key vni 1", proto: GREProtoTEB, key: 1, hasKey: true, inner: innerFrame(64)},
		{name: "teb key max vni", proto: GREProtoTEB, key: MaxVNI, hasKey: true, inner: innerFrame(1514)},
		{name: "teb key all ones", proto: GREProtoTEB, key: 0xffffffff, hasKey: true, inner: innerFrame(14)},
		{name: "teb key zero", proto: GREProtoTEB, key: 0, hasKey: true, inner: innerFrame(60)},
		{name: "teb no key", proto: GREProtoTEB, inner: innerFrame(60)},
		{name: "ipv4 no key", proto: GREProtoIPv4, inner: innerIPv4(84)},
		{name: "ipv4 minimal", proto: GREProtoIPv4, inner: innerIPv4(20)},
		{name: "ipv4 key", proto: GREProtoIPv4, key: 0xdeadbeef, hasKey: true, inner: innerIPv4(1400)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkt := greEncapsulate(tc.proto, tc.key, tc.hasKey, tc.inner)
			g := GRE(pkt)
			if g.Version() != 0 || g.ChecksumPresent() || g.SeqPresent() || g.KeyPresent() != tc.hasKey ||
				g.Protocol() != tc.proto || g.HeaderLen() != GRELen(tc.hasKey) {
				t.Errorf("view: version %d C %v S %v K %v proto %#x len %d", g.Version(), g.ChecksumPresent(),
					g.SeqPresent(), g.KeyPresent(), g.Protocol(), g.HeaderLen())
			}
			if tc.hasKey && g.Key() != tc.key {
				t.Errorf("Key() = %#x", g.Key())
			}
			proto, key, hasKey, n, status := DecodeGRE(pkt)
			if status != GREOK || proto != tc.proto || key != tc.key || hasKey != tc.hasKey || n != GRELen(tc.hasKey) {
				t.Fatalf("DecodeGRE = %#x, %#x, %v, %d, %v", proto, key, hasKey, n, status)
			}
			if !bytes.Equal(pkt[n:], tc.inner) {
				t.Error("inner packet changed")
			}
		})
	}
}

func TestPutGREExactBytes(t *testing.T) {
	tests := []struct {
		name   string
		proto  uint16
		key    uint32
		hasKey bool
		want   []byte
	}{
		{name: "teb key", proto: GREProtoTEB, key: 0x00abcdef, hasKey: true,
			want: []byte{0x20, 0x00, 0x65, 0x58, 0x00, 0xab, 0xcd, 0xef}},
		{name: "ipv4 no key", proto: GREProtoIPv4, want: []byte{0x00, 0x00, 0x08, 0x00}},
		{name: "ipv4 key", proto: GREProtoIPv4, key: 1, hasKey: true,
			want: []byte{0x20, 0x00, 0x08, 0x00, 0, 0, 0, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Garbage in the headroom must not leak into the header, and
			// bytes past the header must stay untouched.
			b := bytes.Repeat([]byte{0xff}, 12)
			n := PutGRE(b, tc.proto, tc.key, tc.hasKey)
			if !bytes.Equal(b[:n], tc.want) {
				t.Errorf("header % x, want % x", b[:n], tc.want)
			}
			for i := n; i < len(b); i++ {
				if b[i] != 0xff {
					t.Fatalf("byte %d past the header written", i)
				}
			}
		})
	}
}

func TestDecodeGREMalformed(t *testing.T) {
	teb, ip4 := innerFrame(14), innerIPv4(20)
	tests := []struct {
		name    string
		pkt     []byte
		status  GREStatus
		hdrLen  int    // on GREOK
		key     uint32 // on GREOK
		withKey bool   // on GREOK
	}{
		{name: "empty", pkt: nil, status: GREShort},
		{name: "three bytes", pkt: []byte{0, 0, 0x65}, status: GREShort},
		{name: "key announced but cut", pkt: greRaw(greFlagKey, GREProtoTEB, 5, 0, nil)[:6], status: GREShort},
		{name: "checksum announced but cut", pkt: []byte{0x80, 0, 0x08, 0x00, 0}, status: GREShort},
		{name: "teb inner ethernet cut", pkt: greRaw(greFlagKey, GREProtoTEB, 5, 0, teb[:13]), status: GREShort},
		{name: "teb minimal inner ethernet", pkt: greRaw(greFlagKey, GREProtoTEB, 5, 0, teb), status: GREOK,
			hdrLen: 8, key: 5, withKey: true},
		{name: "ipv4 inner header cut", pkt: greRaw(0, GREProtoIPv4, 0, 0, ip4[:19]), status: GREShort},
		{name: "ipv4 minimal inner header", pkt: greRaw(0, GREProtoIPv4, 0, 0, ip4), status: GREOK, hdrLen: 4},
		{name: "version 1 (pptp)", pkt: greRaw(greFlagKey|1, 0x880b, 0, 0, ip4), status: GREBadVersion},
		{name: "version 7", pkt: greRaw(7, GREProtoIPv4, 0, 0, ip4), status: GREBadVersion},
		{name: "bad version wins over routing", pkt: greRaw(greFlagRouting|1, GREProtoIPv4, 0, 0, ip4),
			status: GREBadVersion},
		{name: "routing present", pkt: greRaw(greFlagRouting, GREProtoIPv4, 0, 0, ip4), status: GRERouting},
		{name: "strict source route", pkt: greRaw(greFlagStrictSR, GREProtoIPv4, 0, 0, ip4), status: GRERouting},
		{name: "sequence number", pkt: greRaw(greFlagKey|greFlagSeq, GREProtoTEB, 5, 9, teb),
			status: GREUnsupportedFlags},
		{name: "top recursion bit (rfc 2784 bit 5)", pkt: greRaw(greFlagRecursion2, GREProtoIPv4, 0, 0, ip4),
			status: GREUnsupportedFlags},
		{name: "low recursion bits ignored", pkt: greRaw(0x0300, GREProtoIPv4, 0, 0, ip4), status: GREOK, hdrLen: 4},
		{name: "reserved bits 8-12 ignored", pkt: greRaw(0x00f8, GREProtoIPv4, 0, 0, ip4), status: GREOK, hdrLen: 4},
		{name: "ipv6 protocol", pkt: greRaw(0, header.EtherTypeIPv6, 0, 0, ip4), status: GREUnknownProtocol},
		{name: "erspan protocol", pkt: greRaw(0, 0x88be, 0, 0, teb), status: GREUnknownProtocol},
		{name: "zero protocol (keepalive)", pkt: greRaw(0, 0, 0, 0, ip4), status: GREUnknownProtocol},
		{name: "checksum right", pkt: greRaw(greFlagChecksum, GREProtoIPv4, 0, 0, innerIPv4(61)), status: GREOK,
			hdrLen: 8},
		{name: "checksum right with key", pkt: greRaw(greFlagChecksum|greFlagKey, GREProtoTEB, 0x123456, 0,
			innerFrame(61)), status: GREOK, hdrLen: 12, key: 0x123456, withKey: true},
		{name: "checksum wrong", pkt: func() []byte {
			b := greRaw(greFlagChecksum|greFlagKey, GREProtoTEB, 42, 0, innerFrame(64))
			b[4] ^= 0x01
			return b
		}(), status: GREBadChecksum},
		{name: "checksum right but payload corrupted", pkt: func() []byte {
			b := greRaw(greFlagChecksum, GREProtoIPv4, 0, 0, innerIPv4(100))
			b[50] ^= 0x80
			return b
		}(), status: GREBadChecksum},
		{name: "checksum zero field but not zero sum", pkt: func() []byte {
			b := greRaw(greFlagChecksum, GREProtoIPv4, 0, 0, innerIPv4(40))
			b[4], b[5] = 0, 0
			return b
		}(), status: GREBadChecksum},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proto, key, hasKey, n, status := DecodeGRE(tc.pkt)
			if status != tc.status {
				t.Fatalf("status %v, want %v", status, tc.status)
			}
			if status != GREOK {
				if proto != 0 || key != 0 || hasKey || n != 0 {
					t.Errorf("non-zero results %#x %#x %v %d on %v", proto, key, hasKey, n, status)
				}
				return
			}
			if n != tc.hdrLen || key != tc.key || hasKey != tc.withKey {
				t.Errorf("hdrLen %d key %#x hasKey %v, want %d %#x %v", n, key, hasKey, tc.hdrLen, tc.key, tc.withKey)
			}
		})
	}
}

func TestGREStatusString(t *testing.T) {
	want := map[GREStatus]string{
		GREOK:               "ok",
		GREShort:            "gre-short",
		GREBadVersion:       "gre-bad-version",
		GRERouting:          "gre-routing",
		GREUnsupportedFlags: "gre-unsupported-flags",
		GREUnknownProtocol:  "gre-unknown-protocol",
		GREBadChecksum:      "gre-bad-checksum",
		99:                  "unknown",
	}
	for s, name := range want {
		if s.String() != name {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), name)
		}
	}
}

func TestStripIPv4(t *testing.T) {
	gre := greEncapsulate(GREProtoTEB, 42, true, innerFrame(60))
	whole := outerIPv4(header.ProtoGRE, gre)
	withOptions := func() []byte {
		// IHL 6: one 4-byte option (NOPs and an end-of-list).
		b := make([]byte, 24+len(gre))
		copy(b, whole[:20])
		b[0] = 0x46
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		copy(b[20:], []byte{1, 1, 1, 0})
		copy(b[24:], gre)
		return b
	}()
	tests := []struct {
		name    string
		pkt     []byte
		ok      bool
		payload []byte
	}{
		{name: "plain", pkt: whole, ok: true, payload: gre},
		{name: "trailing bytes cut", pkt: append(bytes.Clone(whole), 0xee, 0xee), ok: true, payload: gre},
		{name: "options skipped", pkt: withOptions, ok: true, payload: gre},
		{name: "empty", pkt: nil},
		{name: "header cut", pkt: whole[:19]},
		{name: "truncated read", pkt: whole[:len(whole)-1]},
		{name: "ipv6", pkt: func() []byte { b := bytes.Clone(whole); b[0] = 0x65; return b }()},
		{name: "ihl 4", pkt: func() []byte { b := bytes.Clone(whole); b[0] = 0x44; return b }()},
		{name: "more fragments", pkt: func() []byte { b := bytes.Clone(whole); b[6] = 0x20; return b }()},
		{name: "later fragment", pkt: func() []byte { b := bytes.Clone(whole); b[6], b[7] = 0, 0xb9; return b }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload, src, ok := StripIPv4(tc.pkt)
			if ok != tc.ok {
				t.Fatalf("ok = %v", ok)
			}
			if !ok {
				if payload != nil || src.IsValid() {
					t.Errorf("results %v %v on failure", payload, src)
				}
				return
			}
			if src != outerSrc || !bytes.Equal(payload, tc.payload) {
				t.Errorf("src %v payload % x", src, payload)
			}
		})
	}
}

// TestGopacketDecodesOurGRE builds whole outer IPv4 packets with PutGRE and
// has gopacket decode them, down to the inner packet.
func TestGopacketDecodesOurGRE(t *testing.T) {
	t.Run("teb with key", func(t *testing.T) {
		inner := innerEthIPv4(64)
		pkt := outerIPv4(header.ProtoGRE, greEncapsulate(GREProtoTEB, 0xabcdef, true, inner))
		p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("gopacket: %v", el.Error())
		}
		g, _ := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
		if g == nil {
			t.Fatalf("no GRE layer in %v", p)
		}
		if !g.KeyPresent || g.Key != 0xabcdef || g.Protocol != layers.EthernetTypeTransparentEthernetBridging ||
			g.ChecksumPresent || g.RoutingPresent || g.SeqPresent || g.StrictSourceRoute || g.Version != 0 ||
			g.RecursionControl != 0 || g.Flags != 0 || len(g.Contents) != GREKeyHeaderLen {
			t.Errorf("gopacket GRE %+v", g)
		}
		e, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if e == nil || !bytes.Equal(e.SrcMAC, innerSrc) || !bytes.Equal(e.DstMAC, innerDst) ||
			e.EthernetType != layers.EthernetTypeIPv4 || !bytes.Equal(e.Payload, inner[header.EthernetLen:]) {
			t.Errorf("inner Ethernet %+v", e)
		}
	})
	t.Run("ipv4 without key", func(t *testing.T) {
		inner := innerIPv4(84)
		pkt := outerIPv4(header.ProtoGRE, greEncapsulate(GREProtoIPv4, 0, false, inner))
		p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("gopacket: %v", el.Error())
		}
		g, _ := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
		if g == nil || g.KeyPresent || g.Protocol != layers.EthernetTypeIPv4 || len(g.Contents) != GREHeaderLen {
			t.Fatalf("gopacket GRE %+v", g)
		}
		ips := p.Layers()
		if len(ips) < 3 {
			t.Fatalf("layers %v", ips)
		}
		in, _ := ips[2].(*layers.IPv4)
		if in == nil || !in.SrcIP.Equal(innerIPSrc.AsSlice()) || !in.DstIP.Equal(innerIPDst.AsSlice()) ||
			in.Protocol != layers.IPProtocolICMPv4 || in.Length != 84 {
			t.Errorf("inner IPv4 %+v", ips[2])
		}
	})
}

// gopacketGRE serializes outer IPv4 / g / inner layers with gopacket.
func gopacketGRE(t *testing.T, g *layers.GRE, inner ...gopacket.SerializableLayer) []byte {
	t.Helper()
	outer := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolGRE,
		SrcIP: outerSrc.AsSlice(), DstIP: outerDst.AsSlice()}
	buf := gopacket.NewSerializeBuffer()
	ls := append([]gopacket.SerializableLayer{outer, g}, inner...)
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestWeDecodeGopacketGRE has gopacket build whole outer packets, as a
// foreign peer would send them, and decodes them with StripIPv4 and
// DecodeGRE.
func TestWeDecodeGopacketGRE(t *testing.T) {
	innerUDP := func() []gopacket.SerializableLayer {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: innerIPSrc.AsSlice(), DstIP: innerIPDst.AsSlice()}
		udp := &layers.UDP{SrcPort: 1234, DstPort: 5678}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		return []gopacket.SerializableLayer{ip, udp, gopacket.Payload("hello, ferry")}
	}
	eth := &layers.Ethernet{SrcMAC: innerSrc, DstMAC: innerDst, EthernetType: layers.EthernetTypeIPv4}
	tests := []struct {
		name    string
		gre     *layers.GRE
		l2      bool
		status  GREStatus
		hdrLen  int
		key     uint32
		withKey bool
	}{
		{name: "teb with key", gre: &layers.GRE{KeyPresent: true, Key: 4242,
			Protocol: layers.EthernetTypeTransparentEthernetBridging}, l2: true, status: GREOK, hdrLen: 8, key: 4242, withKey: true},
		{name: "ipv4 without key", gre: &layers.GRE{Protocol: layers.EthernetTypeIPv4}, status: GREOK, hdrLen: 4},
		{name: "teb with checksum and key", gre: &layers.GRE{ChecksumPresent: true, KeyPresent: true, Key: 7,
			Protocol: layers.EthernetTypeTransparentEthernetBridging}, l2: true, status: GREOK, hdrLen: 12, key: 7, withKey: true},
		{name: "ipv4 with checksum", gre: &layers.GRE{ChecksumPresent: true, Protocol: layers.EthernetTypeIPv4},
			status: GREOK, hdrLen: 8},
		{name: "sequence number", gre: &layers.GRE{KeyPresent: true, SeqPresent: true, Key: 1, Seq: 99,
			Protocol: layers.EthernetTypeTransparentEthernetBridging}, l2: true, status: GREUnsupportedFlags},
		{name: "routing", gre: &layers.GRE{RoutingPresent: true, Protocol: layers.EthernetTypeIPv4,
			GRERouting: &layers.GRERouting{AddressFamily: 0x0800, SRELength: 4, RoutingInformation: []byte{1, 2, 3, 4}}},
			status: GRERouting},
		{name: "enhanced gre version 1", gre: &layers.GRE{Version: 1, KeyPresent: true, Protocol: layers.EthernetTypeIPv4},
			status: GREBadVersion},
		{name: "ipv6 payload", gre: &layers.GRE{Protocol: layers.EthernetTypeIPv6}, status: GREUnknownProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := innerUDP()
			if tc.l2 {
				in = append([]gopacket.SerializableLayer{eth}, in...)
			}
			pkt := gopacketGRE(t, tc.gre, in...)
			payload, src, ok := StripIPv4(pkt)
			if !ok || src != outerSrc {
				t.Fatalf("StripIPv4: %v %v", src, ok)
			}
			proto, key, hasKey, n, status := DecodeGRE(payload)
			if status != tc.status {
				t.Fatalf("status %v, want %v", status, tc.status)
			}
			if status != GREOK {
				return
			}
			if proto != uint16(tc.gre.Protocol) || n != tc.hdrLen || key != tc.key || hasKey != tc.withKey {
				t.Fatalf("DecodeGRE = %#x %#x %v %d", proto, key, hasKey, n)
			}
			var p header.Parsed
			if tc.l2 {
				p.Decode(payload[n:])
				if p.SrcMAC != header.MAC(innerSrc) || p.DstMAC != header.MAC(innerDst) {
					t.Errorf("inner MACs %v %v", p.SrcMAC, p.DstMAC)
				}
			} else {
				p.DecodeIP(payload[n:])
			}
			if p.Status != header.DecodeOK || p.SrcPort != 1234 || p.DstPort != 5678 {
				t.Errorf("inner packet %+v", p)
			}
		})
	}
	// A corrupted checksum, written by gopacket, is refused.
	pkt := gopacketGRE(t, &layers.GRE{ChecksumPresent: true, Protocol: layers.EthernetTypeIPv4}, innerUDP()...)
	pkt[len(pkt)-1] ^= 0xff
	payload, _, _ := StripIPv4(pkt)
	if _, _, _, _, status := DecodeGRE(payload); status != GREBadChecksum {
		t.Errorf("corrupted payload: status %v, want gre-bad-checksum", status)
	}
}

func TestGREAllocs(t *testing.T) {
	pkt := outerIPv4(header.ProtoGRE, greEncapsulate(GREProtoTEB, 42, true, innerFrame(64)))
	gre := pkt[header.IPv4MinLen:]
	csum := greRaw(greFlagChecksum|greFlagKey, GREProtoTEB, 42, 0, innerFrame(64))
	if n := testing.AllocsPerRun(100, func() { PutGRE(gre, GREProtoTEB, 42, true) }); n != 0 {
		t.Errorf("PutGRE allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _, _, _ = DecodeGRE(gre) }); n != 0 {
		t.Errorf("DecodeGRE allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _, _, _ = DecodeGRE(csum) }); n != 0 {
		t.Errorf("DecodeGRE with checksum allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = StripIPv4(pkt) }); n != 0 {
		t.Errorf("StripIPv4 allocates %v times", n)
	}
}

// BenchmarkGREEncap measures l2 GRE encapsulation of a 64-byte frame: the
// 8-byte header with the VNI as key, written into the headroom.
func BenchmarkGREEncap(b *testing.B) {
	const headroom = 64
	buf := make([]byte, headroom+64)
	copy(buf[headroom:], innerFrame(64))
	b.SetBytes(64)
	b.ReportAllocs()
	for b.Loop() {
		PutGRE(buf[headroom-GREKeyHeaderLen:headroom], GREProtoTEB, 4242, true)
	}
}

// BenchmarkGREDecap measures the receive side of l2 GRE on a 64-byte
// frame: StripIPv4 of the raw socket's packet, then DecodeGRE.
func BenchmarkGREDecap(b *testing.B) {
	pkt := outerIPv4(header.ProtoGRE, greEncapsulate(GREProtoTEB, 4242, true, innerFrame(64)))
	b.SetBytes(64)
	b.ReportAllocs()
	var inner []byte
	for b.Loop() {
		payload, _, ok := StripIPv4(pkt)
		if !ok {
			b.Fatal("StripIPv4")
		}
		_, key, _, n, status := DecodeGRE(payload)
		if status != GREOK || key != 4242 {
			b.Fatal(status)
		}
		inner = payload[n:]
	}
	if len(inner) != 64 {
		b.Fatal(len(inner))
	}
}

func FuzzDecodeGRE(f *testing.F) {
	f.Add(greEncapsulate(GREProtoTEB, 1, true, innerFrame(14)))
	f.Add(greEncapsulate(GREProtoIPv4, 0, false, innerIPv4(20)))
	f.Add(greRaw(greFlagChecksum|greFlagKey, GREProtoTEB, 9, 0, innerFrame(20)))
	f.Add(greRaw(greFlagKey|greFlagSeq, GREProtoTEB, 9, 1, innerFrame(20)))
	f.Add(greRaw(greFlagRouting, GREProtoIPv4, 0, 0, innerIPv4(20)))
	f.Add([]byte{})
	f.Add([]byte{0x20, 0, 0x65, 0x58})
	f.Fuzz(func(t *testing.T, b []byte) {
		proto, key, hasKey, n, status := DecodeGRE(b)
		switch status {
		case GREOK:
			if n < GREHeaderLen || n > GREKeyHeaderLen+4 /* checksum and key */ || n > len(b) {
				t.Fatalf("header length %d of %d bytes", n, len(b))
			}
			minInner := header.EthernetLen
			if proto == GREProtoIPv4 {
				minInner = header.IPv4MinLen
			} else if proto != GREProtoTEB {
				t.Fatalf("accepted protocol %#x", proto)
			}
			if len(b)-n < minInner {
				t.Fatalf("inner of %d bytes for protocol %#x", len(b)-n, proto)
			}
			if !hasKey && key != 0 {
				t.Fatalf("key %#x without K", key)
			}
			// Without a checksum, what we accept re-encodes to the same
			// header, up to the bits receivers ignore (recursion
			// control's low bits and bits 8-12).
			if !GRE(b).ChecksumPresent() {
				re := make([]byte, GREKeyHeaderLen)
				re = re[:PutGRE(re, proto, key, hasKey)]
				got := bytes.Clone(b[:n])
				got[0] &^= 0x03
				got[1] &^= 0xf8
				if !bytes.Equal(re, got) {
					t.Fatalf("accepted % x, which re-encodes as % x", b[:n], re)
				}
			} else if header.FoldChecksum(header.Checksum(b, 0)) != 0xffff {
				t.Fatal("accepted a bad checksum")
			}
		case GREShort, GREBadVersion, GRERouting, GREUnsupportedFlags, GREUnknownProtocol, GREBadChecksum:
			if proto != 0 || key != 0 || hasKey || n != 0 {
				t.Fatalf("results %#x %#x %v %d with status %v", proto, key, hasKey, n, status)
			}
		default:
			t.Fatalf("unknown status %d", status)
		}
		// StripIPv4 must not panic on the same bytes either, and what it
		// returns lies within them.
		if payload, _, ok := StripIPv4(b); ok && len(payload) > len(b)-header.IPv4MinLen {
			t.Fatalf("payload of %d bytes from %d", len(payload), len(b))
		}
	})
}
