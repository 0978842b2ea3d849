package encap

import "github.com/ferry-overlay/ferry/header"

// Encapsulation names, as a network's `encap` configuration key spells
// them.
const (
	EncapVXLAN = "vxlan"
	EncapGRE   = "gre"
	EncapUDP   = "udp" // flannel-UDP
)

// GRE overheads over an IPv4 underlay: the outer IPv4 header (20), the GRE
// header (4, or 8 with a key) and, for transparent Ethernet bridging, the
// inner Ethernet header (14) that travels inside the tunnel. They match
// the Linux devices' default MTUs below a 1500-byte underlay: gre 1476,
// gre with a key 1472, gretap 1462, gretap with a key 1458.
const (
	// GREOverhead is l3 GRE as ferry sends it (protocol IPv4, no key):
	// 20 + 4 = 24.
	GREOverhead = header.IPv4MinLen + GREHeaderLen
	// GREKeyOverhead is l3 GRE with a key: 20 + 8 = 28. ferry does not
	// send it; the figure is for a peer configured with a key.
	GREKeyOverhead = header.IPv4MinLen + GREKeyHeaderLen
	// GRETEBOverhead is GRE with Ethernet and no key: 20 + 4 + 14 = 38,
	// the "GRE with Ethernet" figure. ferry's l2 GRE always
	// carries the VNI in the key, so it uses GRETEBKeyOverhead instead.
	GRETEBOverhead = header.IPv4MinLen + GREHeaderLen + header.EthernetLen
	// GRETEBKeyOverhead is GRE with Ethernet and a key, ferry's l2 GRE:
	// 20 + 8 + 14 = 42.
	GRETEBKeyOverhead = header.IPv4MinLen + GREKeyHeaderLen + header.EthernetLen
)

// Overhead returns how many bytes the encapsulation encap (EncapVXLAN,
// EncapGRE, EncapUDP) adds around an inner IP packet over an IPv4
// underlay, as ferry sends it in l2 mode (l2 true: an Ethernet frame is
// carried) or l3 mode (l2 false: an IP packet is routed): the default MTU
// of the network's device is the underlay MTU minus this.
//
//	vxlan, l2 or l3: 50 (VXLANOverhead; l3 VXLAN carries Ethernet too,
//	                 framed with the VTEP MACs, as flannel-vxlan does)
//	gre, l2:         42 (GRETEBKeyOverhead: the key carries the VNI)
//	gre, l3:         24 (GREOverhead: protocol IPv4, no key)
//	udp, l3:         28 (FlannelUDPOverhead)
//
// It returns 0 for a combination ferry does not have (an unknown name, or
// flannel-UDP in l2 mode, which carries IP packets only); no real
// encapsulation has zero overhead, so configuration validation can test
// for it.
func Overhead(encap string, l2 bool) int {
	switch encap {
	case EncapVXLAN:
		return VXLANOverhead
	case EncapGRE:
		if l2 {
			return GRETEBKeyOverhead
		}
		return GREOverhead
	case EncapUDP:
		if l2 {
			return 0
		}
		return FlannelUDPOverhead
	}
	return 0
}
