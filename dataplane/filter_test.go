package dataplane

import (
	"testing"

	"github.com/ferry-overlay/ferry/header"
)

func TestFilterMatches(t *testing.T) {
	tcp80, err := BuildFrame("eth src 02:00:00:00:00:0a dst 02:00:00:00:00:0b ip src 10.42.0.2 dst 10.42.1.3 tcp sport 40000 dport 80")
	if err != nil {
		t.Fatal(err)
	}
	arp, err := BuildFrame("eth src 02:00:00:00:00:0a arp who-has 10.42.0.3 tell 10.42.0.2")
	if err != nil {
		t.Fatal(err)
	}
	ping6, err := BuildFrame("ip6 src fd00::1 dst fd00::2 icmp")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, expr string
		frame      []byte
		want       bool
	}{
		{"empty matches all", "", arp, true},
		{"host either side", "host 10.42.1.3", tcp80, true},
		{"src host", "src host 10.42.0.2", tcp80, true},
		{"dst host wrong side", "dst host 10.42.0.2", tcp80, false},
		{"net", "net 10.42.1.0/24", tcp80, true},
		{"src net", "src net 10.42.1.0/24", tcp80, false},
		{"port", "port 80", tcp80, true},
		{"dst port", "dst port 40000", tcp80, false},
		{"proto word", "proto tcp", tcp80, true},
		{"bare udp", "udp", tcp80, false},
		{"arp", "arp", arp, true},
		{"arp host is sender or target", "host 10.42.0.3", arp, true},
		{"port never matches arp", "port 80", arp, false},
		{"icmp covers icmpv6", "icmp and ip6", ping6, true},
		{"ether host", "ether host 02:00:00:00:00:0b", tcp80, true},
		{"ether src", "ether src 02:00:00:00:00:0b", tcp80, false},
		{"vni", "vni 42", tcp80, true},
		{"vni other", "vni 43", tcp80, false},
		{"and or precedence", "udp and port 80 or arp", arp, true},
		{"not binds tighter than and", "not udp and tcp", tcp80, true},
		{"parentheses", "tcp and (port 22 or port 80)", tcp80, true},
		{"symbols", "!(tcp && port 22) || arp", tcp80, true},
		{"case insensitive", "TCP AND Port 80", tcp80, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseFilter(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			var p header.Parsed
			p.Decode(tc.frame)
			if got := f.Match(&p, 42); got != tc.want {
				t.Fatalf("%q matched %v, want %v", tc.expr, got, tc.want)
			}
			if allocs := testing.AllocsPerRun(100, func() { f.Match(&p, 42) }); allocs != 0 {
				t.Fatalf("Match allocates %v times", allocs)
			}
		})
	}
}

func TestFilterErrorsNameTheWord(t *testing.T) {
	cases := []struct{ expr, want string }{
		{"host", `filter "host": unexpected end of expression`},
		{"host 10.0.0.300", `filter "host 10.0.0.300": word 1: host "10.0.0.300": not an IP address`},
		{"tcp and", `filter "tcp and": unexpected end of expression`},
		{"(tcp", `filter "(tcp": missing ) at word 3`},
		{"tcp )", `filter "tcp )": unexpected ")" at word 2`},
		{"port 70000", `filter "port 70000": word 1: port "70000": not a number 0-65535`},
		{"src ether x", `filter "src ether x": word 1: src must be followed by host, net or port, not "ether"`},
		{"proto sctp", `filter "proto sctp": word 1: proto "sctp": want tcp, udp, icmp, arp, ip or ip6`},
		{"frobnicate", `filter "frobnicate": word 1: unknown primitive "frobnicate" (want host, net, port, proto, tcp, udp, icmp, arp, ether, vni, not or a parenthesis)`},
	}
	for _, tc := range cases {
		_, err := ParseFilter(tc.expr)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseFilter(%q) = %v, want %s", tc.expr, err, tc.want)
		}
	}
}

// FuzzParseFilter: the parser never panics, bounds its nesting, and a
// filter that parses matches any decoded frame without panicking.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "tcp and port 80", "not (host 10.0.0.1 or net fd00::/8)", "ether src 02:00:00:00:00:01 && vni 42 || !arp", "((((udp))))", "src port 1 and dst host ::1"} {
		f.Add(s, []byte{})
	}
	f.Fuzz(func(t *testing.T, expr string, frame []byte) {
		flt, err := ParseFilter(expr)
		if err != nil {
			return
		}
		var p header.Parsed
		p.Decode(frame)
		flt.Match(&p, 42)
	})
}

// TestFilterMatchesBareIP: packets without an Ethernet header (TUN ports,
// uplinks, the NAT points) match on their IP header; ether and arp never
// match them; vni is the network's, and NoVNI matches no vni.
func TestFilterMatchesBareIP(t *testing.T) {
	frame, err := BuildFrame("eth src 00:00:00:00:00:00 dst 00:00:00:00:00:00 ip src 10.244.1.2 dst 10.244.2.9 udp sport 5000 dport 53")
	if err != nil {
		t.Fatal(err)
	}
	udp53 := frame[14:]
	ping, err := BuildFrame("ip src 10.244.1.2 dst 198.18.0.2 icmp")
	if err != nil {
		t.Fatal(err)
	}
	icmp := ping[14:]
	for _, tc := range []struct {
		name, expr string
		pkt        []byte
		vni        uint32
		want       bool
	}{
		{"host on the IP header", "host 10.244.2.9", udp53, 1, true},
		{"src host", "src host 10.244.1.2", udp53, 1, true},
		{"dst host wrong side", "dst host 10.244.1.2", udp53, 1, false},
		{"net", "dst net 10.244.2.0/24", udp53, 1, true},
		{"port", "dst port 53", udp53, 1, true},
		{"proto udp", "proto udp", udp53, 1, true},
		{"icmp", "icmp and host 198.18.0.2", icmp, 1, true},
		{"ip", "ip and not ip6", icmp, 1, true},
		{"ether host never matches, even the zero MAC", "ether host 00:00:00:00:00:00", udp53, 1, false},
		{"not ether matches", "not ether src 02:00:00:00:00:01", udp53, 1, true},
		{"arp never matches", "arp", udp53, 1, false},
		{"vni of the network", "vni 1 and udp", udp53, 1, true},
		{"other vni", "vni 2", udp53, 1, false},
		{"uplink packets have no vni", "vni 0", icmp, NoVNI, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseFilter(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			var p header.Parsed
			p.DecodeIP(tc.pkt)
			if got := f.MatchIP(&p, tc.vni); got != tc.want {
				t.Errorf("MatchIP(%q) = %v, want %v", tc.expr, got, tc.want)
			}
		})
	}
}
