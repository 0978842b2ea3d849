package router

import (
	"encoding/binary"
	"net/netip"

	"github.com/ferry-overlay/ferry/header"
)

// GatewayMAC returns the MAC address of the gateway of the network named
// network: 02 followed by the first five bytes, big-endian, of the 64-bit
// FNV-1a hash of the name. The first octet 0x02 makes it a locally
// administered (bit 1) unicast (bit 0 clear) address, so it never collides
// with a vendor's address, and it is the same on every host and across
// restarts, so containers' ARP caches stay right when ferry restarts or a
// container moves. It does not allocate.
func GatewayMAC(network string) header.MAC {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(network); i++ {
		h ^= uint64(network[i])
		h *= prime64
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h)
	return header.MAC{0x02, b[0], b[1], b[2], b[3], b[4]}
}

// arpFrameLen is the length of an untagged Ethernet frame carrying an ARP
// packet, without padding.
const arpFrameLen = header.EthernetLen + header.ARPLen

// AnswerARP answers an ARP request for the gateway: if frame is an
// untagged Ethernet frame holding an Ethernet/IPv4 ARP request whose target
// is gwIP, sent to the broadcast address or to gwMAC by a unicast sender
// other than gwIP itself, it writes the ARP reply (gwIP is at gwMAC),
// addressed to the requester, into out and returns its length (42 bytes,
// unpadded) and true. out may be frame itself (the reply then replaces the
// request in place) or any other buffer of at least 42 bytes.
//
// It answers RFC 5227 probes (sender address 0.0.0.0) too, which defends
// the gateway address. It returns false, and writes nothing, for anything
// else, including gratuitous ARP (sender address equal to the target) and
// requests for other addresses: those are the bridge's to flood. Answering
// does not learn the sender; the caller feeds it to Neighbours.Learn.
//
// frame may hold any bytes (it is checked); gwIP must be IPv4. It does not
// allocate.
func AnswerARP(frame []byte, gwIP netip.Addr, gwMAC header.MAC, out []byte) (n int, ok bool) {
	if len(frame) < arpFrameLen || len(out) < arpFrameLen {
		return 0, false
	}
	eth := header.Ethernet(frame)
	if eth.EtherType() != header.EtherTypeARP {
		return 0, false
	}
	if dst := eth.Dst(); dst != gwMAC && !dst.IsBroadcast() {
		return 0, false
	}
	a := header.ARP(frame[header.EthernetLen:])
	if !a.IsValid() || a.Op() != header.ARPRequest || a.TargetIP() != gwIP {
		return 0, false
	}
	f := header.ARPFields{
		Op:        header.ARPReply,
		SenderMAC: gwMAC,
		SenderIP:  gwIP,
		TargetMAC: a.SenderMAC(),
		TargetIP:  a.SenderIP(),
	}
	if f.TargetIP == gwIP || !isUnicastMAC(f.TargetMAC) {
		return 0, false
	}
	// Every field is read into f before out, which may alias frame, is
	// written.
	header.Ethernet(out).Encode(f.TargetMAC, gwMAC, header.EtherTypeARP)
	header.ARP(out[header.EthernetLen:]).Encode(&f)
	return arpFrameLen, true
}

// echoTTL is the TTL of the echo replies and ICMP errors the router
// originates, Linux's default (net.ipv4.ip_default_ttl).
const echoTTL = 64

// AnswerEcho answers a ping to the gateway in place: if frame is an
// untagged Ethernet frame to gwMAC holding an IPv4 packet to gwIP, with a
// correct header checksum, that is a whole (unfragmented) ICMP echo request
// from a unicast source, it turns it into the echo reply: Ethernet and IP
// addresses swapped (the reply comes from gwMAC, gwIP), TTL reset to 64,
// type 0, and the IP and ICMP checksums updated incrementally (RFC 1624),
// so the cost does not grow with the payload. IP options, identification,
// TOS and the echo data are sent back as they came. It returns the reply's
// length, the Ethernet header plus the IP total length (any link padding
// after it is left as it was), and true.
//
// It returns false and leaves frame untouched for anything else; the
// router then handles the packet like any other to the gateway. A request
// whose ICMP checksum is wrong gets a reply whose checksum is equally
// wrong, which the pinger discards, as it should.
//
// frame may hold any bytes (it is checked); gwIP must be IPv4. It does not
// allocate.
func AnswerEcho(frame []byte, gwIP netip.Addr, gwMAC header.MAC) (n int, ok bool) {
	if len(frame) < header.EthernetLen+header.IPv4MinLen+header.ICMPv4MinLen {
		return 0, false
	}
	eth := header.Ethernet(frame)
	if eth.EtherType() != header.EtherTypeIPv4 || eth.Dst() != gwMAC {
		return 0, false
	}
	ip := header.IPv4(frame[header.EthernetLen:])
	if !ip.IsValid(len(ip)) || ip.Protocol() != header.ProtoICMPv4 || ip.IsFragment() ||
		ip.Dst() != gwIP || ip.CalculateChecksum() != ip.Checksum() {
		return 0, false
	}
	src := ip.Src()
	if !isHostAddr(addrU32(src)) {
		return 0, false
	}
	icmp := header.ICMPv4(ip.Payload())
	if len(icmp) < header.ICMPv4MinLen || icmp.Type() != header.ICMPv4EchoRequest {
		return 0, false
	}
	peer := eth.Src()
	if !isUnicastMAC(peer) {
		return 0, false
	}
	eth.SetDst(peer)
	eth.SetSrc(gwMAC)
	// Swapping the addresses leaves both checksums as they were: the IP
	// header sum and the ICMP sum (which has no pseudo-header) do not
	// depend on the order of their words.
	ip.SetSrc(gwIP)
	ip.SetDst(src)
	setTTL(ip, echoTTL)
	// Type and code share the first word of the ICMP header.
	oldWord := uint16(icmp.Type())<<8 | uint16(icmp.Code())
	icmp.SetType(header.ICMPv4EchoReply)
	newWord := uint16(icmp.Type())<<8 | uint16(icmp.Code())
	icmp.SetChecksum(header.UpdateChecksum16(icmp.Checksum(), oldWord, newWord))
	return header.EthernetLen + int(ip.TotalLength()), true
}

// setTTL sets ip's TTL and updates its header checksum incrementally: TTL
// shares a 16-bit word with the protocol number.
func setTTL(ip header.IPv4, ttl uint8) {
	proto := uint16(ip.Protocol())
	old := uint16(ip.TTL())<<8 | proto
	ip.SetTTL(ttl)
	ip.SetChecksum(header.UpdateChecksum16(ip.Checksum(), old, uint16(ttl)<<8|proto))
}

// isUnicastMAC reports whether m can be a frame's destination for one
// host: not zero, not a group address.
func isUnicastMAC(m header.MAC) bool { return !m.IsZero() && !m.IsMulticast() }
