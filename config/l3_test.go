package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseL3Example(t *testing.T) {
	got, err := Load("testdata/l3.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Network{
		Name:       "pods",
		Mode:       ModeL3,
		Encap:      EncapUDP,
		Port:       DefaultUDPPort,
		Network:    netip.MustParsePrefix("10.244.0.0/16"),
		Subnet:     netip.MustParsePrefix("10.244.1.0/24"),
		Device:     "ferry0",
		SubnetFile: "/run/flannel/subnet.env",
		Peers: []Peer{
			{Underlay: netip.MustParseAddr("192.168.77.2"), Subnet: netip.MustParsePrefix("10.244.2.0/24")},
			{Underlay: netip.MustParseAddr("192.168.77.3"), Subnet: netip.MustParsePrefix("10.244.3.0/24")},
		},
	}
	if len(got.Networks) != 1 || !reflect.DeepEqual(got.Networks[0], want) {
		t.Fatalf("got  %+v\nwant %+v", got.Networks, want)
	}
	n := &got.Networks[0]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"port is flannel's 8285", n.Port, uint16(8285)},
		{"device address is the subnet's first address as a /32", n.DeviceAddress(), netip.MustParsePrefix("10.244.1.0/32")},
		{"bridge address is FLANNEL_SUBNET", n.BridgeAddress(), netip.MustParsePrefix("10.244.1.1/24")},
		{"udp overhead", n.Overhead(), 28},
		{"mtu from a 1500 underlay", n.EffectiveMTU(1500), 1472},
		{"peer addresses", n.PeerAddrs(), []netip.Addr{netip.MustParseAddr("192.168.77.2"), netip.MustParseAddr("192.168.77.3")}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseMixedNetworks(t *testing.T) {
	c, err := Load("testdata/l3-mixed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	blue, green, pods := &c.Networks[0], &c.Networks[1], &c.Networks[2]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"l2 vxlan port as written", blue.Port, uint16(8472)},
		{"l2 vxlan mtu", blue.EffectiveMTU(c.Node.UnderlayMTU), 1450},
		{"l2 gre has no port", green.Port, uint16(0)},
		{"l2 gre keeps its vni as the key", green.VNI, uint32(44)},
		{"l2 gre gets l2 defaults", green.MACAgeing, DefaultMACAgeing},
		{"l2 gre mtu (Ethernet and key: 42)", green.EffectiveMTU(c.Node.UnderlayMTU), 1458},
		{"l2 gre peers", green.PeerAddrs(), []netip.Addr{netip.MustParseAddr("192.168.77.2"), netip.MustParseAddr("192.168.77.3")}},
		{"l3 vxlan vni is flannel's 1", pods.VNI, uint32(1)},
		{"l3 vxlan port is flannel's 8472", pods.Port, uint16(8472)},
		{"l3 vxlan mtu", pods.EffectiveMTU(c.Node.UnderlayMTU), 1450},
		{"l3 has no mac_ageing", pods.MACAgeing, time.Duration(0)},
		{"l3 has no fdb_max", pods.FDBMax, 0},
		{"local vtep mac derived from node.underlay", pods.VTEPMAC, mac("02:66:c0:a8:4d:01")},
		{"peer vtep mac derived from its underlay", pods.Peers[0].VTEPMAC, mac("02:66:c0:a8:4d:02")},
		{"peer vtep mac as written", pods.Peers[1].VTEPMAC, mac("6a:1f:3c:00:00:03")},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseL3Valid(t *testing.T) {
	const node = "node: {name: h1, underlay: 192.168.77.1}\n"
	const pods = "{name: pods, mode: l3, network: 10.244.0.0/16, subnet: 10.244.1.0/24, device: ferry0"
	for _, tc := range []struct {
		name string
		yaml string
		want func(*Config) bool
	}{
		{"l3 udp takes no l2 defaults", node + "networks: [" + pods + ", encap: udp}]\n", func(c *Config) bool {
			n := c.Networks[0]
			return n.Port == 8285 && n.VNI == 0 && n.MACAgeing == 0 && n.FDBMax == 0 && n.VTEPMAC == MAC{}
		}},
		{"l3 defaults to vxlan", node + "networks: [" + pods + "}]\n", func(c *Config) bool {
			n := c.Networks[0]
			return n.Encap == EncapVXLAN && n.VNI == 1 && n.Port == 8472 && n.VTEPMAC == mac("02:66:c0:a8:4d:01")
		}},
		{"l3 gre has neither port nor vni", node + "networks: [" + pods + ", encap: gre}]\n", func(c *Config) bool {
			n := c.Networks[0]
			return n.Port == 0 && n.VNI == 0 && n.Overhead() == 24
		}},
		{"l3 vxlan as written", node + "networks: [" + pods + ", vni: 7, port: 4789, vtep_mac: 02-00-00-00-00-07, peers: [{underlay: 192.168.77.2, subnet: 10.244.2.0/24, vtep_mac: 02:00:00:00:00:08}]}]\n", func(c *Config) bool {
			n := c.Networks[0]
			return n.VNI == 7 && n.Port == 4789 && n.VTEPMAC == mac("02:00:00:00:00:07") && n.Peers[0].VTEPMAC == mac("02:00:00:00:00:08")
		}},
		{"l3 subnet of /30", node + "networks: [{name: pods, mode: l3, encap: udp, network: 10.244.0.0/16, subnet: 10.244.1.4/30, device: ferry0}]\n", func(c *Config) bool {
			return c.Networks[0].BridgeAddress() == netip.MustParsePrefix("10.244.1.5/30")
		}},
		{"peer merging another peer", node + "networks:\n  - " + pods + ", encap: udp, peers: [&p {underlay: 192.168.77.2, subnet: 10.244.2.0/24}, {<<: *p, subnet: 10.244.3.0/24, underlay: 192.168.77.3}]}\n", func(c *Config) bool {
			return c.Networks[0].Peers[1] == Peer{Underlay: netip.MustParseAddr("192.168.77.3"), Subnet: netip.MustParsePrefix("10.244.3.0/24")}
		}},
		{"one node with every kind of network", node + "networks:\n" +
			"  - {name: a, vni: 42}\n" +
			"  - {name: b, encap: gre, vni: 43}\n" +
			"  - {name: c, encap: gre, vni: 44}\n" +
			"  - {name: d, mode: l3, encap: udp, network: 10.1.0.0/16, subnet: 10.1.1.0/24, device: d0}\n" +
			"  - {name: e, mode: l3, encap: gre, network: 10.2.0.0/16, subnet: 10.2.1.0/24, device: e0}\n" +
			"  - {name: f, mode: l3, encap: vxlan, port: 4789, network: 10.3.0.0/16, subnet: 10.3.1.0/24, device: f0}\n" +
			"  - {name: g, mode: l3, encap: vxlan, port: 4789, vni: 2, network: 10.4.0.0/16, subnet: 10.4.1.0/24, device: g0}\n", func(c *Config) bool {
			return len(c.Networks) == 7 && c.Networks[1].Port == 0 && c.Networks[5].VNI == 1 && c.Networks[6].VNI == 2
		}},
		{"l2 gre peer in mapping form", node + "networks: [{name: b, encap: gre, vni: 43, peers: [{underlay: 192.168.77.2}]}]\n", func(c *Config) bool {
			return reflect.DeepEqual(c.Networks[0].Peers, l2peers("192.168.77.2"))
		}},
		{"vni of 0 may repeat", node + "networks: [" + pods + ", encap: udp}, {name: p2, mode: l3, encap: gre, network: 10.9.0.0/16, subnet: 10.9.1.0/24, device: ferry1}]\n", func(c *Config) bool {
			return c.Networks[0].VNI == 0 && c.Networks[1].VNI == 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(c) {
				t.Errorf("unexpected config %+v", c.Networks)
			}
		})
	}
}

func TestParseL3Errors(t *testing.T) {
	const (
		node = "node: {underlay: 192.168.77.1}\n"
		u1   = "node: {underlay: 192.168.77.1, underlay_mtu: 1500}\n"
		// pods is an l3 network to which each case adds keys.
		pods = "{name: pods, mode: l3, network: 10.244.0.0/16, subnet: 10.244.1.0/24, device: ferry0"
		peer = "{underlay: 192.168.77.2, subnet: 10.244.2.0/24"
	)
	for _, tc := range []struct {
		name string
		yaml string
		want string // the message after "config: "
	}{
		// mode and encap
		{"mode unknown", "networks: [{name: pods, mode: L3}]\n", `line 1: networks[0].mode: "L3" is not a mode (want "l2" or "l3")`},
		{"l3 encap unknown", node + "networks: [" + pods + ", encap: ipip}]\n", `line 2: networks[0].encap: "ipip" is not an encapsulation (want "udp", "gre" or "vxlan")`},

		// vni and port per encap
		{"vni on l3 udp", node + "networks: [" + pods + ", encap: udp, vni: 7}]\n", "line 2: networks[0].vni: 7: l3 udp carries no network identifier; leave the key out"},
		{"vni on l3 gre", node + "networks: [" + pods + ", encap: gre, vni: 7}]\n", "line 2: networks[0].vni: 7: l3 gre carries no network identifier; leave the key out"},
		{"vni 0 on l3 vxlan", node + "networks: [" + pods + ", vni: 0}]\n", "line 2: networks[0].vni: required for vxlan (1..16777215)"},
		{"vni missing on l2 gre", "networks: [{name: blue, encap: gre}]\n", "line 1: networks[0].vni: required for gre (1..16777215)"},
		{"vni too large on l2 gre", "networks: [{name: blue, encap: gre, vni: 16777216}]\n", "line 1: networks[0].vni: 16777216 is out of range 1..16777215"},
		{"port on l2 gre", "networks: [{name: blue, encap: gre, vni: 42, port: 4789}]\n", "line 1: networks[0].port: 4789: gre runs directly over IP (protocol 47) and has no port; leave the key out"},
		{"port on l3 gre", node + "networks: [" + pods + ", encap: gre, port: 1}]\n", "line 2: networks[0].port: 1: gre runs directly over IP (protocol 47) and has no port"},
		{"port 0 on l3 udp", node + "networks: [" + pods + ", encap: udp, port: 0}]\n", "line 2: networks[0].port: 0 is not a UDP port (want 1..65535)"},

		// sharing tunnels between networks
		{"l2 and l3 vxlan on their default ports", node + "networks: [{name: blue, vni: 42}, " + pods + "}]\n", `line 2: networks[1].port: 8472 differs from 4789 of network "blue"; all vxlan networks of a node share one UDP port`},
		{"two udp networks", node + "networks: [" + pods + ", encap: udp}, {name: p2, mode: l3, encap: udp, port: 9000, network: 10.9.0.0/16, subnet: 10.9.1.0/24, device: ferry1}]\n", `line 2: networks[1].encap: network "pods" already uses udp; a node has one udp network, since flannel-UDP packets carry no network identifier`},
		{"two l3 gre networks", node + "networks: [" + pods + ", encap: gre}, {name: p2, mode: l3, encap: gre, network: 10.9.0.0/16, subnet: 10.9.1.0/24, device: ferry1}]\n", `line 2: networks[1].encap: network "pods" already uses l3 gre; a node has one, since its GRE packets carry no key`},
		{"udp on the vxlan port", node + "networks: [{name: blue, vni: 42, port: 8285}, " + pods + ", encap: udp}]\n", `line 2: networks[1].port: 8285 is the vxlan port of network "blue"; vxlan and udp cannot share a UDP port`},
		{"vxlan on the udp port", node + "networks: [" + pods + ", encap: udp}, {name: blue, vni: 42, port: 8285}]\n", `line 2: networks[1].port: 8285 is the udp port of network "pods"; vxlan and udp cannot share a UDP port`},
		{"vni shared by l2 gre and l3 vxlan", node + "networks: [{name: blue, encap: gre, vni: 1}, " + pods + ", port: 4789}]\n", `line 2: networks[1].vni: 1 is already used by network "blue"`},
		{"l3 network overlaps an l2 subnet", node + "networks: [{name: blue, vni: 42, port: 8472, subnet: 10.244.5.0/24}, " + pods + "}]\n", `line 2: networks[1].network: 10.244.0.0/16 overlaps 10.244.5.0/24 of network "blue"`},
		{"device named like a port", node + "networks: [" + pods + ", encap: udp}, {name: blue, vni: 42, ports: [{name: ferry0}]}]\n", `line 2: networks[1].ports[0].name: "ferry0" is already the name of networks[0].device`},
		{"device named like a device", node + "networks: [" + pods + ", encap: udp}, {name: p2, mode: l3, encap: gre, network: 10.9.0.0/16, subnet: 10.9.1.0/24, device: ferry0}]\n", `line 2: networks[1].device: "ferry0" is already the name of networks[0].device`},
		{"subnet file twice", node + "networks: [" + pods + ", encap: udp, subnet_file: /run/f.env}, {name: p2, mode: l3, encap: gre, network: 10.9.0.0/16, subnet: 10.9.1.0/24, device: ferry1, subnet_file: /run/f.env}]\n", `line 2: networks[1].subnet_file: "/run/f.env" is already the subnet file of network "pods"`},

		// the l3 network itself
		{"l3 without node.underlay", "networks: [" + pods + "}]\n", `node.underlay: required, since network "pods" is an l3 network`},
		{"network missing", node + "networks: [{name: pods, mode: l3, subnet: 10.244.1.0/24, device: ferry0}]\n", "line 2: networks[0].network: required for l3: the whole overlay's prefix, e.g. 10.244.0.0/16"},
		{"network IPv6", node + "networks: [{name: pods, mode: l3, network: \"fd00::/48\"}]\n", "line 2: networks[0].network: fd00::/48 is not IPv4 (IPv6 overlays are not supported yet)"},
		{"network with host bits", node + "networks: [{name: pods, mode: l3, network: 10.244.0.1/16}]\n", "line 2: networks[0].network: 10.244.0.1/16 has host bits set; did you mean 10.244.0.0/16?"},
		{"subnet missing", node + "networks: [{name: pods, mode: l3, network: 10.244.0.0/16, device: ferry0}]\n", "line 2: networks[0].subnet: required for l3: this host's share of network 10.244.0.0/16, e.g. a /24"},
		{"subnet outside network", node + "networks: [{name: pods, mode: l3, network: 10.244.0.0/16, subnet: 10.245.1.0/24}]\n", "line 2: networks[0].subnet: 10.245.1.0/24 is not a subnet of network 10.244.0.0/16 (want a longer prefix inside it)"},
		{"subnet is the network", node + "networks: [{name: pods, mode: l3, network: 10.244.0.0/16, subnet: 10.244.0.0/16}]\n", "line 2: networks[0].subnet: 10.244.0.0/16 is not a subnet of network 10.244.0.0/16"},
		{"subnet too small", node + "networks: [{name: pods, mode: l3, network: 10.244.0.0/16, subnet: 10.244.1.0/31}]\n", "line 2: networks[0].subnet: 10.244.1.0/31 is too small for a bridge and containers (at most /30)"},
		{"subnet with host bits", node + "networks: [{name: pods, mode: l3, network: 10.244.0.0/16, subnet: 10.244.1.1/24}]\n", "line 2: networks[0].subnet: 10.244.1.1/24 has host bits set; did you mean 10.244.1.0/24?"},
		{"device missing", node + "networks: [{name: pods, mode: l3, network: 10.244.0.0/16, subnet: 10.244.1.0/24}]\n", `line 2: networks[0].device: "" is not an interface name: want 1..15 bytes`},
		{"device with a slash", node + "networks: [" + pods + "/0}]\n", `line 2: networks[0].device: "ferry0/0" is not an interface name`},
		{"subnet file relative", node + "networks: [" + pods + ", subnet_file: run/subnet.env}]\n", `line 2: networks[0].subnet_file: "run/subnet.env" is not a clean absolute path of a file`},
		{"subnet file is the root", node + "networks: [" + pods + ", subnet_file: /}]\n", `line 2: networks[0].subnet_file: "/" is not a clean absolute path of a file`},
		{"gateway on l3", node + "networks: [" + pods + ", gateway: 10.244.1.1}]\n", `line 2: networks[0].gateway: an l3 network has no gateway: the host routes 10.244.0.0/16 through device "ferry0"; leave the key out`},
		{"ports on l3", node + "networks: [" + pods + ", ports: [{name: tap0}]}]\n", `line 2: networks[0].ports: an l3 network has no ports: containers sit on a bridge that the host routes through device "ferry0"`},
		{"fdb on l3", node + "networks: [" + pods + ", fdb: [{mac: \"02:00:00:00:00:01\", port: tap0}]}]\n", "line 2: networks[0].fdb: an l3 network has no FDB: it routes by subnet"},
		{"mac_ageing on l3", node + "networks: [" + pods + ", mac_ageing: 10m}]\n", "line 2: networks[0].mac_ageing: only l2 networks learn MACs; leave the key out"},
		{"fdb_max on l3", node + "networks: [" + pods + ", fdb_max: 100}]\n", "line 2: networks[0].fdb_max: only l2 networks have an FDB; leave the key out"},
		{"mtu over the underlay with udp", u1 + "networks: [" + pods + ", encap: udp, mtu: 1480}]\n", "line 2: networks[0].mtu: 1480 plus 28 bytes of flannel-UDP overhead exceeds node.underlay_mtu 1500"},
		{"mtu over the underlay with l3 gre", u1 + "networks: [" + pods + ", encap: gre, mtu: 1480}]\n", "line 2: networks[0].mtu: 1480 plus 24 bytes of GRE overhead exceeds node.underlay_mtu 1500"},
		{"derived mtu too small with l2 gre", "node: {underlay_mtu: 600}\nnetworks: [{name: blue, encap: gre, vni: 42}]\n", "line 2: networks[0].mtu: derived MTU 558 (node.underlay_mtu 600 minus 42 bytes of GRE (with Ethernet and key) overhead) is below 576"},

		// VTEP MACs
		{"vtep_mac on l3 udp", node + "networks: [" + pods + ", encap: udp, vtep_mac: \"02:00:00:00:00:01\"}]\n", "line 2: networks[0].vtep_mac: only l3 vxlan networks have a VTEP MAC (this one is udp)"},
		{"vtep_mac multicast", node + "networks: [" + pods + ", vtep_mac: \"01:00:5e:00:00:01\"}]\n", "line 2: networks[0].vtep_mac: 01:00:5e:00:00:01 is a multicast address; a VTEP MAC must be unicast"},
		{"peer vtep_mac is ours", node + "networks: [" + pods + ", peers: [" + peer + ", vtep_mac: \"02:66:c0:a8:4d:01\"}]}]\n", "line 2: networks[0].peers[0].vtep_mac: 02:66:c0:a8:4d:01 is already the VTEP MAC of networks[0].vtep_mac"},
		{"peer vtep_mac is another peer's derived one", node + "networks: [" + pods + ", peers: [" + peer + "}, {underlay: 192.168.77.3, subnet: 10.244.3.0/24, vtep_mac: \"02:66:c0:a8:4d:02\"}]}]\n", "line 2: networks[0].peers[1].vtep_mac: 02:66:c0:a8:4d:02 is already the VTEP MAC of networks[0].peers[0]"},
		{"peer vtep_mac multicast", node + "networks: [" + pods + ", peers: [" + peer + ", vtep_mac: \"33:33:00:00:00:01\"}]}]\n", "line 2: networks[0].peers[0].vtep_mac: 33:33:00:00:00:01 is a multicast address; a VTEP MAC must be unicast"},
		{"peer vtep_mac on l3 gre", node + "networks: [" + pods + ", encap: gre, peers: [" + peer + ", vtep_mac: \"02:00:00:00:00:01\"}]}]\n", "line 2: networks[0].peers[0].vtep_mac: only l3 vxlan networks have VTEP MACs (this one is gre)"},

		// l3 peers
		{"peer is a list", node + "networks: [" + pods + ", peers: [[192.168.77.2]]}]\n", "line 2: networks[0].peers[0]: must be an IP address or a mapping {underlay: ADDRESS, subnet: PREFIX}, not a list"},
		{"peer subnet not a prefix", node + "networks: [" + pods + ", peers: [{underlay: 192.168.77.2, subnet: h2}]}]\n", `line 2: networks[0].peers[0].subnet: "h2" is not an IP prefix (address/length, e.g. 10.42.0.0/24)`},
		{"peer key twice", node + "networks: [" + pods + ", peers: [{underlay: 192.168.77.2, underlay: 192.168.77.3}]}]\n", "line 2: networks[0].peers[0].underlay: set twice (first on line 2)"},
		{"peer without underlay", node + "networks: [" + pods + ", peers: [{subnet: 10.244.2.0/24}]}]\n", "line 2: networks[0].peers[0].underlay: required: the peer's underlay address"},
		{"peer underlay is ours", node + "networks: [" + pods + ", peers: [{underlay: 192.168.77.1, subnet: 10.244.2.0/24}]}]\n", "line 2: networks[0].peers[0].underlay: 192.168.77.1 is node.underlay, this node's own address"},
		{"peer underlay twice", node + "networks: [" + pods + ", peers: [" + peer + "}, {underlay: 192.168.77.2, subnet: 10.244.3.0/24}]}]\n", "line 2: networks[0].peers[1].underlay: 192.168.77.2 is already networks[0].peers[0]"},
		{"peer underlay multicast", node + "networks: [" + pods + ", peers: [{underlay: 224.0.0.1, subnet: 10.244.3.0/24}]}]\n", "line 2: networks[0].peers[0].underlay: 224.0.0.1 cannot be a tunnel endpoint (want a unicast address)"},
		{"peer subnet is ours", node + "networks: [" + pods + ", peers: [{underlay: 192.168.77.2, subnet: 10.244.1.0/24}]}]\n", "line 2: networks[0].peers[0].subnet: 10.244.1.0/24 overlaps this node's subnet 10.244.1.0/24"},
		{"peer subnet contains ours", node + "networks: [" + pods + ", peers: [{underlay: 192.168.77.2, subnet: 10.244.0.0/20}]}]\n", "line 2: networks[0].peers[0].subnet: 10.244.0.0/20 overlaps this node's subnet 10.244.1.0/24"},
		{"peer subnet with host bits", node + "networks: [" + pods + ", peers: [{underlay: 192.168.77.2, subnet: 10.244.2.9/24}]}]\n", "line 2: networks[0].peers[0].subnet: 10.244.2.9/24 has host bits set; did you mean 10.244.2.0/24?"},

		// l3 keys on l2 networks
		{"network on l2", "networks: [{name: blue, vni: 42, network: 10.0.0.0/8}]\n", "line 1: networks[0].network: only l3 networks have one; an l2 network has just a subnet"},
		{"device on l2", "networks: [{name: blue, vni: 42, device: ferry0}]\n", "line 1: networks[0].device: only l3 networks have a device; an l2 network has ports"},
		{"subnet_file on l2", "networks: [{name: blue, vni: 42, subnet_file: /run/s.env}]\n", "line 1: networks[0].subnet_file: only l3 networks write a subnet file"},
		{"vtep_mac on l2", "networks: [{name: blue, vni: 42, vtep_mac: \"02:00:00:00:00:01\"}]\n", "line 1: networks[0].vtep_mac: only l3 vxlan networks have a VTEP MAC; an l2 network carries its ports' frames as they are"},
		{"l2 peer with a subnet", node + "networks: [{name: blue, vni: 42, peers: [" + peer + "}]}]\n", "line 2: networks[0].peers[0].subnet: only l3 networks route subnets to peers"},
		{"l2 peer with a vtep_mac", node + "networks: [{name: blue, vni: 42, peers: [{underlay: 192.168.77.2, vtep_mac: \"02:00:00:00:00:01\"}]}]\n", "line 2: networks[0].peers[0].vtep_mac: only l3 vxlan networks have VTEP MACs"},
		{"l2 peer empty", node + "networks: [{name: blue, vni: 42, peers: [\"\"]}]\n", "line 2: networks[0].peers[0]: required: the peer's underlay address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v; want error %q", c, tc.want)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, "config: "+tc.want) {
				t.Errorf("error\n got %q\nwant %q", msg, "config: "+tc.want)
			}
		})
	}
}

// TestPeerYAML checks both written forms of a peer, and that each marshals
// back to its own form.
func TestPeerYAML(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Peer
		out  string // yaml.Marshal of want
	}{
		{"address", "192.168.77.2", Peer{Underlay: netip.MustParseAddr("192.168.77.2")}, "192.168.77.2\n"},
		{"mapping with underlay only", "{underlay: 192.168.77.2}", Peer{Underlay: netip.MustParseAddr("192.168.77.2")}, "192.168.77.2\n"},
		{"l3 mapping", "{underlay: 192.168.77.2, subnet: 10.244.2.0/24}", Peer{Underlay: netip.MustParseAddr("192.168.77.2"), Subnet: netip.MustParsePrefix("10.244.2.0/24")},
			"underlay: 192.168.77.2\nsubnet: 10.244.2.0/24\n"},
		{"l3 vxlan mapping", "{underlay: 192.168.77.2, subnet: 10.244.2.0/24, vtep_mac: 02-00-00-00-00-02}",
			Peer{Underlay: netip.MustParseAddr("192.168.77.2"), Subnet: netip.MustParsePrefix("10.244.2.0/24"), VTEPMAC: mac("02:00:00:00:00:02")},
			"underlay: 192.168.77.2\nsubnet: 10.244.2.0/24\nvtep_mac: \"02:00:00:00:00:02\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Peer{Underlay: netip.MustParseAddr("10.9.9.9"), VTEPMAC: mac("02:09:09:09:09:09")} // must be replaced
			if err := yaml.Unmarshal([]byte(tc.in), &got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("decoded %+v, want %+v", got, tc.want)
			}
			out, err := yaml.Marshal(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.out {
				t.Errorf("marshalled %q, want %q", out, tc.out)
			}
		})
	}
	var p Peer
	if err := yaml.Unmarshal([]byte("[1, 2]"), &p); err == nil || !strings.Contains(err.Error(), "a peer is an IP address or a mapping") {
		t.Errorf("list decoded with error %v", err)
	}
}

func TestDeriveVTEPMAC(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want MAC
	}{
		{"192.168.77.1", MAC{0x02, 0x66, 192, 168, 77, 1}},
		{"10.0.0.255", MAC{0x02, 0x66, 10, 0, 0, 255}},
		{"255.255.255.254", MAC{0x02, 0x66, 255, 255, 255, 254}},
	} {
		m := DeriveVTEPMAC(netip.MustParseAddr(tc.addr))
		if m != tc.want || !m.IsUnicast() || m[0]&0x02 == 0 {
			t.Errorf("DeriveVTEPMAC(%s) = %s, want %s, unicast and locally administered", tc.addr, m, tc.want)
		}
	}
}

func TestPeerAddrsEmpty(t *testing.T) {
	var n Network
	if got := n.PeerAddrs(); got != nil {
		t.Errorf("PeerAddrs() of no peers = %v, want nil", got)
	}
}

// TestValidateL3WithoutDerivedMACs checks Validate on a Config built in
// code, where no Parse has derived the VTEP MACs.
func TestValidateL3WithoutDerivedMACs(t *testing.T) {
	c, err := Load("testdata/l3-mixed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		clear func(n *Network)
		want  Error
	}{
		{"local", func(n *Network) { n.VTEPMAC = MAC{} }, Error{Path: "networks[2].vtep_mac", Msg: "required for l3 vxlan (Parse derives it from node.underlay)"}},
		{"peer", func(n *Network) { n.Peers[1].VTEPMAC = MAC{} }, Error{Path: "networks[2].peers[1].vtep_mac", Msg: "required for l3 vxlan (Parse derives it from the peer's underlay)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := *c
			cc.Networks = append([]Network(nil), c.Networks...)
			n := &cc.Networks[2]
			n.Peers = append([]Peer(nil), n.Peers...)
			tc.clear(n)
			err := cc.Validate()
			var e *Error
			if !errors.As(err, &e) || *e != tc.want {
				t.Errorf("Validate() = %v, want %+v", err, tc.want)
			}
		})
	}
	if err := c.Validate(); err != nil {
		t.Errorf("the original was changed: %v", err)
	}
}
