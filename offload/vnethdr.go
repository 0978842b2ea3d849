// Package offload implements the packet work that TAP/TUN and UDP offloads
// hand to userspace: the virtio-net header that precedes every packet on a
// TAP/TUN device opened with IFF_VNET_HDR, segmentation of TCP and UDP
// superpackets into MTU-sized packets (GSO, [Segment]), completion of a
// partial checksum ([FinishChecksum]), and coalescing of received TCP
// segments into superpackets the kernel accepts back ([Coalescer], GRO).
//
// The package is pure: it makes no system calls and keeps no global state.
// Every function works on caller-owned buffers, allocates nothing, and
// reports bad input with a [Status] — a sentinel value whose String is a
// kebab-case drop reason — instead of an error or a panic.
//
// Packets may start with a link-layer header of linkLen bytes (14 for an
// Ethernet frame read from a TAP device, 0 for an IP packet read from a TUN
// device). The virtio-net header's hdr_len and csum_start count from the
// start of that link-layer header, as the kernel's do; MTUs count from the
// IP header, as the kernel's do.
package offload

import "encoding/binary"

// VirtioNetHdrLen is the size of the virtio-net header (struct
// virtio_net_hdr in include/uapi/linux/virtio_net.h) that precedes every
// packet read from or written to a TAP/TUN device opened with IFF_VNET_HDR
// and the default header size (TUNSETVNETHDRSZ not used).
const VirtioNetHdrLen = 10

// Virtio-net header flags (VirtioNetHdr.Flags).
const (
	// FlagNeedsCsum (VIRTIO_NET_HDR_F_NEEDS_CSUM) says the L4 checksum is
	// partial: the field at CsumStart+CsumOffset holds the folded,
	// uncomplemented pseudo-header sum, and whoever puts the packet on a
	// wire must sum from CsumStart to the end and store the complement.
	FlagNeedsCsum uint8 = 1
	// FlagDataValid (VIRTIO_NET_HDR_F_DATA_VALID) says the sender already
	// verified the L4 checksum.
	FlagDataValid uint8 = 2
	// FlagRSCInfo (VIRTIO_NET_HDR_F_RSC_INFO) is only meaningful between a
	// virtio device and its driver; the kernel's TAP/TUN never sets it.
	FlagRSCInfo uint8 = 4
	flagsKnown        = FlagNeedsCsum | FlagDataValid | FlagRSCInfo
)

// Virtio-net GSO types (VirtioNetHdr.GSOType).
const (
	// GSONone: the packet is not a superpacket.
	GSONone uint8 = 0
	// GSOTCPv4: an IPv4 TCP superpacket (TSO), cut every GSOSize payload
	// bytes.
	GSOTCPv4 uint8 = 1
	// GSOUDP: UDP fragmentation offload (UFO), which Linux removed; this
	// package rejects it.
	GSOUDP uint8 = 3
	// GSOTCPv6: an IPv6 TCP superpacket.
	GSOTCPv6 uint8 = 4
	// GSOUDPL4: a UDP superpacket (USO): GSOSize-byte datagrams sharing one
	// UDP/IP header, as sent with UDP_SEGMENT.
	GSOUDPL4 uint8 = 5
	// GSOECN is a flag ORed into a TCP GSO type: the first segment carries
	// CWR (the flow negotiated ECN), which must not be repeated on later
	// segments.
	GSOECN uint8 = 0x80
)

// Checksum offsets within the L4 header, the CsumOffset values this package
// accepts.
const (
	tcpCsumOffset = 16
	udpCsumOffset = 6
)

// VirtioNetHdr is the decoded virtio-net header. Field names follow struct
// virtio_net_hdr. It is a plain value; copying it is cheap.
type VirtioNetHdr struct {
	// Flags is a set of FlagNeedsCsum, FlagDataValid, FlagRSCInfo.
	Flags uint8
	// GSOType is one of GSONone, GSOTCPv4, GSOTCPv6, GSOUDPL4, optionally
	// ORed with GSOECN for the TCP types.
	GSOType uint8
	// HdrLen is, per the virtio spec, the length of the headers to copy
	// into each segment. The kernel's TAP/TUN fills it with the length of
	// the packet's linear part (skb_headlen), which need not equal the
	// header length, so this package treats it only as a hint: Segment
	// derives the header length from the packet and rejects only an HdrLen
	// past the end of the packet. Coalescer writes the exact length.
	HdrLen uint16
	// GSOSize is the payload size of every segment but the last (the MSS
	// for TCP, the datagram payload size for UDP); 0 when GSOType is
	// GSONone.
	GSOSize uint16
	// CsumStart is the offset, from the start of the packet including its
	// link-layer header, of the L4 header whose checksum is partial. Valid
	// iff Flags has FlagNeedsCsum.
	CsumStart uint16
	// CsumOffset is the offset of the checksum field from CsumStart: 16
	// for TCP, 6 for UDP. Valid iff Flags has FlagNeedsCsum.
	CsumOffset uint16
}

// Decode reads the virtio-net header from b[:VirtioNetHdrLen] and checks
// the fields that can be judged without the packet: known flags and a known
// GSO type (UFO and ECN on a non-TCP type are rejected). Fields are read in
// the host's byte order, which is what the kernel's TAP/TUN uses unless
// TUNSETVNETLE/TUNSETVNETBE changed it. On a status other than StatusOK h
// holds whatever was decoded and must not be used. It does not allocate.
func (h *VirtioNetHdr) Decode(b []byte) Status {
	if len(b) < VirtioNetHdrLen {
		return StatusVnetShort
	}
	h.Flags = b[0]
	h.GSOType = b[1]
	h.HdrLen = binary.NativeEndian.Uint16(b[2:])
	h.GSOSize = binary.NativeEndian.Uint16(b[4:])
	h.CsumStart = binary.NativeEndian.Uint16(b[6:])
	h.CsumOffset = binary.NativeEndian.Uint16(b[8:])
	if h.Flags&^flagsKnown != 0 {
		return StatusVnetBadFlags
	}
	switch h.GSOType {
	case GSONone, GSOTCPv4, GSOTCPv6, GSOUDPL4, GSOTCPv4 | GSOECN, GSOTCPv6 | GSOECN:
		return StatusOK
	}
	return StatusVnetBadGSOType
}

// Encode writes h into b[:VirtioNetHdrLen] in the host's byte order (see
// Decode). It panics if b is shorter than VirtioNetHdrLen and does not
// allocate.
func (h *VirtioNetHdr) Encode(b []byte) {
	_ = b[VirtioNetHdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.NativeEndian.PutUint16(b[2:], h.HdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.GSOSize)
	binary.NativeEndian.PutUint16(b[6:], h.CsumStart)
	binary.NativeEndian.PutUint16(b[8:], h.CsumOffset)
}

// Status is the outcome of a call in this package: a sentinel value rather
// than an allocated error, so the dataplane can drop a packet and count the
// reason on the fast path. String returns a kebab-case name fit for a
// drop-reason label; Help returns one sentence for documentation and
// metrics help text.
type Status uint8

// Outcomes. Every status but StatusOK means the packet was not (completely)
// processed and should be dropped and counted under String().
const (
	// StatusOK: done.
	StatusOK Status = iota
	// StatusVnetShort: fewer than VirtioNetHdrLen bytes were read.
	StatusVnetShort
	// StatusVnetBadFlags: the header has a flag bit this package does not
	// know.
	StatusVnetBadFlags
	// StatusVnetBadGSOType: unknown GSO type, UFO, or ECN on a non-TCP
	// type; or the GSO type does not match the packet's IP version.
	StatusVnetBadGSOType
	// StatusVnetBadGSOSize: a superpacket with GSOSize 0.
	StatusVnetBadGSOSize
	// StatusVnetBadHdrLen: HdrLen lies past the end of the packet.
	StatusVnetBadHdrLen
	// StatusVnetBadCsumStart: CsumStart is not where the packet's L4 header
	// starts, or lies past the end of the packet.
	StatusVnetBadCsumStart
	// StatusVnetBadCsumOffset: CsumOffset is not the L4 protocol's checksum
	// field, or the field lies past the end of the packet.
	StatusVnetBadCsumOffset
	// StatusBadLength: the superpacket's IP length field disagrees with the
	// bytes read, the packet is shorter than its headers, or it carries no
	// payload.
	StatusBadLength
	// StatusBadIP: the superpacket is not IPv4/IPv6 carrying the GSO type's
	// L4 protocol directly (IPv4 fragments and IPv6 extension headers are
	// not segmented).
	StatusBadIP
	// StatusBadL4: the TCP header's data offset is below 5 words or runs
	// past the packet.
	StatusBadL4
	// StatusMTUTooSmall: the MTU leaves no room for payload after the
	// headers, or a UDP datagram (which cannot be cut smaller) exceeds it.
	StatusMTUTooSmall
	// StatusTooManySegments: the caller gave fewer output buffers (or
	// sizes) than the superpacket has segments.
	StatusTooManySegments
	// StatusBufferTooSmall: an output buffer is shorter than its segment.
	StatusBufferTooSmall
	numStatuses
)

var statusInfo = [numStatuses]struct{ name, help string }{
	StatusOK:                {"ok", "processed"},
	StatusVnetShort:         {"vnet-short", "packet shorter than a virtio-net header"},
	StatusVnetBadFlags:      {"vnet-bad-flags", "virtio-net header has unknown flag bits"},
	StatusVnetBadGSOType:    {"vnet-bad-gso-type", "virtio-net GSO type unknown, unsupported (UFO) or not matching the packet"},
	StatusVnetBadGSOSize:    {"vnet-bad-gso-size", "virtio-net header announces a superpacket with segment size 0"},
	StatusVnetBadHdrLen:     {"vnet-bad-hdr-len", "virtio-net hdr_len lies past the end of the packet"},
	StatusVnetBadCsumStart:  {"vnet-bad-csum-start", "virtio-net csum_start is not the L4 header or lies past the packet"},
	StatusVnetBadCsumOffset: {"vnet-bad-csum-offset", "virtio-net csum_offset is not the L4 checksum field or lies past the packet"},
	StatusBadLength:         {"superpacket-bad-length", "superpacket IP length disagrees with its size, or it has no payload"},
	StatusBadIP:             {"superpacket-bad-ip", "superpacket is not plain IPv4/IPv6 carrying TCP or UDP (fragment, extension headers)"},
	StatusBadL4:             {"superpacket-bad-l4", "superpacket TCP header length invalid"},
	StatusMTUTooSmall:       {"segment-mtu-too-small", "MTU leaves no room for a segment's payload, or a UDP datagram exceeds it"},
	StatusTooManySegments:   {"segment-too-many", "more segments than output buffers"},
	StatusBufferTooSmall:    {"segment-buffer-too-small", "output buffer shorter than a segment"},
}

// String returns the kebab-case name of s, e.g. "vnet-bad-hdr-len", or
// "unknown".
func (s Status) String() string {
	if s < numStatuses {
		return statusInfo[s].name
	}
	return "unknown"
}

// Help returns a one-sentence description of s, or "" for an unknown value.
func (s Status) Help() string {
	if s < numStatuses {
		return statusInfo[s].help
	}
	return ""
}
