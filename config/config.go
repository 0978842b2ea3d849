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
	// DefaultVXLANPort is the VXLAN UDP port (networks[].port), RFC 7348's.
	DefaultVXLANPort = 4789
	// DefaultMACAgeing is how long a learned MAC stays in the FDB without
	// being seen again (networks[].mac_ageing).
	DefaultMACAgeing = 300 * time.Second
	// DefaultFDBMax is the FDB size cap of a network (networks[].fdb_max).
	DefaultFDBMax = 8192
	// MaxWorkers is the largest node.workers; it also caps the default of
	// one worker per CPU.
	MaxWorkers = 64
	// MinMTU and MaxMTU bound a network's MTU, set or derived. 576 is the
	// smallest datagram every IPv4 host must accept (RFC 791).
	MinMTU = 576
	MaxMTU = 9000
	// VXLANOverhead is what VXLAN adds to an inner IP packet: inner
	// Ethernet 14, VXLAN 8, outer UDP 8, outer IPv4 20.
	VXLANOverhead = 50
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

// Mode is how a network carries traffic. Only ModeL2 exists today.
type Mode string

// ModeL2 is Docker-overlay style: TAP ports, a learning bridge and
// Ethernet frames in tunnels.
const ModeL2 Mode = "l2"

// Encap is the tunnel encapsulation of a network. Only EncapVXLAN exists
// today.
type Encap string

// EncapVXLAN is VXLAN (RFC 7348) over UDP.
const EncapVXLAN Encap = "vxlan"

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

// Network is one L2 broadcast domain and its members.
type Network struct {
	// Name is unique among networks: 1..15 characters from a-z 0-9 -,
	// not starting with '-'.
	Name string `yaml:"name"`
	// Mode is ModeL2 (the default).
	Mode Mode `yaml:"mode"`
	// VNI is the VXLAN network identifier, 1..16777215, unique among
	// networks.
	VNI uint32 `yaml:"vni"`
	// Encap is EncapVXLAN (the default).
	Encap Encap `yaml:"encap"`
	// Port is the VXLAN UDP port; every network of a node uses the same
	// one. Default: DefaultVXLANPort.
	Port uint16 `yaml:"port"`
	// Subnet is the network's IPv4 subnet in masked form, /30 or wider,
	// not overlapping another network's. Optional, but Gateway and port
	// addresses need it.
	Subnet netip.Prefix `yaml:"subnet"`
	// Gateway is the router's address on the network: inside Subnet and
	// neither its network nor its broadcast address. Optional. Ports with
	// an address get a default route through it.
	Gateway netip.Addr `yaml:"gateway"`
	// MTU is the largest IP packet on the network, 576..9000; 0 means
	// derive it from the underlay MTU (see EffectiveMTU).
	MTU int `yaml:"mtu,omitempty"`
	// MACAgeing is how long a learned MAC lives without traffic, at least
	// 1s. Default: DefaultMACAgeing.
	MACAgeing time.Duration `yaml:"mac_ageing"`
	// FDBMax caps the network's FDB (learned plus static entries),
	// 16..1048576. Default: DefaultFDBMax.
	FDBMax int `yaml:"fdb_max"`
	// Peers are the underlay IPv4 addresses of the remote VTEPs: unique,
	// and not Node.Underlay.
	Peers []netip.Addr `yaml:"peers,omitempty"`
	// FDB holds static entries, which never age; at most FDBMax.
	FDB []FDBEntry `yaml:"fdb,omitempty"`
	// Ports are the TAP devices ferry creates for this network.
	Ports []Port `yaml:"ports,omitempty"`
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

// EffectiveMTU returns the network's MTU: MTU when it is set, otherwise
// underlayMTU minus VXLAN's overhead, capped at MaxMTU. VXLAN is the only
// encapsulation Validate accepts today. The result is not checked: a derived
// MTU below MinMTU means the underlay cannot carry this network, and the
// caller should refuse to start it.
func (n *Network) EffectiveMTU(underlayMTU int) int {
	if n.MTU != 0 {
		return n.MTU
	}
	return min(underlayMTU-VXLANOverhead, MaxMTU)
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
		if absent(p + "port") {
			n.Port = DefaultVXLANPort
		}
		if absent(p + "mac_ageing") {
			n.MACAgeing = DefaultMACAgeing
		}
		if absent(p + "fdb_max") {
			n.FDBMax = DefaultFDBMax
		}
	}
	return nil
}
