package router

import (
	"encoding/binary"
	"net/netip"
)

// addrU32 returns an IPv4 address as a big-endian integer; a non-IPv4
// address gives 0.
func addrU32(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// Address blocks a router treats specially, as big-endian integers.
const (
	thisNet   = 0x00000000 // 0.0.0.0/8, "this network" (RFC 1122)
	loopback  = 0x7f000000 // 127.0.0.0/8
	linkLocal = 0xa9fe0000 // 169.254.0.0/16 (RFC 3927)
	multicast = 0xe0000000 // 224.0.0.0/4
	classE    = 0xf0000000 // 240.0.0.0/4, with 255.255.255.255
)

// isHostAddr reports whether a can be the address of a single host on a
// routed network: not in 0/8, 127/8, 169.254/16, 224/4 or 240/4 (the last
// holds the limited broadcast address). This is RFC 1812 §5.3.7's martian
// filter with RFC 3927 §7's link-local rule, and the "single host" test of
// §4.3.2.7.
func isHostAddr(a uint32) bool {
	switch {
	case a&0xff000000 == thisNet, a&0xff000000 == loopback, a&0xffff0000 == linkLocal:
		return false
	case a&0xf0000000 == multicast, a&0xf0000000 == classE:
		return false
	}
	return true
}

// isGroupAddr reports whether a is a multicast or the limited broadcast
// address.
func isGroupAddr(a uint32) bool { return a&0xf0000000 == multicast || a == 0xffffffff }
