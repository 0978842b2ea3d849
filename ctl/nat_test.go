//go:build unix

package ctl

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/nat"
)

// TestPublishAndConntrackOverTheSocket drives a real engine with one
// uplink through the client: list, add, replace and delete published
// ports, list and flush conntrack, and the errors.
func TestPublishAndConntrackOverTheSocket(t *testing.T) {
	eng, _ := natEngine(t)
	c := serveEngine(t, eng)
	ctx := testContext(t)

	d, err := c.AddPublish(ctx, PublishRequest{Proto: "tcp", Port: 8080, To: "10.42.0.2:80"})
	if err != nil || d.Message != "tcp 8080 of uplink up0 published to 10.42.0.2:80; 0 connections of the old rule ended" {
		t.Fatalf("add: %+v %v", d, err)
	}
	ps, err := c.Published(ctx)
	want := dataplane.PublishInfo{Uplink: "up0", Proto: "tcp", Port: 8080, To: netip.MustParseAddrPort("10.42.0.2:80")}
	if err != nil || len(ps) != 1 || ps[0] != want {
		t.Fatalf("published = %+v %v, want [%+v]", ps, err, want)
	}
	for _, tc := range []struct {
		name string
		req  PublishRequest
		add  bool
		want string
	}{
		{"bad proto", PublishRequest{Proto: "sctp", Port: 1, To: "10.42.0.2:1"}, true, `protocol "sctp": want tcp or udp`},
		{"bad target", PublishRequest{Proto: "tcp", Port: 1, To: "10.42.0.2"}, true, `to "10.42.0.2": not an ADDRESS:PORT`},
		{"unknown uplink", PublishRequest{Uplink: "nope", Proto: "tcp", Port: 1, To: "10.42.0.2:1"}, true, `no uplink "nope"`},
		{"delete what is not published", PublishRequest{Proto: "udp", Port: 53}, false, `udp port 53 is not published`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.add {
				_, err = c.AddPublish(ctx, tc.req)
			} else {
				_, err = c.DeletePublish(ctx, tc.req)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	d, err = c.DeletePublish(ctx, PublishRequest{Proto: "tcp", Port: 8080})
	if err != nil || d.Message != "tcp 8080 of uplink up0 unpublished; 0 connections ended" {
		t.Fatalf("del: %+v %v", d, err)
	}
	if ps, _ := c.Published(ctx); len(ps) != 0 {
		t.Fatalf("published after del = %+v", ps)
	}
	cs, err := c.Conntrack(ctx, "")
	if err != nil || len(cs) != 0 {
		t.Fatalf("conntrack = %+v %v", cs, err)
	}
	f, err := c.FlushConntrack(ctx, "up0")
	if err != nil || f.Removed != 0 {
		t.Fatalf("flush = %+v %v", f, err)
	}
	if _, err := c.FlushConntrack(ctx, "nope"); err == nil || !strings.Contains(err.Error(), `no uplink "nope"`) {
		t.Fatalf("flush of an unknown uplink: %v", err)
	}
}

// udpOut builds an outbound IPv4/UDP packet from src:sport to dst:dport.
func udpOut(t *testing.T, src, dst string, sport, dport uint16) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload("x")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestConntrackDeleteOverTheSocket opens four masqueraded UDP flows and
// deletes them by tuple through the client: each request removes exactly
// the flows it names; bad requests are one-line errors.
func TestConntrackDeleteOverTheSocket(t *testing.T) {
	eng, tbl := natEngine(t)
	pkts := [][]byte{
		udpOut(t, "10.42.0.2", "198.18.0.2", 1000, 53),
		udpOut(t, "10.42.0.2", "198.18.0.2", 1001, 53),
		udpOut(t, "10.42.0.3", "198.18.0.2", 1000, 53),
		udpOut(t, "10.42.0.3", "198.18.0.9", 1000, 123),
	}
	verd := make([]nat.Verdict, len(pkts))
	dirs := []nat.Dir{nat.Outbound, nat.Outbound, nat.Outbound, nat.Outbound}
	tbl.Process(1, pkts, dirs, verd)
	for i, v := range verd {
		if v != nat.Translated {
			t.Fatalf("packet %d: verdict %s", i, v)
		}
	}
	c := serveEngine(t, eng)
	ctx := testContext(t)

	for _, tc := range []struct {
		name    string
		req     ConntrackDeleteRequest
		deleted int
		left    int
	}{
		{"one flow by its whole tuple", ConntrackDeleteRequest{ConntrackFilter: dataplane.ConntrackFilter{Proto: "udp",
			Src: netip.MustParseAddr("10.42.0.2"), Dst: netip.MustParseAddr("198.18.0.2"), Sport: 1001, Dport: 53}}, 1, 3},
		{"no flow matches", ConntrackDeleteRequest{ConntrackFilter: dataplane.ConntrackFilter{Proto: "tcp"}}, 0, 3},
		{"by destination port", ConntrackDeleteRequest{Uplink: "up0", ConntrackFilter: dataplane.ConntrackFilter{Dport: 123}}, 1, 2},
		{"by destination address", ConntrackDeleteRequest{ConntrackFilter: dataplane.ConntrackFilter{Dst: netip.MustParseAddr("198.18.0.2")}}, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := c.DeleteConntrack(ctx, tc.req)
			if err != nil || f.Removed != tc.deleted {
				t.Fatalf("delete = %+v %v, want %d removed", f, err, tc.deleted)
			}
			if cs, err := c.Conntrack(ctx, ""); err != nil || len(cs) != tc.left {
				t.Fatalf("conntrack after delete = %+v %v, want %d flows", cs, err, tc.left)
			}
		})
	}
	for _, tc := range []struct {
		name string
		req  ConntrackDeleteRequest
		want string
	}{
		{"nothing named", ConntrackDeleteRequest{}, "no protocol, address or port given"},
		{"bad protocol", ConntrackDeleteRequest{ConntrackFilter: dataplane.ConntrackFilter{Proto: "sctp"}}, `protocol "sctp": want tcp, udp or icmp`},
		{"icmp with ports", ConntrackDeleteRequest{ConntrackFilter: dataplane.ConntrackFilter{Proto: "icmp", Dport: 1}}, "icmp connections have no ports"},
		{"IPv6 address", ConntrackDeleteRequest{ConntrackFilter: dataplane.ConntrackFilter{Src: netip.MustParseAddr("fd00::1")}}, "IPv4 connections only"},
		{"unknown uplink", ConntrackDeleteRequest{Uplink: "nope", ConntrackFilter: dataplane.ConntrackFilter{Proto: "udp"}}, `no uplink "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.DeleteConntrack(ctx, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line containing %q", err, tc.want)
			}
		})
	}
}

// natEngine returns an engine with one gateway network, blue
// (10.42.0.0/24), masqueraded by uplink up0 as 100.64.0.2, and up0's NAT
// table.
func natEngine(t *testing.T) (*dataplane.Engine, *nat.Table) {
	t.Helper()
	eng, err := dataplane.NewEngine([]dataplane.NetworkSpec{{
		Name: "blue", VNI: 42, MTU: 1450, Ports: []string{"p0"},
		Gateway: netip.MustParseAddr("10.42.0.1"), Subnet: netip.MustParsePrefix("10.42.0.0/24"),
	}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := nat.New(nat.Options{NATAddr: netip.MustParseAddr("100.64.0.2"), MaxEntries: 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.SetUplinks([]dataplane.UplinkSpec{{Name: "up0", NAT: tbl, Networks: []string{"blue"}}}); err != nil {
		t.Fatal(err)
	}
	return eng, tbl
}
