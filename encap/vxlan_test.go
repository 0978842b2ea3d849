package encap

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"testing"

	"github.com/ferry-overlay/ferry/header"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	innerSrc = net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	innerDst = net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x03}
)

// innerEtherType is the IEEE local experimental EtherType, so decoders
// treat the inner payload as opaque.
const innerEtherType = 0x88b5

// innerFrame returns an Ethernet frame of n bytes (n >= 14) with a
// recognisable payload.
func innerFrame(n int) []byte {
	f := make([]byte, n)
	header.Ethernet(f).Encode(header.MAC(innerDst), header.MAC(innerSrc), innerEtherType)
	for i := header.EthernetLen; i < n; i++ {
		f[i] = byte(i)
	}
	return f
}

// encapsulate lays out a buffer the way the pipeline does (headroom, then
// the inner frame), prepends the header in place and returns the VXLAN
// packet, header first.
func encapsulate(vni uint32, inner []byte) []byte {
	const headroom = 64
	buf := make([]byte, headroom+len(inner))
	copy(buf[headroom:], inner)
	PutVXLAN(buf[headroom-VXLANHeaderLen:headroom], vni)
	return buf[headroom-VXLANHeaderLen:]
}

func TestVXLANRoundTrip(t *testing.T) {
	for _, vni := range []uint32{0, 1, 42, 4096, 0x123456, MaxVNI} {
		t.Run(fmt.Sprint(vni), func(t *testing.T) {
			inner := innerFrame(64)
			pkt := encapsulate(vni, inner)
			if got := VXLAN(pkt).Flags(); got != VXLANFlagVNI {
				t.Errorf("Flags() = %#x", got)
			}
			if got := VXLAN(pkt).VNI(); got != vni {
				t.Errorf("VNI() = %d", got)
			}
			gotVNI, status := DecodeVXLAN(pkt)
			if status != VXLANOK || gotVNI != vni {
				t.Fatalf("DecodeVXLAN = %d, %v; want %d, ok", gotVNI, status, vni)
			}
			if !bytes.Equal(pkt[VXLANHeaderLen:], inner) {
				t.Error("inner frame changed")
			}
		})
	}
}

func TestPutVXLANMasksVNIAndOverwritesGarbage(t *testing.T) {
	b := bytes.Repeat([]byte{0xff}, VXLANHeaderLen)
	PutVXLAN(b, 1<<24|7)
	if want := []byte{0x08, 0, 0, 0, 0, 0, 7, 0}; !bytes.Equal(b, want) {
		t.Errorf("header % x, want % x", b, want)
	}
}

func TestVXLANSetVNI(t *testing.T) {
	b := make(VXLAN, VXLANHeaderLen)
	PutVXLAN(b, 5)
	b[7] = 0xaa
	b.SetVNI(0xabcdef)
	if b.VNI() != 0xabcdef || b[7] != 0xaa || b.Flags() != VXLANFlagVNI {
		t.Errorf("after SetVNI: % x", []byte(b))
	}
}

func TestDecodeVXLANMalformed(t *testing.T) {
	good := func() []byte { return encapsulate(100, innerFrame(14)) }
	tests := []struct {
		name   string
		pkt    func() []byte
		status VXLANStatus
	}{
		{name: "empty", pkt: func() []byte { return nil }, status: VXLANShort},
		{name: "header cut", pkt: func() []byte { return good()[:7] }, status: VXLANShort},
		{name: "header only", pkt: func() []byte { return good()[:8] }, status: VXLANShort},
		{name: "inner ethernet cut", pkt: func() []byte { return good()[:21] }, status: VXLANShort},
		{name: "minimal inner ethernet", pkt: good, status: VXLANOK},
		{name: "I flag clear", pkt: func() []byte { b := good(); b[0] = 0; return b }, status: VXLANBadFlags},
		{name: "gbp G flag", pkt: func() []byte { b := good(); b[0] |= 0x80; return b }, status: VXLANBadFlags},
		{name: "gpe P flag", pkt: func() []byte { b := good(); b[0] |= 0x04; return b }, status: VXLANBadFlags},
		{name: "low flag bit", pkt: func() []byte { b := good(); b[0] |= 0x01; return b }, status: VXLANBadFlags},
		{name: "reserved byte 1", pkt: func() []byte { b := good(); b[1] = 0x40; return b }, status: VXLANBadFlags},
		{name: "reserved byte 3 (gbp policy id)", pkt: func() []byte { b := good(); b[3] = 1; return b }, status: VXLANBadFlags},
		{name: "last reserved byte (rco)", pkt: func() []byte { b := good(); b[7] = 0x80; return b }, status: VXLANBadFlags},
		{name: "all vni bits set is fine", pkt: func() []byte {
			b := good()
			b[4], b[5], b[6] = 0xff, 0xff, 0xff
			return b
		}, status: VXLANOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vni, status := DecodeVXLAN(tc.pkt())
			if status != tc.status {
				t.Fatalf("status %v, want %v", status, tc.status)
			}
			if status != VXLANOK && vni != 0 {
				t.Errorf("vni %d on status %v", vni, status)
			}
		})
	}
}

func TestVXLANStatusString(t *testing.T) {
	want := map[VXLANStatus]string{VXLANOK: "ok", VXLANShort: "vxlan-short", VXLANBadFlags: "vxlan-bad-flags", 99: "unknown"}
	for s, name := range want {
		if s.String() != name {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), name)
		}
	}
}

func TestGopacketDecodesOurVXLAN(t *testing.T) {
	inner := innerFrame(60)
	pkt := encapsulate(0xabcdef, inner)
	var vx layers.VXLAN
	if err := vx.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback); err != nil {
		t.Fatalf("gopacket VXLAN: %v", err)
	}
	if vx.NextLayerType() != layers.LayerTypeEthernet {
		t.Errorf("gopacket expects %v after VXLAN", vx.NextLayerType())
	}
	if !vx.ValidIDFlag || vx.VNI != 0xabcdef || vx.GBPExtension || vx.GBPGroupPolicyID != 0 {
		t.Errorf("gopacket decoded %+v", vx)
	}
	var e layers.Ethernet
	if err := e.DecodeFromBytes(vx.Payload, gopacket.NilDecodeFeedback); err != nil {
		t.Fatalf("gopacket inner Ethernet: %v", err)
	}
	if !bytes.Equal(e.SrcMAC, innerSrc) || !bytes.Equal(e.DstMAC, innerDst) || e.EthernetType != innerEtherType {
		t.Errorf("inner Ethernet %+v", e)
	}
	if !bytes.Equal(e.Payload, inner[header.EthernetLen:]) {
		t.Error("inner payload differs")
	}
}

func TestWeDecodeGopacketVXLAN(t *testing.T) {
	// A whole outer packet as a kernel peer would send it: IPv4/UDP to
	// 4789, VXLAN, inner Ethernet/IPv4/UDP.
	innerIP := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IP{10, 1, 0, 2}, DstIP: net.IP{10, 1, 0, 3}}
	innerUDP := &layers.UDP{SrcPort: 1234, DstPort: 5678}
	if err := innerUDP.SetNetworkLayerForChecksum(innerIP); err != nil {
		t.Fatal(err)
	}
	outerIP := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IP{192, 0, 2, 1}, DstIP: net.IP{192, 0, 2, 2}}
	outerUDP := &layers.UDP{SrcPort: 50000, DstPort: DefaultVXLANPort}
	if err := outerUDP.SetNetworkLayerForChecksum(outerIP); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		outerIP, outerUDP,
		&layers.VXLAN{ValidIDFlag: true, VNI: 4242},
		&layers.Ethernet{SrcMAC: innerSrc, DstMAC: innerDst, EthernetType: layers.EthernetTypeIPv4},
		innerIP, innerUDP, gopacket.Payload("hello"))
	if err != nil {
		t.Fatal(err)
	}
	pkt := buf.Bytes()
	var p header.Parsed
	p.DecodeIP(pkt)
	if !p.HasPorts() || p.IPProto != header.ProtoUDP || p.DstPort != DefaultVXLANPort {
		t.Fatalf("outer packet: %+v", p)
	}
	payload := pkt[p.L4Offset+header.UDPLen:]
	vni, status := DecodeVXLAN(payload)
	if status != VXLANOK || vni != 4242 {
		t.Fatalf("DecodeVXLAN = %d, %v", vni, status)
	}
	var in header.Parsed
	in.Decode(payload[VXLANHeaderLen:])
	if in.Status != header.DecodeOK || in.SrcMAC != header.MAC(innerSrc) || in.DstMAC != header.MAC(innerDst) ||
		in.SrcPort != 1234 || in.DstPort != 5678 {
		t.Errorf("inner frame: %+v", in)
	}
	// gopacket's GBP header is one our policy (like the kernel's default)
	// refuses.
	gbp := gopacket.NewSerializeBuffer()
	if err := (&layers.VXLAN{ValidIDFlag: true, VNI: 1, GBPExtension: true, GBPGroupPolicyID: 9}).
		SerializeTo(gbp, gopacket.SerializeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, status := DecodeVXLAN(append(gbp.Bytes(), innerFrame(14)...)); status != VXLANBadFlags {
		t.Errorf("GBP header: status %v, want vxlan-bad-flags", status)
	}
}

func TestVXLANOverhead(t *testing.T) {
	if VXLANOverhead != 50 {
		t.Errorf("VXLANOverhead = %d, want 50 (the Linux vxlan device's 1500 -> 1450)", VXLANOverhead)
	}
}

func TestSourcePort(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi uint16
	}{
		{name: "linux default range", lo: DefaultSourcePortMin, hi: DefaultSourcePortMax},
		{name: "single port", lo: 4789, hi: 4789},
		{name: "whole range", lo: 0, hi: 65535},
		{name: "swapped bounds", lo: 60000, hi: 50000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := min(tc.lo, tc.hi), max(tc.lo, tc.hi)
			seen := map[uint16]bool{}
			for _, h := range []uint32{0, 1, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff} {
				p := SourcePort(h, tc.lo, tc.hi)
				if p < lo || p > hi {
					t.Fatalf("SourcePort(%#x) = %d outside [%d, %d]", h, p, lo, hi)
				}
			}
			for i := range uint32(20000) {
				h := i * 0x9e3779b1 // spread the inputs over 32 bits
				p := SourcePort(h, tc.lo, tc.hi)
				if p < lo || p > hi {
					t.Fatalf("SourcePort(%#x) = %d outside [%d, %d]", h, p, lo, hi)
				}
				if SourcePort(h, tc.lo, tc.hi) != p {
					t.Fatal("not deterministic")
				}
				seen[p] = true
			}
			// n hashes into span ports cover span*(1-e^(-n/span)) of them
			// on average; allow 5% less.
			span := float64(hi-lo) + 1
			if want := int(0.95 * span * (1 - math.Exp(-20000/span))); len(seen) < want {
				t.Errorf("20000 hashes hit %d ports, want at least %d", len(seen), want)
			}
		})
	}
	// Both ends of the range are reachable.
	lo, hi := false, false
	for i := range uint32(1 << 20) {
		switch SourcePort(i*4099, 100, 103) {
		case 100:
			lo = true
		case 103:
			hi = true
		}
	}
	if !lo || !hi {
		t.Errorf("range ends reached: lo %v hi %v", lo, hi)
	}
}

func TestVXLANAllocs(t *testing.T) {
	pkt := encapsulate(7, innerFrame(64))
	if n := testing.AllocsPerRun(100, func() { PutVXLAN(pkt, 7) }); n != 0 {
		t.Errorf("PutVXLAN allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeVXLAN(pkt) }); n != 0 {
		t.Errorf("DecodeVXLAN allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = SourcePort(header.FlowHash(pkt[8:]), 1, 2) }); n != 0 {
		t.Errorf("SourcePort allocates %v times", n)
	}
}

func BenchmarkVXLANEncap(b *testing.B) {
	const headroom = 64
	buf := make([]byte, headroom+64)
	copy(buf[headroom:], innerFrame(64))
	b.SetBytes(64)
	b.ReportAllocs()
	for b.Loop() {
		PutVXLAN(buf[headroom-VXLANHeaderLen:headroom], 4242)
	}
}

func BenchmarkVXLANDecap(b *testing.B) {
	pkt := encapsulate(4242, innerFrame(64))
	b.SetBytes(64)
	b.ReportAllocs()
	var inner []byte
	for b.Loop() {
		vni, status := DecodeVXLAN(pkt)
		if status != VXLANOK || vni != 4242 {
			b.Fatal(status)
		}
		inner = pkt[VXLANHeaderLen:]
	}
	if len(inner) != 64 {
		b.Fatal(len(inner))
	}
}

func BenchmarkSourcePort(b *testing.B) {
	frame := innerFrame(64)
	b.ReportAllocs()
	var sink uint16
	for b.Loop() {
		sink += SourcePort(header.FlowHash(frame), DefaultSourcePortMin, DefaultSourcePortMax)
	}
	_ = sink
}

func FuzzDecodeVXLAN(f *testing.F) {
	f.Add(encapsulate(1, innerFrame(14)))
	f.Add(encapsulate(MaxVNI, innerFrame(64)))
	f.Add([]byte{})
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 1, 0})
	f.Add(append([]byte{0x88, 0, 0, 9, 0, 0, 1, 0}, innerFrame(14)...))
	f.Fuzz(func(t *testing.T, payload []byte) {
		vni, status := DecodeVXLAN(payload)
		switch status {
		case VXLANOK:
			if vni > MaxVNI {
				t.Fatalf("vni %#x beyond 24 bits", vni)
			}
			if len(payload[VXLANHeaderLen:]) < header.EthernetLen {
				t.Fatalf("inner frame of %d bytes", len(payload)-VXLANHeaderLen)
			}
			// What we accept re-encodes to the same header.
			re := make([]byte, VXLANHeaderLen)
			PutVXLAN(re, vni)
			if !bytes.Equal(re, payload[:VXLANHeaderLen]) {
				t.Fatalf("accepted % x, which re-encodes as % x", payload[:VXLANHeaderLen], re)
			}
		case VXLANShort, VXLANBadFlags:
			if vni != 0 {
				t.Fatalf("vni %d with status %v", vni, status)
			}
		default:
			t.Fatalf("unknown status %d", status)
		}
	})
}
