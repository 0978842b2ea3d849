package router

import (
	"encoding/binary"
	"net/netip"

	"github.com/ferry-overlay/ferry/header"
)

// ICMPv4 error codes of the messages the router sends (RFC 792, RFC 1191).
const (
	// CodeNetUnreachable: destination unreachable, no route to the network.
	CodeNetUnreachable uint8 = 0
	// CodeHostUnreachable: destination unreachable, the host did not
	// answer ARP.
	CodeHostUnreachable uint8 = 1
	// CodeFragNeeded: destination unreachable, fragmentation needed and
	// DF set; the message carries the next-hop MTU (RFC 1191 §4).
	CodeFragNeeded uint8 = 4
	// CodeTTLExceeded: time exceeded, TTL expired in transit.
	CodeTTLExceeded uint8 = 0
)

// MaxICMPErrorLen is the longest ICMP error BuildICMPError builds: 576
// bytes of IP packet, the size every host can reassemble. RFC 1812
// §4.3.2.3 has a router quote as much of the offending packet as fits in
// it (RFC 792's minimum is the header plus 8 bytes), which gives the
// sender, and NAT devices on the way back, the whole transport header
// even with IP options.
const MaxICMPErrorLen = 576

// icmpErrorHeaders is the size of the IP and ICMP headers of an error.
const icmpErrorHeaders = header.IPv4MinLen + header.ICMPv4MinLen

// MaxQuoteLen is the most bytes of the offending packet an error quotes.
const MaxQuoteLen = MaxICMPErrorLen - icmpErrorHeaders

// precInternetControl is the IP precedence of ICMP errors (RFC 1812
// §4.3.2.5), set as Linux sets it on the errors it sends.
const precInternetControl = 0xc0

// BuildICMPError builds into out the ICMP error of type typ and code code
// about orig, the offending IPv4 packet from its IP header on (as it
// arrived; bytes past its Total Length are ignored), and returns the
// error's length and OK. The error is an IPv4 packet from src, the
// router's address on the network orig came from, to orig's source: IHL
// 5, TTL 64, DF set with identification 0 (an atomic datagram, RFC 6864),
// TOS internetwork control (0xc0) plus orig's TOS bits without ECN, and
// an ICMP header whose second word is zero except, for fragmentation
// needed (type 3 code 4), the next-hop MTU mtu in its low 16 bits (RFC
// 1191 §4). It quotes orig's header and data up to MaxQuoteLen bytes, so
// the error is at most MaxICMPErrorLen bytes; out must hold
// min(orig's Total Length, MaxQuoteLen) + 28 bytes, else ShortBuffer.
// Both checksums are computed in full.
//
// Following RFC 1812 §4.3.2.7 it builds nothing, and says why, when orig is
// an ICMP error (any ICMP type other than the queries: echo, router
// advertisement and solicitation, timestamp, information, address mask)
// or an ICMP message too short to tell (NoErrorAboutICMPError), a fragment
// other than the first (NoErrorAboutFragment), addressed to a multicast or
// the broadcast address (NoErrorToGroup), or from a source that is not a
// single host (NoErrorToSource). A packet that arrived as a link-layer
// broadcast also gets no error; the caller knows that and does not call.
// orig may hold any bytes (it is checked: Malformed). src must be IPv4.
//
// It does not allocate. out is the caller's and may be any buffer that
// does not overlap orig, for example a packet of the worker's pool,
// written after its Ethernet headroom.
func BuildICMPError(out, orig []byte, typ, code uint8, mtu uint16, src netip.Addr) (n int, st Status) {
	o := header.IPv4(orig)
	if !o.IsValid(len(orig)) {
		return 0, Malformed
	}
	if o.FragmentOffset() != 0 {
		return 0, NoErrorAboutFragment
	}
	if isGroupAddr(binary.BigEndian.Uint32(orig[16:20])) {
		return 0, NoErrorToGroup
	}
	if !src.Is4() || !isHostAddr(binary.BigEndian.Uint32(orig[12:16])) {
		return 0, NoErrorToSource
	}
	if o.Protocol() == header.ProtoICMPv4 {
		p := o.Payload()
		if len(p) == 0 || !isICMPQuery(p[0]) {
			return 0, NoErrorAboutICMPError
		}
	}
	quote := min(int(o.TotalLength()), MaxQuoteLen)
	n = icmpErrorHeaders + quote
	if len(out) < n {
		return 0, ShortBuffer
	}
	ip := header.IPv4(out[:n])
	ip.Encode(&header.IPv4Fields{
		TOS:         precInternetControl | o.TOS()&0x1c,
		TotalLength: uint16(n),
		Flags:       header.IPv4FlagDontFragment,
		TTL:         echoTTL,
		Protocol:    header.ProtoICMPv4,
		Src:         src,
		Dst:         o.Src(),
	})
	icmp := header.ICMPv4(out[header.IPv4MinLen:n])
	icmp[0] = typ
	icmp[1] = code
	binary.BigEndian.PutUint32(icmp[4:], 0)
	if typ == header.ICMPv4DestUnreachable && code == CodeFragNeeded {
		binary.BigEndian.PutUint16(icmp[6:], mtu)
	}
	copy(icmp[header.ICMPv4MinLen:], orig[:quote])
	icmp.SetChecksum(0)
	icmp.SetChecksum(icmp.CalculateChecksum())
	return n, OK
}

// isICMPQuery reports whether an ICMPv4 type is a query (RFC 792, RFC
// 1256, RFC 950), about which errors may be sent; every other type,
// including unknown ones, is treated as an error message.
func isICMPQuery(t uint8) bool {
	switch t {
	case 0, 8, // echo reply, echo request
		9, 10, // router advertisement, solicitation
		13, 14, // timestamp, timestamp reply
		15, 16, // information request, reply
		17, 18: // address mask request, reply
		return true
	}
	return false
}

// TimeExceeded builds the ICMP time exceeded (TTL exceeded in transit)
// error about orig, whose TTL ran out; see BuildICMPError.
func TimeExceeded(out, orig []byte, src netip.Addr) (int, Status) {
	return BuildICMPError(out, orig, header.ICMPv4TimeExceeded, CodeTTLExceeded, 0, src)
}

// FragNeeded builds the ICMP fragmentation needed error about orig, which
// has DF set and is larger than mtu, the MTU of the link it was routed to;
// the error carries mtu, which path MTU discovery (RFC 1191) adopts. See
// BuildICMPError.
func FragNeeded(out, orig []byte, mtu uint16, src netip.Addr) (int, Status) {
	return BuildICMPError(out, orig, header.ICMPv4DestUnreachable, CodeFragNeeded, mtu, src)
}

// NetUnreachable builds the ICMP network unreachable error about orig, for
// which Routes has no route; see BuildICMPError.
func NetUnreachable(out, orig []byte, src netip.Addr) (int, Status) {
	return BuildICMPError(out, orig, header.ICMPv4DestUnreachable, CodeNetUnreachable, 0, src)
}

// HostUnreachable builds the ICMP host unreachable error about orig, whose
// destination on a directly attached network could not be resolved; see
// BuildICMPError.
func HostUnreachable(out, orig []byte, src netip.Addr) (int, Status) {
	return BuildICMPError(out, orig, header.ICMPv4DestUnreachable, CodeHostUnreachable, 0, src)
}
