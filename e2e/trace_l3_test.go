package e2e

import (
	"bytes"
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
)

// capturePoint runs `ferry pcap --point point --filter filter --count n`
// against f while send is called every 100 ms, and returns the pcapng
// file once the capture has its n packets.
func capturePoint(t *testing.T, f *ferryd, point, filter string, n int, send func()) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), strings.ReplaceAll(point, ":", "_")+".pcapng")
	cmd := exec.Command(ferryBin, "--socket", f.socket, "pcap", "--point", point, "--filter", filter, "--count", strconv.Itoa(n), "-w", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for i := 0; ; i++ {
		send()
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("ferry pcap --point %s: %v: %s", point, err, out.String())
			}
			return file
		case <-time.After(100 * time.Millisecond):
			if i == 50 {
				cmd.Process.Kill()
				t.Fatalf("ferry pcap --point %s did not finish: %s", point, out.String())
			}
		}
	}
}

// readPcap returns the link type and packets of a pcapng file.
func readPcap(t *testing.T, file string) (layers.LinkType, [][]byte) {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	rd, err := pcapgo.NewNgReader(fh, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	for {
		data, _, err := rd.ReadPacketData()
		if err != nil {
			break
		}
		pkts = append(pkts, data)
	}
	return rd.LinkType(), pkts
}

// steps returns the "stage: decision" lines of a traced packet.
func steps(tp dataplane.TracePacket) string {
	var b strings.Builder
	for _, s := range tp.Steps {
		b.WriteString(s.Stage + ": " + s.Decision + "\n")
	}
	return b.String()
}

// TestE2ETraceL3Masquerade: a container's ping to the outside, traced
// across the gateway, shows the route out of the uplink with the TTL, the
// masquerade rewrite from the container's address to the nat_address with
// conntrack NEW, and its reply translated back and routed to the
// container's MAC; pcaps at pre-nat and post-nat hold the packet before and
// after; ferry conntrack delete removes exactly the flow named.
func TestE2ETraceL3Masquerade(t *testing.T) {
	tp := newNATTopology(t, "192.168.91.0/24", "")
	mustPing(t, tp.c1, "10.42.0.1") // teach the gateway c1's address

	if out, err := tp.f.ctl("trace", "start", "--count", "2", "--filter", "icmp and host 198.18.0.2"); err != nil {
		t.Fatalf("trace start: %v\n%s", err, out)
	}
	mustPing(t, tp.c1, "198.18.0.2")
	var pkts []dataplane.TracePacket
	tp.f.ctlJSON(t, &pkts, "trace", "show")
	if len(pkts) != 2 {
		t.Fatalf("traced %d packets, want the echo request and its reply: %+v", len(pkts), pkts)
	}
	var conns []dataplane.ConnInfo
	tp.f.ctlJSON(t, &conns, "conntrack")
	if len(conns) == 0 {
		t.Fatal("no tracked connection after the ping")
	}
	up := conns[0].Uplink
	req, rep := steps(pkts[0]), steps(pkts[1])
	for _, want := range []string{
		"bridge: destination MAC is the gateway of network blue: to the router\n",
		"router: route: destination in no local network, default route out of uplink " + up + "; TTL 64 → 63\n",
		"nat: masquerade (SNAT) on uplink " + up + ", outbound: icmp 10.42.0.2 > 198.18.0.2 id ",
		" → 100.64.0.2 > 198.18.0.2 id ",
		", conntrack NEW\n",
		"uplink-tx: written to uplink " + up + "\n",
	} {
		if !strings.Contains(req, want) {
			t.Errorf("echo request trace lacks %q:\n%s", want, req)
		}
	}
	for _, want := range []string{
		"uplink-rx: read from uplink " + up + "\n",
		"nat: reply of a masqueraded connection, translated back on uplink " + up + ", inbound: icmp 198.18.0.2 > 100.64.0.2 id ",
		", conntrack ESTABLISHED\n",
		"router: route: destination in 10.42.0.0/24, directly connected network blue; TTL 63 → 62\n",
		"neighbour: next hop 10.42.0.2 is at 02:42:0a:2a:00:02\n",
		"port-tx: written to port ",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("echo reply trace lacks %q:\n%s", want, rep)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	var paths []dataplane.TracePath
	tp.f.ctlJSON(t, &paths, "trace", "paths")
	if len(paths) != 2 || paths[0].Packets != 1 || paths[1].Packets != 1 ||
		paths[0].Path+"|"+paths[1].Path != "port-rx > ethernet-input > bridge > router > nat > uplink-tx|uplink-rx > nat > router > neighbour > port-tx" {
		t.Errorf("trace paths = %+v", paths)
	}

	ping := func() { rawPing(tp.c1, tp.outsideA, 0x5151, 1, 1) }
	for _, tc := range []struct{ point, src, dst string }{
		{"pre-nat", "10.42.0.2", "198.18.0.2"},
		{"post-nat", natAddr, "198.18.0.2"},
	} {
		file := capturePoint(t, tp.f, tc.point, "icmp and dst host 198.18.0.2", 1, ping)
		lt, got := readPcap(t, file)
		if lt != layers.LinkTypeRaw || len(got) != 1 {
			t.Fatalf("%s: link type %v, %d packets; want RAW and 1", tc.point, lt, len(got))
		}
		ip, _ := gopacket.NewPacket(got[0], layers.LayerTypeIPv4, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || ip.SrcIP.String() != tc.src || ip.DstIP.String() != tc.dst || ip.TTL != 63 {
			t.Errorf("%s: %v, want IPv4 %s > %s ttl 63", tc.point, ip, tc.src, tc.dst)
		}
		if _, err := exec.LookPath("tcpdump"); err == nil {
			out, err := exec.Command("tcpdump", "-n", "-r", file).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "link-type RAW") || !strings.Contains(string(out), "IP "+tc.src+" > "+tc.dst+": ICMP echo request") {
				t.Errorf("tcpdump -r %s: %v\n%s", tc.point, err, out)
			}
		}
	}

	// Two UDP flows; delete names one of them.
	for _, port := range []string{"7001", "7002"} {
		c := udpDial(t, tp.c1, "198.18.0.2:"+port)
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	count := func(dport string) int {
		var cs []dataplane.ConnInfo
		tp.f.ctlJSON(t, &cs, "conntrack")
		n := 0
		for _, c := range cs {
			if strings.HasPrefix(c.Text, "udp ") && strings.Contains(c.Text, "src=10.42.0.2 dst=198.18.0.2") && strings.Contains(c.Text, "dport="+dport+" ") {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for (count("7001") != 1 || count("7002") != 1) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if a, b := count("7001"), count("7002"); a != 1 || b != 1 {
		t.Fatalf("before delete: %d flows to port 7001 and %d to 7002, want 1 and 1", a, b)
	}
	out, err := tp.f.ctl("conntrack", "delete", "--proto", "udp", "--src", "10.42.0.2", "--dst", "198.18.0.2", "--dport", "7001")
	if err != nil || out != "deleted 1 connections\n" {
		t.Fatalf("conntrack delete: %v: %q", err, out)
	}
	if a, b := count("7001"), count("7002"); a != 0 || b != 1 {
		t.Errorf("after delete: %d flows to port 7001 and %d to 7002, want 0 and 1", a, b)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--proto", "sctp"}, `ferry: protocol "sctp": want tcp, udp or icmp` + "\n"},
		{[]string{"--src", "10.42.0"}, `ferry: --src "10.42.0": not an IP address` + "\n"},
		{nil, "ferry: no protocol, address or port given: name the connections to delete (or flush them all)\n"},
	} {
		out, err := tp.f.ctl(append([]string{"conntrack", "delete"}, tc.args...)...)
		if err == nil || out != tc.want {
			t.Errorf("conntrack delete %v: %v %q, want a non-zero exit and %q", tc.args, err, out, tc.want)
		}
	}
}
