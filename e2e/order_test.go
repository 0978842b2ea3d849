package e2e

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// TestE2ETCPStaysInOrder: TCP connections between two ferry hosts with two
// workers each arrive in order. Every worker sends from the same outer
// source ports, so a connection's datagrams reach one worker of the peer
// whichever worker sent them, and both directions stay on one worker per
// host. When each worker had ports of its own, a connection could keep
// moving between the workers, and each move put its segments on both at
// once: the sender saw reordering (TCPSACKReorder) and retransmitted
// segments the receiver already had (TCPDSACKRecvSegs), thousands of them
// in a few of these transfers. Eight connections (new ports, new flow
// hashes each) of 200 MB: after each, one worker of each host must have
// received at least 99 % of its packets (`ferry runtime --per-worker`),
// and over all eight the sending container's TCP must have seen at most
// 20 reorderings. Needless retransmissions are logged, not judged: a
// spurious timeout or loss probe on a loaded machine makes hundreds of
// them without any reordering. Retransmissions of lost segments are not
// counted against the path either: with offloads off the container's TAP
// queue overflows now and then (the kernel drops there rather than wait
// for ferry), which is loss, not reordering.
func TestE2ETCPStaysInOrder(t *testing.T) {
	p := newFerryPair(t, "192.168.77.0/24", "10.42.0.4", nil)
	c1, c2, f1, f2 := p.c1, p.c2, p.f1, p.f2
	mustPing(t, c1, "10.42.0.4")

	before := tcpCounters(t, c1)
	for range 8 {
		for _, f := range []*ferryd{f1, f2} {
			f.clearRuntime(t)
		}
		transfer(t, c1, c2, "10.42.0.4", 200<<20)
		for _, f := range []*ferryd{f1, f2} {
			oneWorker(t, f)
		}
	}
	after := tcpCounters(t, c1)
	d := func(k string) int64 { return after[k] - before[k] }
	sent, retrans := d("Tcp.OutSegs"), d("Tcp.RetransSegs")
	reorder, dup := d("TcpExt.TCPSACKReorder"), d("TcpExt.TCPDSACKRecvSegs")
	t.Logf("sender: %d segments, %d retransmitted, %d reorderings seen, %d retransmitted segments the receiver already had; %d timeouts (%d spurious), %d loss probes",
		sent, retrans, reorder, dup, d("TcpExt.TCPTimeouts"), d("TcpExt.TCPSpuriousRTOs"), d("TcpExt.TCPLossProbes"))
	if sent < 8*200<<20/65536 {
		t.Fatalf("sender counted %d segments for 1600 MB: counters not read from the container", sent)
	}
	if reorder > 20 {
		t.Errorf("the path reorders: the sender saw %d reorderings and retransmitted %d segments needlessly", reorder, dup)
	}
}

// oneWorker fails the test unless one worker of daemon f carried at least
// 99 % of the packets its ports and tunnels received since the last
// runtime clear: one connection's traffic, both directions, on one worker.
func oneWorker(t *testing.T, f *ferryd) {
	t.Helper()
	var ws []dataplane.WorkerStats
	f.ctlJSON(t, &ws, "runtime", "--per-worker")
	var total, most uint64
	per := map[int]uint64{}
	for _, w := range ws {
		for _, st := range w.Stages {
			if st.Stage == "port-rx" || st.Stage == "tunnel-rx" {
				per[w.Worker] += st.Packets
				total += st.Packets
			}
		}
		most = max(most, per[w.Worker])
	}
	if total == 0 || most*100 < total*99 {
		t.Errorf("ferry on %s: packets received by worker %v of %d: one connection spread over its workers", f.host.Name, per, total)
	}
}

// tcpCounters returns the TCP counters of namespace ns (/proc/net/snmp
// and /proc/net/netstat, as "Tcp.RetransSegs", "TcpExt.TCPSACKReorder").
func tcpCounters(t *testing.T, ns *nstest.NS) map[string]int64 {
	t.Helper()
	out, err := ns.Exec(t, 5*time.Second, "cat", "/proc/net/snmp", "/proc/net/netstat")
	if err != nil {
		t.Fatalf("read TCP counters in %s: %v %s", ns, err, out)
	}
	m := map[string]int64{}
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || (f[0] != "Tcp:" && f[0] != "TcpExt:") {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			names = f // a header line; the values follow
			continue
		}
		for i := 1; i < len(f) && i < len(names); i++ {
			v, err := strconv.ParseInt(f[i], 10, 64)
			if err == nil {
				m[strings.TrimSuffix(f[0], ":")+"."+names[i]] = v
			}
		}
	}
	if _, ok := m["Tcp.RetransSegs"]; !ok {
		t.Fatalf("no Tcp.RetransSegs in %s's counters", ns)
	}
	if _, ok := m["TcpExt.TCPSACKReorder"]; !ok {
		t.Fatalf("no TcpExt.TCPSACKReorder in %s's counters", ns)
	}
	return m
}
