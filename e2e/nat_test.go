package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/internal/nstest"
	"golang.org/x/sys/unix"
)

// natTopology is one ferry host with an uplink, an "outside" namespace
// behind the host (198.18.0.2, reached through a veth that the host
// routes to from the uplink), and two containers on blue, which
// masquerades through the uplink.
type natTopology struct {
	f        *ferryd
	host     *nstest.Host
	out      *nstest.NS
	c1, c2   *nstest.NS
	outsideA netip.Addr
}

const natAddr = "100.64.0.2"

func newNATTopology(t *testing.T, subnet string, publish string) *natTopology {
	t.Helper()
	nstest.RequireRoot(t)
	ul := nstest.NewUnderlay(t, netip.MustParsePrefix(subnet))
	h := ul.AddHost(t, "hn")
	out := nstest.NewNS(t, "out")
	vo := nstest.Name(t, "vo")
	nstest.Veth(t, h.NS, vo, out, "eth0")
	h.AddAddr(t, vo, netip.MustParsePrefix("198.18.0.1/24"))
	out.AddAddr(t, "eth0", netip.MustParsePrefix("198.18.0.2/24"))
	out.AddRoute(t, netip.MustParsePrefix("100.64.0.0/30"), netip.MustParseAddr("198.18.0.1"), "")
	h.Sysctl(t, "net.ipv4.ip_forward", "1")
	c1, c2 := nstest.NewNS(t, "n1"), nstest.NewNS(t, "n2")
	up := nstest.Name(t, "up")
	cfg := fmt.Sprintf(`node:
  name: %s
  underlay: %s
  workers: 2
%scontrol:
  socket: SOCKET
metrics:
  listen: ""
uplinks:
  - {name: %s, address: 100.64.0.1/30, nat_address: %s}
networks:
  - name: blue
    vni: 42
    subnet: 10.42.0.0/24
    gateway: 10.42.0.1
    masquerade: %s
%s    ports:
      - {name: %s, netns: %s, ifname: eth0, address: 10.42.0.2/24, mac: "02:42:0a:2a:00:02"}
      - {name: %s, netns: %s, ifname: eth0, address: 10.42.0.3/24, mac: "02:42:0a:2a:00:03"}
`, h.Name, h.Addr, offloadKey(), up, natAddr, up, publish, nstest.Name(t, "t1"), c1.Name, nstest.Name(t, "t2"), c2.Name)
	f := startFerry(t, h, cfg)
	// The control socket answers before the devices exist; wait for them.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(f.logs(), "ferry running"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ferry did not finish starting within 10s\n%s", f.logs())
		}
	}
	return &natTopology{f: f, host: h, out: out, c1: c1, c2: c2, outsideA: netip.MustParseAddr("198.18.0.2")}
}

// serveHTTP runs an HTTP server in ns on addr whose body is the client's
// address as the server saw it.
func serveHTTP(t *testing.T, ns *nstest.NS, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		io.WriteString(w, host)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// nsClient returns an HTTP client whose connections are made in ns.
func nsClient(ns *nstest.NS) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// TestE2EMasqueradeHTTP: a container reaches an HTTP server in the
// outside namespace through masquerade; the server sees the nat_address
// as the client; 200 concurrent connections all complete; the conntrack
// table kept them.
func TestE2EMasqueradeHTTP(t *testing.T) {
	tp := newNATTopology(t, "192.168.82.0/24", "")
	serveHTTP(t, tp.out, "198.18.0.2:8080")
	mustPing(t, tp.c1, "10.42.0.1") // teach the gateway c1's address
	cl := nsClient(tp.c1)
	const conns = 200
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Get("http://198.18.0.2:8080/")
			if err != nil {
				errs <- fmt.Errorf("request %d: %w", i, err)
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || string(body) != natAddr {
				errs <- fmt.Errorf("request %d: status %d body %q err %v, want 200 %q", i, resp.StatusCode, body, err, natAddr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 5 {
			t.Error(err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed\n%s", failed, conns, tp.f.logs())
	}
	// Nothing was dropped by NAT or at the uplink.
	var errs2 []struct {
		Stage, Reason string
		Packets       uint64
	}
	tp.f.ctlJSON(t, &errs2, "errors")
	for _, e := range errs2 {
		if e.Stage == "nat" || strings.HasPrefix(e.Stage, "uplink") {
			t.Errorf("drops at %s/%s: %d, want none", e.Stage, e.Reason, e.Packets)
		}
	}
}

// checkBulkThroughUplink checks a bulk transfer of size bytes through the
// uplink: nothing was dropped on the way, and the uplink stage stage
// carried, with offloads, whole superpackets (fewer than a quarter of the
// MTU-sized packets the bytes make) with nothing cut at gso-segment;
// without, at least one packet per MTU-sized segment.
func (tp *natTopology) checkBulkThroughUplink(t *testing.T, stage string, size int) {
	t.Helper()
	tp.f.checkNoDrops(t, "nat", "router", "gso-segment", "uplink-rx", "uplink-tx", "port-rx", "port-tx", "gateway")
	got := tp.f.stagePackets(t)
	segs := uint64(size / 1448) // MSS at the 1500-byte MTU of the uplink
	if !offloadsOn() {
		if got[stage] < segs {
			t.Errorf("without offloads, %s carried %d packets, want at least %d", stage, got[stage], segs)
		}
		return
	}
	if got[stage] == 0 || got[stage] > segs/4 || got["gso-segment"] != 0 {
		t.Errorf("with offloads, %s carried %d packets and gso-segment cut %d; want superpackets, at most %d, and nothing cut", stage, got[stage], got["gso-segment"], segs/4)
	}
	t.Logf("%s carried %d packets for %d bytes", stage, got[stage], size)
}

// TestE2EMasqueradeTCP: a bulk TCP transfer from a container to the
// outside through masquerade arrives intact (with offloads, the
// container's superpackets are routed, translated and written to the
// uplink whole), and nothing is dropped on the way.
func TestE2EMasqueradeTCP(t *testing.T) {
	tp := newNATTopology(t, "192.168.87.0/24", "")
	mustPing(t, tp.c1, "10.42.0.1")
	transfer(t, tp.c1, tp.out, "198.18.0.2", 32<<20)
	tp.checkBulkThroughUplink(t, "uplink-tx", 32<<20)
}

// TestE2EPublishTCP: a bulk TCP transfer from the outside to a container
// through a published port arrives intact (with offloads, the superpackets
// the host routes into the uplink come in whole, are translated once and
// written whole into the container's TAP), and nothing is dropped on the
// way.
func TestE2EPublishTCP(t *testing.T) {
	tp := newNATTopology(t, "192.168.74.0/24", `    publish:
      - {proto: tcp, port: 5201, to: 10.42.0.2:5201}
`)
	mustPing(t, tp.c1, "10.42.0.1")
	transferVia(t, tp.out, tp.c1, "10.42.0.2", natAddr, 32<<20)
	tp.checkBulkThroughUplink(t, "uplink-rx", 32<<20)
}

// TestE2EMasqueradePing: both containers ping the outside; then both send
// ICMP echo requests with the same identifier to the same outside host at
// once, and each gets its own replies back.
func TestE2EMasqueradePing(t *testing.T) {
	tp := newNATTopology(t, "192.168.83.0/24", "")
	mustPing(t, tp.c1, "198.18.0.2")
	mustPing(t, tp.c2, "198.18.0.2")

	const ident = 0x4242
	type result struct {
		seqs []uint16
		err  error
	}
	res := make([]result, 2)
	var wg sync.WaitGroup
	for i, ns := range []*nstest.NS{tp.c1, tp.c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i].seqs, res[i].err = rawPing(ns, tp.outsideA, ident, uint16(100*(i+1)), 5)
		}()
	}
	wg.Wait()
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("container %d: %v", i+1, r.err)
		}
		want := []uint16{uint16(100 * (i + 1)), uint16(100*(i+1) + 1), uint16(100*(i+1) + 2), uint16(100*(i+1) + 3), uint16(100*(i+1) + 4)}
		if fmt.Sprint(r.seqs) != fmt.Sprint(want) {
			t.Errorf("container %d got echo replies with seqs %v, want %v", i+1, r.seqs, want)
		}
	}
}

// rawPing sends count echo requests with identifier id and sequence numbers
// seq0, seq0+1, ... from a raw socket in ns to dst, 100 ms apart, and
// returns the sequence numbers of the replies with identifier id that came
// back within 3 s, in arrival order.
func rawPing(ns *nstest.NS, dst netip.Addr, id, seq0 uint16, count int) ([]uint16, error) {
	var fd int
	if err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		return err
	}); err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	for i := range count {
		msg := make([]byte, 16)
		msg[0] = header.ICMPv4EchoRequest
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], seq0+uint16(i))
		copy(msg[8:], "ferry-id")
		header.ICMPv4(msg).SetChecksum(header.ICMPv4(msg).CalculateChecksum())
		if err := unix.Sendto(fd, msg, 0, to); err != nil {
			return nil, fmt.Errorf("sendto: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var seqs []uint16
	buf := make([]byte, 1500)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && len(seqs) < count {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // timeout: look at the deadline again
		}
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+8 || buf[ihl] != header.ICMPv4EchoReply || binary.BigEndian.Uint16(buf[ihl+4:]) != id {
			continue
		}
		seqs = append(seqs, binary.BigEndian.Uint16(buf[ihl+6:]))
	}
	return seqs, nil
}

// serveUDPEcho runs a UDP server in ns on addr that answers every datagram
// with "PAYLOAD from CLIENT-ADDRESS at addr".
func serveUDPEcho(t *testing.T, ns *nstest.NS, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(from.String())
			pc.WriteTo([]byte(string(buf[:n])+" from "+host+" at "+addr), from)
		}
	}()
}

// udpDial returns a UDP socket in ns connected to addr; the test closes
// it.
func udpDial(t *testing.T, ns *nstest.NS, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.Dial("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpAsk sends msg on c and returns the first answer, sending up to tries
// times 500 ms apart (the first datagram may be lost to neighbour
// resolution).
func udpAsk(c net.Conn, msg string, tries int) (string, error) {
	buf := make([]byte, 2048)
	var err error
	for range tries {
		if _, err = c.Write([]byte(msg)); err != nil {
			return "", err
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		var n int
		if n, err = c.Read(buf); err == nil {
			return string(buf[:n]), nil
		}
	}
	return "", err
}

// TestE2EPublish: a client in the outside namespace reaches a container's
// HTTP server and a UDP request/response service through ports published
// on the nat_address, and the container sees the client's real address; a
// container reaches its own network's published port through the
// nat_address (hairpin).
func TestE2EPublish(t *testing.T) {
	tp := newNATTopology(t, "192.168.84.0/24", `    publish:
      - {proto: tcp, port: 8080, to: 10.42.0.2:80}
      - {proto: udp, port: 5353, to: 10.42.0.3:53}
`)
	serveHTTP(t, tp.c1, "10.42.0.2:80")
	serveUDPEcho(t, tp.c2, "10.42.0.3:53")
	mustPing(t, tp.c1, "10.42.0.1")
	mustPing(t, tp.c2, "10.42.0.1")

	for _, tc := range []struct {
		name     string
		from     *nstest.NS
		wantPeer string
	}{
		{"outside client", tp.out, "198.18.0.2"},
		{"hairpin from the same network", tp.c2, natAddr},
	} {
		t.Run(tc.name+" tcp", func(t *testing.T) {
			resp, err := nsClient(tc.from).Get("http://" + natAddr + ":8080/")
			if err != nil {
				t.Fatalf("GET through the published port: %v\n%s", err, tp.f.logs())
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != tc.wantPeer {
				t.Errorf("got %d %q, want 200 and the server seeing %s", resp.StatusCode, body, tc.wantPeer)
			}
		})
	}
	// One UDP socket of the outside client keeps its 5-tuple, hence its
	// conntrack entry, through rule changes.
	uc := udpDial(t, tp.out, natAddr+":5353")
	if got, err := udpAsk(uc, "q1", 5); err != nil || got != "q1 from 198.18.0.2 at 10.42.0.3:53" {
		t.Fatalf("UDP through the published port: %q, %v; want the answer of 10.42.0.3 seeing 198.18.0.2", got, err)
	}
	var conns []struct {
		Text string `json:"text"`
	}
	tp.f.ctlJSON(t, &conns, "conntrack")
	udpConns := 0
	for _, c := range conns {
		if strings.HasPrefix(c.Text, "udp ") && strings.Contains(c.Text, "dport=5353") {
			udpConns++
		}
	}
	if udpConns != 1 {
		t.Errorf("ferry conntrack: %d udp entries for port 5353, want 1: %+v", udpConns, conns)
	}

	// Re-publishing the port to another container ends the old flow: the
	// same socket now reaches 10.42.0.2 (Docker's stale-UDP-entry bug
	// would keep sending it to 10.42.0.3).
	serveUDPEcho(t, tp.c1, "10.42.0.2:53")
	if out, err := tp.f.ctl("publish", "add", "udp", "5353", "10.42.0.2:53"); err != nil || !strings.Contains(out, "1 connections of the old rule ended") {
		t.Fatalf("ferry publish add: %v\n%s", err, out)
	}
	if got, err := udpAsk(uc, "q2", 5); err != nil || got != "q2 from 198.18.0.2 at 10.42.0.2:53" {
		t.Fatalf("after re-publishing: %q, %v; want the answer of 10.42.0.2", got, err)
	}
	// Removing the rule ends its flow: nothing answers any more.
	if out, err := tp.f.ctl("publish", "del", "udp", "5353"); err != nil || !strings.Contains(out, "1 connections ended") {
		t.Fatalf("ferry publish del: %v\n%s", err, out)
	}
	if got, err := udpAsk(uc, "q3", 2); err == nil {
		t.Fatalf("after unpublishing, got answer %q", got)
	}
	var pubs []struct{ Proto string }
	tp.f.ctlJSON(t, &pubs, "publish")
	if len(pubs) != 1 || pubs[0].Proto != "tcp" {
		t.Errorf("ferry publish lists %+v, want just the tcp rule", pubs)
	}
}
