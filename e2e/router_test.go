package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/internal/nstest"
)

// routedConfig is a single-host config with two routed networks, blue
// (10.42.0.0/24, MTU 1400) and red (10.43.0.0/24, MTU 1280), one container
// port each; extra is appended verbatim (uplinks, masquerade...).
func routedConfig(host *nstest.Host, blueTap, blueNS, redTap, redNS, blueExtra, top string) string {
	return fmt.Sprintf(`node:
  name: %s
  underlay: %s
  workers: 2
%scontrol:
  socket: SOCKET
metrics:
  listen: ""
%snetworks:
  - name: blue
    vni: 42
    subnet: 10.42.0.0/24
    gateway: 10.42.0.1
    mtu: 1400
%s    ports:
      - {name: %s, netns: %s, ifname: eth0, address: 10.42.0.2/24, mac: "02:42:0a:2a:00:02"}
  - name: red
    vni: 43
    subnet: 10.43.0.0/24
    gateway: 10.43.0.1
    mtu: 1280
    ports:
      - {name: %s, netns: %s, ifname: eth0, address: 10.43.0.2/24, mac: "02:42:0a:2b:00:02"}
`, host.Name, host.Addr, offloadKey(), top, blueExtra, blueTap, blueNS, redTap, redNS)
}

// TestE2ERouterBetweenNetworks: containers of blue and red reach each other
// through ferry's gateways on one host: ping both ways, ping of the gateway
// addresses, TCP both ways; a TTL of 1 gets ICMP time exceeded from the
// gateway; a DF packet larger than red's MTU gets fragmentation needed with
// red's MTU; each shows up under its own drop reason.
func TestE2ERouterBetweenNetworks(t *testing.T) {
	nstest.RequireRoot(t)
	ul := nstest.NewUnderlay(t, netip.MustParsePrefix("192.168.81.0/24"))
	h := ul.AddHost(t, "hr")
	blue, red := nstest.NewNS(t, "cb"), nstest.NewNS(t, "cr")
	f := startFerry(t, h, routedConfig(h, nstest.Name(t, "tb"), blue.Name, nstest.Name(t, "tr"), red.Name, "", ""))

	mustPing(t, blue, "10.42.0.1")
	mustPing(t, blue, "10.43.0.2")
	mustPing(t, red, "10.42.0.2")
	mustPing(t, blue, "10.43.0.1") // the other network's gateway answers too
	if got := neighbourMAC(t, blue, "10.42.0.1"); got == "" {
		t.Errorf("blue did not resolve its gateway")
	}
	transfer(t, blue, red, "10.43.0.2", 20<<20)
	transfer(t, red, blue, "10.42.0.2", 20<<20)

	out, _ := blue.Exec(t, 5*time.Second, "ping", "-n", "-c", "1", "-W", "2", "-t", "1", "10.43.0.2")
	if !strings.Contains(out, "From 10.42.0.1") || !strings.Contains(out, "Time to live exceeded") {
		t.Errorf("ping -t 1: want time exceeded from 10.42.0.1, got:\n%s", out)
	}
	// 1300 bytes of data make a 1328-byte packet: fits blue (1400), not
	// red (1280).
	out, _ = blue.Exec(t, 5*time.Second, "ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1300", "10.43.0.2")
	if !strings.Contains(out, "From 10.42.0.1") || !strings.Contains(out, "mtu = 1280") {
		t.Errorf("ping -M do -s 1300: want frag needed (mtu = 1280) from 10.42.0.1, got:\n%s", out)
	}
	// The kernel learned the path MTU: a second try fails locally.
	out, _ = blue.Exec(t, 5*time.Second, "ip", "route", "get", "10.43.0.2")
	if !strings.Contains(out, "mtu 1280") {
		t.Errorf("ip route get 10.43.0.2 in blue: want a cached mtu 1280, got:\n%s", out)
	}

	var errs []struct {
		Stage, Reason string
		Packets       uint64
	}
	f.ctlJSON(t, &errs, "errors")
	got := map[string]uint64{}
	for _, e := range errs {
		got[e.Stage+"/"+e.Reason] = e.Packets
	}
	for _, k := range []string{"router/ttl-expired", "router/frag-needed"} {
		if got[k] != 1 {
			t.Errorf("drops %s = %d, want 1 (all: %v)", k, got[k], got)
		}
	}
}
