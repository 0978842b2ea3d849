package encap

import (
	"encoding/binary"
	"net/netip"

	"github.com/ferry-overlay/ferry/header"
)

// GRE header layout (RFC 2784 §2, with the Key and Sequence Number fields
// of RFC 2890 §2):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|C|R|K|S|s|Rcr|   Reserved0   | Ver |         Protocol Type     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      Checksum (optional)      |       Reserved1 (optional)    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         Key (optional)                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Sequence Number (optional)                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// C, K and S announce the optional words, in that order. R (routing) and
// s (strict source route) are RFC 1701 source routing, which RFC 2784
// deprecates; Rcr is RFC 1701's 3-bit recursion control. RFC 2784 §2.3
// names bits 1-5 (R, K, S, s and the top recursion bit) as ones a
// receiver must discard a packet for unless it implements them; RFC 2890
// implements K and S. Bits 6-12 are sent as zero and ignored on receipt.
// Ver is 0 (version 1 is PPTP's enhanced GRE, RFC 2637).
//
// GRE travels directly in IPv4 as IP protocol 47 (header.ProtoGRE), with
// no UDP header: the outer packet is IPv4 | GRE | inner packet.
const (
	greFlagChecksum   = 0x8000 // C
	greFlagRouting    = 0x4000 // R
	greFlagKey        = 0x2000 // K
	greFlagSeq        = 0x1000 // S
	greFlagStrictSR   = 0x0800 // s
	greFlagRecursion2 = 0x0400 // top recursion-control bit, RFC 2784 bit 5
	greVersionMask    = 0x0007
)

const (
	// GREHeaderLen is the size of a GRE header without optional fields:
	// flags and version, then the protocol type.
	GREHeaderLen = 4
	// GREKeyHeaderLen is the size of a GRE header carrying a key (K set),
	// the only optional field ferry sends.
	GREKeyHeaderLen = GREHeaderLen + 4

	// GREProtoTEB is the GRE protocol type of transparent Ethernet
	// bridging: the payload is an Ethernet frame. ferry's l2 GRE mode
	// sends it, with the network's VNI as the key.
	GREProtoTEB = header.EtherTypeTEB
	// GREProtoIPv4 is the GRE protocol type of an IPv4 payload. ferry's
	// l3 GRE mode sends it, without a key.
	GREProtoIPv4 = header.EtherTypeIPv4
)

// GRE is a view of a GRE header.
//
// Contract: the caller checks len(g) >= GREHeaderLen before calling any
// method, and Key additionally needs KeyPresent and len(g) >= HeaderLen();
// DecodeGRE does all of that for received packets.
type GRE []byte

// flags returns the first 16-bit word: the flag bits and the version.
func (g GRE) flags() uint16 { return binary.BigEndian.Uint16(g) }

// Version returns the 3-bit version field (0 for RFC 2784 GRE).
func (g GRE) Version() uint8 { return uint8(g.flags() & greVersionMask) }

// ChecksumPresent reports whether the C flag is set: a checksum word
// follows the first word.
func (g GRE) ChecksumPresent() bool { return g.flags()&greFlagChecksum != 0 }

// KeyPresent reports whether the K flag is set: a key word follows.
func (g GRE) KeyPresent() bool { return g.flags()&greFlagKey != 0 }

// SeqPresent reports whether the S flag is set: a sequence number word
// follows.
func (g GRE) SeqPresent() bool { return g.flags()&greFlagSeq != 0 }

// Protocol returns the protocol type of the payload, an EtherType
// (GREProtoTEB, GREProtoIPv4).
func (g GRE) Protocol() uint16 { return binary.BigEndian.Uint16(g[2:]) }

// HeaderLen returns the header length the C, K and S flags announce: 4
// bytes, plus 4 for each present optional field. (The R flag, which would
// add a variable routing field, is never accepted, so it is not counted.)
func (g GRE) HeaderLen() int { return greHeaderLen(g.flags()) }

// Key returns the key word. Valid only if KeyPresent and the header is
// HeaderLen() bytes long.
func (g GRE) Key() uint32 {
	off := GREHeaderLen
	if g.ChecksumPresent() {
		off += 4
	}
	return binary.BigEndian.Uint32(g[off:])
}

// greHeaderLen returns the header length announced by the flag word f.
func greHeaderLen(f uint16) int {
	n := GREHeaderLen
	if f&greFlagChecksum != 0 {
		n += 4
	}
	if f&greFlagKey != 0 {
		n += 4
	}
	if f&greFlagSeq != 0 {
		n += 4
	}
	return n
}

// GRELen returns the size of the header PutGRE writes: GREKeyHeaderLen
// with a key, GREHeaderLen without. Size the headroom slice with it:
//
//	h := p.Prepend(encap.GRELen(hasKey))
//	encap.PutGRE(h, encap.GREProtoTEB, vni, true)
func GRELen(hasKey bool) int {
	if hasKey {
		return GREKeyHeaderLen
	}
	return GREHeaderLen
}

// PutGRE writes a version 0 GRE header for protocol type proto into
// b[:GRELen(hasKey)] and returns that length. With hasKey the K flag is set
// and key follows the first word (8 bytes in all); without, the header is 4
// bytes. No checksum, sequence number or routing is ever sent, and all
// reserved bits are zero.
//
// b is meant to be the headroom directly in front of the inner packet (the
// slice Packet.Prepend returns), so the payload is never copied. PutGRE
// panics if b is shorter than GRELen(hasKey). It does not allocate.
func PutGRE(b []byte, proto uint16, key uint32, hasKey bool) int {
	if hasKey {
		_ = b[GREKeyHeaderLen-1]
		binary.BigEndian.PutUint32(b, greFlagKey<<16|uint32(proto))
		binary.BigEndian.PutUint32(b[4:], key)
		return GREKeyHeaderLen
	}
	binary.BigEndian.PutUint32(b, uint32(proto))
	return GREHeaderLen
}

// GREStatus is the outcome of DecodeGRE: a sentinel instead of an
// allocated error. String names the drop reason in kebab-case.
type GREStatus uint8

// DecodeGRE outcomes, in the order DecodeGRE checks them.
const (
	// GREOK: a supported header; the payload follows it.
	GREOK GREStatus = iota
	// GREShort: fewer than 4 bytes, fewer than the header length the
	// flags announce, or no room after the header for the smallest inner
	// header of its protocol (14 bytes of Ethernet for GREProtoTEB, 20
	// of IPv4 for GREProtoIPv4).
	GREShort
	// GREBadVersion: the version field is not 0 (e.g. 1, PPTP's enhanced
	// GRE).
	GREBadVersion
	// GRERouting: the R (routing present) or s (strict source route) flag
	// is set: RFC 1701 source routing, deprecated by RFC 2784.
	GRERouting
	// GREUnsupportedFlags: the S flag (sequence number, RFC 2890 §2.2) or
	// the top recursion-control bit (RFC 2784 bit 5) is set.
	GREUnsupportedFlags
	// GREUnknownProtocol: the protocol type is neither GREProtoTEB nor
	// GREProtoIPv4.
	GREUnknownProtocol
	// GREBadChecksum: the C flag is set and the checksum does not verify.
	GREBadChecksum
)

var greStatusNames = [...]string{
	GREOK:               "ok",
	GREShort:            "gre-short",
	GREBadVersion:       "gre-bad-version",
	GRERouting:          "gre-routing",
	GREUnsupportedFlags: "gre-unsupported-flags",
	GREUnknownProtocol:  "gre-unknown-protocol",
	GREBadChecksum:      "gre-bad-checksum",
}

// String returns the kebab-case drop reason for s, e.g. "gre-bad-version",
// or "unknown".
func (s GREStatus) String() string {
	if int(s) < len(greStatusNames) {
		return greStatusNames[s]
	}
	return "unknown"
}

// DecodeGRE checks the GRE header at the start of b and returns what the
// decap stage needs: the protocol type (GREProtoTEB or GREProtoIPv4), the
// key and whether one was present, and the header length, so the inner
// packet is b[hdrLen:]. On any status but GREOK every other result is
// zero.
//
// b must be the whole GRE packet and nothing more: the outer IPv4 payload
// up to the IPv4 Total Length (StripIPv4 returns exactly that), because
// the GRE checksum covers header and payload.
//
// Policy: RFC 2784 §2.3 read strictly. It accepts and rejects what a
// Linux gre/gretap device without the iseq option does
// (net/ipv4/gre_demux.c gre_parse_header, net/ipv4/ip_tunnel.c
// ip_tunnel_rcv), and is stricter only on two bits no Linux sender sets:
//   - version other than 0: rejected (GREBadVersion), as Linux does;
//   - routing (R): rejected (GRERouting), as Linux does; strict source
//     route (s), which only means something with R, likewise (Linux
//     ignores it), since RFC 2784 says to discard on either;
//   - sequence number (S): rejected (GREUnsupportedFlags). RFC 2890 §2.2
//     asks a receiver of sequenced packets to drop out-of-order ones;
//     ferry keeps no per-peer receive state, so rather than pretend, it
//     refuses them, as Linux does on a tunnel not configured with iseq.
//     The top recursion-control bit (RFC 2784 bit 5, which Linux
//     ignores) is rejected under the same status. ferry sends neither;
//   - checksum (C): verified over header and payload, and the packet
//     rejected if it is wrong (GREBadChecksum), as Linux does. ferry never
//     sends C, so only a foreign peer makes ferry pay this pass over the
//     payload;
//   - key (K): returned, not judged; which keys are valid (the VNI of a
//     configured network in l2 mode, none in l3 mode) is the dataplane's
//     call;
//   - the reserved bits 6-12 are ignored, as RFC 2784 §2.3 says.
//
// It never panics, never allocates, and keeps no reference to b.
func DecodeGRE(b []byte) (proto uint16, key uint32, hasKey bool, hdrLen int, status GREStatus) {
	if len(b) < GREHeaderLen {
		return 0, 0, false, 0, GREShort
	}
	g := GRE(b)
	f := g.flags()
	switch {
	case f&greVersionMask != 0:
		return 0, 0, false, 0, GREBadVersion
	case f&(greFlagRouting|greFlagStrictSR) != 0:
		return 0, 0, false, 0, GRERouting
	case f&(greFlagSeq|greFlagRecursion2) != 0:
		return 0, 0, false, 0, GREUnsupportedFlags
	}
	n := greHeaderLen(f)
	if len(b) < n {
		return 0, 0, false, 0, GREShort
	}
	var minInner int
	switch g.Protocol() {
	case GREProtoTEB:
		minInner = header.EthernetLen
	case GREProtoIPv4:
		minInner = header.IPv4MinLen
	default:
		return 0, 0, false, 0, GREUnknownProtocol
	}
	if len(b)-n < minInner {
		return 0, 0, false, 0, GREShort
	}
	if f&greFlagChecksum != 0 && header.FoldChecksum(header.Checksum(b, 0)) != 0xffff {
		return 0, 0, false, 0, GREBadChecksum
	}
	if f&greFlagKey != 0 {
		return g.Protocol(), g.Key(), true, n, GREOK
	}
	return g.Protocol(), 0, false, n, GREOK
}

// StripIPv4 returns the payload and source address of the IPv4 packet b,
// as read from a raw IPv4 socket: on Linux a SOCK_RAW socket of protocol
// 47 (IPPROTO_GRE) hands each received packet over with its IPv4 header
// (options included) in front, already reassembled, and only packets of
// that protocol. payload is b from the end of the header up to the Total
// Length (trailing bytes are cut off), the GRE packet DecodeGRE takes;
// src is the peer to check against the configured ones (it does not
// allocate).
//
// ok is false, with zero results, if b is not one whole IPv4 packet:
// version not 4, IHL below 5, header or Total Length beyond b, or a
// fragment. The kernel has validated the header before queuing it, so
// after a raw socket read that only happens when the read was truncated;
// the dataplane counts it as GREShort ("gre-short").
//
// payload aliases b. StripIPv4 never panics and never allocates.
func StripIPv4(b []byte) (payload []byte, src netip.Addr, ok bool) {
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) || ip.IsFragment() {
		return nil, netip.Addr{}, false
	}
	return ip.Payload(), ip.Src(), true
}
