package encap

import (
	"encoding/binary"

	"github.com/ferry-overlay/ferry/header"
)

// flannel-UDP wire format, as flannel's udp backend speaks it: the UDP
// payload is the inner IPv4 packet, byte for byte, with no header of its
// own.
//
//	outer IPv4 (20) | UDP (8), dst port 8285 | inner IPv4 packet
//
// Read from flannel-io/flannel, pkg/backend/udp: the C proxy
// (proxy_amd64.c) read()s one packet from the TUN device (opened with
// IFF_TUN|IFF_NO_PI by pkg/ip/tun.go, so the read starts at the IPv4
// header) and passes that same buffer to sendto() on the UDP socket
// (tun_to_udp, sock_send_packet); the other way, it recv()s a datagram and
// write()s the same buffer into the TUN (udp_to_tun, tun_send_packet).
// Neither direction adds or strips a byte. The only change is to the
// inner header itself: each direction decrements the TTL and patches the
// header checksum incrementally (decrement_ttl), dropping the packet when
// the TTL reaches 0; see DecrementTTL. The port defaults to 8285
// (udp_amd64.go, defaultPort) and the TUN MTU to the external interface's
// MTU minus 28, "20 bytes IP hdr + 8 bytes UDP hdr"
// (udp_network_amd64.go, encapOverhead).
const (
	// FlannelUDPPort is flannel's default udp backend port.
	FlannelUDPPort = 8285
	// FlannelUDPOverhead is how many bytes flannel-UDP adds around an
	// inner IPv4 packet: outer IPv4 header 20 + UDP header 8.
	FlannelUDPOverhead = header.IPv4MinLen + header.UDPLen
)

// FlannelUDPStatus is the outcome of DecodeFlannelUDP: a sentinel instead
// of an allocated error. String names the drop reason in kebab-case.
type FlannelUDPStatus uint8

// DecodeFlannelUDP outcomes, in the order DecodeFlannelUDP checks them.
const (
	// FlannelUDPOK: the payload is one IPv4 packet.
	FlannelUDPOK FlannelUDPStatus = iota
	// FlannelUDPShort: fewer bytes than an IPv4 header (20).
	FlannelUDPShort
	// FlannelUDPNotIPv4: the version nibble is not 4 (an IPv6 packet, or
	// not an IP packet at all).
	FlannelUDPNotIPv4
	// FlannelUDPBadLength: the IPv4 lengths disagree with the datagram:
	// IHL below 5, a header longer than the Total Length, or a Total
	// Length other than the payload's length.
	FlannelUDPBadLength
)

var flannelUDPStatusNames = [...]string{
	FlannelUDPOK:        "ok",
	FlannelUDPShort:     "flannel-udp-short",
	FlannelUDPNotIPv4:   "flannel-udp-not-ipv4",
	FlannelUDPBadLength: "flannel-udp-bad-length",
}

// String returns the kebab-case drop reason for s, e.g.
// "flannel-udp-not-ipv4", or "unknown".
func (s FlannelUDPStatus) String() string {
	if int(s) < len(flannelUDPStatusNames) {
		return flannelUDPStatusNames[s]
	}
	return "unknown"
}

// DecodeFlannelUDP checks that payload, the UDP payload of a datagram
// received on the flannel-UDP port, is one IPv4 packet and returns it:
// inner is payload itself on FlannelUDPOK (there is no header to strip),
// nil otherwise.
//
// The Total Length must equal len(payload) exactly. The kernel would
// accept and trim trailing bytes when the packet is written into the TUN,
// but a datagram carries exact lengths and flannel sends exactly the
// packet it read, so a mismatch means corruption or a sender that is not
// flannel. The header checksum is not verified here: the UDP checksum
// already covers the payload in transit, and the kernel verifies the
// header when the packet is written into the TUN (ip_rcv, counted as
// InHdrErrors).
//
// It never panics, never allocates, and keeps no reference to payload
// beyond returning it.
func DecodeFlannelUDP(payload []byte) (inner []byte, status FlannelUDPStatus) {
	if len(payload) < header.IPv4MinLen {
		return nil, FlannelUDPShort
	}
	ip := header.IPv4(payload)
	if ip.Version() != header.IPv4Version {
		return nil, FlannelUDPNotIPv4
	}
	hlen, tlen := ip.HeaderLength(), int(ip.TotalLength())
	if hlen < header.IPv4MinLen || hlen > tlen || tlen != len(payload) {
		return nil, FlannelUDPBadLength
	}
	return payload, FlannelUDPOK
}

// DecrementTTL decrements the TTL of the IPv4 packet pkt and patches its
// header checksum incrementally (RFC 1624 eqn. 3, header.UpdateChecksum16),
// which is what flannel's udp backend does to every packet in each
// direction, before sending it to a peer and before writing a received
// one into the TUN. It returns false, leaving pkt unchanged, if pkt is
// shorter than an IPv4 header or its TTL is 0 or 1, i.e. would reach 0:
// the packet must then be dropped (flannel drops it silently; an RFC 1812
// router would answer ICMP time exceeded).
//
// The checksum it writes equals a full recomputation for every header
// whose checksum was correct (RFC 1624 §3), and so equals, byte for byte,
// what flannel's own patch (adding 0x0100 with end-around carry) writes:
// TestDecrementTTLMatchesFlannel checks all 65536 checksum values.
//
// pkt aliases the packet buffer. It does not allocate.
func DecrementTTL(pkt []byte) bool {
	if len(pkt) < header.IPv4MinLen {
		return false
	}
	ip := header.IPv4(pkt)
	ttl := ip.TTL()
	if ttl <= 1 {
		return false
	}
	const word = 8 // TTL and Protocol form the fifth 16-bit word
	old := binary.BigEndian.Uint16(pkt[word:])
	ip.SetTTL(ttl - 1)
	ip.SetChecksum(header.UpdateChecksum16(ip.Checksum(), old, binary.BigEndian.Uint16(pkt[word:])))
	return true
}
