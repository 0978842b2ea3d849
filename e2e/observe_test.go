package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// obsRig is two ferry hosts with one container each, IPv6 off in the
// containers and static neighbour entries, so that the only traffic is
// what a test sends.
type obsRig struct {
	h1, h2 *nstest.Host
	c1, c2 *nstest.NS
	f1, f2 *ferryd
	port1  string
	port2  string
}

func newObsRig(t *testing.T, prefix string) *obsRig {
	nstest.RequireRoot(t)
	r := &obsRig{}
	ul := nstest.NewUnderlay(t, netip.MustParsePrefix(prefix))
	r.h1, r.h2 = ul.AddHost(t, "o1"), ul.AddHost(t, "o2")
	r.c1, r.c2 = nstest.NewNS(t, "oc1"), nstest.NewNS(t, "oc2")
	for _, c := range []*nstest.NS{r.c1, r.c2} {
		c.Sysctl(t, "net.ipv6.conf.all.disable_ipv6", "1")
		c.Sysctl(t, "net.ipv6.conf.default.disable_ipv6", "1")
	}
	r.port1, r.port2 = nstest.Name(t, "to1"), nstest.Name(t, "to2")
	cfg1 := l2Config(r.h1, 42, []netip.Addr{r.h2.Addr}, []portSpec{{r.port1, r.c1.Name, "10.42.0.2/24", macC1a}})
	cfg1 = strings.Replace(cfg1, "listen: \"\"", "listen: \"127.0.0.1:9469\"", 1)
	r.f1 = startFerry(t, r.h1, cfg1)
	r.f2 = startFerry(t, r.h2, l2Config(r.h2, 42, []netip.Addr{r.h1.Addr}, []portSpec{{r.port2, r.c2.Name, "10.42.0.3/24", macC2a}}))
	mustPing(t, r.c1, "10.42.0.3") // both FDBs learn both MACs
	for _, n := range []struct {
		ns      *nstest.NS
		ip, mac string
	}{{r.c1, "10.42.0.3", macC2a}, {r.c2, "10.42.0.2", macC1a}} {
		if out, err := n.ns.Exec(t, 5*time.Second, "ip", "neigh", "replace", n.ip, "lladdr", n.mac, "dev", "eth0", "nud", "permanent"); err != nil {
			t.Fatalf("ip neigh: %v %s", err, out)
		}
	}
	time.Sleep(200 * time.Millisecond) // let the ping's last packets land
	return r
}

// sendUDP sends payloads from c1 to 10.42.0.3:port and returns what c2
// received on that port.
func (r *obsRig) sendUDP(t *testing.T, port int, payloads ...[]byte) int {
	t.Helper()
	var ln *net.UDPConn
	if err := r.c2.Do(func() error {
		var err error
		ln, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 42, 0, 3), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := r.c1.Do(func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 42, 0, 2), Port: 40000}, &net.UDPAddr{IP: net.IPv4(10, 42, 0, 3), Port: port})
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range payloads {
			if _, err := c.Write(p); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := 0
	buf := make([]byte, 2048)
	for got < len(payloads) {
		ln.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := ln.Read(buf); err != nil {
			break
		}
		got++
	}
	return got
}

// scrape fetches h1's /metrics from inside its namespace.
func (r *obsRig) scrape(t *testing.T) map[string]string {
	t.Helper()
	var c net.Conn
	if err := r.h1.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", "127.0.0.1:9469", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for line := range strings.Lines(string(body)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			if i := strings.LastIndexByte(line, ' '); i > 0 {
				m[line[:i]] = line[i+1:]
			}
		}
	}
	return m
}

func stageMap(ss []dataplane.StageStats) map[string]uint64 {
	m := map[string]uint64{}
	for _, s := range ss {
		m[s.Stage] = s.Packets
	}
	return m
}

// TestE2ECountersMatchTrafficSent: after exactly N UDP datagrams of known
// size, `ferry ports`, `ferry peers`, `ferry runtime` and /metrics show
// exactly them on both hosts.
func TestE2ECountersMatchTrafficSent(t *testing.T) {
	r := newObsRig(t, "192.168.83.0/24")
	var p1, p2 []dataplane.PortInfo
	var q1 []dataplane.PeerInfo
	r.f1.ctlJSON(t, &p1, "ports")
	r.f2.ctlJSON(t, &p2, "ports")
	r.f1.ctlJSON(t, &q1, "peers")
	for _, f := range []*ferryd{r.f1, r.f2} {
		f.clearRuntime(t)
	}
	const n, payload = 25, 100
	const frameLen = 14 + 20 + 8 + payload
	var ps [][]byte
	for i := range n {
		ps = append(ps, bytes.Repeat([]byte{byte(i)}, payload))
	}
	if got := r.sendUDP(t, 9999, ps...); got != n {
		t.Fatalf("c2 received %d of %d datagrams", got, n)
	}
	var a1, a2 []dataplane.PortInfo
	var b1 []dataplane.PeerInfo
	var s1, s2 []dataplane.StageStats
	r.f1.ctlJSON(t, &a1, "ports")
	r.f2.ctlJSON(t, &a2, "ports")
	r.f1.ctlJSON(t, &b1, "peers")
	r.f1.ctlJSON(t, &s1, "runtime")
	r.f2.ctlJSON(t, &s2, "runtime")
	check := func(what string, got, want uint64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %d, want %d", what, got, want)
		}
	}
	check("h1 port rx packets", a1[0].RxPackets-p1[0].RxPackets, n)
	check("h1 port rx bytes", a1[0].RxBytes-p1[0].RxBytes, n*frameLen)
	check("h1 port tx packets", a1[0].TxPackets-p1[0].TxPackets, 0)
	check("h1 peer tx packets", b1[0].TxPackets-q1[0].TxPackets, n)
	check("h1 peer tx bytes", b1[0].TxBytes-q1[0].TxBytes, n*(frameLen+8))
	check("h1 peer rx packets", b1[0].RxPackets-q1[0].RxPackets, 0)
	check("h2 port tx packets", a2[0].TxPackets-p2[0].TxPackets, n)
	check("h2 port tx bytes", a2[0].TxBytes-p2[0].TxBytes, n*frameLen)
	// The kernel's own counters of each TAP, read in the container's
	// namespace: none of the datagrams was lost before ferry read it or
	// after it wrote it (the counters count since the device was made, so
	// compare with before the traffic).
	for i, pair := range [][2]dataplane.PortInfo{{p1[0], a1[0]}, {p2[0], a2[0]}} {
		before, after := pair[0], pair[1]
		if before.KernelTxDropped == nil || after.KernelTxDropped == nil || after.KernelRxDropped == nil {
			t.Errorf("h%d port %s: no kernel drop counters", i+1, after.Name)
			continue
		}
		check("port "+after.Name+" kernel tx dropped during the traffic", *after.KernelTxDropped-*before.KernelTxDropped, 0)
		check("port "+after.Name+" kernel rx dropped during the traffic", *after.KernelRxDropped-*before.KernelRxDropped, 0)
	}
	want1 := map[string]uint64{"port-rx": n, "ethernet-input": n, "bridge": n, "flood": 0, "port-tx": 0, "vxlan-encap": n, "tunnel-tx": n, "tunnel-rx": 0, "vxlan-decap": 0}
	want2 := map[string]uint64{"port-rx": 0, "ethernet-input": n, "bridge": n, "flood": 0, "port-tx": n, "vxlan-encap": 0, "tunnel-tx": 0, "tunnel-rx": n, "vxlan-decap": n}
	for st, w := range want1 {
		check("h1 runtime "+st, stageMap(s1)[st], w)
	}
	for st, w := range want2 {
		check("h2 runtime "+st, stageMap(s2)[st], w)
	}
	m := r.scrape(t)
	metric := func(name string) string { return m[name] }
	wantMetrics := map[string]string{
		fmt.Sprintf(`ferry_port_rx_packets_total{network="blue",port="%s"}`, r.port1):   fmt.Sprint(a1[0].RxPackets),
		fmt.Sprintf(`ferry_port_rx_bytes_total{network="blue",port="%s"}`, r.port1):     fmt.Sprint(a1[0].RxBytes),
		fmt.Sprintf(`ferry_peer_tx_packets_total{network="blue",peer="%s"}`, r.h2.Addr): fmt.Sprint(b1[0].TxPackets),
		`ferry_stage_packets_total{stage="port-rx"}`:                                    fmt.Sprint(n),
		`ferry_stage_packets_total{stage="tunnel-tx"}`:                                  fmt.Sprint(n),
	}
	// The kernel's counter is exported too; it may only have grown since
	// `ferry ports` read it.
	kname := fmt.Sprintf(`ferry_port_kernel_drops_total{direction="tx",network="blue",port="%s"}`, r.port1)
	if got, err := strconv.ParseUint(metric(kname), 10, 64); err != nil || a1[0].KernelTxDropped == nil || got < *a1[0].KernelTxDropped {
		t.Errorf("/metrics %s = %q, want at least what ferry ports said", kname, metric(kname))
	}
	for name, want := range wantMetrics {
		if got := metric(name); got != want {
			t.Errorf("/metrics %s = %q, want %s", name, got, want)
		}
	}
}

// TestE2ETraceAndInject: a trace of one ping shows the request leaving by
// the tunnel and the reply arriving at the port, with every decision; a
// what-if inject to an unknown MAC is flooded, to a known one names the peer.
func TestE2ETraceAndInject(t *testing.T) {
	r := newObsRig(t, "192.168.84.0/24")
	if out, err := r.f1.ctl("trace", "start", "--count", "2", "--filter", "icmp and host 10.42.0.3"); err != nil {
		t.Fatalf("trace start: %v %s", err, out)
	}
	mustPing(t, r.c1, "10.42.0.3")
	var pkts []dataplane.TracePacket
	r.f1.ctlJSON(t, &pkts, "trace", "show")
	if len(pkts) != 2 {
		t.Fatalf("traced %d packets, want the echo request and reply", len(pkts))
	}
	want := []struct {
		path  string
		steps map[string]string
	}{
		{"port-rx > ethernet-input > bridge > vxlan-encap > tunnel-tx", map[string]string{
			"port-rx":        "read from port " + r.port1 + ": " + macC1a + " > " + macC2a + ", IPv4 10.42.0.2 > 10.42.0.3 ICMP echo request",
			"ethernet-input": "network blue (VNI 42)",
			"bridge":         "FDB hit: destination MAC is behind peer " + r.h2.Addr.String(),
			"vxlan-encap":    "VXLAN header, VNI 42",
			"tunnel-tx":      "sent to peer " + r.h2.Addr.String() + " from UDP source port ",
		}},
		{"tunnel-rx > vxlan-decap > ethernet-input > bridge > port-tx", map[string]string{
			"tunnel-rx":   "datagram from peer " + r.h2.Addr.String() + ": " + macC2a + " > " + macC1a + ", IPv4 10.42.0.3 > 10.42.0.2 ICMP echo reply",
			"vxlan-decap": "VXLAN VNI 42 from peer " + r.h2.Addr.String() + ": network blue",
			"bridge":      "FDB hit: destination MAC is at port " + r.port1,
			"port-tx":     "written to port " + r.port1,
		}},
	}
	for i, w := range want {
		if pkts[i].Path != w.path {
			t.Errorf("packet %d path %q, want %q", i, pkts[i].Path, w.path)
		}
		for _, s := range pkts[i].Steps {
			if prefix, ok := w.steps[s.Stage]; ok && !strings.HasPrefix(s.Decision, prefix) {
				t.Errorf("packet %d %s: %q, want it to start with %q", i, s.Stage, s.Decision, prefix)
			}
		}
	}
	out, err := r.f1.ctl("trace", "show")
	if err != nil || !strings.Contains(out, "Packet 1, worker ") {
		t.Fatalf("trace show table: %v\n%s", err, out)
	}
	t.Logf("trace show:\n%s", out)

	inject := func(dst string) dataplane.TracePacket {
		var tp dataplane.TracePacket
		r.f1.ctlJSON(t, &tp, "trace", "inject", "--in", r.port1, "eth src "+macC1a+" dst "+dst+" ip src 10.42.0.2 dst 10.42.0.9 tcp dport 80")
		return tp
	}
	var fdbBefore []dataplane.FDBEntry
	r.f1.ctlJSON(t, &fdbBefore, "fdb")
	unknown := inject("02:42:0a:2a:00:99")
	known := inject(macC2a)
	decisions := func(tp dataplane.TracePacket) string {
		var b strings.Builder
		for _, s := range tp.Steps {
			fmt.Fprintf(&b, "%s: %s\n", s.Stage, s.Decision)
		}
		return b.String()
	}
	if d := decisions(unknown); !strings.Contains(d, "bridge: FDB miss: unknown destination MAC, flood\nflood: would be flooded to 0 ports and 1 peers\n") ||
		!strings.Contains(d, "tunnel-tx: would be sent to peer "+r.h2.Addr.String()) {
		t.Errorf("inject to an unknown MAC:\n%s", d)
	}
	if d := decisions(known); !strings.Contains(d, "bridge: FDB hit: destination MAC is behind peer "+r.h2.Addr.String()+"\n") ||
		strings.Contains(d, "flood") || !strings.Contains(d, "tunnel-tx: would be sent to peer "+r.h2.Addr.String()) {
		t.Errorf("inject to a known MAC:\n%s", d)
	}
	var fdbAfter []dataplane.FDBEntry
	r.f1.ctlJSON(t, &fdbAfter, "fdb")
	if len(fdbAfter) != len(fdbBefore) {
		t.Errorf("inject changed the FDB: %d entries before, %d after", len(fdbBefore), len(fdbAfter))
	}
}

// TestE2EPcapTunnelTx: a capture at tunnel-tx reads back, with gopacket and
// with tcpdump, as VXLAN VNI 42 carrying the datagrams sent; `-w -` streams
// into tcpdump live; a malformed datagram is counted under its reason and
// captured at the drop point with the reason in its comment.
func TestE2EPcapTunnelTx(t *testing.T) {
	r := newObsRig(t, "192.168.85.0/24")
	file := filepath.Join(t.TempDir(), "tx.pcapng")
	pcap := exec.Command(ferryBin, "--socket", r.f1.socket, "pcap", "--point", "tunnel-tx:"+r.h2.Addr.String(), "--filter", "udp and dst port 9999", "--count", "3", "-w", file)
	var pcapOut bytes.Buffer
	pcap.Stdout, pcap.Stderr = &pcapOut, &pcapOut
	if err := pcap.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- pcap.Wait() }()
	payload := func(i int) []byte { return []byte(fmt.Sprintf("ferry-pcap-%03d-%s", i, strings.Repeat("x", 40))) }
	sent := map[string]bool{}
	var done error
	for i := 0; ; i++ {
		r.sendUDP(t, 9999, payload(i))
		sent[string(payload(i))] = true
		select {
		case done = <-exited:
		case <-time.After(100 * time.Millisecond):
			if i < 100 {
				continue
			}
			pcap.Process.Kill()
			t.Fatalf("pcap did not finish after %d datagrams: %s", i+1, pcapOut.String())
		}
		break
	}
	if done != nil || pcapOut.String() != "3 packets captured\n" {
		t.Fatalf("pcap: %v: %q", done, pcapOut.String())
	}
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	rd, err := pcapgo.NewNgReader(fh, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		data, _, err := rd.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		vx, _ := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if ip == nil || vx == nil {
			t.Fatalf("packet %d is not IPv4/UDP/VXLAN: %v", i, pkt)
		}
		inner := gopacket.NewPacket(vx.Payload, layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := inner.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		udp, _ := inner.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip.SrcIP.String() != r.h1.Addr.String() || ip.DstIP.String() != r.h2.Addr.String() || vx.VNI != 42 ||
			eth == nil || eth.SrcMAC.String() != macC1a || eth.DstMAC.String() != macC2a || udp == nil || udp.DstPort != 9999 || !sent[string(udp.Payload)] {
			t.Fatalf("packet %d: outer %s > %s VNI %d, inner %v", i, ip.SrcIP, ip.DstIP, vx.VNI, inner)
		}
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed (apt-get install tcpdump): skipping the tcpdump read-back")
	}
	td, err := exec.Command("tcpdump", "-n", "-r", file).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, td)
	}
	wantTD := fmt.Sprintf("%s.", r.h1.Addr)
	if n := strings.Count(string(td), "VXLAN, flags [I] (0x08), vni 42"); n != 3 || !strings.Contains(string(td), wantTD) || strings.Count(string(td), "10.42.0.2.40000 > 10.42.0.3.9999: UDP, length 55") != 3 {
		t.Fatalf("tcpdump -r shows %d VXLAN VNI 42 packets, want 3 of 10.42.0.2.40000 > 10.42.0.3.9999:\n%s", n, td)
	}
	t.Logf("tcpdump -r:\n%s", td)

	// Live: ferry pcap -w - | tcpdump -r -
	live := exec.Command("sh", "-c", fmt.Sprintf("%s --socket %s pcap --point tunnel-tx --filter 'dst port 9998' --count 2 -w - | tcpdump -n -r -", ferryBin, r.f1.socket))
	var liveOut bytes.Buffer
	live.Stdout, live.Stderr = &liveOut, &liveOut
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	liveDone := make(chan error, 1)
	go func() { liveDone <- live.Wait() }()
	for i := 0; ; i++ {
		r.sendUDP(t, 9998, payload(i))
		select {
		case err := <-liveDone:
			if err != nil || strings.Count(liveOut.String(), "> 10.42.0.3.9998: UDP") != 2 {
				t.Fatalf("ferry pcap -w - | tcpdump -r -: %v\n%s", err, liveOut.String())
			}
		case <-time.After(100 * time.Millisecond):
			if i < 100 {
				continue
			}
			live.Process.Kill()
			t.Fatalf("live pcap did not finish: %s", liveOut.String())
		}
		break
	}

	// A malformed datagram: counted under its reason, captured at drop.
	if out, err := r.f1.ctl("errors", "clear"); err != nil {
		t.Fatalf("errors clear: %v %s", err, out)
	}
	dropFile := filepath.Join(t.TempDir(), "drop.pcapng")
	dp := exec.Command(ferryBin, "--socket", r.f1.socket, "pcap", "--point", "drop", "--count", "4", "--duration", "20s", "-w", dropFile)
	if err := dp.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)                                     // the capture is running once the request is served
	bad := append([]byte{0x0c, 0, 0, 0, 0, 0, 42, 0}, make([]byte, 60)...) // reserved flag set
	if err := r.h2.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.h1.Addr, 4789)))
		if err != nil {
			return err
		}
		defer c.Close()
		for range 4 {
			if _, err := c.Write(bad); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := dp.Wait(); err != nil {
		t.Fatalf("drop capture: %v", err)
	}
	var drops []dataplane.DropStats
	r.f1.ctlJSON(t, &drops, "errors")
	if len(drops) != 1 || drops[0].Stage != "vxlan-decap" || drops[0].Reason != "vxlan-bad-flags" || drops[0].Packets != 4 {
		t.Fatalf("errors = %+v, want exactly 4 vxlan-decap vxlan-bad-flags", drops)
	}
	df, err := os.Open(dropFile)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	dr, err := pcapgo.NewNgReader(df, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		data, _, opts, err := dr.ReadPacketDataWithOptions()
		if err != nil {
			t.Fatalf("drop packet %d: %v", i, err)
		}
		// The dropped datagram, behind synthesized outer
		// Ethernet/IPv4/UDP headers (14+20+8 bytes).
		if len(data) != 42+len(bad) || !bytes.Equal(data[42:], bad) || len(opts.Comments) != 1 || !strings.HasPrefix(opts.Comments[0], "dropped at vxlan-decap: vxlan-bad-flags") {
			t.Fatalf("drop packet %d: %x comments %q", i, data, opts.Comments)
		}
	}
}
