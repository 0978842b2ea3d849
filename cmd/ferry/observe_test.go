package main

import (
	"bytes"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/dataplane"
)

// startEngine serves a real in-memory engine (network blue, VNI 42, ports
// p0 and p1, peer 192.0.2.1) and returns the socket, the engine and a
// worker with a fake port p0 to feed.
func startEngine(t *testing.T) (string, *dataplane.Engine, *dataplane.Worker, *dataplane.MemPort) {
	t.Helper()
	eng, err := dataplane.NewEngine([]dataplane.NetworkSpec{{
		Name: "blue", VNI: 42, MTU: 1450, Ports: []string{"p0", "p1"}, Peers: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
	}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := eng.NewWorker(0, 256, 2048)
	p0 := &dataplane.MemPort{}
	w.SetPort(0, p0)
	w.SetPort(1, &dataplane.MemPort{})
	w.SetTunnel(&dataplane.MemTunnel{})
	dir, err := os.MkdirTemp("", "ferrycli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "f.sock")
	ln, err := ctl.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ctl.NewServer(eng, testInfo), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return path, eng, w, p0
}

func mustFerry(t *testing.T, args ...string) string {
	t.Helper()
	out, err := ferry(t, args...)
	if err != nil {
		t.Fatalf("ferry %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestFDBAndPeerCommands(t *testing.T) {
	sock, eng, _, _ := startEngine(t)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"fdb", "add", "blue", "02:00:00:00:00:09", "--port", "p1"}, "static entry 02:00:00:00:00:09 at port p1 added to network blue\n"},
		{[]string{"fdb", "del", "blue", "02:00:00:00:00:09"}, "entry 02:00:00:00:00:09 removed from network blue\n"},
		{[]string{"fdb", "flush"}, "removed 0 learned entries\n"},
		{[]string{"peer", "add", "blue", "192.0.2.7"}, "peer 192.0.2.7 added to network blue\n"},
		{[]string{"peer", "del", "blue", "192.0.2.1"}, "peer 192.0.2.1 removed from network blue; its FDB entries were flushed\n"},
	}
	for _, s := range steps {
		if got := mustFerry(t, append([]string{"--socket", sock}, s.args...)...); got != s.want {
			t.Errorf("ferry %s printed %q, want %q", strings.Join(s.args, " "), got, s.want)
		}
	}
	peers := eng.Peers()
	if len(peers) != 1 || peers[0].Address.String() != "192.0.2.7" {
		t.Fatalf("peers = %+v", peers)
	}
}

func TestTraceCommands(t *testing.T) {
	sock, _, w, p0 := startEngine(t)
	out := mustFerry(t, "--socket", sock, "trace", "start", "--count", "1", "--filter", "icmp")
	if !strings.Contains(out, "trace:   running") || !strings.Contains(out, "traced:  0 of 1 packets") {
		t.Fatalf("trace start printed:\n%s", out)
	}
	f, err := dataplane.BuildFrame("eth src 02:00:00:00:00:0a ip src 10.0.0.1 dst 10.0.0.2 icmp")
	if err != nil {
		t.Fatal(err)
	}
	p0.Queue(f, f)
	w.PollPort(0)
	out = mustFerry(t, "--socket", sock, "trace", "show")
	for _, want := range []string{
		"Packet 1, worker 0,",
		"port-rx         read from port p0: 02:00:00:00:00:0a > ff:ff:ff:ff:ff:ff, IPv4 10.0.0.1 > 10.0.0.2 ICMP echo request id 1 ttl 64, length 28",
		"flood           flooded to 1 ports and 1 peers",
		"tunnel-tx       sent to peer 192.0.2.1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("trace show lacks %q:\n%s", want, out)
		}
	}
	if got := fields(mustFerry(t, "--socket", sock, "trace", "paths")); len(got) != 2 || got[1][0] != "1" || strings.Join(got[1][1:], " ") != "port-rx > ethernet-input > bridge > flood > port-tx > vxlan-encap > tunnel-tx" {
		t.Fatalf("trace paths = %q", got)
	}
	out = mustFerry(t, "--socket", sock, "trace", "inject", "--in", "p1", "eth", "dst", "02:00:00:00:00:0a", "ip", "src", "10.0.0.2", "dst", "10.0.0.1", "udp")
	if !strings.Contains(out, "What-if packet (dry run: nothing sent, learned or counted)") || !strings.Contains(out, "would be written to port p0") {
		t.Fatalf("inject printed:\n%s", out)
	}
	mustFerry(t, "--socket", sock, "trace", "stop")
	if out := mustFerry(t, "--socket", sock, "trace", "clear"); !strings.Contains(out, "traced:  0 of 1 packets") {
		t.Fatalf("trace clear printed:\n%s", out)
	}
}

func TestPcapCommandWritesAFile(t *testing.T) {
	sock, _, w, p0 := startEngine(t)
	f, err := dataplane.BuildFrame("eth src 02:00:00:00:00:0a ip src 10.0.0.1 dst 10.0.0.2 udp dport 9 payload 50")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				p0.Queue(f)
				w.PollPort(0)
			}
		}
	}()
	file := filepath.Join(t.TempDir(), "c.pcapng")
	out := mustFerry(t, "--socket", sock, "pcap", "--point", "rx:p0", "--count", "3", "-w", file)
	close(stop)
	<-done
	if out != "3 packets captured\n" {
		t.Fatalf("pcap printed %q", out)
	}
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := pcapgo.NewNgReader(fh, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		data, _, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(data, f) {
			t.Fatalf("packet %d = %x, want the frame sent", i, data)
		}
		if gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeUDP) == nil {
			t.Fatal("no UDP layer")
		}
	}
}

func TestHelpIsComplete(t *testing.T) {
	for _, c := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"--help"}, []string{"status", "ports", "peers", "peer ", "fdb", "runtime", "errors", "trace", "pcap", "version", "run"}},
		{[]string{"trace", "--help"}, []string{"start", "show", "paths", "stop", "clear", "inject", "ether host MAC", "vni N"}},
		{[]string{"pcap", "--help"}, []string{"rx:PORT", "tunnel-tx", "drop", "--snaplen", "--duration", "--count", "tcpdump -n -r -"}},
		{[]string{"fdb", "--help"}, []string{"add", "del", "flush"}},
		{[]string{"trace", "inject", "--help"}, []string{"--in", "--vni", "--hex", "arp who-has"}},
	} {
		out := mustFerry(t, c.args...)
		for _, w := range c.wants {
			if !strings.Contains(out, w) {
				t.Errorf("ferry %s lacks %q", strings.Join(c.args, " "), w)
			}
		}
	}
}

func TestControlSocketErrorsAreOneLine(t *testing.T) {
	sock, _, _, _ := startEngine(t)
	stale := filepath.Join(t.TempDir(), "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"stale socket", []string{"--socket", stale, "trace"}, "cannot reach ferry at " + stale + ": stale socket, no daemon listens on it (is `ferry run` running?)"},
		{"bad filter", []string{"--socket", sock, "trace", "start", "--filter", "port x"}, `filter "port x": word 1: port "x": not a number 0-65535: invalid request`},
		{"bad point", []string{"--socket", sock, "pcap", "--point", "rx:zz", "-w", "-"}, `capture point "rx:zz": no port "zz": not found`},
		{"no output", []string{"--socket", sock, "pcap", "--point", "drop"}, "give -w FILE, or -w - for stdout"},
		{"fdb add without location", []string{"--socket", sock, "fdb", "add", "blue", "02:00:00:00:00:01"}, "give exactly one of --port and --peer"},
		{"bad peer", []string{"--socket", sock, "peer", "add", "blue", "nope"}, `peer "nope": not an IP address`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ferry(t, c.args...)
			if err == nil || err.Error() != c.want {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}
