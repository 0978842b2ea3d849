// Package config reads the ferry daemon's configuration file (the YAML file
// given to `ferry run --config FILE`) into typed structs, fills in defaults
// and validates it, so that the daemon can build a node from a Config it
// never has to check again.
//
// Every error is one line that names the offending field by its path in the
// file and, where the file is known, its line:
//
//	config: ferry.yaml:12: networks[0].peer: unknown key (did you mean "peers"?)
//	config: ferry.yaml:30: networks[1].vni: 42 is already used by network "blue"
//
// The daemon creates nothing when Load fails. docs/config.md describes every
// key; keep the two in step.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/ferry-overlay/ferry/encap"
	"go.yaml.in/yaml/v3"
)

// Defaults and limits. A default applies only when its key is absent (or
// null) in the file: a key written with an explicit value, including 0, is
// taken as written and validated.
const (
	// DefaultSocket is the control socket's path (control.socket).
	DefaultSocket = "/run/ferry/ferry.sock"
	// DefaultMetricsListen is where metrics are served (metrics.listen).
	DefaultMetricsListen = "127.0.0.1:9469"
	// MetricsOff, written as metrics.listen, disables the metrics server;
	// Parse stores it as an empty Listen.
	MetricsOff = "off"
	// DefaultVXLANPort is the VXLAN UDP port (networks[].port) of an l2
	// network, RFC 7348's.
	DefaultVXLANPort = 4789
	// DefaultL3VXLANPort is the VXLAN UDP port of an l3 network: flannel's
	// vxlan backend leaves the port to the Linux vxlan device, whose
	// default is 8472, so this is what a flannel host listens on.
	DefaultL3VXLANPort = 8472
	// DefaultL3VXLANVNI is the VNI of an l3 vxlan network, flannel's
	// default (its vxlan backend's defaultVNI).
	DefaultL3VXLANVNI = 1
	// DefaultUDPPort is the flannel-UDP port (encap udp), flannel's udp
	// backend default.
	DefaultUDPPort = encap.FlannelUDPPort
	// DefaultMACAgeing is how long a learned MAC stays in the FDB without
	// being seen again (networks[].mac_ageing).
	DefaultMACAgeing = 300 * time.Second
	// DefaultFDBMax is the FDB size cap of a network (networks[].fdb_max).
	DefaultFDBMax = 8192
	// MaxWorkers is the largest node.workers; it also caps the default of
	// one worker per CPU.
	MaxWorkers = 64
	// DefaultOffload is node.offload when the key is absent.
	DefaultOffload = true
	// DefaultIOURing is node.io_uring when the key is absent.
	DefaultIOURing = true
	// MaxCPU is the largest CPU number node.cpus takes (the kernel's
	// CPU_SETSIZE is 1024).
	MaxCPU = 1023
	// MinMTU and MaxMTU bound a network's MTU, set or derived. 576 is the
	// smallest datagram every IPv4 host must accept (RFC 791).
	MinMTU = 576
	MaxMTU = 9000
)

// Limits that only the validator needs.
const (
	minFDBMax      = 16
	maxFDBMax      = 1 << 20
	minMACAgeing   = time.Second
	maxVNI         = 1<<24 - 1
	minUnderlayMTU = 576
	maxUnderlayMTU = 65536 // loopback's MTU
	maxIfname      = 15    // IFNAMSIZ - 1
	maxNetworkName = 15
	maxNodeName    = 64
	maxSocketPath  = 107 // sizeof(sun_path) - 1
)

// Mode is how a network carries traffic.
type Mode string

const (
	// ModeL2 is Docker-overlay style: TAP ports, a learning bridge and
	// Ethernet frames in tunnels.
	ModeL2 Mode = "l2"
	// ModeL3 is flannel style: one TUN device with this host's subnet
	// behind it, and IP packets routed to the peer that owns their
	// destination subnet.
	ModeL3 Mode = "l3"
)

// Encap is the tunnel encapsulation of a network. The values are package
// encap's names.
type Encap string

const (
	// EncapVXLAN is VXLAN (RFC 7348) over UDP, in either mode.
	EncapVXLAN Encap = encap.EncapVXLAN
	// EncapGRE is GRE (RFC 2784/2890) straight over IP (protocol 47): in
	// l2 mode transparent Ethernet bridging with the VNI as the GRE key,
	// in l3 mode protocol IPv4 without a key.
	EncapGRE Encap = encap.EncapGRE
	// EncapUDP is flannel-UDP, l3 mode only: the inner IPv4 packet is the
	// whole UDP payload.
	EncapUDP Encap = encap.EncapUDP
)

// Config is one ferry node's configuration. Parse and Load return it with
// defaults filled in and validated; after that it is plain data, safe to
// read from many goroutines while no one modifies it.
type Config struct {
	// Node describes this host.
	Node Node `yaml:"node"`
	// Control configures the control socket.
	Control Control `yaml:"control"`
	// Metrics configures the Prometheus endpoint.
	Metrics Metrics `yaml:"metrics"`
	// Networks are the overlay networks, at least one, in file order.
	Networks []Network `yaml:"networks"`
	// Uplinks and Conntrack: routing out of ferry and NAT (config/uplink.go).
	Uplinks   []Uplink  `yaml:"uplinks,omitempty"`
	Conntrack Conntrack `yaml:"conntrack,omitempty"`
}

// Node describes the host ferry runs on.
type Node struct {
	// Name identifies the node in logs, metrics and the control API:
	// 1..64 characters from A-Z a-z 0-9 . _ -. Default: the hostname.
	Name string `yaml:"name"`
	// Underlay is the local IPv4 address tunnels are sent from and
	// received on. Required when any network has peers; the zero Addr
	// means none, and then the node opens no tunnels.
	Underlay netip.Addr `yaml:"underlay"`
	// UnderlayMTU is the MTU of the underlay path; 0 means the daemon
	// detects it from the interface that owns Underlay. Else 576..65536.
	UnderlayMTU int `yaml:"underlay_mtu,omitempty"`
	// Workers is the number of dataplane workers, 1..MaxWorkers. Parse
	// turns an absent or 0 value into one per CPU (GOMAXPROCS), capped
	// at MaxWorkers.
	Workers int `yaml:"workers"`
	// LogLevel is debug, info, warn or error. Default: info.
	LogLevel string `yaml:"log_level"`
	// Offload turns on TAP offloads (IFF_VNET_HDR with TSO/USO and
	// checksum offload: ferry reads and writes 64 KiB superpackets,
	// segments them itself for peers and coalesces what peers send) and
	// UDP_SEGMENT/UDP_GRO on the tunnel sockets. Default: DefaultOffload.
	Offload bool `yaml:"offload"`
	// IOURing makes the workers read and write their TAP and TUN queues
	// in batches through io_uring, one system call per batch instead of
	// one per frame. Where the kernel (or a seccomp filter) refuses
	// io_uring, ferry logs why and uses a system call per frame. Default:
	// DefaultIOURing.
	IOURing bool `yaml:"io_uring"`
	// CPUs pins the workers: worker i runs only on CPU CPUs[i mod
	// len(CPUs)], as VPP's corelist-workers and OVS's pmd-cpu-mask do, so
	// a worker keeps its caches and never moves while it has packets in
	// flight (a worker that moves between CPUs can let the kernel's
	// per-CPU queues behind a TUN reorder a flow; docs/performance.md).
	// Each is a CPU number 0..MaxCPU, at most once; the daemon also
	// checks that it may run on each. Empty, the default: the kernel's
	// scheduler places the workers.
	CPUs []int `yaml:"cpus,omitempty"`
}

// Control configures the control socket.
type Control struct {
	// Socket is the absolute path of the unix socket the CLI talks to,
	// at most 107 bytes. Default: DefaultSocket.
	Socket string `yaml:"socket"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is the host:port of the metrics HTTP server; empty means
	// disabled (written as "off" or "" in the file). Default:
	// DefaultMetricsListen. The host is empty, "localhost" or an IP
	// address.
	Listen string `yaml:"listen"`
}

// Network is one overlay network and this node's part in it. An l2
// network is a broadcast domain with TAP ports; an l3 network is a routed
// prefix with one TUN device. Which keys apply depends on the mode (see
// each field); Validate rejects a key of the other mode.
type Network struct {
	// Name is unique among networks: 1..15 characters from a-z 0-9 -,
	// not starting with '-'.
	Name string `yaml:"name"`
	// Mode is ModeL2 (the default) or ModeL3.
	Mode Mode `yaml:"mode"`
	// VNI is the network identifier, 1..16777215, unique among networks
	// that have one. l2: required; for vxlan the VXLAN VNI, for gre the
	// GRE key. l3 vxlan: the VXLAN VNI, default DefaultL3VXLANVNI. l3 udp
	// and gre carry no identifier, and VNI is 0.
	VNI uint32 `yaml:"vni"`
	// Encap is EncapVXLAN (the default) or EncapGRE in l2 mode; EncapUDP,
	// EncapGRE or EncapVXLAN in l3 mode.
	Encap Encap `yaml:"encap"`
	// Port is the UDP port of vxlan and udp, 1..65535; 0 for gre, which
	// has none. Default: DefaultVXLANPort (l2 vxlan), DefaultL3VXLANPort
	// (l3 vxlan), DefaultUDPPort (udp). All vxlan networks of a node share
	// one port, and a node has at most one udp network, on a port no
	// vxlan network uses.
	Port uint16 `yaml:"port"`
	// Network is the whole overlay's IPv4 prefix in masked form (l3 only,
	// required): the kernel routes it into Device. Its prefixes do not
	// overlap another network's.
	Network netip.Prefix `yaml:"network"`
	// Subnet is an IPv4 prefix in masked form, /30 or wider, not
	// overlapping another network's. l2: the network's subnet, optional,
	// but Gateway and port addresses need it. l3: this host's share of
	// Network, required, strictly inside it (see DeviceAddress and
	// BridgeAddress).
	Subnet netip.Prefix `yaml:"subnet"`
	// Gateway is the router's address on an l2 network: inside Subnet and
	// neither its network nor its broadcast address. Optional. Ports with
	// an address get a default route through it.
	Gateway netip.Addr `yaml:"gateway"`
	// Device is the name of the TUN device ferry creates for an l3
	// network (required there; interface name rules as Port.Name, unique
	// among all ports and devices).
	Device string `yaml:"device,omitempty"`
	// SubnetFile is where ferry writes flannel's subnet file for an l3
	// network (package subnetfile): a clean absolute path, unique among
	// networks. Empty writes none.
	SubnetFile string `yaml:"subnet_file,omitempty"`
	// VTEPMAC is this host's VTEP MAC on an l3 vxlan network: the source
	// MAC of the Ethernet frame inside VXLAN. Unicast. Parse fills in
	// DeriveVTEPMAC(node.underlay) when the key is absent, so it is never
	// zero on an l3 vxlan network; zero on every other network.
	VTEPMAC MAC `yaml:"vtep_mac,omitempty"`
	// MTU is the largest IP packet on the network, 576..9000; 0 means
	// derive it from the underlay MTU (see EffectiveMTU).
	MTU int `yaml:"mtu,omitempty"`
	// MACAgeing is how long a learned MAC lives without traffic, at least
	// 1s; l2 only (0 on l3). Default: DefaultMACAgeing.
	MACAgeing time.Duration `yaml:"mac_ageing"`
	// FDBMax caps the network's FDB (learned plus static entries),
	// 16..1048576; l2 only (0 on l3). Default: DefaultFDBMax.
	FDBMax int `yaml:"fdb_max"`
	// Peers are the remote hosts, with unique underlay IPv4 addresses that
	// are not Node.Underlay. l2: Underlay only. l3: each also with the
	// Subnet it owns, and on vxlan its VTEPMAC. PeerAddrs lists the
	// addresses.
	Peers []Peer `yaml:"peers,omitempty"`
	// FDB holds static entries, which never age; at most FDBMax. l2 only.
	FDB []FDBEntry `yaml:"fdb,omitempty"`
	// Ports are the TAP devices ferry creates for this network. l2 only:
	// on l3 containers sit on a Linux bridge routed through Device.
	Ports []Port `yaml:"ports,omitempty"`
	// Masquerade names the uplink (Config.Uplinks) through which the
	// network's traffic to anything that is not a local network leaves,
	// its source rewritten to the uplink's NATAddress. l2 with a Gateway
	// only. Empty: no uplink.
	Masquerade string `yaml:"masquerade,omitempty"`
	// Publish forwards ports of the Masquerade uplink's NATAddress to
	// containers of this network; needs Masquerade.
	Publish []Publish `yaml:"publish,omitempty"`
}

// Peer is a remote host of a network. In the file an l2 peer is written as
// its underlay address (192.168.77.2) and an l3 peer as a mapping
// ({underlay: 192.168.77.2, subnet: 10.244.2.0/24}); either form decodes
// into a Peer, and a Peer with only Underlay set encodes as the address.
type Peer struct {
	// Underlay is the peer's IPv4 address on the underlay network, where
	// its tunnels end. Required.
	Underlay netip.Addr `yaml:"underlay"`
	// Subnet is the part of the network's Network that the peer owns (l3
	// only, required there; invalid on l2): masked, inside Network, /30
	// or wider, overlapping neither this node's Subnet nor another
	// peer's.
	Subnet netip.Prefix `yaml:"subnet"`
	// VTEPMAC is the peer's VTEP MAC (l3 vxlan only): the destination MAC
	// of frames sent to it. Parse fills in DeriveVTEPMAC(Underlay) when
	// the key is absent, so it is never zero on an l3 vxlan network;
	// unicast and unique among the network's VTEP MACs. Zero elsewhere.
	VTEPMAC MAC `yaml:"vtep_mac,omitempty"`
}

// peerFields is Peer without its YAML methods, to decode and encode the
// mapping form.
type peerFields Peer

// UnmarshalYAML decodes either form of a peer: a scalar address, or a
// mapping of underlay, subnet and vtep_mac. Parse has checked the shape
// and the keys before it runs.
func (p *Peer) UnmarshalYAML(value *yaml.Node) error {
	var v Peer
	switch value.Kind {
	case yaml.ScalarNode:
		if err := value.Decode(&v.Underlay); err != nil {
			return err
		}
	case yaml.MappingNode:
		if err := value.Decode((*peerFields)(&v)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("line %d: a peer is an IP address or a mapping {underlay, subnet}", value.Line)
	}
	*p = v
	return nil
}

// MarshalYAML encodes a peer with only an underlay address (an l2 peer) as
// that address, and any other peer as a mapping, so that a marshalled
// Config parses back to the same value.
func (p Peer) MarshalYAML() (any, error) {
	if !p.Subnet.IsValid() && p.VTEPMAC == (MAC{}) {
		return p.Underlay, nil
	}
	return peerFields(p), nil
}

// PeerAddrs returns the underlay addresses of the network's peers, in
// order, in a new slice: what an l2 network's engine spec needs.
func (n *Network) PeerAddrs() []netip.Addr {
	if len(n.Peers) == 0 {
		return nil
	}
	out := make([]netip.Addr, len(n.Peers))
	for i := range n.Peers {
		out[i] = n.Peers[i].Underlay
	}
	return out
}

// DeviceAddress is the address ferry gives an l3 network's TUN device:
// Subnet's first address with a /32 length, as flannel configures its
// vxlan device (pkg/backend/vxlan/vxlan.go: a host-length address keeps
// the kernel from adding subnet and broadcast routes for it); the daemon
// routes Network into the device beside it. Valid only on a validated l3
// network.
func (n *Network) DeviceAddress() netip.Prefix {
	return netip.PrefixFrom(n.Subnet.Addr(), 32)
}

// BridgeAddress is the first usable address of an l3 network's Subnet with
// the subnet's length (10.244.1.1/24 for 10.244.1.0/24): flannel's
// FLANNEL_SUBNET, the address the container bridge (docker0, cni0) takes.
// Valid only on a validated l3 network.
func (n *Network) BridgeAddress() netip.Prefix {
	return netip.PrefixFrom(n.Subnet.Addr().Next(), n.Subnet.Bits())
}

// Port is a TAP device that ferry creates, optionally moves into a network
// namespace, and serves.
type Port struct {
	// Name is the TAP device's name, unique across all networks: 1..15
	// bytes, not "." or "..", without '/', ':', '%', whitespace or
	// control characters.
	Name string `yaml:"name"`
	// Netns is the namespace the TAP moves into: a name under
	// /var/run/netns or an absolute path. Empty leaves it on the host.
	Netns string `yaml:"netns,omitempty"`
	// Ifname renames the TAP inside Netns (same rules as Name); needs
	// Netns. Empty keeps Name.
	Ifname string `yaml:"ifname,omitempty"`
	// Address is the port's IPv4 address with the subnet's prefix length,
	// inside the network's Subnet, unique, and neither the gateway nor the
	// subnet's network or broadcast address. Optional.
	Address netip.Prefix `yaml:"address"`
	// MAC is the port's unicast MAC address, unique in its network; zero
	// means the kernel picks one.
	MAC MAC `yaml:"mac,omitempty"`
}

// FDBEntry pins a MAC to a local port or a remote peer. Exactly one of Port
// and Peer is set, and it names a port or peer of the same network.
type FDBEntry struct {
	// MAC is the unicast address the entry matches.
	MAC MAC `yaml:"mac"`
	// Port is the name of a port of the network.
	Port string `yaml:"port,omitempty"`
	// Peer is one of the network's Peers.
	Peer netip.Addr `yaml:"peer"`
}

// Overhead returns the bytes the network's encapsulation adds around an
// inner IP packet over an IPv4 underlay (encap.Overhead): vxlan 50 in
// either mode (l3 vxlan frames the packet in Ethernet too), l2 gre 42 (an
// inner Ethernet header and a GRE key), l3 gre 24, udp 28. It is 0 for a
// mode and encap that Validate rejects.
func (n *Network) Overhead() int {
	return encap.Overhead(string(n.Encap), n.Mode == ModeL2)
}

// EffectiveMTU returns the network's MTU: MTU when it is set, otherwise
// underlayMTU minus Overhead, capped at MaxMTU. The result is not checked:
// a derived MTU below MinMTU means the underlay cannot carry this network,
// and the caller should refuse to start it.
func (n *Network) EffectiveMTU(underlayMTU int) int {
	if n.MTU != 0 {
		return n.MTU
	}
	return min(underlayMTU-n.Overhead(), MaxMTU)
}

// DeriveVTEPMAC returns the VTEP MAC that an l3 vxlan network uses for the
// host with underlay address a when the file gives none: 02:66 followed by
// the four bytes of a (192.168.77.2 gives 02:66:c0:a8:4d:02). It is
// locally administered and unicast, unique as long as the underlay
// addresses are, and the same on every ferry host, so ferry hosts agree on
// each other's MACs without configuring them. flannel picks a random MAC
// and publishes it, so for a flannel peer write its MAC instead. a must be
// IPv4.
func DeriveVTEPMAC(a netip.Addr) MAC {
	b := a.As4()
	return MAC{0x02, 0x66, b[0], b[1], b[2], b[3]}
}

// SlogLevel returns LogLevel as a slog.Level. Validate accepts only the four
// names below; anything else reads as info.
func (n *Node) SlogLevel() slog.Level {
	switch n.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Load reads the file at path and parses it with Parse. Errors name the
// file, e.g. "config: /etc/ferry/ferry.yaml:12: networks[0].vni: ...".
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = path
		}
		return nil, err
	}
	return c, nil
}

// Parse decodes one YAML document into a Config, fills in defaults and
// validates the result. Unknown keys, repeated keys and values of the wrong
// type are errors. The error, if any, is an *Error naming the field and its
// line. data is not retained.
func Parse(data []byte) (*Config, error) {
	doc, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	var c Config
	if doc != nil {
		if err := check(doc); err != nil {
			return nil, err
		}
		if err := decodeStrict(data, &c); err != nil {
			return nil, err
		}
	}
	if err := c.setDefaults(doc); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		var e *Error
		if errors.As(err, &e) && doc != nil {
			e.Line = lineOf(doc, e.Path)
		}
		return nil, err
	}
	return &c, nil
}

// setDefaults fills in every key that the document doc (nil for an empty
// file) leaves out or sets to null.
func (c *Config) setDefaults(doc *yaml.Node) error {
	absent := func(path string) bool {
		n := lookup(doc, path)
		return n == nil || isNull(n)
	}
	if absent("node.name") {
		h, err := os.Hostname()
		if err != nil {
			return &Error{Path: "node.name", Msg: fmt.Sprintf("not set, and the hostname is unknown: %v", err)}
		}
		c.Node.Name = h
	}
	if c.Node.Workers == 0 {
		c.Node.Workers = min(runtime.GOMAXPROCS(0), MaxWorkers)
	}
	if absent("node.log_level") {
		c.Node.LogLevel = "info"
	}
	if absent("node.offload") {
		c.Node.Offload = DefaultOffload
	}
	if absent("node.io_uring") {
		c.Node.IOURing = DefaultIOURing
	}
	if absent("control.socket") {
		c.Control.Socket = DefaultSocket
	}
	switch {
	case absent("metrics.listen"):
		c.Metrics.Listen = DefaultMetricsListen
	case c.Metrics.Listen == MetricsOff:
		c.Metrics.Listen = ""
	}
	for i := range c.Networks {
		n := &c.Networks[i]
		p := fmt.Sprintf("networks[%d].", i)
		if absent(p + "mode") {
			n.Mode = ModeL2
		}
		if absent(p + "encap") {
			n.Encap = EncapVXLAN
		}
		n.setModeDefaults(p, absent, c.Node.Underlay)
	}
	return nil
}

// setModeDefaults fills in the keys of network n, at path prefix p, whose
// defaults depend on its mode and encapsulation. A mode or encap that
// Validate will reject gets no defaults. underlay is node.underlay, from
// which absent VTEP MACs are derived.
func (n *Network) setModeDefaults(p string, absent func(string) bool, underlay netip.Addr) {
	switch n.Mode {
	case ModeL2:
		if absent(p+"port") && n.Encap == EncapVXLAN {
			n.Port = DefaultVXLANPort
		}
		if absent(p + "mac_ageing") {
			n.MACAgeing = DefaultMACAgeing
		}
		if absent(p + "fdb_max") {
			n.FDBMax = DefaultFDBMax
		}
	case ModeL3:
		switch n.Encap {
		case EncapUDP:
			if absent(p + "port") {
				n.Port = DefaultUDPPort
			}
		case EncapVXLAN:
			if absent(p + "port") {
				n.Port = DefaultL3VXLANPort
			}
			if absent(p + "vni") {
				n.VNI = DefaultL3VXLANVNI
			}
			if n.VTEPMAC == (MAC{}) && underlay.Is4() {
				n.VTEPMAC = DeriveVTEPMAC(underlay)
			}
			for i := range n.Peers {
				if pe := &n.Peers[i]; pe.VTEPMAC == (MAC{}) && pe.Underlay.Is4() {
					pe.VTEPMAC = DeriveVTEPMAC(pe.Underlay)
				}
			}
		}
	}
}
