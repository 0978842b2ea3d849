package nat

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

// Addresses of the test topology: containers c1..c4 behind ferry, the
// uplink's nat_address, a server S and a client C outside, a router R on
// the way.
var (
	natIP = netip.MustParseAddr("100.64.0.2")
	c1    = netip.MustParseAddr("10.42.0.2")
	c2    = netip.MustParseAddr("10.42.0.3")
	c3    = netip.MustParseAddr("10.42.0.4")
	c4    = netip.MustParseAddr("10.42.0.5")
	srvS  = netip.MustParseAddr("192.0.2.7")
	cliC  = netip.MustParseAddr("198.51.100.9")
	rtrR  = netip.MustParseAddr("203.0.113.1")
)

const sec = int64(time.Second)

func ap(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }

func newTable(tb testing.TB, o Options) *Table {
	tb.Helper()
	if !o.NATAddr.IsValid() {
		o.NATAddr = natIP
	}
	t, err := New(o)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return t
}

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ip4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
}

// tcpFlags are the flags of a test segment.
type tcpFlags struct{ syn, ack, fin, rst bool }

var (
	fSYN    = tcpFlags{syn: true}
	fSYNACK = tcpFlags{syn: true, ack: true}
	fACK    = tcpFlags{ack: true}
	fFIN    = tcpFlags{fin: true, ack: true}
	fRST    = tcpFlags{rst: true}
)

func tcpPkt(tb testing.TB, src, dst netip.AddrPort, f tcpFlags, payload []byte) []byte {
	ip := ip4(src.Addr(), dst.Addr(), layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: 1000, Ack: 2000, Window: 65535, SYN: f.syn, ACK: f.ack, FIN: f.fin, RST: f.rst}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, ip, tcp, gopacket.Payload(payload))
}

func udpPkt(tb testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	ip := ip4(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, ip, udp, gopacket.Payload(payload))
}

func echoPkt(tb testing.TB, src, dst netip.Addr, typ uint8, id, seq uint16) []byte {
	return serialize(tb, ip4(src, dst, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq},
		gopacket.Payload([]byte("ferry ping payload")))
}

// icmpErrPkt builds an ICMP error from src to dst quoting quote; for
// fragmentation needed (3/4) mtu goes into the next-hop MTU field.
func icmpErrPkt(tb testing.TB, src, dst netip.Addr, typ, code uint8, mtu uint16, quote []byte) []byte {
	m := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Seq: mtu}
	return serialize(tb, ip4(src, dst, layers.IPProtocolICMPv4), m, gopacket.Payload(quote))
}

// process runs one packet through t as a batch of one.
func process(t *Table, now int64, dir Dir, pkt []byte) Verdict {
	v := []Verdict{0}
	t.Process(now, [][]byte{pkt}, []Dir{dir}, v)
	return v[0]
}

// tupleOf reads the tuple of a TCP, UDP or ICMP echo packet.
func tupleOf(pkt []byte) Tuple {
	var p parsed
	if parse(pkt, &p) != Translated {
		return Tuple{}
	}
	return p.k.tuple()
}

// checkChecksums verifies every checksum of pkt by full recomputation
// (IPv4 header; TCP/UDP with pseudo-header, UDP 0 allowed; ICMP including
// a quoted packet's IPv4 header) and cross-checks with gopacket.
func checkChecksums(tb testing.TB, pkt []byte) {
	tb.Helper()
	for _, problem := range checksumProblems(pkt) {
		tb.Errorf("checksum: %s", problem)
	}
	gp := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	// An application layer gopacket guesses from a port (DNS on 53) may
	// fail to decode; IPv4 and the transport layer must not.
	ipl, _ := gp.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ipl == nil || (gp.TransportLayer() == nil && gp.Layer(layers.LayerTypeICMPv4) == nil) {
		tb.Errorf("gopacket decode: %v", gp.ErrorLayer())
		return
	}
	type verifier interface {
		VerifyChecksum() (error, gopacket.ChecksumVerificationResult)
	}
	for _, l := range gp.Layers() {
		switch l := l.(type) {
		case *layers.TCP:
			_ = l.SetNetworkLayerForChecksum(ipl)
		case *layers.UDP:
			_ = l.SetNetworkLayerForChecksum(ipl)
			if l.Checksum == 0 {
				continue
			}
		}
		if v, ok := l.(verifier); ok {
			if err, res := v.VerifyChecksum(); err != nil || !res.Valid {
				tb.Errorf("gopacket: %v checksum invalid: %v %+v", l.LayerType(), err, res)
			}
		}
	}
}

// checksumProblems returns what is wrong with pkt's checksums by full
// recomputation; nil if nothing.
func checksumProblems(pkt []byte) []string {
	var out []string
	ip := header.IPv4(pkt)
	if !ip.IsValid(len(pkt)) {
		return []string{"not a valid IPv4 packet"}
	}
	if ip.CalculateChecksum() != ip.Checksum() {
		out = append(out, "ipv4 header")
	}
	l4 := ip.Payload()
	switch ip.Protocol() {
	case header.ProtoTCP, header.ProtoUDP:
		if ip.Protocol() == header.ProtoUDP && (len(l4) < header.UDPLen || header.UDP(l4).Checksum() == 0) {
			break
		}
		sum := header.Checksum(l4, header.PseudoHeaderChecksum(ip.Protocol(), ip.Src(), ip.Dst(), uint16(len(l4))))
		if header.FoldChecksum(sum) != 0xffff {
			out = append(out, protoName(ip.Protocol())+" segment")
		}
	case header.ProtoICMPv4:
		if header.FoldChecksum(header.Checksum(l4, 0)) != 0xffff {
			out = append(out, "icmp message")
		}
		if len(l4) < header.ICMPv4MinLen {
			break
		}
		m := header.ICMPv4(l4)
		if t := m.Type(); t == header.ICMPv4DestUnreachable || t == header.ICMPv4TimeExceeded {
			q := header.IPv4(l4[8:])
			if len(q) >= header.IPv4MinLen && q.HeaderLength() >= header.IPv4MinLen && q.HeaderLength() <= len(q) && q.CalculateChecksum() != q.Checksum() {
				out = append(out, "quoted ipv4 header")
			}
		}
	}
	return out
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
