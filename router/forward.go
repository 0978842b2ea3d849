package router

import (
	"encoding/binary"

	"github.com/ferry-overlay/ferry/header"
)

// Forward prepares the IPv4 packet pkt (from its IP header on; bytes past
// Total Length, such as link padding, are allowed) to be forwarded one hop.
// It checks the header (IsValid and its checksum, RFC 1812 §5.2.2), the
// source and destination (no martians, §5.3.7) and the TTL: a TTL of 0 or 1
// gives TTLExpired, and the caller answers with TimeExceeded. On OK it has
// decremented the TTL and updated the header checksum incrementally
// (RFC 1624), so pkt is ready to send. On any other status pkt is
// untouched, so an ICMP error can quote it as it arrived.
//
// Forward is for transit packets: the caller has already taken out packets
// addressed to the gateway itself. It does not allocate.
func Forward(pkt []byte) Status {
	ip := header.IPv4(pkt)
	if !ip.IsValid(len(pkt)) {
		return Malformed
	}
	if ip.CalculateChecksum() != ip.Checksum() {
		return BadChecksum
	}
	if !isHostAddr(binary.BigEndian.Uint32(pkt[12:16])) {
		return MartianSource
	}
	if !isHostAddr(binary.BigEndian.Uint32(pkt[16:20])) {
		return MartianDestination
	}
	ttl := ip.TTL()
	if ttl <= 1 {
		return TTLExpired
	}
	setTTL(ip, ttl-1)
	return OK
}

// NeedsFrag reports whether the IPv4 packet pkt, which has DF set, is
// larger (by its Total Length) than egressMTU, the MTU of the link it is
// routed to: the sender is then owed FragNeeded(egressMTU) and the packet
// is dropped. A packet without DF that is too big is Fragment's. pkt must
// hold at least an IPv4 header (call after Forward returned OK). It does
// not allocate.
func NeedsFrag(pkt []byte, egressMTU int) bool {
	ip := header.IPv4(pkt)
	return ip.DF() && int(ip.TotalLength()) > egressMTU
}
