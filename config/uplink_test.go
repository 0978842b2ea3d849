package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

const uplinkBase = `
node: {name: n1}
uplinks:
  - name: ferry-up
    address: 100.64.0.1/30
    nat_address: 100.64.0.2
conntrack:
  max_entries: 1024
  udp_unreplied: 10s
networks:
  - name: blue
    vni: 42
    subnet: 10.42.0.0/24
    gateway: 10.42.0.1
    masquerade: ferry-up
    publish:
      - {proto: tcp, port: 8080, to: 10.42.0.2:80}
      - {proto: udp, port: 5353, to: 10.42.0.3:53}
`

func TestParseUplinks(t *testing.T) {
	c, err := Parse([]byte(uplinkBase))
	if err != nil {
		t.Fatal(err)
	}
	wantUp := []Uplink{{Name: "ferry-up", Address: netip.MustParsePrefix("100.64.0.1/30"), NATAddress: netip.MustParseAddr("100.64.0.2")}}
	if !reflect.DeepEqual(c.Uplinks, wantUp) {
		t.Errorf("uplinks = %+v, want %+v", c.Uplinks, wantUp)
	}
	wantPub := []Publish{
		{Proto: "tcp", Port: 8080, To: netip.MustParseAddrPort("10.42.0.2:80")},
		{Proto: "udp", Port: 5353, To: netip.MustParseAddrPort("10.42.0.3:53")},
	}
	if n := c.Networks[0]; n.Masquerade != "ferry-up" || !reflect.DeepEqual(n.Publish, wantPub) {
		t.Errorf("network = %+v", n)
	}
	if c.Conntrack != (Conntrack{MaxEntries: 1024, UDPUnreplied: 10 * time.Second}) {
		t.Errorf("conntrack = %+v", c.Conntrack)
	}
	if u := c.UplinkByName("ferry-up"); u == nil || u.NATAddress != netip.MustParseAddr("100.64.0.2") {
		t.Errorf("UplinkByName = %+v", u)
	}
}

func TestParseUplinkErrors(t *testing.T) {
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"nat address outside the prefix", "nat_address: 100.64.0.2", "nat_address: 100.64.1.2", "uplinks[0].nat_address: 100.64.1.2 is outside 100.64.0.0/30"},
		{"nat address equal to address", "nat_address: 100.64.0.2", "nat_address: 100.64.0.1", "uplinks[0].nat_address: 100.64.0.1 is the kernel side's address"},
		{"nat address is broadcast", "nat_address: 100.64.0.2", "nat_address: 100.64.0.3", "uplinks[0].nat_address: 100.64.0.3 is the network or broadcast address"},
		{"address too narrow", "address: 100.64.0.1/30", "address: 100.64.0.1/31", "uplinks[0].address: 100.64.0.1/31 leaves no room"},
		{"address missing", "    address: 100.64.0.1/30\n", "", "uplinks[0].address: required"},
		{"address overlaps a network", "address: 100.64.0.1/30\n    nat_address: 100.64.0.2", "address: 10.42.0.5/30\n    nat_address: 10.42.0.6", "uplinks[0].address: 10.42.0.4/30 overlaps 10.42.0.0/24 of network \"blue\""},
		{"bad uplink name", "name: ferry-up", "name: a/b", "uplinks[0].name: \"a/b\" is not an interface name"},
		{"unknown masquerade uplink", "masquerade: ferry-up", "masquerade: nope", "networks[0].masquerade: \"nope\" is not the name of an uplink"},
		{"masquerade without gateway", "    gateway: 10.42.0.1\n", "", "networks[0].masquerade: needs networks[0].gateway"},
		{"publish without masquerade", "    masquerade: ferry-up\n", "", "networks[0].publish: needs networks[0].masquerade"},
		{"bad proto", "proto: tcp", "proto: sctp", "networks[0].publish[0].proto: \"sctp\" is not tcp or udp"},
		{"port zero", "port: 8080", "port: 0", "networks[0].publish[0].port: required"},
		{"target outside subnet", "to: 10.42.0.2:80", "to: 10.43.0.2:80", "networks[0].publish[0].to: 10.43.0.2 is outside subnet 10.42.0.0/24"},
		{"target is the gateway", "to: 10.42.0.2:80", "to: 10.42.0.1:80", "networks[0].publish[0].to: 10.42.0.1 is the gateway"},
		{"target without port", "to: 10.42.0.2:80", "to: 10.42.0.2:0", "networks[0].publish[0].to: 10.42.0.2:0 has no port"},
		{"target not addr:port", "to: 10.42.0.2:80", "to: 10.42.0.2", "networks[0].publish[0].to: \"10.42.0.2\" is not an ADDRESS:PORT"},
		{"duplicate published port", "{proto: udp, port: 5353", "{proto: tcp, port: 8080", "networks[0].publish[1].port: tcp 8080 of uplink \"ferry-up\" is already published by networks[0].publish[0]"},
		{"conntrack cap too small", "max_entries: 1024", "max_entries: 3", "conntrack.max_entries: 3 is out of range"},
		{"conntrack timeout too short", "udp_unreplied: 10s", "udp_unreplied: 10ms", "conntrack.udp_unreplied: 10ms is shorter than 1s"},
		{"conntrack port range empty", "udp_unreplied: 10s", "port_min: 2000\n  port_max: 1000", "conntrack.port_min: range 2000..1000 is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(uplinkBase, tc.from, tc.to, 1)
			if src == uplinkBase {
				t.Fatalf("%q not in the base config", tc.from)
			}
			_, err := Parse([]byte(src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
