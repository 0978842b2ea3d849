package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse feeds Parse arbitrary files. Config files are user input, so
// Parse must never panic; every error must be a one-line *Error; and a
// Config it returns must be valid and survive a marshal/parse round trip.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	invalid, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range append(files, invalid...) {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"networks: [{name: blue, vni: 42}]\n",
		"node: &n {<<: *n}\n",
		"networks: &n [{name: blue, vni: 42, ports: *n}]\n",
		"networks: [{<<: [{name: a}, {vni: 1}], ports: [{name: t, mac: \"02:00:00:00:00:01\"}], fdb: [{mac: \"02:00:00:00:00:02\", port: t}]}]\n",
		"metrics: {listen: \"off\"}\nnetworks: [{name: b, vni: 1, subnet: 10.0.0.0/30, gateway: 10.0.0.1, ports: [{name: t, address: 10.0.0.2/30}]}]\n",
		"node: {underlay: 10.0.0.1, underlay_mtu: 626}\nnetworks: [{name: b, vni: 1, peers: [10.0.0.2], fdb: [{mac: 02-00-00-00-00-01, peer: 10.0.0.2}]}]\n",
		"node: {underlay: 10.0.0.1}\nnetworks: [{name: p, mode: l3, encap: udp, network: 10.9.0.0/16, subnet: 10.9.1.0/24, device: f0, subnet_file: /run/s.env, peers: [{underlay: 10.0.0.2, subnet: 10.9.2.0/24}]}]\n",
		"node: {underlay: 10.0.0.1, underlay_mtu: 1500}\nnetworks: [{name: p, mode: l3, network: 10.9.0.0/16, subnet: 10.9.1.0/30, device: f0, vtep_mac: 02-00-00-00-00-01, peers: [{underlay: 10.0.0.2, subnet: 10.9.2.0/24}, {underlay: 10.0.0.3, subnet: 10.9.3.0/24, vtep_mac: 0200.0000.0003}]}, {name: g, encap: gre, vni: 5, peers: [10.0.0.2]}]\n",
		"node: {underlay: 10.0.0.1}\nnetworks: [{name: p, mode: l3, encap: gre, network: 10.9.0.0/16, subnet: 10.9.1.0/24, device: f0, peers: [&a {underlay: 10.0.0.2, subnet: 10.9.2.0/24}, {<<: *a, underlay: 10.0.0.3}]}]\n",
		"? [a]\n: b\n",
		"!!binary abc: 1\n",
		"networks: [{name: !custom b, vni: !!str 1}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned both a config and %v", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "config: ") || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error is not one line starting with config: %q", msg)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse returned a config that Validate rejects: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("the marshalled config does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(nilEmpty(back), nilEmpty(c)) {
			t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", back, c)
		}
	})
}

// nilEmpty makes the empty lists of c nil, since "peers: []" and no peers
// mean the same, and marshalling leaves out both.
func nilEmpty(c *Config) *Config {
	for i := range c.Networks {
		n := &c.Networks[i]
		if len(n.Peers) == 0 {
			n.Peers = nil
		}
		if len(n.FDB) == 0 {
			n.FDB = nil
		}
		if len(n.Ports) == 0 {
			n.Ports = nil
		}
	}
	return c
}
