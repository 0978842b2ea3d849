package encap

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/ferry-overlay/ferry/header"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestDecodeFlannelUDP(t *testing.T) {
	withOptions := func() []byte {
		// IHL 6 with one 4-byte option (NOPs, end of list), then 8 bytes.
		b := make([]byte, 32)
		header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: 32, TTL: 64, Protocol: 253,
			Src: innerIPSrc, Dst: innerIPDst})
		b[0] = 0x46
		copy(b[20:], []byte{1, 1, 1, 0})
		return b
	}
	set := func(b []byte, f func([]byte)) []byte { b = bytes.Clone(b); f(b); return b }
	good := innerIPv4(84)
	tests := []struct {
		name   string
		pkt    []byte
		status FlannelUDPStatus
	}{
		{name: "icmp echo", pkt: good, status: FlannelUDPOK},
		{name: "minimal header only", pkt: innerIPv4(20), status: FlannelUDPOK},
		{name: "full size", pkt: innerIPv4(1472), status: FlannelUDPOK},
		{name: "header with options", pkt: withOptions(), status: FlannelUDPOK},
		{name: "empty", pkt: nil, status: FlannelUDPShort},
		{name: "nineteen bytes", pkt: good[:19], status: FlannelUDPShort},
		{name: "ipv6", pkt: set(good, func(b []byte) { b[0] = 0x60 }), status: FlannelUDPNotIPv4},
		{name: "version 0", pkt: set(good, func(b []byte) { b[0] = 0x05 }), status: FlannelUDPNotIPv4},
		{name: "vxlan header by mistake", pkt: append([]byte{0x08, 0, 0, 0, 0, 0, 1, 0}, innerFrame(60)...),
			status: FlannelUDPNotIPv4},
		{name: "ihl 4", pkt: set(good, func(b []byte) { b[0] = 0x44 }), status: FlannelUDPBadLength},
		{name: "ihl 0", pkt: set(good, func(b []byte) { b[0] = 0x40 }), status: FlannelUDPBadLength},
		{name: "header longer than total length", pkt: set(innerIPv4(40), func(b []byte) { b[0] = 0x4f }),
			status: FlannelUDPBadLength},
		{name: "datagram cut short", pkt: good[:83], status: FlannelUDPBadLength},
		{name: "trailing bytes", pkt: append(bytes.Clone(good), 0), status: FlannelUDPBadLength},
		{name: "total length zero", pkt: set(good, func(b []byte) { b[2], b[3] = 0, 0 }), status: FlannelUDPBadLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner, status := DecodeFlannelUDP(tc.pkt)
			if status != tc.status {
				t.Fatalf("status %v, want %v", status, tc.status)
			}
			if status != FlannelUDPOK {
				if inner != nil {
					t.Errorf("inner %d bytes on %v", len(inner), status)
				}
				return
			}
			if len(inner) != len(tc.pkt) || &inner[0] != &tc.pkt[0] {
				t.Error("inner is not the payload itself")
			}
		})
	}
}

func TestFlannelUDPStatusString(t *testing.T) {
	want := map[FlannelUDPStatus]string{
		FlannelUDPOK:        "ok",
		FlannelUDPShort:     "flannel-udp-short",
		FlannelUDPNotIPv4:   "flannel-udp-not-ipv4",
		FlannelUDPBadLength: "flannel-udp-bad-length",
		99:                  "unknown",
	}
	for s, name := range want {
		if s.String() != name {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), name)
		}
	}
}

// flannelDecrementTTL is a naive twin of what flannel's C proxy
// (pkg/backend/udp/proxy_amd64.c, decrement_ttl) does on a little-endian
// host, re-derived from its arithmetic: it reads the checksum field as a
// native (little-endian) uint16 and adds htons(0x100) = 1 to it, or 2 when
// the native value is at least htons(0xFFFF-0x100) = 0xFFFE. Adding 1 to
// the low native byte is adding 0x0100 to the big-endian field, and the
// carry out of that byte lands in the other byte's low bit: the
// end-around carry. It reports false when the TTL reaches 0.
func flannelDecrementTTL(pkt []byte) bool {
	pkt[8]--
	if pkt[8] == 0 {
		return false
	}
	native := binary.LittleEndian.Uint16(pkt[10:])
	if native >= 0xfffe {
		native += 2
	} else {
		native++
	}
	binary.LittleEndian.PutUint16(pkt[10:], native)
	return true
}

// TestDecrementTTLMatchesFlannel sweeps the header checksum through all
// 65536 values (through the ID field, which it depends on linearly) and
// checks DecrementTTL against a full recomputation, and against flannel's
// own arithmetic byte for byte: they never differ. (The one place they
// could, the two ones'-complement zeros, flannel's add-2 branch sends to
// 0x0000, as full recomputation does.)
func TestDecrementTTLMatchesFlannel(t *testing.T) {
	for id := range 1 << 16 {
		pkt := innerIPv4(28)
		binary.BigEndian.PutUint16(pkt[4:], uint16(id))
		ip := header.IPv4(pkt)
		ip.SetChecksum(0)
		ip.SetChecksum(ip.CalculateChecksum())
		fl := bytes.Clone(pkt)
		if !DecrementTTL(pkt) || !flannelDecrementTTL(fl) {
			t.Fatal("TTL 64 refused")
		}
		if ip.TTL() != 63 || ip.Checksum() != ip.CalculateChecksum() {
			t.Fatalf("id %#x: ttl %d checksum %#04x, recomputed %#04x", id, ip.TTL(), ip.Checksum(), ip.CalculateChecksum())
		}
		if header.FoldChecksum(header.Checksum(fl[:20], 0)) != 0xffff {
			t.Fatalf("id %#x: the flannel twin wrote an invalid checksum", id)
		}
		if !bytes.Equal(pkt, fl) {
			t.Fatalf("id %#x: ferry % x, flannel % x", id, pkt[:20], fl[:20])
		}
	}
}

func TestDecrementTTLRefuses(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
	}{
		{name: "ttl 1", pkt: func() []byte { b := innerIPv4(28); b[8] = 1; return b }()},
		{name: "ttl 0", pkt: func() []byte { b := innerIPv4(28); b[8] = 0; return b }()},
		{name: "short", pkt: innerIPv4(28)[:19]},
		{name: "empty", pkt: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := bytes.Clone(tc.pkt)
			if DecrementTTL(tc.pkt) {
				t.Fatal("accepted")
			}
			if !bytes.Equal(before, tc.pkt) {
				t.Error("packet changed")
			}
		})
	}
	b := innerIPv4(28)
	b[8] = 2
	header.IPv4(b).SetChecksum(0)
	header.IPv4(b).SetChecksum(header.IPv4(b).CalculateChecksum())
	if !DecrementTTL(b) || b[8] != 1 || header.IPv4(b).Checksum() != header.IPv4(b).CalculateChecksum() {
		t.Errorf("ttl 2: % x", b[:20])
	}
}

// TestFlannelUDPWireFormat checks the format against flannel's, at the
// codec level: flannel's sender puts the TUN packet, TTL decremented, as
// the whole UDP payload. That payload is accepted as it is, and ferry's
// own encapsulation (DecrementTTL, no header) produces it byte for byte.
func TestFlannelUDPWireFormat(t *testing.T) {
	fromTUN := innerIPv4(84)
	flannelSends := bytes.Clone(fromTUN)
	if !flannelDecrementTTL(flannelSends) {
		t.Fatal("flannel twin dropped")
	}
	ferrySends := bytes.Clone(fromTUN)
	if !DecrementTTL(ferrySends) {
		t.Fatal("DecrementTTL dropped")
	}
	if !bytes.Equal(ferrySends, flannelSends) {
		t.Fatalf("ferry sends % x\nflannel sends % x", ferrySends, flannelSends)
	}
	inner, status := DecodeFlannelUDP(flannelSends)
	if status != FlannelUDPOK || !bytes.Equal(inner, flannelSends) {
		t.Fatalf("flannel's datagram: %v", status)
	}
}

// TestGopacketAgreesOnFlannelUDP: a datagram gopacket builds (outer IPv4,
// UDP to 8285, inner IPv4/UDP) decodes with ours, and one we build decodes
// with gopacket down to the inner UDP ports.
func TestGopacketAgreesOnFlannelUDP(t *testing.T) {
	innerIP := &layers.IPv4{Version: 4, IHL: 5, TTL: 63, Protocol: layers.IPProtocolUDP,
		SrcIP: innerIPSrc.AsSlice(), DstIP: innerIPDst.AsSlice()}
	innerUDP := &layers.UDP{SrcPort: 1234, DstPort: 5678}
	if err := innerUDP.SetNetworkLayerForChecksum(innerIP); err != nil {
		t.Fatal(err)
	}
	outerIP := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: outerSrc.AsSlice(), DstIP: outerDst.AsSlice()}
	outerUDP := &layers.UDP{SrcPort: FlannelUDPPort, DstPort: FlannelUDPPort}
	if err := outerUDP.SetNetworkLayerForChecksum(outerIP); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		outerIP, outerUDP, innerIP, innerUDP, gopacket.Payload("flannel")); err != nil {
		t.Fatal(err)
	}
	var p header.Parsed
	p.DecodeIP(buf.Bytes())
	if p.IPProto != header.ProtoUDP || p.DstPort != FlannelUDPPort {
		t.Fatalf("outer %+v", p)
	}
	payload := buf.Bytes()[p.L4Offset+header.UDPLen:]
	inner, status := DecodeFlannelUDP(payload)
	if status != FlannelUDPOK {
		t.Fatalf("DecodeFlannelUDP: %v", status)
	}
	var in header.Parsed
	in.DecodeIP(inner)
	if in.Status != header.DecodeOK || in.SrcPort != 1234 || in.DstPort != 5678 || in.TTL != 63 {
		t.Errorf("inner %+v", in)
	}

	// Ours, the other way: the inner packet as the whole payload.
	ours := innerIPv4(84)
	udp := make([]byte, header.UDPLen+len(ours))
	header.UDP(udp).Encode(&header.UDPFields{SrcPort: FlannelUDPPort, DstPort: FlannelUDPPort, Length: uint16(len(udp))})
	copy(udp[header.UDPLen:], ours)
	pkt := gopacket.NewPacket(outerIPv4(header.ProtoUDP, udp), layers.LayerTypeIPv4, gopacket.Default)
	u, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if u == nil || u.DstPort != FlannelUDPPort || !bytes.Equal(u.Payload, ours) {
		t.Fatalf("gopacket outer UDP %+v", u)
	}
	ip := gopacket.NewPacket(u.Payload, layers.LayerTypeIPv4, gopacket.Default)
	if el := ip.ErrorLayer(); el != nil {
		t.Fatalf("gopacket inner: %v", el.Error())
	}
	i4, _ := ip.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	ic, _ := ip.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if i4 == nil || ic == nil || !i4.DstIP.Equal(innerIPDst.AsSlice()) || ic.Id != 0x4242 || ic.Seq != 1 {
		t.Errorf("gopacket inner %v", ip)
	}
}

func TestFlannelUDPAllocs(t *testing.T) {
	pkt := innerIPv4(84)
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeFlannelUDP(pkt) }); n != 0 {
		t.Errorf("DecodeFlannelUDP allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { pkt[8] = 64; _ = DecrementTTL(pkt) }); n != 0 {
		t.Errorf("DecrementTTL allocates %v times", n)
	}
}

// BenchmarkFlannelUDPEncap measures flannel-UDP's per-packet encapsulation
// work on an 84-byte packet: there is no header to write (the socket adds
// UDP and IP), only flannel's TTL decrement.
func BenchmarkFlannelUDPEncap(b *testing.B) {
	pkt := innerIPv4(84)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		pkt[8] = 64 // keep the TTL from running out; the checksum may drift
		if !DecrementTTL(pkt) {
			b.Fatal("dropped")
		}
	}
}

// BenchmarkFlannelUDPDecap measures the receive side on an 84-byte packet:
// DecodeFlannelUDP, then flannel's TTL decrement before the TUN write.
func BenchmarkFlannelUDPDecap(b *testing.B) {
	pkt := innerIPv4(84)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		inner, status := DecodeFlannelUDP(pkt)
		if status != FlannelUDPOK {
			b.Fatal(status)
		}
		inner[8] = 64
		if !DecrementTTL(inner) {
			b.Fatal("dropped")
		}
	}
}

func FuzzDecodeFlannelUDP(f *testing.F) {
	f.Add(innerIPv4(20))
	f.Add(innerIPv4(84))
	f.Add(append([]byte{0x46}, innerIPv4(32)[1:]...))
	f.Add([]byte{})
	f.Add([]byte{0x60, 0, 0, 0})
	f.Fuzz(func(t *testing.T, payload []byte) {
		inner, status := DecodeFlannelUDP(payload)
		switch status {
		case FlannelUDPOK:
			ip := header.IPv4(inner)
			if len(inner) != len(payload) || !ip.IsValid(len(inner)) || int(ip.TotalLength()) != len(inner) {
				t.Fatalf("accepted % x", payload)
			}
			// DecrementTTL keeps a valid header checksum valid and
			// changes only the TTL and the checksum.
			valid := ip.Checksum() == ip.CalculateChecksum()
			before := bytes.Clone(inner)
			if !DecrementTTL(inner) {
				if before[8] > 1 || !bytes.Equal(before, inner) {
					t.Fatalf("refused TTL %d, or changed the packet", before[8])
				}
				return
			}
			if ip.TTL() != before[8]-1 {
				t.Fatalf("TTL %d -> %d", before[8], ip.TTL())
			}
			if valid && ip.Checksum() != ip.CalculateChecksum() {
				t.Fatalf("checksum %#04x after decrement, want %#04x", ip.Checksum(), ip.CalculateChecksum())
			}
			before[8], before[10], before[11] = inner[8], inner[10], inner[11]
			if !bytes.Equal(before, inner) {
				t.Fatal("DecrementTTL changed more than TTL and checksum")
			}
		case FlannelUDPShort, FlannelUDPNotIPv4, FlannelUDPBadLength:
			if inner != nil {
				t.Fatalf("inner with status %v", status)
			}
		default:
			t.Fatalf("unknown status %d", status)
		}
	})
}
