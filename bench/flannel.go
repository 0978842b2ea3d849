package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ferry-overlay/ferry/internal/subnetfile"
)

// flannel's udp backend as a third path: ferry's own wire format
// (flannel-UDP) exists to be compatible with it, and being faster than it is
// one of ferry's reasons to exist, so a benchmark that can run the real
// thing beside ferry's path should. ferry does not ship or build flannel:
// the user names a flanneld binary (--flanneld), and etcd, which flanneld
// keeps its subnet leases in, comes from the distribution.

// What the flannel path is made of, for the report.
const flannelPathDesc = "flannel's udp backend: container veth → Linux bridge → host routing → TUN flannel0 → flanneld (flannel-UDP, UDP 8285) → veth underlay"

const (
	// flannelPrefix is the etcd prefix flanneld reads its network from
	// (its default).
	flannelPrefix = "/coreos.com/network"
	// etcdClientPort and etcdPeerPort are etcd's defaults; etcd runs in
	// host 1's namespace, so they clash with nothing on the machine.
	etcdClientPort = 2379
	etcdPeerPort   = 2380
)

// flannelNetConfig is the network flanneld is given in etcd
// (<prefix>/config): the same /16 as ferry's l3 path, a /24 per host, the
// udp backend.
func flannelNetConfig() string {
	return fmt.Sprintf(`{"Network": %q, "SubnetLen": 24, "Backend": {"Type": "udp"}}`, l3Network)
}

// flannelTools checks what the flannel path runs: the flanneld binary
// the user named (an error naming it when it is not an executable file),
// and etcd and etcdctl (a *MissingTool naming the package).
func flannelTools(flanneld string) error {
	if _, err := exec.LookPath(flanneld); err != nil {
		return fmt.Errorf("flanneld %s: %w (give the path of a flanneld binary built from github.com/flannel-io/flannel)", flanneld, err)
	}
	for _, t := range []MissingTool{
		{"etcd", "apt-get install -y etcd-server"},
		{"etcdctl", "apt-get install -y etcd-client"},
	} {
		if _, err := exec.LookPath(t.Tool); err != nil {
			return &t
		}
	}
	return nil
}

// containerOf returns the container's address on a flannel host whose
// subnet file says subnet (FLANNEL_SUBNET, the bridge's address): the
// next address after the bridge's.
func containerOf(subnet netip.Prefix) netip.Addr {
	return subnet.Addr().Next()
}

// flannelPath builds flannel's udp backend path: etcd in host 1's
// namespace on the underlay, the network's config put into it, a flanneld
// in each host (udp backend, no masquerading, no iptables rules), and once
// each holds a lease, the container side as on ferry's l3 path, with
// flannel's subnet and MTU.
func (l *lab) flannelPath(ctx context.Context, opts OverlayOptions) (*testbed, error) {
	h1, h2, c1, c2, err := l.hostPair(PathFlannel, opts.UnderlayMTU)
	if err != nil {
		return nil, err
	}
	endpoint := "http://" + netip.AddrPortFrom(host1Addr, etcdClientPort).String()
	peer := "http://" + netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), etcdPeerPort).String()
	etcd, err := l.spawn(h1, "etcd", "--name", "bench", "--data-dir", filepath.Join(l.dir, "etcd"),
		"--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "bench="+peer)
	if err != nil {
		return nil, err
	}
	if err := waitListen(ctx, etcd, etcdClientPort); err != nil {
		return nil, err
	}
	if err := l.etcdPut(ctx, h1, endpoint, flannelPrefix+"/config", flannelNetConfig()); err != nil {
		return nil, err
	}
	var envs [2]subnetfile.File
	for i, h := range []*netNS{h1, h2} {
		file := filepath.Join(l.dir, h.name+".env")
		p, err := l.spawn(h, opts.Flanneld, "--etcd-endpoints", endpoint, "--etcd-prefix", flannelPrefix,
			"--iface", underlayDev, "--subnet-file", file, "--ip-masq=false", "--iptables-forward-rules=false")
		if err != nil {
			return nil, err
		}
		if envs[i], err = waitSubnetFile(ctx, p, file); err != nil {
			return nil, err
		}
	}
	for i, d := range []struct{ host, cont *netNS }{{h1, c1}, {h2, c2}} {
		if err := l3Host(d.host, d.cont, envs[i].MTU, envs[i].Subnet, containerOf(envs[i].Subnet)); err != nil {
			return nil, err
		}
	}
	return l.finish(ctx, c1, c2, containerOf(envs[0].Subnet), containerOf(envs[1].Subnet), false) // IPv4 only (Validate)
}

// etcdPut stores key=value with etcdctl from namespace n, retrying until
// etcd, which listens before it serves, answers or daemonTimeout passes.
func (l *lab) etcdPut(ctx context.Context, n *netNS, endpoint, key, value string) error {
	deadline := time.Now().Add(daemonTimeout)
	for {
		p, err := l.spawn(n, "etcdctl", "--endpoints", endpoint, "--command-timeout", "2s", "put", key, value)
		if err != nil {
			return err
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if p.cmd.ProcessState.Success() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcdctl put %s: %v\n%s", key, p.cmd.ProcessState, p.out.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitSubnetFile waits until flanneld p has written its subnet file (it
// writes it whole, by a rename, once it holds a lease) and returns what it
// says; a file that does not parse or validate is an error.
func waitSubnetFile(ctx context.Context, p *proc, file string) (subnetfile.File, error) {
	deadline := time.Now().Add(daemonTimeout)
	for {
		b, err := os.ReadFile(file)
		if err == nil {
			f, err := subnetfile.Parse(b)
			if err == nil {
				err = f.Validate()
			}
			if err != nil {
				return f, fmt.Errorf("flanneld's subnet file %s: %w\n%s", file, err, b)
			}
			return f, nil
		}
		select {
		case <-p.done:
			return subnetfile.File{}, fmt.Errorf("flanneld exited during start: %v\n%s", p.cmd.ProcessState, p.out.String())
		case <-ctx.Done():
			return subnetfile.File{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return subnetfile.File{}, fmt.Errorf("flanneld wrote no lease into %s within %v\n%s", file, daemonTimeout, p.out.String())
		}
	}
}
