package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// l2peers returns l2 peers (underlay addresses only).
func l2peers(ss ...string) []Peer {
	out := make([]Peer, len(ss))
	for i, s := range ss {
		out[i] = Peer{Underlay: netip.MustParseAddr(s)}
	}
	return out
}

func mac(s string) MAC {
	var m MAC
	if err := m.UnmarshalText([]byte(s)); err != nil {
		panic(err)
	}
	return m
}

func defaultWorkers() int { return min(runtime.GOMAXPROCS(0), MaxWorkers) }

func TestParseIssueExample(t *testing.T) {
	got, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Node:    Node{Name: "h1", Underlay: netip.MustParseAddr("192.168.77.1"), Workers: defaultWorkers(), LogLevel: "info", Offload: DefaultOffload, IOURing: DefaultIOURing},
		Control: Control{Socket: "/run/ferry/ferry.sock"},
		Metrics: Metrics{Listen: "127.0.0.1:9469"},
		Networks: []Network{{
			Name:      "blue",
			Mode:      ModeL2,
			VNI:       42,
			Encap:     EncapVXLAN,
			Port:      4789,
			Subnet:    netip.MustParsePrefix("10.42.0.0/24"),
			Gateway:   netip.MustParseAddr("10.42.0.1"),
			MTU:       1450,
			MACAgeing: 300 * time.Second,
			FDBMax:    DefaultFDBMax,
			Peers:     l2peers("192.168.77.2", "192.168.77.3"),
			Ports: []Port{{
				Name:    "tap-c1",
				Netns:   "c1",
				Ifname:  "eth0",
				Address: netip.MustParsePrefix("10.42.0.2/24"),
				MAC:     MAC{0x02, 0x42, 0x0a, 0x2a, 0x00, 0x02},
			}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseAppliesDefaults(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no hostname:", err)
	}
	c, err := Load("testdata/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := c.Networks[0]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"node.name is the hostname", c.Node.Name, host},
		{"node.underlay is unset", c.Node.Underlay, netip.Addr{}},
		{"node.underlay_mtu is detect", c.Node.UnderlayMTU, 0},
		{"node.workers is one per CPU", c.Node.Workers, defaultWorkers()},
		{"node.log_level", c.Node.LogLevel, "info"},
		{"node.offload", c.Node.Offload, DefaultOffload},
		{"control.socket", c.Control.Socket, "/run/ferry/ferry.sock"},
		{"metrics.listen", c.Metrics.Listen, "127.0.0.1:9469"},
		{"mode", n.Mode, ModeL2},
		{"encap", n.Encap, EncapVXLAN},
		{"port", n.Port, uint16(4789)},
		{"mac_ageing", n.MACAgeing, 300 * time.Second},
		{"fdb_max", n.FDBMax, 8192},
		{"mtu is derive", n.MTU, 0},
		{"subnet is unset", n.Subnet, netip.Prefix{}},
		{"port", n.Ports, []Port{{Name: "tap-c1"}}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseEveryKey(t *testing.T) {
	c, err := Load("testdata/everything.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantNode := Node{Name: "host-1.example", Underlay: netip.MustParseAddr("192.168.77.1"), UnderlayMTU: 9000, Workers: 4, LogLevel: "debug", Offload: false, IOURing: false, CPUs: []int{2, 3, 0, 1}}
	if !reflect.DeepEqual(c.Node, wantNode) {
		t.Errorf("node: got %+v, want %+v", c.Node, wantNode)
	}
	if c.Control.Socket != "/var/run/ferry.sock" {
		t.Errorf("control.socket: got %q", c.Control.Socket)
	}
	if c.Metrics.Listen != "" {
		t.Errorf(`metrics.listen "off": got %q, want "" (disabled)`, c.Metrics.Listen)
	}
	blue, red := c.Networks[0], c.Networks[1]
	if blue.Port != 8472 || blue.MTU != 8950 || blue.MACAgeing != 5*time.Minute || blue.FDBMax != 16 {
		t.Errorf("blue: port %d mtu %d mac_ageing %v fdb_max %d", blue.Port, blue.MTU, blue.MACAgeing, blue.FDBMax)
	}
	wantFDB := []FDBEntry{
		{MAC: mac("02:00:00:00:00:aa"), Port: "tap-c1"},
		{MAC: mac("02:00:00:00:00:bb"), Peer: netip.MustParseAddr("192.168.77.3")},
	}
	if !reflect.DeepEqual(blue.FDB, wantFDB) {
		t.Errorf("blue fdb: got %+v, want %+v", blue.FDB, wantFDB)
	}
	if got := blue.Ports[1]; got.Netns != "/proc/1234/ns/net" || got.Ifname != "" || got.MAC != (MAC{}) {
		t.Errorf("blue ports[1]: got %+v", got)
	}
	if red.Subnet != netip.MustParsePrefix("10.43.0.0/16") || red.Ports[0].Ifname != "eth1" || red.MACAgeing != DefaultMACAgeing {
		t.Errorf("red: got %+v", red)
	}
}

func TestParseAnchorsAndMerges(t *testing.T) {
	c, err := Load("testdata/anchors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	red := c.Networks[1]
	if red.Name != "red" || red.VNI != 43 || red.Port != 8472 || red.MACAgeing != 10*time.Minute ||
		!reflect.DeepEqual(red.Peers, l2peers("192.168.77.2")) {
		t.Errorf("red did not merge blue's settings: %+v", red)
	}
}

// TestLoadInvalidFiles loads every file in testdata/invalid. Each starts
// with "# want: TEXT", and the error must read "config: FILE" + TEXT, or
// "config: FILE: " + TEXT when TEXT names no line.
func TestLoadInvalidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("first line %q is not # want: ...", first)
			}
			if !strings.HasPrefix(want, ":") {
				want = ": " + want
			}
			want = "config: " + f + want
			_, err = Load(f)
			if err == nil {
				t.Fatalf("Load succeeded, want error %q", want)
			}
			if err.Error() != want {
				t.Errorf("error\n got %q\nwant %q", err, want)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != f {
				t.Errorf("error %#v is not an *Error naming the file", err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const (
		node = "node: {underlay: 192.168.77.1}\n"
		blue = "{name: blue, vni: 42, subnet: 10.42.0.0/24"
	)
	for _, tc := range []struct {
		name string
		yaml string
		want string // the message after "config: ", or its beginning
	}{
		// Shape and type errors, found while decoding: they carry a line.
		{"top level is a list", "- a\n", "line 1: the file must be a mapping of sections (node, control, metrics, networks), not a list"},
		{"section is a scalar", "node: h1\n", `line 1: node: must be a mapping, not "h1"`},
		{"string field is a list", "node: {name: [a]}\n", "line 1: node.name: must be a string, not a list"},
		{"integer field is a float", "networks: [{name: blue, vni: 42.5}]\n", "line 1: networks[0].vni: 42.5 is not an integer"},
		{"integer field is a quoted number", "networks: [{name: blue, vni: \"42\"}]\n", `line 1: networks[0].vni: "42" is a string, not an integer (write it without quotes)`},
		{"integer field is a mapping", "networks: [{name: blue, vni: {a: 1}}]\n", "line 1: networks[0].vni: must be an integer, not a mapping"},
		{"negative unsigned", "networks: [{name: blue, vni: -1}]\n", "line 1: networks[0].vni: -1 is out of range"},
		{"unsigned overflow", "networks: [{name: blue, vni: 42, port: 70000}]\n", "line 1: networks[0].port: 70000 is too large"},
		{"int overflow", "node: {workers: 99999999999999999999}\n", "line 1: node.workers: 99999999999999999999 is not an integer"},
		{"duration is a list", "networks: [{name: blue, vni: 42, mac_ageing: [1s]}]\n", "line 1: networks[0].mac_ageing: must be a duration, not a list"},
		{"duration is a bool", "networks: [{name: blue, vni: 42, mac_ageing: true}]\n", "line 1: networks[0].mac_ageing: true is not a duration (write e.g. 300s, 5m or 1h)"},
		{"address is not an address", "node: {underlay: 192.168.77.300}\n", `line 1: node.underlay: "192.168.77.300" is not an IP address`},
		{"address is a list", "node: {underlay: [192.168.77.1]}\n", "line 1: node.underlay: must be an IP address, not a list"},
		{"prefix without length", "networks: [{name: blue, vni: 42, subnet: 10.42.0.0}]\n", `line 1: networks[0].subnet: "10.42.0.0" is not an IP prefix (address/length, e.g. 10.42.0.0/24)`},
		{"peer is not an address", node + "networks: [{name: blue, vni: 42, peers: [192.168.77.2, h2]}]\n", `line 2: networks[0].peers[1]: "h2" is not an IP address`},
		{"peers is a scalar", node + "networks: [{name: blue, vni: 42, peers: 192.168.77.2}]\n", `line 2: networks[0].peers: must be a list, not "192.168.77.2"`},
		{"mac too long", "networks: [{name: blue, vni: 42, ports: [{name: t, mac: 02:00:00:00:00:00:00:01}]}]\n", `line 1: networks[0].ports[0].mac: "02:00:00:00:00:00:00:01" is not a MAC address`},
		{"mac all zero", "networks: [{name: blue, vni: 42, ports: [{name: t, mac: 00:00:00:00:00:00}]}]\n", `line 1: networks[0].ports[0].mac: "00:00:00:00:00:00" is the zero MAC address; leave the key out instead`},
		{"key is a list", "node: {[a]: 1}\n", "line 1: node: a key must be a name, not a list"},
		{"unknown key with newline", "node: {\"a\\nb\": 1}\n", `line 1: node."a\nb": unknown key (known keys: name, underlay, underlay_mtu, workers, log_level, offload, io_uring, cpus)`},
		{"bad merge value", "node: {<<: 1}\n", "line 1: node: a merge (<<) takes a mapping or a list of mappings"},
		{"bad merge list", "node: {<<: [1]}\n", "line 1: node: a merge (<<) takes a mapping or a list of mappings"},
		{"unknown key in merged mapping", "networks: [{<<: {name: blue, vnid: 1}, vni: 42}]\n", `line 1: networks[0].vnid: unknown key (did you mean "vni"?)`},
		{"anchor reused as another type", "networks: &n [{name: blue, vni: 42, ports: *n}]\n", `line 1: networks[0].ports[0].vni: unknown key (known keys: name, netns, ifname, address, mac)`},
		{"self-merging anchor", "node: &n {<<: *n}\n", "anchor 'n' value contains itself"},

		// node
		{"node name with a space", "node: {name: my host}\n" + "networks: [" + blue + "}]\n", `line 1: node.name: "my host" is not a node name: want 1..64 characters from A-Z a-z 0-9 . _ -`},
		{"node name empty", "node: {name: \"\"}\n", `line 1: node.name: "" is not a node name`},
		{"node name null gets the hostname", "node: {name: ~, workers: 65}\n", "line 1: node.workers: 65 is out of range 1..64 (or 0 for one per CPU)"},
		{"underlay is IPv6", "node: {underlay: \"2001:db8::1\"}\n", "line 1: node.underlay: 2001:db8::1 is not an IPv4 address (IPv6 underlays are not supported yet)"},
		{"underlay is IPv4-mapped IPv6", "node: {underlay: \"::ffff:192.168.77.1\"}\n", "line 1: node.underlay: ::ffff:192.168.77.1 is not an IPv4 address"},
		{"underlay is unspecified", "node: {underlay: 0.0.0.0}\n", "line 1: node.underlay: 0.0.0.0 cannot be a tunnel endpoint (want a unicast address)"},
		{"underlay is multicast", "node: {underlay: 239.1.1.1}\n", "line 1: node.underlay: 239.1.1.1 cannot be a tunnel endpoint"},
		{"underlay is broadcast", "node: {underlay: 255.255.255.255}\n", "line 1: node.underlay: 255.255.255.255 cannot be a tunnel endpoint"},
		{"underlay_mtu too small", "node: {underlay_mtu: 500}\n", "line 1: node.underlay_mtu: 500 is out of range 576..65536 (or 0 to detect it)"},
		{"workers negative", "node: {workers: -1}\n", "line 1: node.workers: -1 is out of range 1..64"},
		{"cpu twice", "node: {cpus: [1, 0, 1]}\n", "line 1: node.cpus[2]: CPU 1 is already node.cpus[0]"},
		{"cpu negative", "node: {cpus: [-1]}\n", "line 1: node.cpus[0]: -1 is not a CPU number (0..1023)"},
		{"cpu beyond CPU_SETSIZE", "node: {cpus: [0, 1024]}\n", "line 1: node.cpus[1]: 1024 is not a CPU number (0..1023)"},
		{"cpus a scalar", "node: {cpus: 1}\n", "line 1: node.cpus: must be a list, not 1"},
		{"log level unknown", "node: {log_level: verbose}\n", `line 1: node.log_level: "verbose" is not a log level (want debug, info, warn or error)`},

		// control and metrics
		{"socket relative", "control: {socket: ferry.sock}\n", `line 1: control.socket: "ferry.sock" is not a clean absolute path`},
		{"socket not clean", "control: {socket: /run//ferry.sock}\n", `line 1: control.socket: "/run//ferry.sock" is not a clean absolute path`},
		{"socket too long", "control: {socket: /" + strings.Repeat("s", 107) + "}\n", "line 1: control.socket: \"/" + strings.Repeat("s", 107) + "\" is 108 bytes long; a unix socket path has at most 107"},
		{"metrics listen without port", "metrics: {listen: 127.0.0.1}\n", `line 1: metrics.listen: "127.0.0.1" is not host:port (write "off" to disable metrics)`},
		{"metrics listen false", "metrics: {listen: false}\n", `line 1: metrics.listen: "false" is not host:port (write "off" to disable metrics)`},
		{"metrics port zero", "metrics: {listen: \"127.0.0.1:0\"}\n", `line 1: metrics.listen: "127.0.0.1:0": port "0" is not 1..65535`},
		{"metrics host is a name", "metrics: {listen: \"metrics.example:9469\"}\n", `line 1: metrics.listen: "metrics.example:9469": host "metrics.example" is not an IP address, "localhost" or empty`},

		// networks
		{"no networks", "node: {name: h1}\n", "networks: at least one network is required"},
		{"networks empty list", "networks: []\n", "line 1: networks: at least one network is required"},
		{"network name missing", "networks: [{vni: 42}]\n", `line 1: networks[0].name: "" is not a network name: want 1..15 characters from a-z 0-9 -, not starting with -`},
		{"network name upper case", "networks: [{name: Blue, vni: 42}]\n", `line 1: networks[0].name: "Blue" is not a network name`},
		{"network name too long", "networks: [{name: blue-network-one, vni: 42}]\n", `line 1: networks[0].name: "blue-network-one" is not a network name`},
		{"network name leading hyphen", "networks: [{name: -blue, vni: 42}]\n", `line 1: networks[0].name: "-blue" is not a network name`},
		{"mode unknown", "networks: [{name: blue, mode: l4, vni: 42}]\n", `line 1: networks[0].mode: "l4" is not a mode (want "l2" or "l3")`},
		{"encap udp in l2", "networks: [{name: blue, encap: udp, vni: 42}]\n", `line 1: networks[0].encap: "udp" carries IP packets only; an l2 network uses "vxlan" or "gre"`},
		{"encap unknown", "networks: [{name: blue, encap: geneve, vni: 42}]\n", `line 1: networks[0].encap: "geneve" is not an encapsulation (want "vxlan" or "gre")`},
		{"vni missing", "networks: [{name: blue}]\n", "line 1: networks[0].vni: required for vxlan (1..16777215)"},
		{"vni zero", "networks: [{name: blue, vni: 0}]\n", "line 1: networks[0].vni: required for vxlan (1..16777215)"},
		{"port zero", "networks: [{name: blue, vni: 42, port: 0}]\n", "line 1: networks[0].port: 0 is not a UDP port (want 1..65535)"},
		{"subnet IPv6", "networks: [{name: blue, vni: 42, subnet: \"fd00::/64\"}]\n", "line 1: networks[0].subnet: fd00::/64 is not IPv4 (IPv6 overlays are not supported yet)"},
		{"subnet too small", "networks: [{name: blue, vni: 42, subnet: 10.42.0.0/31}]\n", "line 1: networks[0].subnet: 10.42.0.0/31 is too small for a gateway and ports (at most /30)"},
		{"gateway without subnet", "networks: [{name: blue, vni: 42, gateway: 10.42.0.1}]\n", "line 1: networks[0].gateway: needs networks[0].subnet"},
		{"gateway is network address", "networks: [" + blue + ", gateway: 10.42.0.0}]\n", "line 1: networks[0].gateway: 10.42.0.0 is the network or broadcast address of 10.42.0.0/24"},
		{"gateway is broadcast address", "networks: [" + blue + ", gateway: 10.42.0.255}]\n", "line 1: networks[0].gateway: 10.42.0.255 is the network or broadcast address of 10.42.0.0/24"},
		{"gateway is IPv6", "networks: [" + blue + ", gateway: \"fd00::1\"}]\n", "line 1: networks[0].gateway: fd00::1 is outside subnet 10.42.0.0/24"},
		{"mtu too small", "networks: [{name: blue, vni: 42, mtu: 500}]\n", "line 1: networks[0].mtu: 500 is out of range 576..9000 (or 0 to derive it from the underlay)"},
		{"mtu too large", "networks: [{name: blue, vni: 42, mtu: 9001}]\n", "line 1: networks[0].mtu: 9001 is out of range 576..9000"},
		{"derived mtu too small", "node: {underlay_mtu: 600}\nnetworks:\n  - name: blue\n    vni: 42\n", "line 3: networks[0].mtu: derived MTU 550 (node.underlay_mtu 600 minus 50 bytes of VXLAN overhead) is below 576"},
		{"mac_ageing zero", "networks: [{name: blue, vni: 42, mac_ageing: 0s}]\n", "line 1: networks[0].mac_ageing: 0s is shorter than 1s"},
		{"mac_ageing negative", "networks: [{name: blue, vni: 42, mac_ageing: -5s}]\n", "line 1: networks[0].mac_ageing: -5s is shorter than 1s"},
		{"mac_ageing too short", "networks: [{name: blue, vni: 42, mac_ageing: 500ms}]\n", "line 1: networks[0].mac_ageing: 500ms is shorter than 1s"},
		{"fdb_max zero", "networks: [{name: blue, vni: 42, fdb_max: 0}]\n", "line 1: networks[0].fdb_max: 0 is out of range 16..1048576"},
		{"fdb_max too large", "networks: [{name: blue, vni: 42, fdb_max: 1048577}]\n", "line 1: networks[0].fdb_max: 1048577 is out of range 16..1048576"},
		{"peer is IPv6", node + "networks: [{name: blue, vni: 42, peers: [\"2001:db8::2\"]}]\n", "line 2: networks[0].peers[0]: 2001:db8::2 is not an IPv4 address (IPv6 underlays are not supported yet)"},
		{"peer is multicast", node + "networks: [{name: blue, vni: 42, peers: [239.0.0.1]}]\n", "line 2: networks[0].peers[0]: 239.0.0.1 cannot be a tunnel endpoint (want a unicast address)"},
		{"peer twice", node + "networks: [{name: blue, vni: 42, peers: [192.168.77.2, 192.168.77.2]}]\n", "line 2: networks[0].peers[1]: 192.168.77.2 is already networks[0].peers[0]"},

		// ports
		{"port name missing", "networks: [{name: blue, vni: 42, ports: [{netns: c1}]}]\n", `line 1: networks[0].ports[0].name: "" is not an interface name: want 1..15 bytes, not . or .., without / : % or whitespace`},
		{"port name with slash", "networks: [{name: blue, vni: 42, ports: [{name: tap/1}]}]\n", `line 1: networks[0].ports[0].name: "tap/1" is not an interface name`},
		{"port name with colon", "networks: [{name: blue, vni: 42, ports: [{name: \"tap:1\"}]}]\n", `line 1: networks[0].ports[0].name: "tap:1" is not an interface name`},
		{"port name with percent", "networks: [{name: blue, vni: 42, ports: [{name: tap%d}]}]\n", `line 1: networks[0].ports[0].name: "tap%d" is not an interface name`},
		{"port name with space", "networks: [{name: blue, vni: 42, ports: [{name: tap 1}]}]\n", `line 1: networks[0].ports[0].name: "tap 1" is not an interface name`},
		{"port name dot dot", "networks: [{name: blue, vni: 42, ports: [{name: ..}]}]\n", `line 1: networks[0].ports[0].name: ".." is not an interface name`},
		{"port name twice in one network", "networks: [{name: blue, vni: 42, ports: [{name: t1}, {name: t1}]}]\n", `line 1: networks[0].ports[1].name: "t1" is already the name of networks[0].ports[0]`},
		{"netns relative path", "networks: [{name: blue, vni: 42, ports: [{name: t1, netns: run/c1}]}]\n", `line 1: networks[0].ports[0].netns: "run/c1" is neither a namespace name (under /var/run/netns) nor a clean absolute path`},
		{"netns unclean path", "networks: [{name: blue, vni: 42, ports: [{name: t1, netns: /var/run/netns/../c1}]}]\n", `line 1: networks[0].ports[0].netns: "/var/run/netns/../c1" is neither`},
		{"netns name too long", "networks: [{name: blue, vni: 42, ports: [{name: t1, netns: " + strings.Repeat("n", 256) + "}]}]\n", `line 1: networks[0].ports[0].netns: "nnnn`},
		{"netns with NUL", "networks: [{name: blue, vni: 42, ports: [{name: t1, netns: \"/c\\0\"}]}]\n", `line 1: networks[0].ports[0].netns: "/c\x00" is neither`},
		{"netns dot dot", "networks: [{name: blue, vni: 42, ports: [{name: t1, netns: ..}]}]\n", `line 1: networks[0].ports[0].netns: ".." is neither`},
		{"ifname invalid", "networks: [{name: blue, vni: 42, ports: [{name: t1, netns: c1, ifname: eth0:1}]}]\n", `line 1: networks[0].ports[0].ifname: "eth0:1" is not an interface name`},
		{"two ports with one ifname in a netns", "networks: [{name: blue, vni: 42, ports: [{name: t1, netns: c1, ifname: eth0}]}, {name: red, vni: 43, ports: [{name: t2, netns: c1, ifname: eth0}]}]\n", `line 1: networks[1].ports[0].ifname: networks[0].ports[0] would have the same name "eth0" in netns "c1"`},
		{"ifname clashes with a moved port's name", "networks: [{name: blue, vni: 42, ports: [{name: t1, netns: c1}, {name: t2, netns: c1, ifname: t1}]}]\n", `line 1: networks[0].ports[1].ifname: networks[0].ports[0] would have the same name "t1" in netns "c1"`},
		{"address without subnet", "networks: [{name: blue, vni: 42, ports: [{name: t1, address: 10.42.0.2/24}]}]\n", "line 1: networks[0].ports[0].address: needs the network's subnet"},
		{"address prefix length differs", "networks: [" + blue + ", ports: [{name: t1, address: 10.42.0.2/16}]}]\n", "line 1: networks[0].ports[0].address: 10.42.0.2/16 has prefix length 16; the subnet 10.42.0.0/24 has 24"},
		{"address is network address", "networks: [" + blue + ", ports: [{name: t1, address: 10.42.0.0/24}]}]\n", "line 1: networks[0].ports[0].address: 10.42.0.0/24 is the network or broadcast address of 10.42.0.0/24"},
		{"address is broadcast", "networks: [" + blue + ", ports: [{name: t1, address: 10.42.0.255/24}]}]\n", "line 1: networks[0].ports[0].address: 10.42.0.255/24 is the network or broadcast address"},
		{"address is gateway", "networks: [" + blue + ", gateway: 10.42.0.1, ports: [{name: t1, address: 10.42.0.1/24}]}]\n", "line 1: networks[0].ports[0].address: 10.42.0.1/24 is the network's gateway"},
		{"address twice", "networks: [" + blue + ", ports: [{name: t1, address: 10.42.0.2/24}, {name: t2, address: 10.42.0.2/24}]}]\n", "line 1: networks[0].ports[1].address: 10.42.0.2 is already the address of networks[0].ports[0]"},
		{"mac twice in a network", "networks: [{name: blue, vni: 42, ports: [{name: t1, mac: \"02:00:00:00:00:01\"}, {name: t2, mac: \"02:00:00:00:00:01\"}]}]\n", "line 1: networks[0].ports[1].mac: 02:00:00:00:00:01 is already the MAC of networks[0].ports[0]"},

		// fdb
		{"fdb entry without mac", "networks: [{name: blue, vni: 42, ports: [{name: t1}], fdb: [{port: t1}]}]\n", "line 1: networks[0].fdb[0].mac: required"},
		{"fdb entry multicast mac", "networks: [{name: blue, vni: 42, ports: [{name: t1}], fdb: [{mac: \"33:33:00:00:00:01\", port: t1}]}]\n", "line 1: networks[0].fdb[0].mac: 33:33:00:00:00:01 is a multicast address; static entries are for unicast MACs"},
		{"fdb entry without target", "networks: [{name: blue, vni: 42, fdb: [{mac: \"02:00:00:00:00:01\"}]}]\n", "line 1: networks[0].fdb[0]: needs port or peer"},
		{"fdb entry for a foreign peer", node + "networks: [{name: blue, vni: 42, peers: [192.168.77.2], fdb: [{mac: \"02:00:00:00:00:01\", peer: 192.168.77.9}]}]\n", `line 2: networks[0].fdb[0].peer: 192.168.77.9 is not a peer of network "blue"`},
		{"fdb mac twice", "networks: [{name: blue, vni: 42, ports: [{name: t1}], fdb: [{mac: \"02:00:00:00:00:01\", port: t1}, {mac: \"02:00:00:00:00:01\", port: t1}]}]\n", "line 1: networks[0].fdb[1].mac: 02:00:00:00:00:01 is already in networks[0].fdb[0]"},
		{"fdb mac of another port", "networks: [{name: blue, vni: 42, ports: [{name: t1, mac: \"02:00:00:00:00:01\"}, {name: t2}], fdb: [{mac: \"02:00:00:00:00:01\", port: t2}]}]\n", `line 1: networks[0].fdb[0].mac: 02:00:00:00:00:01 is the MAC of port "t1"; an entry for it must name that port`},
		{"fdb larger than fdb_max", "networks: [{name: blue, vni: 42, fdb_max: 16, ports: [{name: t1}], fdb: [" + fdbEntries(17) + "]}]\n", "line 1: networks[0].fdb: 17 static entries exceed fdb_max 16"},
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

// fdbEntries renders n static entries with distinct MACs for port t1.
func fdbEntries(n int) string {
	es := make([]string, n)
	for i := range es {
		es[i] = fmt.Sprintf(`{mac: "02:00:00:00:01:%02x", port: t1}`, i)
	}
	return strings.Join(es, ", ")
}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		check func(*Config) bool
	}{
		{"null values take defaults", "node: {name: h1, log_level: ~}\ncontrol: {socket: null}\nnetworks: [{name: blue, vni: 42, port: ~, mac_ageing: ~, fdb_max: ~}]\n", func(c *Config) bool {
			n := c.Networks[0]
			return c.Node.LogLevel == "info" && c.Control.Socket == DefaultSocket && n.Port == DefaultVXLANPort && n.MACAgeing == DefaultMACAgeing && n.FDBMax == DefaultFDBMax
		}},
		{"workers 0 is one per CPU", "node: {name: h1, workers: 0}\nnetworks: [{name: blue, vni: 42}]\n", func(c *Config) bool { return c.Node.Workers == defaultWorkers() }},
		{"workers 64", "node: {name: h1, workers: 64}\nnetworks: [{name: blue, vni: 42}]\n", func(c *Config) bool { return c.Node.Workers == 64 }},
		{"metrics listen empty disables", "metrics: {listen: \"\"}\nnetworks: [{name: blue, vni: 42}]\n", func(c *Config) bool { return c.Metrics.Listen == "" }},
		{"metrics listen off disables", "metrics: {listen: \"off\"}\nnetworks: [{name: blue, vni: 42}]\n", func(c *Config) bool { return c.Metrics.Listen == "" }},
		{"metrics listen null is the default", "metrics: {listen: ~}\nnetworks: [{name: blue, vni: 42}]\n", func(c *Config) bool { return c.Metrics.Listen == DefaultMetricsListen }},
		{"metrics on localhost and IPv6", "metrics: {listen: \"[::1]:9000\"}\nnetworks: [{name: blue, vni: 42}]\n", func(c *Config) bool { return c.Metrics.Listen == "[::1]:9000" }},
		{"metrics on all interfaces", "metrics: {listen: \":9469\"}\nnetworks: [{name: blue, vni: 42}]\n", func(c *Config) bool { return c.Metrics.Listen == ":9469" }},
		{"vni bounds", "networks: [{name: a, vni: 1}, {name: b, vni: 16777215}]\n", func(c *Config) bool { return c.Networks[1].VNI == 16777215 }},
		{"hex integer", "networks: [{name: blue, vni: 0x2a}]\n", func(c *Config) bool { return c.Networks[0].VNI == 42 }},
		{"mac in dash form", "networks: [{name: blue, vni: 42, ports: [{name: t1, mac: 02-42-0A-2A-00-02}]}]\n", func(c *Config) bool {
			return c.Networks[0].Ports[0].MAC == MAC{2, 0x42, 0x0a, 0x2a, 0, 2}
		}},
		{"mac empty string is unset", "networks: [{name: blue, vni: 42, ports: [{name: t1, mac: \"\"}]}]\n", func(c *Config) bool { return c.Networks[0].Ports[0].MAC == MAC{} }},
		{"slash 30 subnet", "networks: [{name: blue, vni: 42, subnet: 10.42.0.0/30, gateway: 10.42.0.1, ports: [{name: t1, address: 10.42.0.2/30}]}]\n", func(c *Config) bool { return c.Networks[0].Subnet.Bits() == 30 }},
		{"netns absolute path", "networks: [{name: blue, vni: 42, ports: [{name: t1, netns: /proc/1/ns/net, ifname: eth0}]}]\n", func(c *Config) bool { return c.Networks[0].Ports[0].Netns == "/proc/1/ns/net" }},
		{"same ifname in two netns", "networks: [{name: blue, vni: 42, ports: [{name: t1, netns: c1, ifname: eth0}, {name: t2, netns: c2, ifname: eth0}]}]\n", func(c *Config) bool { return len(c.Networks[0].Ports) == 2 }},
		{"same port MAC in two networks", "networks: [{name: a, vni: 1, ports: [{name: t1, mac: \"02:00:00:00:00:01\"}]}, {name: b, vni: 2, ports: [{name: t2, mac: \"02:00:00:00:00:01\"}]}]\n", func(c *Config) bool { return len(c.Networks) == 2 }},
		{"fdb entry for a port's own MAC", "networks: [{name: blue, vni: 42, ports: [{name: t1, mac: \"02:00:00:00:00:01\"}], fdb: [{mac: \"02:00:00:00:00:01\", port: t1}]}]\n", func(c *Config) bool { return len(c.Networks[0].FDB) == 1 }},
		{"derived mtu at the minimum", "node: {name: h1, underlay_mtu: 626}\nnetworks: [{name: blue, vni: 42}]\n", func(c *Config) bool { return c.Networks[0].EffectiveMTU(c.Node.UnderlayMTU) == MinMTU }},
		{"underlay without peers", "node: {underlay: 127.0.0.2}\nnetworks: [{name: blue, vni: 42}]\n", func(c *Config) bool { return c.Node.Underlay == netip.MustParseAddr("127.0.0.2") }},
		{"document marker", "---\nnetworks: [{name: blue, vni: 42}]\n...\n", func(c *Config) bool { return c.Networks[0].Name == "blue" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Networks = append(c.Networks, c.Networks[0])
	c.Networks[1].Name = "red"
	c.Networks[1].Ports = nil
	c.Networks[1].Subnet = netip.Prefix{}
	c.Networks[1].Gateway = netip.Addr{}
	err = c.Validate()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Validate() = %v, want an *Error", err)
	}
	want := Error{Path: "networks[1].vni", Msg: `42 is already used by network "blue"`}
	if *e != want {
		t.Errorf("got %+v, want %+v", *e, want)
	}
	if got, wantMsg := err.Error(), `config: networks[1].vni: 42 is already used by network "blue"`; got != wantMsg {
		t.Errorf("message %q, want %q", got, wantMsg)
	}
}

func TestValidateDoesNotModify(t *testing.T) {
	c, err := Load("testdata/everything.yaml")
	if err != nil {
		t.Fatal(err)
	}
	before, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	after, _ := yaml.Marshal(c)
	if string(before) != string(after) {
		t.Errorf("Validate changed the config:\n%s\n---\n%s", before, after)
	}
}

// TestMarshalRoundTrip checks that a Config written out as YAML (as the
// daemon might show it) parses back to the same Config.
func TestMarshalRoundTrip(t *testing.T) {
	for _, f := range []string{"full.yaml", "minimal.yaml", "everything.yaml", "anchors.yaml", "l3.yaml", "l3-mixed.yaml"} {
		t.Run(f, func(t *testing.T) {
			c, err := Load(filepath.Join("testdata", f))
			if err != nil {
				t.Fatal(err)
			}
			out, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !reflect.DeepEqual(back, c) {
				t.Errorf("round trip changed the config:\n got %+v\nwant %+v\n%s", back, c, out)
			}
		})
	}
}

func TestParseFileShapes(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty", "", "config: networks: at least one network is required"},
		{"only a document marker", "---\n", "config: networks: at least one network is required"},
		{"tab indentation", "networks:\n\t- name: blue\n", "config: line 2: found character that cannot start any token"},
		{"unclosed flow", "networks: [{name: blue\n", "config: line 1: did not find expected ',' or '}'"},
		{"second document", "networks: [{name: blue, vni: 42}]\n---\nnode: {}\n", "config: line 2: a second YAML document starts here; a config file holds one"},
		{"syntax error in a second document", "networks: [{name: blue, vni: 42}]\n---\nnode: [\n", "config: line 3: did not find expected node content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestParseExcessiveAliasing checks that a small file which expands to a
// huge one through aliases is refused quickly, not expanded.
func TestParseExcessiveAliasing(t *testing.T) {
	var b strings.Builder
	b.WriteString("node: {underlay: 192.168.77.1}\nnetworks:\n  - name: n0\n    vni: 1\n    peers: &p [")
	for i := range 1000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String())
	}
	b.WriteString("]\n")
	for i := 1; i < 1000; i++ {
		fmt.Fprintf(&b, "  - {name: n%d, vni: %d, peers: *p}\n", i, i+1)
	}
	start := time.Now()
	_, err := Parse([]byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "excessive aliasing") {
		t.Errorf("error %v, want excessive aliasing", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v", el)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Errorf("error %v, want a wrapped not-exist error", err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    Error
		want string
	}{
		{"file line and path", Error{File: "f.yaml", Line: 3, Path: "node.name", Msg: "bad"}, "config: f.yaml:3: node.name: bad"},
		{"file and path", Error{File: "f.yaml", Path: "networks", Msg: "bad"}, "config: f.yaml: networks: bad"},
		{"line only", Error{Line: 7, Msg: "bad"}, "config: line 7: bad"},
		{"path only", Error{Path: "node.workers", Msg: "bad"}, "config: node.workers: bad"},
		{"file name with a newline", Error{File: "a\nb", Line: 1, Msg: "bad"}, `config: "a\nb":1: bad`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.Error(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEffectiveMTU(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     Mode
		encap    Encap
		mtu      int
		underlay int
		want     int
	}{
		{"set", ModeL2, EncapVXLAN, 1400, 1500, 1400},
		{"set on l3 udp", ModeL3, EncapUDP, 1400, 1500, 1400},
		{"l2 vxlan from 1500", ModeL2, EncapVXLAN, 0, 1500, 1450},
		{"l2 vxlan from jumbo", ModeL2, EncapVXLAN, 0, 9000, 8950},
		{"l2 gre (Ethernet and key) from 1500", ModeL2, EncapGRE, 0, 1500, 1458},
		{"l3 vxlan from 1500", ModeL3, EncapVXLAN, 0, 1500, 1450},
		{"l3 gre from 1500", ModeL3, EncapGRE, 0, 1500, 1476},
		{"l3 udp from 1500", ModeL3, EncapUDP, 0, 1500, 1472},
		{"derived capped at MaxMTU", ModeL3, EncapUDP, 0, 65536, MaxMTU},
		{"derived below MinMTU is returned as is", ModeL2, EncapVXLAN, 0, 600, 550},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := Network{Mode: tc.mode, Encap: tc.encap, MTU: tc.mtu}
			if got := n.EffectiveMTU(tc.underlay); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestSlogLevel(t *testing.T) {
	for name, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		n := Node{LogLevel: name}
		if got := n.SlogLevel(); got != want {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
}

func TestSuggest(t *testing.T) {
	names, _ := fieldsOf(reflect.TypeFor[Network]())
	for _, tc := range []struct{ key, want string }{
		{"peer", "peers"},
		{"macAgeing", "mac_ageing"},
		{"FDB-MAX", "fdb_max"},
		{"gatway", "gateway"},
		{"vnid", "vni"},
		{"mac", ""}, // "mtu" is two edits away: too far for three letters
		{"addresses", ""},
	} {
		if got := suggest(tc.key, names); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

// TestDocExamplesParse keeps docs/config.md honest: every YAML example in
// it must parse.
func TestDocExamplesParse(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Skip("docs/config.md not found:", err)
	}
	parts := strings.Split(string(doc), "```yaml\n")
	if len(parts) < 3 {
		t.Fatalf("found %d YAML examples, want at least 2", len(parts)-1)
	}
	for i, p := range parts[1:] {
		example, _, ok := strings.Cut(p, "```")
		if !ok {
			t.Fatalf("example %d is not closed", i)
		}
		if _, err := Parse([]byte(example)); err != nil {
			t.Errorf("example %d: %v\n%s", i, err, example)
		}
	}
}

func TestMAC(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       MAC
		wantErr    string
	}{
		{"colons", "02:42:0a:2a:00:02", MAC{2, 0x42, 0x0a, 0x2a, 0, 2}, ""},
		{"upper-case dashes", "02-42-0A-2A-00-02", MAC{2, 0x42, 0x0a, 0x2a, 0, 2}, ""},
		{"dotted", "0242.0a2a.0002", MAC{2, 0x42, 0x0a, 0x2a, 0, 2}, ""},
		{"empty is unset", "", MAC{}, ""},
		{"zero refused", "00:00:00:00:00:00", MAC{}, `"00:00:00:00:00:00" is the zero MAC address; leave the key out instead`},
		{"EUI-64 refused", "02:00:00:00:00:00:00:01", MAC{}, `"02:00:00:00:00:00:00:01" is not a MAC address`},
		{"garbage", "zz:zz", MAC{}, `"zz:zz" is not a MAC address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := MAC{9} // must be overwritten on success, kept on error
			err := m.UnmarshalText([]byte(tc.text))
			switch {
			case tc.wantErr != "":
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("error %v, want %q", err, tc.wantErr)
				}
				if m != (MAC{9}) {
					t.Errorf("failed parse changed the MAC to %v", m)
				}
			case err != nil:
				t.Errorf("unexpected error %v", err)
			case m != tc.want:
				t.Errorf("got %v, want %v", m, tc.want)
			}
		})
	}
	m := MAC{0x02, 0x42, 0x0a, 0x2a, 0x00, 0x02}
	if got := m.String(); got != "02:42:0a:2a:00:02" {
		t.Errorf("String() = %q", got)
	}
	if b, err := m.MarshalText(); err != nil || string(b) != "02:42:0a:2a:00:02" {
		t.Errorf("MarshalText() = %q, %v", b, err)
	}
	if b, err := (MAC{}).MarshalText(); err != nil || len(b) != 0 {
		t.Errorf("zero MarshalText() = %q, %v; want empty", b, err)
	}
	if m.IsZero() || !(MAC{}).IsZero() {
		t.Error("IsZero is wrong")
	}
	if !m.IsUnicast() || (MAC{0x01, 0, 0x5e, 0, 0, 1}).IsUnicast() || (MAC{0x33, 0x33, 0, 0, 0, 1}).IsUnicast() {
		t.Error("IsUnicast is wrong")
	}
}
