package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-overlay/ferry/ctl/ctltest"
	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/nat"
)

// natFake is the fake backend with one uplink's conntrack statistics.
type natFake struct {
	*ctltest.Backend
}

func (natFake) ConntrackStats() []dataplane.ConntrackStats {
	return []dataplane.ConntrackStats{{Uplink: "ferry-up", Stats: nat.Stats{Entries: 6, TCP: 3, UDP: 2, ICMP: 1}}}
}

func TestCollectorConntrackEntries(t *testing.T) {
	c := NewCollector(natFake{ctltest.New()}, testNode)
	want := `
# HELP ferry_conntrack_entries Connections tracked by an uplink's NAT, by protocol.
# TYPE ferry_conntrack_entries gauge
ferry_conntrack_entries{proto="icmp",uplink="ferry-up"} 1
ferry_conntrack_entries{proto="tcp",uplink="ferry-up"} 3
ferry_conntrack_entries{proto="udp",uplink="ferry-up"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "ferry_conntrack_entries"); err != nil {
		t.Fatal(err)
	}
}
