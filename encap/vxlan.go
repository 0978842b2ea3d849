package encap

import "encoding/binary"

// VXLAN header layout (RFC 7348 §5):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|R|R|R|I|R|R|R|            Reserved                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                VXLAN Network Identifier (VNI) |   Reserved    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// I is the "VNI present" flag and must be 1; the R bits and the reserved
// fields are sent as zero. The inner Ethernet frame follows directly.
const (
	vxlanFlags = 0 // flags byte
	vxlanVNI   = 4 // 24-bit VNI, then one reserved byte
)

const (
	// VXLANHeaderLen is the size of the VXLAN header.
	VXLANHeaderLen = 8
	// VXLANFlagVNI is the I flag, the only flag a plain VXLAN header has.
	VXLANFlagVNI = 0x08
	// MaxVNI is the largest 24-bit VXLAN network identifier.
	MaxVNI = 1<<24 - 1
	// DefaultVXLANPort is the IANA-assigned VXLAN UDP port (RFC 7348 §5).
	// The Linux kernel and flannel default to 8472 instead; the port is
	// configurable per network.
	DefaultVXLANPort = 4789
	// VXLANOverhead is how many bytes VXLAN adds around an inner IP packet
	// over an IPv4 underlay: outer IPv4 header 20 + UDP 8 + VXLAN 8 + the
	// inner Ethernet header 14 (the inner frame's own header travels inside
	// the tunnel). A network's MTU defaults to the underlay MTU minus this,
	// e.g. 1500 - 50 = 1450, as for the Linux VXLAN device.
	VXLANOverhead = 20 + 8 + VXLANHeaderLen + innerEthernetLen
	// innerEthernetLen is the smallest inner frame DecodeVXLAN accepts:
	// an untagged Ethernet header.
	innerEthernetLen = 14
)

// Default outer UDP source port range, as the Linux VXLAN device uses when
// no port range is configured: udp_flow_src_port() falls back to the local
// ephemeral port range, net.ipv4.ip_local_port_range, 32768-60999 by
// default.
const (
	DefaultSourcePortMin = 32768
	DefaultSourcePortMax = 60999
)

// VXLAN is a view of a VXLAN header.
//
// Contract: the caller checks len(v) >= VXLANHeaderLen before calling any
// method; DecodeVXLAN does that and more for received packets.
type VXLAN []byte

// Flags returns the flags byte (VXLANFlagVNI for a plain VXLAN header).
func (v VXLAN) Flags() uint8 { return v[vxlanFlags] }

// VNI returns the 24-bit VXLAN network identifier.
func (v VXLAN) VNI() uint32 { return binary.BigEndian.Uint32(v[vxlanVNI:]) >> 8 }

// SetVNI writes the low 24 bits of vni, leaving the last reserved byte as
// it is.
func (v VXLAN) SetVNI(vni uint32) {
	binary.BigEndian.PutUint32(v[vxlanVNI:], vni<<8|uint32(v[vxlanVNI+3]))
}

// PutVXLAN writes a VXLAN header for vni into b[:VXLANHeaderLen]: flags
// VXLANFlagVNI, reserved fields zero. Only the low 24 bits of vni are
// written; configuration rejects VNIs above MaxVNI before they get here.
//
// b is meant to be the headroom directly in front of the inner frame in a
// packet buffer, so the frame is never copied. PutVXLAN panics if b is
// shorter than VXLANHeaderLen. It does not allocate.
func PutVXLAN(b []byte, vni uint32) {
	binary.BigEndian.PutUint32(b[0:4], VXLANFlagVNI<<24)
	binary.BigEndian.PutUint32(b[4:8], vni<<8)
}

// VXLANStatus is the outcome of DecodeVXLAN: a sentinel instead of an
// allocated error. String names the drop reason in kebab-case.
type VXLANStatus uint8

// DecodeVXLAN outcomes.
const (
	// VXLANOK: the header is valid and an inner Ethernet header follows.
	VXLANOK VXLANStatus = iota
	// VXLANShort: fewer than VXLANHeaderLen bytes, or no room after the
	// header for a 14-byte inner Ethernet header.
	VXLANShort
	// VXLANBadFlags: the I flag is clear, or any other bit outside the
	// VNI is set (another flag, or a reserved field).
	VXLANBadFlags
)

var vxlanStatusNames = [...]string{
	VXLANOK:       "ok",
	VXLANShort:    "vxlan-short",
	VXLANBadFlags: "vxlan-bad-flags",
}

// String returns the kebab-case drop reason for s, e.g. "vxlan-bad-flags",
// or "unknown".
func (s VXLANStatus) String() string {
	if int(s) < len(vxlanStatusNames) {
		return vxlanStatusNames[s]
	}
	return "unknown"
}

// vxlanReservedMask covers every header bit a plain VXLAN header must have
// clear: all of the first word but the I flag, and the last reserved byte.
const vxlanReservedMask = (0xffffffff^VXLANFlagVNI<<24)<<32 | 0xff

// DecodeVXLAN checks the VXLAN header at the start of payload, the UDP
// payload of a received tunnel packet, and returns its VNI. On VXLANOK the
// inner Ethernet frame is payload[VXLANHeaderLen:] and is at least 14 bytes
// long; on any other status vni is 0.
//
// Policy on reserved bits: the same as a Linux VXLAN device created without
// extensions. RFC 7348 says receivers ignore reserved bits, but the kernel
// (drivers/net/vxlan/vxlan_core.c, vxlan_rcv) drops a packet whose I flag is
// clear, and then one that sets any bit outside the I flag and the 24-bit
// VNI: its default reserved_bits mask is the complement of
// {VXLAN_HF_VNI, VXLAN_VNI_MASK} unless GBP, GPE or remote checksum offload
// is enabled, "to maintain compatibility with previous stack code" and so
// extensions cannot be misread. Both cases count under one drop reason
// there (VXLAN_INVALID_HDR) and under VXLANBadFlags here, so ferry accepts
// exactly what a default kernel peer accepts.
//
// It never panics, never allocates, and keeps no reference to payload.
func DecodeVXLAN(payload []byte) (vni uint32, status VXLANStatus) {
	if len(payload) < VXLANHeaderLen+innerEthernetLen {
		return 0, VXLANShort
	}
	hdr := binary.BigEndian.Uint64(payload)
	if hdr&(VXLANFlagVNI<<56) == 0 || hdr&vxlanReservedMask != 0 {
		return 0, VXLANBadFlags
	}
	return uint32(hdr>>8) & MaxVNI, VXLANOK
}

// SourcePort maps a flow hash (header.FlowHash of the inner frame) onto the
// outer UDP source port range [lo, hi], inclusive, so that each inner flow
// keeps one outer 5-tuple and different flows spread across ECMP paths and
// receive queues (RFC 7348 §5). If lo > hi the bounds are swapped. Like
// the kernel's udp_flow_src_port() it scales the hash by multiplication
// rather than modulo, and first folds the low half into the high half so
// the port reveals less of the hash. It does not allocate.
func SourcePort(hash uint32, lo, hi uint16) uint16 {
	if lo > hi {
		lo, hi = hi, lo
	}
	hash ^= hash << 16
	span := uint64(hi) - uint64(lo) + 1
	return lo + uint16(uint64(hash)*span>>32)
}
