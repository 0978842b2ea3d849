package e2e

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/router"
)

// TestE2EInjectThroughGateway: against a running ferry with a gateway
// network that masquerades through an uplink, a what-if TCP SYN from
// container c1 to an outside address tells the route out of the uplink,
// the masquerade a new connection would get, and the uplink it would be
// written to; a what-if reply of c1's tracked UDP connection comes in from
// the uplink, is translated back and routed to c1's port. ferry conntrack and ferry errors are the same
// before and after.
func TestE2EInjectThroughGateway(t *testing.T) {
	tp := newNATTopology(t, "192.168.97.0/24", "")
	mustPing(t, tp.c1, "10.42.0.1") // teach the gateway c1's address
	serveUDPEcho(t, tp.out, "198.18.0.2:7000")
	conn := udpDial(t, tp.c1, "198.18.0.2:7000") // a tracked, replied connection
	if got, err := udpAsk(conn, "hello", 5); err != nil || got != "hello from "+natAddr+" at 198.18.0.2:7000" {
		t.Fatalf("UDP echo through the masquerade: %q, %v", got, err)
	}
	var ports []dataplane.PortInfo
	tp.f.ctlJSON(t, &ports, "ports")
	port1 := ""
	for _, p := range ports {
		if strings.HasPrefix(p.Name, "t1") {
			port1 = p.Name
		}
	}
	if port1 == "" {
		t.Fatalf("no port t1* in %+v", ports)
	}
	type state struct {
		conns []dataplane.ConnInfo
		errs  []dataplane.DropStats
	}
	snapshot := func() state {
		var s state
		tp.f.ctlJSON(t, &s.conns, "conntrack")
		tp.f.ctlJSON(t, &s.errs, "errors")
		for i := range s.conns {
			s.conns[i].SecondsLeft, s.conns[i].Text = 0, "" // the clock, not state
		}
		return s
	}
	before := snapshot()
	if len(before.conns) != 1 || before.conns[0].Orig == "" {
		t.Fatalf("ferry conntrack: %+v, want the UDP connection", before.conns)
	}
	up := before.conns[0].Uplink

	var syn dataplane.TracePacket
	tp.f.ctlJSON(t, &syn, "trace", "inject", "--in", port1, fmt.Sprintf(
		"eth src 02:42:0a:2a:00:02 dst %s ip src 10.42.0.2 dst 198.18.0.2 tcp sport 40000 dport 443", router.GatewayMAC("blue")))
	story := steps(syn)
	for _, want := range []string{
		"bridge: destination MAC is the gateway of network blue: to the router\n",
		"router: route: destination in no local network, default route out of uplink " + up + "; TTL 64 → 63\n",
		"nat: masquerade (SNAT) on uplink " + up + ", outbound: tcp 10.42.0.2:40000 > 198.18.0.2:443 → 100.64.0.2:40000 > 198.18.0.2:443, a new connection: would get a conntrack entry (NEW (SYN_SENT)); source port 40000 is the one free now, taken only when a packet is really sent\n",
		"uplink-tx: would be written to uplink " + up + "\n",
	} {
		if !strings.Contains(story, want) {
			t.Errorf("what-if SYN story lacks %q:\n%s", want, story)
		}
	}
	if !syn.DryRun {
		t.Errorf("what-if SYN is not marked dry_run")
	}

	// The UDP connection's reply, as the outside would send it to the
	// nat_address: its reply tuple.
	var natPort string
	for _, f := range strings.Fields(before.conns[0].Reply) {
		if v, ok := strings.CutPrefix(f, "dport="); ok {
			natPort = v
		}
	}
	var rep dataplane.TracePacket
	tp.f.ctlJSON(t, &rep, "trace", "inject", "--in", "uplink:"+up, "ip src 198.18.0.2 dst 100.64.0.2 udp sport 7000 dport "+natPort)
	story = steps(rep)
	for _, want := range []string{
		"uplink-rx: read from uplink " + up + "\n",
		"nat: reply of a masqueraded connection, translated back on uplink " + up + ", inbound: udp 198.18.0.2:7000 > 100.64.0.2:" + natPort + " → 198.18.0.2:7000 > 10.42.0.2:",
		", conntrack ESTABLISHED\n",
		"router: route: destination in 10.42.0.0/24, directly connected network blue; TTL 64 → 63\n",
		"neighbour: next hop 10.42.0.2 is at 02:42:0a:2a:00:02\n",
		"port-tx: would be written to port " + port1 + "\n",
	} {
		if !strings.Contains(story, want) {
			t.Errorf("what-if reply story lacks %q:\n%s", want, story)
		}
	}

	if after := snapshot(); !reflect.DeepEqual(after, before) {
		t.Fatalf("what-ifs changed the node:\nbefore %+v\nafter  %+v", before, after)
	}
}
