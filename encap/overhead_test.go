package encap

import "testing"

func TestOverhead(t *testing.T) {
	tests := []struct {
		name  string
		encap string
		l2    bool
		want  int
	}{
		{name: "vxlan l2", encap: EncapVXLAN, l2: true, want: 50},
		{name: "vxlan l3 (flannel-vxlan)", encap: EncapVXLAN, want: 50},
		{name: "gre l2 (teb with vni key)", encap: EncapGRE, l2: true, want: 42},
		{name: "gre l3 (ipv4, no key)", encap: EncapGRE, want: 24},
		{name: "flannel-udp l3", encap: EncapUDP, want: 28},
		{name: "flannel-udp l2 does not exist", encap: EncapUDP, l2: true, want: 0},
		{name: "unknown name", encap: "geneve", l2: true, want: 0},
		{name: "names are case-sensitive", encap: "GRE", want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Overhead(tc.encap, tc.l2); got != tc.want {
				t.Errorf("Overhead(%q, %v) = %d, want %d", tc.encap, tc.l2, got, tc.want)
			}
		})
	}
	// The four GRE figures and their Linux device MTUs below 1500.
	for _, c := range []struct {
		name     string
		overhead int
		mtu      int
	}{
		{"gre", GREOverhead, 1476},
		{"gre key", GREKeyOverhead, 1472},
		{"gretap", GRETEBOverhead, 1462},
		{"gretap key", GRETEBKeyOverhead, 1458},
		{"flannel udp", FlannelUDPOverhead, 1472},
		{"vxlan", VXLANOverhead, 1450},
	} {
		if 1500-c.overhead != c.mtu {
			t.Errorf("%s: 1500 - %d = %d, want %d", c.name, c.overhead, 1500-c.overhead, c.mtu)
		}
	}
}
