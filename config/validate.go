package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// Validate checks c as Parse returns it, defaults filled in, and returns
// the first problem as an *Error with Path set (Line is 0: a Config has no
// file). Checks run in file order: node, control, metrics, then each
// network with its peers, ports and FDB entries, each also against the
// networks before it. Validate does not modify c.
func (c *Config) Validate() error {
	if e := c.Node.validate(); e != nil {
		return e
	}
	if e := c.Control.validate(); e != nil {
		return e
	}
	if e := c.Metrics.validate(); e != nil {
		return e
	}
	if e := c.validateNetworks(); e != nil {
		return e
	}
	return nil
}

// errorf returns an *Error for the field at path.
func errorf(path, format string, args ...any) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

func (n *Node) validate() *Error {
	if !validNodeName(n.Name) {
		return errorf("node.name", "%q is not a node name: want 1..%d characters from A-Z a-z 0-9 . _ -", n.Name, maxNodeName)
	}
	if n.Underlay.IsValid() {
		if e := checkUnderlayAddr("node.underlay", n.Underlay); e != nil {
			return e
		}
	}
	if n.UnderlayMTU != 0 && (n.UnderlayMTU < minUnderlayMTU || n.UnderlayMTU > maxUnderlayMTU) {
		return errorf("node.underlay_mtu", "%d is out of range %d..%d (or 0 to detect it)", n.UnderlayMTU, minUnderlayMTU, maxUnderlayMTU)
	}
	if n.Workers < 1 || n.Workers > MaxWorkers {
		return errorf("node.workers", "%d is out of range 1..%d (or 0 for one per CPU)", n.Workers, MaxWorkers)
	}
	switch n.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return errorf("node.log_level", "%q is not a log level (want debug, info, warn or error)", n.LogLevel)
	}
	return nil
}

func (c *Control) validate() *Error {
	if !filepath.IsAbs(c.Socket) || filepath.Clean(c.Socket) != c.Socket {
		return errorf("control.socket", "%q is not a clean absolute path", c.Socket)
	}
	if len(c.Socket) > maxSocketPath {
		return errorf("control.socket", "%q is %d bytes long; a unix socket path has at most %d", c.Socket, len(c.Socket), maxSocketPath)
	}
	return nil
}

func (m *Metrics) validate() *Error {
	if m.Listen == "" {
		return nil // disabled
	}
	host, port, err := net.SplitHostPort(m.Listen)
	if err != nil {
		return errorf("metrics.listen", "%q is not host:port (write %q to disable metrics)", m.Listen, MetricsOff)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errorf("metrics.listen", "%q: port %q is not 1..65535", m.Listen, port)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return errorf("metrics.listen", "%q: host %q is not an IP address, \"localhost\" or empty", m.Listen, host)
		}
	}
	return nil
}

// validateNetworks checks each network, then what must hold across
// networks.
func (c *Config) validateNetworks() *Error {
	if len(c.Networks) == 0 {
		return errorf("networks", "at least one network is required")
	}
	// What earlier networks use, mapped to who uses it.
	names := make(map[string]string)
	vnis := make(map[uint32]string)
	ports := make(map[string]string)
	nsNames := make(map[[2]string]string) // (netns, name in it)
	addrs := make(map[netip.Addr]string)
	for i := range c.Networks {
		n := &c.Networks[i]
		p := fmt.Sprintf("networks[%d]", i)
		if e := n.validate(p, &c.Node); e != nil {
			return e
		}
		if other, dup := names[n.Name]; dup {
			return errorf(p+".name", "%q is already the name of %s", n.Name, other)
		}
		names[n.Name] = p
		if other, dup := vnis[n.VNI]; dup {
			return errorf(p+".vni", "%d is already used by network %q", n.VNI, other)
		}
		vnis[n.VNI] = n.Name
		if first := &c.Networks[0]; i > 0 && n.Port != first.Port {
			return errorf(p+".port", "%d differs from %d of network %q; all vxlan networks of a node share one UDP port", n.Port, first.Port, first.Name)
		}
		for j := range i {
			o := &c.Networks[j]
			if n.Subnet.IsValid() && o.Subnet.IsValid() && n.Subnet.Overlaps(o.Subnet) {
				return errorf(p+".subnet", "%s overlaps %s of network %q", n.Subnet, o.Subnet, o.Name)
			}
		}
		if len(n.Peers) > 0 && !c.Node.Underlay.IsValid() {
			return errorf("node.underlay", "required, since network %q has peers", n.Name)
		}
		for j := range n.Ports {
			pt := &n.Ports[j]
			pp := fmt.Sprintf("%s.ports[%d]", p, j)
			if other, dup := ports[pt.Name]; dup {
				return errorf(pp+".name", "%q is already the name of %s", pt.Name, other)
			}
			ports[pt.Name] = pp
			if pt.Netns != "" {
				inner := pt.Name
				field := ".name"
				if pt.Ifname != "" {
					inner, field = pt.Ifname, ".ifname"
				}
				k := [2]string{pt.Netns, inner}
				if other, dup := nsNames[k]; dup {
					return errorf(pp+field, "%s would have the same name %q in netns %q", other, inner, pt.Netns)
				}
				nsNames[k] = pp
			}
			if a := pt.Address.Addr(); a.IsValid() {
				if other, dup := addrs[a]; dup {
					return errorf(pp+".address", "%s is already the address of %s", a, other)
				}
				addrs[a] = pp
			}
		}
	}
	return nil
}

// validate checks one network at path p on the node.
func (n *Network) validate(p string, node *Node) *Error {
	if !validNetworkName(n.Name) {
		return errorf(p+".name", "%q is not a network name: want 1..%d characters from a-z 0-9 -, not starting with -", n.Name, maxNetworkName)
	}
	switch n.Mode {
	case ModeL2:
	case "l3":
		return errorf(p+".mode", "%q is not supported yet (only %q)", n.Mode, ModeL2)
	default:
		return errorf(p+".mode", "%q is not a mode (want %q)", n.Mode, ModeL2)
	}
	switch n.Encap {
	case EncapVXLAN:
	case "gre", "udp":
		return errorf(p+".encap", "%q is not supported yet (only %q)", n.Encap, EncapVXLAN)
	default:
		return errorf(p+".encap", "%q is not an encapsulation (want %q)", n.Encap, EncapVXLAN)
	}
	if n.VNI == 0 {
		return errorf(p+".vni", "required for vxlan (1..%d)", maxVNI)
	}
	if n.VNI > maxVNI {
		return errorf(p+".vni", "%d is out of range 1..%d", n.VNI, maxVNI)
	}
	if n.Port == 0 {
		return errorf(p+".port", "0 is not a UDP port (want 1..65535)")
	}
	if e := n.validateAddressing(p); e != nil {
		return e
	}
	if e := n.validateMTU(p, node.UnderlayMTU); e != nil {
		return e
	}
	if n.MACAgeing < minMACAgeing {
		return errorf(p+".mac_ageing", "%s is shorter than %s", n.MACAgeing, minMACAgeing)
	}
	if n.FDBMax < minFDBMax || n.FDBMax > maxFDBMax {
		return errorf(p+".fdb_max", "%d is out of range %d..%d", n.FDBMax, minFDBMax, maxFDBMax)
	}
	peers := make(map[netip.Addr]int, len(n.Peers))
	for i, a := range n.Peers {
		pp := fmt.Sprintf("%s.peers[%d]", p, i)
		if e := checkUnderlayAddr(pp, a); e != nil {
			return e
		}
		if a == node.Underlay {
			return errorf(pp, "%s is node.underlay, this node's own address", a)
		}
		if j, dup := peers[a]; dup {
			return errorf(pp, "%s is already %s.peers[%d]", a, p, j)
		}
		peers[a] = i
	}
	macs := make(map[MAC]string)
	portNames := make(map[string]bool, len(n.Ports))
	for i := range n.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", p, i)
		pt := &n.Ports[i]
		if e := pt.validate(pp, n); e != nil {
			return e
		}
		if pt.MAC != (MAC{}) {
			if other, dup := macs[pt.MAC]; dup {
				return errorf(pp+".mac", "%s is already the MAC of %s", pt.MAC, other)
			}
			macs[pt.MAC] = pp
		}
		portNames[pt.Name] = true
	}
	return n.validateFDB(p, peers, portNames)
}

// validateAddressing checks the subnet, and the gateway within it.
func (n *Network) validateAddressing(p string) *Error {
	s := n.Subnet
	if s.IsValid() {
		switch {
		case !s.Addr().Is4():
			return errorf(p+".subnet", "%s is not IPv4 (IPv6 overlays are not supported yet)", s)
		case s != s.Masked():
			return errorf(p+".subnet", "%s has host bits set; did you mean %s?", s, s.Masked())
		case s.Bits() > 30:
			return errorf(p+".subnet", "%s is too small for a gateway and ports (at most /30)", s)
		}
	}
	g := n.Gateway
	if !g.IsValid() {
		return nil
	}
	if !s.IsValid() {
		return errorf(p+".gateway", "needs %s.subnet", p)
	}
	if !s.Contains(g) {
		return errorf(p+".gateway", "%s is outside subnet %s", g, s)
	}
	if g == s.Addr() || g == lastAddr(s) {
		return errorf(p+".gateway", "%s is the network or broadcast address of %s", g, s)
	}
	return nil
}

// validateMTU checks the MTU, and against the underlay MTU when the file
// sets one.
func (n *Network) validateMTU(p string, underlayMTU int) *Error {
	if n.MTU != 0 && (n.MTU < MinMTU || n.MTU > MaxMTU) {
		return errorf(p+".mtu", "%d is out of range %d..%d (or 0 to derive it from the underlay)", n.MTU, MinMTU, MaxMTU)
	}
	if underlayMTU == 0 {
		return nil
	}
	if n.MTU != 0 && n.MTU+VXLANOverhead > underlayMTU {
		return errorf(p+".mtu", "%d plus %d bytes of VXLAN overhead exceeds node.underlay_mtu %d", n.MTU, VXLANOverhead, underlayMTU)
	}
	if m := n.EffectiveMTU(underlayMTU); m < MinMTU {
		return errorf(p+".mtu", "derived MTU %d (node.underlay_mtu %d minus %d bytes of VXLAN overhead) is below %d", m, underlayMTU, VXLANOverhead, MinMTU)
	}
	return nil
}

// validate checks one port at path pp of network n.
func (pt *Port) validate(pp string, n *Network) *Error {
	if !validIfname(pt.Name) {
		return errorf(pp+".name", "%q is not an interface name: want 1..%d bytes, not . or .., without / : %% or whitespace", pt.Name, maxIfname)
	}
	if pt.Netns != "" && !validNetns(pt.Netns) {
		return errorf(pp+".netns", "%q is neither a namespace name (under /var/run/netns) nor a clean absolute path", pt.Netns)
	}
	if pt.Ifname != "" {
		if pt.Netns == "" {
			return errorf(pp+".ifname", "needs %s.netns (ifname names the port inside a namespace)", pp)
		}
		if !validIfname(pt.Ifname) {
			return errorf(pp+".ifname", "%q is not an interface name: want 1..%d bytes, not . or .., without / : %% or whitespace", pt.Ifname, maxIfname)
		}
	}
	if a := pt.Address; a.IsValid() {
		s := n.Subnet
		switch {
		case !s.IsValid():
			return errorf(pp+".address", "needs the network's subnet")
		case !s.Contains(a.Addr()):
			return errorf(pp+".address", "%s is outside subnet %s", a, s)
		case a.Bits() != s.Bits():
			return errorf(pp+".address", "%s has prefix length %d; the subnet %s has %d", a, a.Bits(), s, s.Bits())
		case a.Addr() == s.Addr() || a.Addr() == lastAddr(s):
			return errorf(pp+".address", "%s is the network or broadcast address of %s", a, s)
		case a.Addr() == n.Gateway:
			return errorf(pp+".address", "%s is the network's gateway", a)
		}
	}
	if pt.MAC != (MAC{}) && !pt.MAC.IsUnicast() {
		return errorf(pp+".mac", "%s is a multicast address; a port's MAC must be unicast", pt.MAC)
	}
	return nil
}

// validateFDB checks the static FDB entries of network n at path p, given
// its peers and port names.
func (n *Network) validateFDB(p string, peers map[netip.Addr]int, ports map[string]bool) *Error {
	if len(n.FDB) > n.FDBMax {
		return errorf(p+".fdb", "%d static entries exceed fdb_max %d", len(n.FDB), n.FDBMax)
	}
	macs := make(map[MAC]int, len(n.FDB))
	for i, f := range n.FDB {
		fp := fmt.Sprintf("%s.fdb[%d]", p, i)
		switch {
		case f.MAC == (MAC{}):
			return errorf(fp+".mac", "required")
		case !f.MAC.IsUnicast():
			return errorf(fp+".mac", "%s is a multicast address; static entries are for unicast MACs", f.MAC)
		}
		if j, dup := macs[f.MAC]; dup {
			return errorf(fp+".mac", "%s is already in %s.fdb[%d]", f.MAC, p, j)
		}
		macs[f.MAC] = i
		for _, pt := range n.Ports {
			if pt.MAC == f.MAC && pt.Name != f.Port {
				return errorf(fp+".mac", "%s is the MAC of port %q; an entry for it must name that port", f.MAC, pt.Name)
			}
		}
		switch {
		case f.Port == "" && !f.Peer.IsValid():
			return errorf(fp, "needs port or peer")
		case f.Port != "" && f.Peer.IsValid():
			return errorf(fp, "has both port and peer; give one")
		case f.Port != "" && !ports[f.Port]:
			return errorf(fp+".port", "%q is not a port of network %q", f.Port, n.Name)
		}
		if _, ok := peers[f.Peer]; f.Peer.IsValid() && !ok {
			return errorf(fp+".peer", "%s is not a peer of network %q", f.Peer, n.Name)
		}
	}
	return nil
}

// checkUnderlayAddr checks an address that tunnels are sent from or to.
func checkUnderlayAddr(path string, a netip.Addr) *Error {
	switch {
	case !a.Is4():
		return errorf(path, "%s is not an IPv4 address (IPv6 underlays are not supported yet)", a)
	case a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return errorf(path, "%s cannot be a tunnel endpoint (want a unicast address)", a)
	}
	return nil
}

// lastAddr returns the last address of IPv4 prefix s: its broadcast
// address.
func lastAddr(s netip.Prefix) netip.Addr {
	b := s.Masked().Addr().As4()
	for i := s.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

func validNodeName(s string) bool {
	return len(s) >= 1 && len(s) <= maxNodeName && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}

func validNetworkName(s string) bool {
	return len(s) >= 1 && len(s) <= maxNetworkName && s[0] != '-' && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
}

// validIfname follows the kernel's dev_valid_name, and also refuses '%'
// (the kernel would number the name) and control characters.
func validIfname(s string) bool {
	if len(s) < 1 || len(s) > maxIfname || s == "." || s == ".." {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '/' || c == ':' || c == '%' {
			return false
		}
	}
	return true
}

// validNetns accepts a name for /var/run/netns or a clean absolute path.
func validNetns(s string) bool {
	if strings.ContainsRune(s, 0) {
		return false
	}
	if strings.HasPrefix(s, "/") {
		return filepath.Clean(s) == s
	}
	return len(s) <= 255 && s != "." && s != ".." && !strings.ContainsRune(s, '/')
}
