package dataplane

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/router"
)

// gwState is everything a what-if must leave as it found it on a routed
// node: both networks' MAC and neighbour tables, the uplink's conntrack
// table, and every counter.
type gwState struct {
	fdb       map[string][]FDBEntry
	neigh     map[string][]router.Neighbour
	conntrack []ConnInfo
	ports     []PortInfo
	errors    []DropStats
	runtime   []StageStats
}

func gwSnapshot(t *testing.T, eng *Engine) gwState {
	t.Helper()
	s := gwState{fdb: map[string][]FDBEntry{}, neigh: map[string][]router.Neighbour{}}
	tb := eng.tables.Load()
	for _, n := range tb.nets {
		f, err := eng.FDB(n.name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range f {
			f[i].Age = 0 // the time since, not state
		}
		s.fdb[n.name] = f
		s.neigh[n.name] = n.gw.neigh.Snapshot(0)
	}
	ct, err := eng.Conntrack("up0")
	if err != nil {
		t.Fatal(err)
	}
	s.conntrack, s.ports, s.errors, s.runtime = ct, eng.Ports(), eng.Errors(), eng.Runtime()
	return s
}

// TestInjectThroughGatewayChangesNothing runs what-if frames through a
// gateway network's router, neighbour and NAT stages: each story names the
// route, the next hop or its absence, and the NAT rewrite (of a tracked
// connection) or the translation a new one would get, and nothing — FDB,
// neighbours, conntrack, counters — changes.
func TestInjectThroughGatewayChangesNothing(t *testing.T) {
	eng, w, ports, _ := natRig(t, func(int, []byte) {}, func([]byte) {})
	// A real packet first: the blue host is learned and its flow to
	// 198.18.0.2:5001 tracked.
	ports[0].Queue(udpTo(netip.MustParseAddr("198.18.0.2"), 100, 64, false))
	poll(t, w, 0)
	before := gwSnapshot(t, eng)
	if len(before.conntrack) != 1 {
		t.Fatalf("conntrack holds %d connections, want 1", len(before.conntrack))
	}
	host := fmt.Sprintf("eth src %s dst %s ip src 10.42.0.2", header.MAC(macBlueHost), router.GatewayMAC("blue"))
	for _, tc := range []struct {
		name, packet string
		want         []string
	}{
		{"new connection out of the uplink", host + " dst 198.18.0.2 udp sport 4000 dport 53", []string{
			"bridge: destination MAC is the gateway of network blue: to the router",
			"router: route: destination in no local network, default route out of uplink up0; TTL 64 → 63",
			"nat: new connection on uplink up0: udp 10.42.0.2:4000 > 198.18.0.2:53 would get a conntrack entry and be masqueraded (SNAT) to 100.64.0.2, its source port chosen then",
			"uplink-tx: would be written to uplink up0",
		}},
		{"tracked connection", host + " dst 198.18.0.2 udp sport 4000 dport 5001", []string{
			"nat: masquerade (SNAT) on uplink up0, outbound: udp 10.42.0.2:4000 > 198.18.0.2:5001 → 100.64.0.2:",
			"conntrack NEW",
			"uplink-tx: would be written to uplink up0",
		}},
		{"routed to a next hop nobody resolved", host + " dst 10.43.0.9 udp dport 53", []string{
			"router: route: destination in 10.43.0.0/24, directly connected network red; TTL 64 → 63",
			"neighbour: next hop 10.43.0.9 is not in the neighbour table: the gateway would ask for it with ARP and drop this packet",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := eng.Inject(InjectSpec{In: "p0", Packet: tc.packet})
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, s := range tp.Steps {
				lines = append(lines, s.Stage+": "+s.Decision)
			}
			story := strings.Join(lines, "\n")
			for _, w := range tc.want {
				if !strings.Contains(story, w) {
					t.Errorf("story lacks %q:\n%s", w, story)
				}
			}
		})
	}
	if after := gwSnapshot(t, eng); !reflect.DeepEqual(after, before) {
		t.Fatalf("what-ifs changed the node:\nbefore %+v\nafter  %+v", before, after)
	}
}
