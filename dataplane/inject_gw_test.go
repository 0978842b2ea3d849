package dataplane

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/nat"
	"github.com/ferry-overlay/ferry/router"
)

// The what-if rig: networks blue (10.42.0.0/24, port p0) and red
// (10.43.0.0/24, port p1 and peer 192.168.77.2), both with a gateway; blue
// masquerades through uplink up0 (nat_address 100.64.0.2), which publishes
// TCP 8080 to red's host 10.43.0.2:80.
var (
	gwPeer      = netip.MustParseAddr("192.168.77.2")
	macPeerHost = [6]byte{0x02, 0x42, 0x0a, 0x2b, 0, 9}
	peerHost    = netip.MustParseAddr("10.43.0.9")
	outside     = netip.MustParseAddr("198.18.0.2")
)

// gwInjectRig builds the rig and teaches it with real traffic: blue's host
// sends a UDP datagram 10.42.0.2:4000 > 198.18.0.2:5001 and gets its
// answer (a tracked, replied connection), red's host answers its gateway's
// ARP from p1, and the peer's host answers it through the tunnel.
func gwInjectRig(t *testing.T) (*Engine, *nat.Table) {
	t.Helper()
	eng, err := NewEngine([]NetworkSpec{
		{Name: "blue", VNI: 42, MTU: 1500, Ageing: 300 * time.Second, Ports: []string{"p0"}, Gateway: blueGW, Subnet: netip.MustParsePrefix("10.42.0.0/24")},
		{Name: "red", VNI: 43, MTU: 1500, Ageing: 300 * time.Second, Ports: []string{"p1"}, Peers: []netip.Addr{gwPeer}, Gateway: redGW, Subnet: netip.MustParsePrefix("10.43.0.0/24")},
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := nat.New(nat.Options{NATAddr: netip.MustParseAddr("100.64.0.2"), MaxEntries: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.SetUplinks([]UplinkSpec{{Name: "up0", NAT: tbl, MTU: 1500, Networks: []string{"blue"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := eng.AddPublish("up0", "tcp", 8080, netip.MustParseAddrPort("10.43.0.2:80")); err != nil {
		t.Fatal(err)
	}
	w := eng.NewWorker(0, 256, 2048)
	var upOut [][]byte
	up := &MemPort{Sink: func(b []byte) { upOut = append(upOut, append([]byte(nil), b...)) }}
	w.SetUplink(0, up)
	ports := [2]*MemPort{{}, {}}
	for i, p := range ports {
		w.SetPort(uint16(i), p)
	}
	tun := &MemTunnel{}
	w.SetTunnel(tun)

	ports[0].Queue(udpTo(outside, 100, 64, false))
	poll(t, w, 0)
	if len(upOut) != 1 {
		t.Fatalf("uplink sent %d packets, want 1", len(upOut))
	}
	up.Queue(reply(upOut[0]))
	pollUplink(t, w)
	redMAC := router.GatewayMAC("red")
	ports[1].Queue(arpFrame(header.ARPReply, [6]byte(redMAC), macRedHost, netip.MustParseAddr("10.43.0.2"), redGW, [6]byte(redMAC)))
	poll(t, w, 1)
	tun.Queue(gwPeer, vxlan(43, arpFrame(header.ARPReply, [6]byte(redMAC), macPeerHost, peerHost, redGW, [6]byte(redMAC))))
	if _, err := w.PollTunnel(); err != nil {
		t.Fatal(err)
	}
	return eng, tbl
}

// gwState is everything a what-if must leave as it found it on a routed
// node: both networks' MAC and neighbour tables (with their statistics),
// the uplink's conntrack table (connections as of one instant, so a
// refreshed expiry shows) and statistics, and every counter.
type gwState struct {
	fdb       map[string][]FDBEntry
	neigh     map[string][]router.Neighbour
	neighSt   map[string]router.NeighbourStats
	conns     []nat.Conn
	natStats  nat.Stats
	conntrack []ConnInfo
	ports     []PortInfo
	peers     []PeerInfo
	errors    []DropStats
	runtime   []StageStats
}

func gwSnapshot(t *testing.T, eng *Engine, tbl *nat.Table, now int64) gwState {
	t.Helper()
	s := gwState{fdb: map[string][]FDBEntry{}, neigh: map[string][]router.Neighbour{}, neighSt: map[string]router.NeighbourStats{}}
	for _, n := range eng.tables.Load().nets {
		f, err := eng.FDB(n.name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range f {
			f[i].Age = 0 // the time since, not state
		}
		s.fdb[n.name] = f
		s.neigh[n.name] = n.gw.neigh.Snapshot(now)
		s.neighSt[n.name] = n.gw.neigh.Stats()
	}
	ct, err := eng.Conntrack("up0")
	if err != nil {
		t.Fatal(err)
	}
	for i := range ct {
		ct[i].SecondsLeft, ct[i].Text = 0, "" // the time left, not state: conns holds it
	}
	s.conns, s.natStats, s.conntrack = tbl.Snapshot(now, nil), tbl.Stats(), ct
	s.ports, s.peers, s.errors, s.runtime = eng.Ports(), eng.Peers(), eng.Errors(), eng.Runtime()
	for i := range s.peers {
		s.peers[i].LastHeard = nil
	}
	return s
}

// TestInjectThroughGatewayChangesNothing runs what-if packets through the
// gateway, router, neighbour and NAT stages and checks each story line by
// line: ARP for the gateway, routed to a local port of another network
// and to a peer, a next hop not in the neighbour table, masquerade of a
// new connection, a packet of a tracked one, its reply from the uplink and
// a new published connection from the uplink. Nothing — FDB, neighbours,
// conntrack, counters — changes.
func TestInjectThroughGatewayChangesNothing(t *testing.T) {
	eng, tbl := gwInjectRig(t)
	now := eng.now()
	before := gwSnapshot(t, eng, tbl, now)
	if len(before.conns) != 1 || !before.conns[0].SeenReply {
		t.Fatalf("conntrack holds %v, want one replied connection", before.conns)
	}
	blueMAC := router.GatewayMAC("blue")
	host := fmt.Sprintf("eth src %s dst %s ip src 10.42.0.2", header.MAC(macBlueHost), blueMAC)
	toRouter := []string{
		"ethernet-input: network blue (VNI 42)",
		"bridge: destination MAC is the gateway of network blue: to the router",
	}
	// rx is the port-rx line of an IPv4 packet (TCP: 40 bytes, UDP: 28)
	// from blue's host to its gateway.
	rx := func(ip string, length int) string {
		return fmt.Sprintf("port-rx: read from port p0: %s > %s, IPv4 %s ttl 64, length %d", header.MAC(macBlueHost), blueMAC, ip, length)
	}
	for _, tc := range []struct {
		name, in, packet string
		want             []string
	}{
		{"ARP for the gateway from a host it does not know", "p0", "eth src 02:42:0a:2a:00:05 arp who-has 10.42.0.1 tell 10.42.0.5", []string{
			"port-rx: read from port p0: 02:42:0a:2a:00:05 > ff:ff:ff:ff:ff:ff, ARP who-has 10.42.0.1 tell 10.42.0.5",
			"ethernet-input: network blue (VNI 42)",
			"bridge: broadcast/multicast destination, flood",
			fmt.Sprintf("gateway: ARP request for the gateway address 10.42.0.1: would be answered, 10.42.0.1 is at %s", blueMAC),
			"port-tx: would be written to port p0",
		}},
		{"routed to a local port of another network", "p0", host + " dst 10.43.0.2 tcp dport 80", slices.Concat([]string{rx("10.42.0.2 > 10.43.0.2 TCP 12345 > 80 flags S", 40)}, toRouter, []string{
			"router: route: destination in 10.43.0.0/24, directly connected network red; TTL 64 → 63",
			"neighbour: next hop 10.43.0.2 is at 02:42:0a:2b:00:02",
			"port-tx: would be written to port p1",
		})},
		{"routed to a peer", "p0", host + " dst 10.43.0.9 udp sport 4000 dport 53", slices.Concat([]string{rx("10.42.0.2 > 10.43.0.9 UDP 4000 > 53", 28)}, toRouter, []string{
			"router: route: destination in 10.43.0.0/24, directly connected network red; TTL 64 → 63",
			"neighbour: next hop 10.43.0.9 is at 02:42:0a:2b:00:09",
			"vxlan-encap: VXLAN header, VNI 43",
			"tunnel-tx: would be sent to peer 192.168.77.2",
		})},
		{"next hop not in the neighbour table", "p0", host + " dst 10.43.0.7 udp sport 4000 dport 53", slices.Concat([]string{rx("10.42.0.2 > 10.43.0.7 UDP 4000 > 53", 28)}, toRouter, []string{
			"router: route: destination in 10.43.0.0/24, directly connected network red; TTL 64 → 63",
			"neighbour: next hop 10.43.0.7 is not in the neighbour table: the gateway would ask for it with ARP and drop this packet",
			"neighbour: would be dropped: neighbour-unresolved: " + ReasonNeighbourUnresolved.Help(),
		})},
		{"masquerade of a new connection", "p0", host + " dst 198.18.0.2 tcp sport 40000 dport 443", slices.Concat([]string{rx("10.42.0.2 > 198.18.0.2 TCP 40000 > 443 flags S", 40)}, toRouter, []string{
			"router: route: destination in no local network, default route out of uplink up0; TTL 64 → 63",
			"nat: masquerade (SNAT) on uplink up0, outbound: tcp 10.42.0.2:40000 > 198.18.0.2:443 → 100.64.0.2:40000 > 198.18.0.2:443, a new connection: would get a conntrack entry (NEW (SYN_SENT)); source port 40000 is the one free now, taken only when a packet is really sent",
			"uplink-tx: would be written to uplink up0",
		})},
		{"tracked connection", "p0", host + " dst 198.18.0.2 udp sport 4000 dport 5001", slices.Concat([]string{rx("10.42.0.2 > 198.18.0.2 UDP 4000 > 5001", 28)}, toRouter, []string{
			"router: route: destination in no local network, default route out of uplink up0; TTL 64 → 63",
			"nat: masquerade (SNAT) on uplink up0, outbound: udp 10.42.0.2:4000 > 198.18.0.2:5001 → 100.64.0.2:4000 > 198.18.0.2:5001, conntrack ESTABLISHED",
			"uplink-tx: would be written to uplink up0",
		})},
		{"reply of a tracked connection", "uplink:up0", "ip src 198.18.0.2 dst 100.64.0.2 udp sport 5001 dport 4000", []string{
			"uplink-rx: read from uplink up0",
			"nat: reply of a masqueraded connection, translated back on uplink up0, inbound: udp 198.18.0.2:5001 > 100.64.0.2:4000 → 198.18.0.2:5001 > 10.42.0.2:4000, conntrack ESTABLISHED",
			"router: route: destination in 10.42.0.0/24, directly connected network blue; TTL 64 → 63",
			"neighbour: next hop 10.42.0.2 is at 02:42:0a:2a:00:02",
			"port-tx: would be written to port p0",
		}},
		{"publish of a new connection", "uplink:up0", "ip src 198.18.0.7 dst 100.64.0.2 tcp sport 50000 dport 8080", []string{
			"uplink-rx: read from uplink up0",
			"nat: publish (DNAT) on uplink up0, inbound: tcp 198.18.0.7:50000 > 100.64.0.2:8080 → 198.18.0.7:50000 > 10.43.0.2:80, a new connection: would get a conntrack entry (NEW (SYN_SENT))",
			"router: route: destination in 10.43.0.0/24, directly connected network red; TTL 64 → 63",
			"neighbour: next hop 10.43.0.2 is at 02:42:0a:2b:00:02",
			"port-tx: would be written to port p1",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := eng.Inject(InjectSpec{In: tc.in, Packet: tc.packet})
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, s := range tp.Steps {
				lines = append(lines, s.Stage+": "+s.Decision)
			}
			if !reflect.DeepEqual(lines, tc.want) {
				t.Errorf("story:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	if after := gwSnapshot(t, eng, tbl, now); !reflect.DeepEqual(after, before) {
		t.Fatalf("what-ifs changed the node:\nbefore %+v\nafter  %+v", before, after)
	}
}
