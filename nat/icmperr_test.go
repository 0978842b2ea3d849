package nat

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/ferry-overlay/ferry/header"
)

// TestICMPErrorTranslation: errors about translated flows reach the
// container (or the outside client) as errors about the packet it sent:
// outer addresses and the quoted header translated, every checksum valid,
// the rest of the message (the MTU of a fragmentation-needed) untouched.
func TestICMPErrorTranslation(t *testing.T) {
	tab := rulesTable(t)
	tcpOut := tcpPkt(t, ap(c1, 40000), ap(srvS, 80), fSYN, []byte("0123456789"))
	udpOut := udpPkt(t, ap(c1, 5000), ap(srvS, 53), []byte("query"))
	echoOut := echoPkt(t, c2, srvS, 8, 7, 1)
	echoOther := echoPkt(t, c1, srvS, 8, 7, 1) // same id: gets another one
	dnatIn := udpPkt(t, ap(cliC, 7777), ap(natIP, 5353), []byte("q"))
	hairpin := tcpPkt(t, ap(c1, 6000), ap(natIP, 8080), fSYN, nil)
	for _, p := range []struct {
		dir Dir
		b   []byte
	}{{Outbound, tcpOut}, {Outbound, udpOut}, {Outbound, echoOut}, {Outbound, echoOther}, {Inbound, dnatIn}, {Outbound, hairpin}} {
		if v := process(tab, 0, p.dir, p.b); v != Translated {
			t.Fatalf("setup: %v", v)
		}
	}
	cases := []struct {
		name      string
		dir       Dir
		src, dst  netip.Addr
		typ, code uint8
		mtu       uint16
		quote     []byte
		wantSrc   netip.Addr
		wantDst   netip.Addr
		wantQuote Tuple
	}{
		{"frag-needed from a router about TCP (IP header + 8 bytes quoted)", Inbound, rtrR, natIP, 3, 4, 1400, tcpOut[:28],
			rtrR, c1, Tuple{header.ProtoTCP, ap(c1, 40000), ap(srvS, 80)}},
		{"time exceeded quoting the whole TCP segment", Inbound, rtrR, natIP, 11, 0, 0, tcpOut,
			rtrR, c1, Tuple{header.ProtoTCP, ap(c1, 40000), ap(srvS, 80)}},
		{"port unreachable from the server about UDP", Inbound, srvS, natIP, 3, 3, 0, udpOut,
			srvS, c1, Tuple{header.ProtoUDP, ap(c1, 5000), ap(srvS, 53)}},
		{"host unreachable about a ping", Inbound, rtrR, natIP, 3, 1, 0, echoOut[:28],
			rtrR, c2, Tuple{header.ProtoICMPv4, ap(c2, 7), ap(srvS, 7)}},
		{"time exceeded about the ping whose id was remapped", Inbound, rtrR, natIP, 11, 0, 0, echoOther,
			rtrR, c1, Tuple{header.ProtoICMPv4, ap(c1, 7), ap(srvS, 7)}},
		{"port unreachable from a published container to the client", Outbound, c3, cliC, 3, 3, 0, dnatIn,
			natIP, cliC, Tuple{header.ProtoUDP, ap(cliC, 7777), ap(natIP, 5353)}},
		{"port unreachable inside a hairpin", Outbound, c2, natIP, 3, 3, 0, hairpin,
			natIP, c1, Tuple{header.ProtoTCP, ap(c1, 6000), ap(natIP, 8080)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pkt := icmpErrPkt(t, tc.src, tc.dst, tc.typ, tc.code, tc.mtu, tc.quote)
			if v := process(tab, 0, tc.dir, pkt); v != Translated {
				t.Fatalf("verdict %v", v)
			}
			checkChecksums(t, pkt)
			ip := header.IPv4(pkt)
			if ip.Src() != tc.wantSrc || ip.Dst() != tc.wantDst {
				t.Fatalf("outer %v -> %v, want %v -> %v", ip.Src(), ip.Dst(), tc.wantSrc, tc.wantDst)
			}
			if got := be16(pkt[26:]); got != tc.mtu {
				t.Fatalf("next-hop MTU field %d, want %d", got, tc.mtu)
			}
			q := pkt[28:]
			var qp parsed
			qt := quotedTuple(q, &qp)
			if qt != tc.wantQuote {
				t.Fatalf("quote %v, want %v", qt, tc.wantQuote)
			}
			if qh := header.IPv4(q); qh.CalculateChecksum() != qh.Checksum() {
				t.Fatal("quoted IPv4 checksum invalid")
			}
			if len(q) == len(tc.quote) && len(tc.quote) > 28 {
				// The whole packet is quoted: its transport checksum
				// must be right for its (translated) addresses.
				if probs := checksumProblems(bytes.Clone(q)); len(probs) != 0 {
					t.Fatalf("quoted packet checksums: %v", probs)
				}
			}
		})
	}
}

// quotedTuple reads the tuple of a quoted packet (header + at least 8
// bytes of transport header).
func quotedTuple(q []byte, p *parsed) Tuple {
	hl := header.IPv4(q).HeaderLength()
	src, dst := be32(q[12:]), be32(q[16:])
	proto := header.IPv4(q).Protocol()
	l4 := q[hl:]
	if proto == header.ProtoICMPv4 {
		id := be16(l4[4:])
		return makeKey(proto, src, dst, id, id).tuple()
	}
	return makeKey(proto, src, dst, be16(l4), be16(l4[2:])).tuple()
}

// TestICMPErrorBadQuotes: errors quoting nonsense are counted drops, and
// errors about no flow are NoMatch from outside and a drop from inside.
func TestICMPErrorBadQuotes(t *testing.T) {
	tab := rulesTable(t)
	tcpOut := tcpPkt(t, ap(c1, 40000), ap(srvS, 80), fSYN, nil)
	process(tab, 0, Outbound, tcpOut) // now nat:40000 -> S:80
	ipv6ish := bytes.Clone(tcpOut[:28])
	ipv6ish[0] = 0x65
	badIHL := bytes.Clone(tcpOut[:28])
	badIHL[0] = 0x44
	gre := bytes.Clone(tcpOut[:28])
	gre[9] = 47
	frag := bytes.Clone(tcpOut[:28])
	frag[6], frag[7] = 0x00, 0x10
	unknown := tcpPkt(t, ap(natIP, 1), ap(srvS, 80), fSYN, nil)[:28]
	notBack := tcpOut[:28]
	for _, tc := range []struct {
		name     string
		dir      Dir
		src, dst netip.Addr
		quote    []byte
		want     Verdict
	}{
		{"empty quote", Inbound, rtrR, natIP, nil, DropBadICMPError},
		{"quote shorter than an IPv4 header", Inbound, rtrR, natIP, tcpOut[:19], DropBadICMPError},
		{"quote without 8 transport bytes", Inbound, rtrR, natIP, tcpOut[:27], DropBadICMPError},
		{"quote not IPv4", Inbound, rtrR, natIP, ipv6ish, DropBadICMPError},
		{"quote with IHL 4", Inbound, rtrR, natIP, badIHL, DropBadICMPError},
		{"quote of a GRE packet", Inbound, rtrR, natIP, gre, DropBadICMPError},
		{"quote of a non-first fragment", Inbound, rtrR, natIP, frag, DropBadICMPError},
		{"quote not sent by the addressee", Outbound, c1, cliC, notBack, DropBadICMPError},
		{"about no flow, from outside", Inbound, rtrR, natIP, unknown, NoMatch},
		{"about no flow, from inside", Outbound, c1, natIP, unknown, DropNoFlow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := icmpErrPkt(t, tc.src, tc.dst, 3, 1, 0, tc.quote)
			keep := bytes.Clone(pkt)
			if v := process(tab, 0, tc.dir, pkt); v != tc.want {
				t.Fatalf("verdict %v, want %v", v, tc.want)
			}
			if !bytes.Equal(pkt, keep) {
				t.Fatal("packet modified")
			}
		})
	}
}
