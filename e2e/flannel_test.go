package e2e

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// TestE2EFlannelInterop puts a ferry host and a host running flannel's own
// daemon, flanneld with its udp backend, on one network: ferry's
// flannel-UDP against the real thing, in both directions. flannel is not
// something ferry ships or CI installs, so the test runs only when
// FERRY_FLANNELD names a flanneld binary (built from
// github.com/flannel-io/flannel), with etcd and etcdctl on $PATH.
//
// Host 2 runs etcd and flanneld; etcd holds flannel's network config
// (10.244.0.0/16, host 2 pinned to 10.244.2.0/24 by SubnetMin/SubnetMax)
// and host 1's lease, written the way a flannel host writes its own (an
// etcd lease with a TTL, the value flannel's LeaseAttrs JSON), so flanneld
// sends host 1's subnet to host 1's underlay address. Host 1 runs ferry in
// l3 mode over udp with host 2 as the peer owning 10.244.2.0/24. Both hosts
// have a container on a bridge, as flannel's Docker recipe has.
func TestE2EFlannelInterop(t *testing.T) {
	flanneld := os.Getenv("FERRY_FLANNELD")
	if flanneld == "" {
		t.Skip("set FERRY_FLANNELD to a flanneld binary (built from github.com/flannel-io/flannel), with etcd and etcdctl installed, to run ferry against flannel's udp backend")
	}
	nstest.RequireRoot(t)
	for _, tool := range []string{flanneld, "etcd", "etcdctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s: %v (etcd and etcdctl: apt-get install -y etcd-server etcd-client)", tool, err)
		}
	}
	ul := nstest.NewUnderlay(t, netip.MustParsePrefix("192.168.77.0/24"))
	mtu := 1500 - encap.Overhead(encap.EncapUDP, false) // flannel's udp backend: 1472
	a, b := newL3Host(t, ul, 1, mtu), newL3Host(t, ul, 2, mtu)

	dir := t.TempDir()
	endpoint := fmt.Sprintf("http://%s:2379", b.Addr)
	peer := "http://127.0.0.1:2380"
	startBackground(t, b.Host.NS, "etcd", "--name", "e2e", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "e2e="+peer)
	etcdctl := func(args ...string) string {
		t.Helper()
		var out string
		var err error
		deadline := time.Now().Add(15 * time.Second)
		for { // etcd listens before it serves
			out, err = b.Exec(t, 10*time.Second, "etcdctl", append([]string{"--endpoints", endpoint, "--command-timeout", "2s"}, args...)...)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("etcdctl %v: %v\n%s", args, err, out)
		}
		return out
	}
	etcdctl("put", "/coreos.com/network/config",
		`{"Network": "10.244.0.0/16", "SubnetLen": 24, "SubnetMin": "10.244.2.0", "SubnetMax": "10.244.2.0", "Backend": {"Type": "udp"}}`)
	grant := etcdctl("lease", "grant", "3600")
	id := regexp.MustCompile(`lease ([0-9a-f]+) granted`).FindStringSubmatch(grant)
	if id == nil {
		t.Fatalf("etcdctl lease grant said %q", grant)
	}
	etcdctl("put", "--lease="+id[1], "/coreos.com/network/subnets/10.244.1.0-24",
		fmt.Sprintf(`{"PublicIP": %q, "BackendType": "udp"}`, a.Addr))

	subnetFile := filepath.Join(dir, "subnet.env")
	fl := startBackground(t, b.Host.NS, flanneld, "--etcd-endpoints", endpoint, "--iface", b.Addr.String(),
		"--subnet-file", subnetFile, "--ip-masq=false", "--iptables-forward-rules=false")
	deadline := time.Now().Add(15 * time.Second)
	for {
		env, _ := os.ReadFile(subnetFile)
		if strings.Contains(string(env), "FLANNEL_SUBNET=") {
			if !strings.Contains(string(env), "FLANNEL_SUBNET=10.244.2.1/24") || !strings.Contains(string(env), fmt.Sprintf("FLANNEL_MTU=%d", mtu)) {
				t.Fatalf("flanneld's subnet file:\n%s\nwant FLANNEL_SUBNET=10.244.2.1/24 and FLANNEL_MTU=%d", env, mtu)
			}
			break
		}
		if fl.exited() || time.Now().After(deadline) {
			t.Fatalf("flanneld wrote no lease into %s\n%s", subnetFile, fl.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}

	f := startFerry(t, a.Host, l3Config(a.Host, 1, encap.EncapUDP, "", map[netip.Addr]int{b.Addr: 2}))
	mustPing(t, a.container, "10.244.2.2")
	mustPing(t, b.container, "10.244.1.2")
	transfer(t, a.container, b.container, "10.244.2.2", 20<<20)
	transfer(t, b.container, a.container, "10.244.1.2", 20<<20)
	ps := f.peers(t)
	if len(ps) != 1 || ps[0].TxBytes < 20<<20 || ps[0].RxBytes < 20<<20 {
		t.Errorf("ferry's peers = %+v, want flanneld's host with at least 20 MB each way", ps)
	}
	if t.Failed() {
		t.Logf("flanneld:\n%s", fl.logs())
	}
}

// background is a process a test started in a namespace; startBackground
// stops it by its PID when the test ends.
type background struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func (p *background) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *background) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *background) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startBackground runs name with args in namespace n and, in t.Cleanup,
// ends it: SIGTERM, then SIGKILL after 10 s.
func startBackground(t *testing.T, n *nstest.NS, name string, args ...string) *background {
	t.Helper()
	p := &background{name: name, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s in %s: %v", name, n.Name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if p.exited() {
			return
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}
