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
	// Uplinks, conntrack, masquerade and publish: config/uplink.go.
	if e := c.validateUplinks(c.linkNames()); e != nil {
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
	for i, c := range n.CPUs {
		if c < 0 || c > MaxCPU {
			return errorf(fmt.Sprintf("node.cpus[%d]", i), "%d is not a CPU number (0..%d)", c, MaxCPU)
		}
		for j, d := range n.CPUs[:i] {
			if d == c {
				return errorf(fmt.Sprintf("node.cpus[%d]", i), "CPU %d is already node.cpus[%d]", c, j)
			}
		}
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
	links := make(map[string]string)      // host link names: ports and devices
	nsNames := make(map[[2]string]string) // (netns, name in it)
	addrs := make(map[netip.Addr]string)
	files := make(map[string]string)
	var vxlan, udp, l3gre *Network // the first network of each kind
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
		if n.VNI != 0 {
			if other, dup := vnis[n.VNI]; dup {
				return errorf(p+".vni", "%d is already used by network %q", n.VNI, other)
			}
			vnis[n.VNI] = n.Name
		}
		if e := sharedTunnels(p, n, &vxlan, &udp, &l3gre); e != nil {
			return e
		}
		for j := range i {
			o := &c.Networks[j]
			if s, t := n.space(), o.space(); s.IsValid() && t.IsValid() && s.Overlaps(t) {
				return errorf(p+"."+n.spaceKey(), "%s overlaps %s of network %q", s, t, o.Name)
			}
		}
		if len(n.Peers) > 0 && !c.Node.Underlay.IsValid() {
			return errorf("node.underlay", "required, since network %q has peers", n.Name)
		}
		if n.Device != "" {
			if other, dup := links[n.Device]; dup {
				return errorf(p+".device", "%q is already the name of %s", n.Device, other)
			}
			links[n.Device] = p + ".device"
		}
		if f := n.SubnetFile; f != "" {
			if other, dup := files[f]; dup {
				return errorf(p+".subnet_file", "%q is already the subnet file of network %q", f, other)
			}
			files[f] = n.Name
		}
		for j := range n.Ports {
			pt := &n.Ports[j]
			pp := fmt.Sprintf("%s.ports[%d]", p, j)
			if other, dup := links[pt.Name]; dup {
				return errorf(pp+".name", "%q is already the name of %s", pt.Name, other)
			}
			links[pt.Name] = pp
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

// sharedTunnels checks network n at path p against the earlier networks
// that use the same tunnel socket, and records it in *vxlan, *udp or
// *l3gre when it is the first of its kind. All vxlan networks share one
// UDP socket and tell each other apart by VNI, so they share its port. A
// flannel-UDP packet and an l3 GRE packet carry no network identifier, so
// a node has at most one network of each, and the udp port is not the
// vxlan one. l2 GRE networks tell each other apart by key (their VNI).
func sharedTunnels(p string, n *Network, vxlan, udp, l3gre **Network) *Error {
	switch {
	case n.Encap == EncapVXLAN:
		if f := *vxlan; f != nil && n.Port != f.Port {
			return errorf(p+".port", "%d differs from %d of network %q; all vxlan networks of a node share one UDP port", n.Port, f.Port, f.Name)
		}
		if u := *udp; u != nil && n.Port == u.Port {
			return errorf(p+".port", "%d is the udp port of network %q; vxlan and udp cannot share a UDP port", n.Port, u.Name)
		}
		if *vxlan == nil {
			*vxlan = n
		}
	case n.Encap == EncapUDP:
		if u := *udp; u != nil {
			return errorf(p+".encap", "network %q already uses udp; a node has one udp network, since flannel-UDP packets carry no network identifier", u.Name)
		}
		if v := *vxlan; v != nil && n.Port == v.Port {
			return errorf(p+".port", "%d is the vxlan port of network %q; vxlan and udp cannot share a UDP port", n.Port, v.Name)
		}
		*udp = n
	case n.Encap == EncapGRE && n.Mode == ModeL3:
		if g := *l3gre; g != nil {
			return errorf(p+".encap", "network %q already uses l3 gre; a node has one, since its GRE packets carry no key", g.Name)
		}
		*l3gre = n
	}
	return nil
}

// space is the address space the network takes on this host: an l3
// network's whole Network, an l2 network's Subnet (invalid if none).
func (n *Network) space() netip.Prefix {
	if n.Mode == ModeL3 {
		return n.Network
	}
	return n.Subnet
}

// spaceKey is the key of the field space returns.
func (n *Network) spaceKey() string {
	if n.Mode == ModeL3 {
		return "network"
	}
	return "subnet"
}

// validate checks one network at path p on the node.
func (n *Network) validate(p string, node *Node) *Error {
	if !validNetworkName(n.Name) {
		return errorf(p+".name", "%q is not a network name: want 1..%d characters from a-z 0-9 -, not starting with -", n.Name, maxNetworkName)
	}
	switch n.Mode {
	case ModeL2:
		switch n.Encap {
		case EncapVXLAN, EncapGRE:
		case EncapUDP:
			return errorf(p+".encap", "%q carries IP packets only; an l2 network uses %q or %q", n.Encap, EncapVXLAN, EncapGRE)
		default:
			return errorf(p+".encap", "%q is not an encapsulation (want %q or %q)", n.Encap, EncapVXLAN, EncapGRE)
		}
	case ModeL3:
		switch n.Encap {
		case EncapUDP, EncapGRE, EncapVXLAN:
		default:
			return errorf(p+".encap", "%q is not an encapsulation (want %q, %q or %q)", n.Encap, EncapUDP, EncapGRE, EncapVXLAN)
		}
	default:
		return errorf(p+".mode", "%q is not a mode (want %q or %q)", n.Mode, ModeL2, ModeL3)
	}
	if e := n.validateTunnel(p); e != nil {
		return e
	}
	if n.Mode == ModeL3 {
		return n.validateL3(p, node)
	}
	return n.validateL2(p, node)
}

// validateTunnel checks the VNI and port against the encapsulation.
func (n *Network) validateTunnel(p string) *Error {
	if n.Encap == EncapVXLAN || n.Mode == ModeL2 {
		if n.VNI == 0 {
			return errorf(p+".vni", "required for %s (1..%d)", n.Encap, maxVNI)
		}
		if n.VNI > maxVNI {
			return errorf(p+".vni", "%d is out of range 1..%d", n.VNI, maxVNI)
		}
	} else if n.VNI != 0 {
		return errorf(p+".vni", "%d: l3 %s carries no network identifier; leave the key out", n.VNI, n.Encap)
	}
	if n.Encap == EncapGRE {
		if n.Port != 0 {
			return errorf(p+".port", "%d: gre runs directly over IP (protocol 47) and has no port; leave the key out", n.Port)
		}
	} else if n.Port == 0 {
		return errorf(p+".port", "0 is not a UDP port (want 1..65535)")
	}
	return nil
}

// validateL2 checks the rest of l2 network n at path p.
func (n *Network) validateL2(p string, node *Node) *Error {
	switch {
	case n.Network.IsValid():
		return errorf(p+".network", "only l3 networks have one; an l2 network has just a subnet")
	case n.Device != "":
		return errorf(p+".device", "only l3 networks have a device; an l2 network has ports")
	case n.SubnetFile != "":
		return errorf(p+".subnet_file", "only l3 networks write a subnet file")
	case n.VTEPMAC != (MAC{}):
		return errorf(p+".vtep_mac", "only l3 vxlan networks have a VTEP MAC; an l2 network carries its ports' frames as they are")
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
	for i := range n.Peers {
		pe := &n.Peers[i]
		pp := fmt.Sprintf("%s.peers[%d]", p, i)
		if e := checkPeerUnderlay(pp, pe.Underlay, node, peers, p, i); e != nil {
			return e
		}
		if pe.Subnet.IsValid() {
			return errorf(pp+".subnet", "only l3 networks route subnets to peers")
		}
		if pe.VTEPMAC != (MAC{}) {
			return errorf(pp+".vtep_mac", "only l3 vxlan networks have VTEP MACs")
		}
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

// checkPeerUnderlay checks the underlay address a of the peer at path pp,
// the i-th of network path p, against the node and the earlier peers,
// and records it in peers.
func checkPeerUnderlay(pp string, a netip.Addr, node *Node, peers map[netip.Addr]int, p string, i int) *Error {
	if !a.IsValid() {
		return errorf(pp, "required: the peer's underlay address")
	}
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
	return nil
}

// validateL3 checks the rest of l3 network n at path p.
func (n *Network) validateL3(p string, node *Node) *Error {
	if !node.Underlay.IsValid() {
		return errorf("node.underlay", "required, since network %q is an l3 network", n.Name)
	}
	switch {
	case n.Gateway.IsValid():
		return errorf(p+".gateway", "an l3 network has no gateway: the host routes %s through device %q; leave the key out", n.Network, n.Device)
	case len(n.Ports) > 0:
		return errorf(p+".ports", "an l3 network has no ports: containers sit on a bridge that the host routes through device %q", n.Device)
	case len(n.FDB) > 0:
		return errorf(p+".fdb", "an l3 network has no FDB: it routes by subnet")
	case n.MACAgeing != 0:
		return errorf(p+".mac_ageing", "only l2 networks learn MACs; leave the key out")
	case n.FDBMax != 0:
		return errorf(p+".fdb_max", "only l2 networks have an FDB; leave the key out")
	}
	nw := n.Network
	switch {
	case !nw.IsValid():
		return errorf(p+".network", "required for l3: the whole overlay's prefix, e.g. 10.244.0.0/16")
	case !nw.Addr().Is4():
		return errorf(p+".network", "%s is not IPv4 (IPv6 overlays are not supported yet)", nw)
	case nw != nw.Masked():
		return errorf(p+".network", "%s has host bits set; did you mean %s?", nw, nw.Masked())
	}
	if !n.Subnet.IsValid() {
		return errorf(p+".subnet", "required for l3: this host's share of network %s, e.g. a /24", nw)
	}
	if e := checkHostSubnet(p+".subnet", n.Subnet, nw); e != nil {
		return e
	}
	if !validIfname(n.Device) {
		return errorf(p+".device", "%q is not an interface name: want 1..%d bytes, not . or .., without / : %% or whitespace", n.Device, maxIfname)
	}
	if f := n.SubnetFile; f != "" && (!filepath.IsAbs(f) || filepath.Clean(f) != f || f == "/" || strings.ContainsRune(f, 0)) {
		return errorf(p+".subnet_file", "%q is not a clean absolute path of a file", f)
	}
	if e := n.validateMTU(p, node.UnderlayMTU); e != nil {
		return e
	}
	vxlan := n.Encap == EncapVXLAN
	macs := make(map[MAC]string)
	switch {
	case vxlan && n.VTEPMAC == (MAC{}):
		return errorf(p+".vtep_mac", "required for l3 vxlan (Parse derives it from node.underlay)")
	case vxlan && !n.VTEPMAC.IsUnicast():
		return errorf(p+".vtep_mac", "%s is a multicast address; a VTEP MAC must be unicast", n.VTEPMAC)
	case !vxlan && n.VTEPMAC != (MAC{}):
		return errorf(p+".vtep_mac", "only l3 vxlan networks have a VTEP MAC (this one is %s)", n.Encap)
	}
	macs[n.VTEPMAC] = p + ".vtep_mac"
	peers := make(map[netip.Addr]int, len(n.Peers))
	for i := range n.Peers {
		pe := &n.Peers[i]
		pp := fmt.Sprintf("%s.peers[%d]", p, i)
		if e := checkPeerUnderlay(pp+".underlay", pe.Underlay, node, peers, p, i); e != nil {
			return e
		}
		if !pe.Subnet.IsValid() {
			return errorf(pp+".subnet", "required for l3: the part of network %s that %s owns", nw, pe.Underlay)
		}
		if e := checkHostSubnet(pp+".subnet", pe.Subnet, nw); e != nil {
			return e
		}
		if pe.Subnet.Overlaps(n.Subnet) {
			return errorf(pp+".subnet", "%s overlaps this node's subnet %s", pe.Subnet, n.Subnet)
		}
		for j := range i {
			if o := n.Peers[j].Subnet; pe.Subnet.Overlaps(o) {
				return errorf(pp+".subnet", "%s overlaps %s of %s.peers[%d]", pe.Subnet, o, p, j)
			}
		}
		switch m := pe.VTEPMAC; {
		case vxlan && m == (MAC{}):
			return errorf(pp+".vtep_mac", "required for l3 vxlan (Parse derives it from the peer's underlay)")
		case vxlan && !m.IsUnicast():
			return errorf(pp+".vtep_mac", "%s is a multicast address; a VTEP MAC must be unicast", m)
		case !vxlan && m != (MAC{}):
			return errorf(pp+".vtep_mac", "only l3 vxlan networks have VTEP MACs (this one is %s)", n.Encap)
		case vxlan:
			if other, dup := macs[m]; dup {
				return errorf(pp+".vtep_mac", "%s is already the VTEP MAC of %s", m, other)
			}
			macs[m] = pp
		}
	}
	return nil
}

// checkHostSubnet checks s, at path, as one host's share of l3 network
// nw: masked IPv4, strictly inside nw, and room for the device and bridge
// addresses.
func checkHostSubnet(path string, s, nw netip.Prefix) *Error {
	switch {
	case !s.Addr().Is4():
		return errorf(path, "%s is not IPv4 (IPv6 overlays are not supported yet)", s)
	case s != s.Masked():
		return errorf(path, "%s has host bits set; did you mean %s?", s, s.Masked())
	case !nw.Contains(s.Addr()) || s.Bits() <= nw.Bits():
		return errorf(path, "%s is not a subnet of network %s (want a longer prefix inside it)", s, nw)
	case s.Bits() > 30:
		return errorf(path, "%s is too small for a bridge and containers (at most /30)", s)
	}
	return nil
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
	o := n.Overhead()
	if n.MTU != 0 && n.MTU+o > underlayMTU {
		return errorf(p+".mtu", "%d plus %d bytes of %s overhead exceeds node.underlay_mtu %d", n.MTU, o, n.encapName(), underlayMTU)
	}
	if m := n.EffectiveMTU(underlayMTU); m < MinMTU {
		return errorf(p+".mtu", "derived MTU %d (node.underlay_mtu %d minus %d bytes of %s overhead) is below %d", m, underlayMTU, o, n.encapName(), MinMTU)
	}
	return nil
}

// encapName names the network's encapsulation in messages.
func (n *Network) encapName() string {
	switch {
	case n.Encap == EncapVXLAN:
		return "VXLAN"
	case n.Encap == EncapUDP:
		return "flannel-UDP"
	case n.Mode == ModeL2:
		return "GRE (with Ethernet and key)"
	}
	return "GRE"
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
