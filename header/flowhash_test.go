package header

import (
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// swapFlow returns a copy of frame with the MACs, IP addresses and (where
// p says they are valid) ports exchanged: the reverse direction of the flow.
func swapFlow(frame []byte, p *Parsed) []byte {
	r := append([]byte(nil), frame...)
	e := Ethernet(r)
	e.SetDst(p.SrcMAC)
	e.SetSrc(p.DstMAC)
	var src, dst int
	switch p.IPVersion {
	case 4:
		src, dst = p.L3Offset+ipv4Src, p.L3Offset+ipv4Dst
	case 6:
		src, dst = p.L3Offset+ipv6Src, p.L3Offset+ipv6Dst
	}
	if p.IPVersion != 0 {
		copy(r[src:], p.DstIP.AsSlice())
		copy(r[dst:], p.SrcIP.AsSlice())
	}
	if p.HasPorts() {
		binary.BigEndian.PutUint16(r[p.L4Offset:], p.DstPort)
		binary.BigEndian.PutUint16(r[p.L4Offset+2:], p.SrcPort)
	}
	return r
}

func TestFlowHashSpreads(t *testing.T) {
	const flows, buckets = 1000, 16
	var count [buckets]int
	seen := map[uint32]bool{}
	base := tcp4Frame(t, 0, 0)
	frame := append([]byte(nil), base...)
	tcpOff := EthernetLen + IPv4MinLen
	for i := range flows {
		// Vary the source address and port like clients behind a NAT.
		binary.BigEndian.PutUint32(frame[EthernetLen+ipv4Src:], 0x0a010000|uint32(i%50))
		binary.BigEndian.PutUint16(frame[tcpOff:], uint16(32768+i))
		binary.BigEndian.PutUint16(frame[tcpOff+2:], 443)
		h := FlowHash(frame)
		if FlowHash(frame) != h {
			t.Fatal("same flow hashed differently")
		}
		seen[h] = true
		count[h%buckets]++
	}
	if len(seen) < flows-2 {
		t.Errorf("%d distinct hashes for %d flows", len(seen), flows)
	}
	// Expect 62.5 per bucket; a fair hash stays well inside [30, 100].
	for i, c := range count {
		if c < 30 || c > 100 {
			t.Errorf("bucket %d has %d of %d flows: %v", i, c, flows, count)
		}
	}
}

func TestFlowHashFlowFields(t *testing.T) {
	ip := ip6(layers.IPProtocolUDP)
	udp6 := serialize(t, eth(layers.EthernetTypeIPv6), ip, udp(ip, 1000, 2000))
	arp := make([]byte, EthernetLen+ARPLen)
	Ethernet(arp).Encode(bcast, macA, EtherTypeARP)
	icmp := serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1})
	vlan := func() []byte {
		ipl := ip4(layers.IPProtocolTCP)
		return serialize(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 9, Type: layers.EthernetTypeIPv4},
			ipl, tcp(ipl, 40000, 443), gopacket.Payload("0123456789"))
	}()

	tests := []struct {
		name    string
		frame   []byte
		mutate  func([]byte) // changes one field
		changes bool         // whether the hash must change
	}{
		{name: "ipv4 tcp source port", frame: tcp4Frame(t, 40000, 443),
			mutate: func(f []byte) { f[EthernetLen+IPv4MinLen+1]++ }, changes: true},
		{name: "ipv4 tcp destination address", frame: tcp4Frame(t, 40000, 443),
			mutate: func(f []byte) { f[EthernetLen+ipv4Dst+3]++ }, changes: true},
		{name: "ipv4 tcp protocol", frame: tcp4Frame(t, 40000, 443),
			mutate: func(f []byte) { f[EthernetLen+ipv4Protocol] = byte(ProtoUDP) }, changes: true},
		{name: "ipv4 tcp mac is not in the flow", frame: tcp4Frame(t, 40000, 443),
			mutate: func(f []byte) { f[0] ^= 0x02 }},
		{name: "ipv4 tcp payload is not in the flow", frame: tcp4Frame(t, 40000, 443),
			mutate: func(f []byte) { f[len(f)-1]++ }},
		{name: "ipv4 tcp ttl is not in the flow", frame: tcp4Frame(t, 40000, 443),
			mutate: func(f []byte) { f[EthernetLen+ipv4TTL]-- }},
		{name: "vlan ipv4 tcp port", frame: vlan,
			mutate: func(f []byte) { f[18+IPv4MinLen+3]++ }, changes: true},
		{name: "ipv6 udp destination port", frame: udp6,
			mutate: func(f []byte) { f[EthernetLen+IPv6Len+3]++ }, changes: true},
		{name: "ipv6 udp low address byte", frame: udp6,
			mutate: func(f []byte) { f[EthernetLen+ipv6Src+15]++ }, changes: true},
		{name: "icmp ident is not in the flow", frame: icmp,
			mutate: func(f []byte) { f[EthernetLen+IPv4MinLen+5]++ }},
		{name: "icmp address", frame: icmp,
			mutate: func(f []byte) { f[EthernetLen+ipv4Src]++ }, changes: true},
		{name: "arp source mac", frame: arp,
			mutate: func(f []byte) { f[ethSrc+5]++ }, changes: true},
		{name: "arp ethertype", frame: arp,
			mutate: func(f []byte) { f[ethType+1]++ }, changes: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := FlowHash(tc.frame)
			f := append([]byte(nil), tc.frame...)
			tc.mutate(f)
			if changed := FlowHash(f) != before; changed != tc.changes {
				t.Errorf("hash changed = %v, want %v", changed, tc.changes)
			}
		})
	}
}

func TestFlowHashSymmetric(t *testing.T) {
	ip := ip6(layers.IPProtocolTCP)
	frames := map[string][]byte{
		"ipv4 tcp": tcp4Frame(t, 40000, 443),
		"ipv4 udp": udp4Frame(t, 5000, 53),
		"ipv6 tcp": serialize(t, eth(layers.EthernetTypeIPv6), ip, tcp(ip, 33000, 22)),
		"same address, different ports": func() []byte {
			f := udp4Frame(t, 1, 2)
			copy(f[EthernetLen+ipv4Dst:], f[EthernetLen+ipv4Src:EthernetLen+ipv4Src+4])
			return f
		}(),
		"l2 only": serialize(t, eth(layers.EthernetType(0x88cc)), gopacket.Payload("lldp")),
	}
	for name, f := range frames {
		t.Run(name, func(t *testing.T) {
			var p Parsed
			p.Decode(f)
			if p.Status != DecodeOK {
				t.Fatalf("setup: %v", p.Status)
			}
			if FlowHash(f) != FlowHash(swapFlow(f, &p)) {
				t.Error("reverse direction hashes differently")
			}
		})
	}
	// Different flows with mirrored ports must not collide just because
	// the hash is symmetric.
	if FlowHash(udp4Frame(t, 1, 2)) == FlowHash(udp4Frame(t, 2, 1)) {
		t.Error("ports 1->2 and 2->1 between A and B collide (A->B:2->1 is a distinct flow)")
	}
}

func TestFlowHashShortAndGarbage(t *testing.T) {
	full := tcp4Frame(t, 1, 2)
	seen := map[uint32]int{}
	for n := 0; n <= len(full); n++ {
		h := FlowHash(full[:n]) // must not panic at any cut
		seen[h]++
	}
	if len(seen) < 3 {
		t.Errorf("cuts of one frame gave only %d distinct hashes", len(seen))
	}
	v6 := make([]byte, EthernetLen+IPv6Len)
	binary.BigEndian.PutUint16(v6[ethType:], EtherTypeIPv6)
	v6[EthernetLen] = 0x60
	v6[EthernetLen+ipv6NextHeader] = byte(ProtoTCP)
	_ = FlowHash(v6) // TCP next header with no room for ports
	vlanOnly := make([]byte, EthernetLen+2)
	binary.BigEndian.PutUint16(vlanOnly[ethType:], EtherTypeVLAN)
	_ = FlowHash(vlanOnly)
}

func TestFlowHashAllocs(t *testing.T) {
	f := tcp4Frame(t, 1, 2)
	if n := testing.AllocsPerRun(100, func() { _ = FlowHash(f) }); n != 0 {
		t.Errorf("FlowHash allocates %v times", n)
	}
}

func BenchmarkFlowHash(b *testing.B) {
	ip := ip6(layers.IPProtocolUDP)
	frames := []struct {
		name  string
		frame []byte
	}{
		{"tcp4", tcp4Frame(b, 40000, 443)},
		{"udp6", serialize(b, eth(layers.EthernetTypeIPv6), ip, udp(ip, 1, 2))},
		{"l2", serialize(b, eth(layers.EthernetType(0x88cc)), gopacket.Payload("lldp"))},
	}
	for _, f := range frames {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			var sink uint32
			for b.Loop() {
				sink += FlowHash(f.frame)
			}
			_ = sink
		})
	}
}

func FuzzFlowHash(f *testing.F) {
	f.Add(tcp4Frame(f, 1, 2))
	f.Add(udp4Frame(f, 3, 4))
	ip := ip6(layers.IPProtocolUDP)
	f.Add(serialize(f, eth(layers.EthernetTypeIPv6), ip, udp(ip, 5, 6)))
	f.Add([]byte{})
	f.Add(make([]byte, 13))
	f.Fuzz(func(t *testing.T, frame []byte) {
		h := FlowHash(frame)
		if FlowHash(frame) != h {
			t.Fatal("not deterministic")
		}
		var p Parsed
		p.Decode(frame)
		if p.Status != DecodeOK {
			return
		}
		if got := FlowHash(swapFlow(frame, &p)); got != h {
			t.Fatalf("reverse direction hashes %#x, forward %#x (%+v)", got, h, p)
		}
	})
}
