package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/ctl"
)

// OverlayOptions configures [Overlay].
type OverlayOptions struct {
	// FerryBin is the ferry binary whose `ferry run` serves ferry's path;
	// `ferry bench overlay` passes its own executable.
	FerryBin string `json:"-"`
	// Duration is how long each workload runs on each path in each
	// repetition, at least one second.
	Duration time.Duration `json:"duration_ns"`
	// Reps is the number of repetitions, at least 1. Each repetition runs
	// every workload on both paths, alternating which path goes first.
	Reps int `json:"reps"`
	// Size is the UDP payload size in bytes of the packet-rate and latency
	// workloads, MinOverlaySize..MaxOverlaySize.
	Size int `json:"size"`
	// KeepGoing records a failed workload in the report and goes on,
	// instead of stopping the run.
	KeepGoing bool `json:"keep_going"`
	// Log, if not nil, receives one line per step, for a person watching.
	Log io.Writer `json:"-"`
}

// Payload size limits of the overlay workloads: a UDP payload must carry
// the latency probe's 8-byte sequence number and fit the overlay MTU (1450)
// in one datagram.
const (
	MinOverlaySize = 8
	MaxOverlaySize = 1450 - 28
)

// Validate reports the first option out of range.
func (o OverlayOptions) Validate() error {
	switch {
	case o.FerryBin == "":
		return errors.New("no ferry binary given")
	case o.Duration < time.Second:
		return fmt.Errorf("duration %v: must be at least 1s", o.Duration)
	case o.Reps < 1:
		return fmt.Errorf("reps %d: must be at least 1", o.Reps)
	case o.Size < MinOverlaySize || o.Size > MaxOverlaySize:
		return fmt.Errorf("size %d: must be %d..%d bytes of UDP payload", o.Size, MinOverlaySize, MaxOverlaySize)
	}
	return nil
}

// The two paths the overlay scenario compares.
const (
	PathFerry  = "ferry"
	PathKernel = "kernel"
)

// Metric is one figure measured on both paths.
type Metric struct {
	// Name is a stable identifier, such as "tcp_gbps".
	Name string `json:"name"`
	// Title is what the table and the chart call it.
	Title string `json:"title"`
	// Unit is the figure's unit, such as "Gbit/s" or "µs".
	Unit string `json:"unit"`
	// HigherIsBetter is true for rates and false for latencies.
	HigherIsBetter bool `json:"higher_is_better"`
	// Ferry and Kernel summarise the repetitions on each path.
	Ferry  Summary `json:"ferry"`
	Kernel Summary `json:"kernel"`
	// Ratio is Ferry.Median / Kernel.Median; absent when the kernel's
	// median is 0 or either path has no sample.
	Ratio *float64 `json:"ratio,omitempty"`
}

// OverlayReport is the outcome of [Overlay]; it is also the JSON that
// `--json FILE` writes.
type OverlayReport struct {
	Options OverlayOptions `json:"options"`
	Machine Machine        `json:"machine"`
	// Metrics are, in order: TCP throughput, UDP packets delivered and
	// offered per second, latency p50 and p99.
	Metrics []Metric `json:"metrics"`
	// Errors lists the workloads that failed (with --keep-going), as
	// "rep 2 ferry tcp: …".
	Errors []string `json:"errors,omitempty"`
}

// Metric names of the overlay report.
const (
	MetricTCP     = "tcp_gbps"
	MetricUDPRx   = "udp_rx_pps"
	MetricUDPTx   = "udp_tx_pps"
	MetricLatP50  = "latency_p50_us"
	MetricLatP99  = "latency_p99_us"
	overlayVNI    = 42
	overlayPort   = 4789
	iperfPort     = 5201
	udpRatePort   = 5300
	latencyPort   = 5301
	underlayDev   = "ul0"
	containerDev  = "eth0"
	daemonTimeout = 15 * time.Second
)

var (
	underlayPrefix = netip.MustParsePrefix("192.168.77.0/24")
	host1Addr      = netip.MustParseAddr("192.168.77.1")
	host2Addr      = netip.MustParseAddr("192.168.77.2")
	cont1Addr      = netip.MustParseAddr("10.42.0.1")
	cont2Addr      = netip.MustParseAddr("10.42.0.2")
	overlayBits    = 24
)

// metricDefs are the overlay report's figures, in report order.
var metricDefs = []Metric{
	{Name: MetricTCP, Title: "TCP, one stream", Unit: "Gbit/s", HigherIsBetter: true},
	{Name: MetricUDPRx, Title: "UDP delivered", Unit: "kpps", HigherIsBetter: true},
	{Name: MetricUDPTx, Title: "UDP offered", Unit: "kpps", HigherIsBetter: true},
	{Name: MetricLatP50, Title: "latency p50", Unit: "µs"},
	{Name: MetricLatP99, Title: "latency p99", Unit: "µs"},
}

// ErrNeedsRoot is returned by [Overlay] when not running as root.
var ErrNeedsRoot = errors.New("needs root: creates network namespaces, links and TAP devices")

// MissingTool is returned by [Overlay] when a program it runs is not
// installed; its message names the command that installs it. Nothing is
// ever installed on the user's behalf.
type MissingTool struct {
	Tool, Install string
}

func (m *MissingTool) Error() string {
	return fmt.Sprintf("%s is not installed; install it with: %s", m.Tool, m.Install)
}

// CheckTools returns a *MissingTool for the first tool the overlay
// scenario needs that is not on $PATH.
func CheckTools() error {
	for _, t := range []MissingTool{{"iperf3", "apt-get install -y iperf3"}} {
		if _, err := exec.LookPath(t.Tool); err != nil {
			return &t
		}
	}
	return nil
}

// Overlay builds two simulated hosts with one container each, twice — once
// joined by ferry daemons (FerryBin run in each host namespace, the TAP moved
// into the container), once by the kernel's Docker-style path (container
// veth, Linux bridge, kernel VXLAN) — both over a veth underlay, and runs
// each workload on both paths in every repetition, alternating the order. It
// removes every namespace and stops every process it started before it
// returns, also when ctx ends or SIGINT/SIGTERM arrives (which end the run
// with an error). It needs root and iperf3.
func Overlay(ctx context.Context, opts OverlayOptions) (rep *OverlayReport, err error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("bench overlay: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("bench overlay: %w", ErrNeedsRoot)
	}
	if err := CheckTools(); err != nil {
		return nil, fmt.Errorf("bench overlay: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	lab, err := newLab(opts.Log)
	defer func() {
		if cerr := lab.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("bench overlay: cleanup: %w", cerr))
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("bench overlay: %w", err)
	}
	paths := map[string]*testbed{}
	for _, build := range []struct {
		name string
		fn   func(context.Context, string) (*testbed, error)
	}{{PathFerry, lab.ferryPath}, {PathKernel, lab.kernelPath}} {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("bench overlay: %w", err)
		}
		lab.logf("setting up the %s path", build.name)
		tb, err := build.fn(ctx, opts.FerryBin)
		if err != nil {
			return nil, fmt.Errorf("bench overlay: %s path: %w", build.name, err)
		}
		paths[build.name] = tb
	}
	rep = &OverlayReport{Options: opts, Machine: thisMachine()}
	samples := map[string]map[string][]float64{PathFerry: {}, PathKernel: {}}
	for i := range opts.Reps {
		order := []string{PathFerry, PathKernel}
		if i%2 == 1 {
			order = []string{PathKernel, PathFerry}
		}
		for _, path := range order {
			for _, w := range workloads {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("bench overlay: %w", err)
				}
				lab.logf("rep %d/%d: %s %s (%v)", i+1, opts.Reps, path, w.name, opts.Duration)
				vals, err := w.run(ctx, paths[path], opts)
				if err != nil {
					msg := fmt.Sprintf("rep %d %s %s: %v", i+1, path, w.name, err)
					if !opts.KeepGoing || ctx.Err() != nil {
						return nil, fmt.Errorf("bench overlay: %s", msg)
					}
					lab.logf("failed (going on): %s", msg)
					rep.Errors = append(rep.Errors, msg)
					continue
				}
				for k, v := range vals {
					samples[path][k] = append(samples[path][k], v)
				}
			}
		}
	}
	for _, d := range metricDefs {
		m := d
		m.Ferry = Summarize(samples[PathFerry][d.Name])
		m.Kernel = Summarize(samples[PathKernel][d.Name])
		if len(m.Ferry.Samples) > 0 && len(m.Kernel.Samples) > 0 {
			if r := Ratio(m.Ferry.Median, m.Kernel.Median); !math.IsNaN(r) {
				m.Ratio = &r
			}
		}
		rep.Metrics = append(rep.Metrics, m)
	}
	return rep, nil
}

// workload is one measurement run on one path; it returns values by
// metric name.
type workload struct {
	name string
	run  func(ctx context.Context, tb *testbed, opts OverlayOptions) (map[string]float64, error)
}

var workloads = []workload{
	{"tcp", runTCP},
	{"udp-rate", runUDPRate},
	{"latency", runLatency},
}

// testbed is one built path: the sending container c1 and the receiving
// container c2 (address cont2Addr), with an iperf3 server running in c2.
type testbed struct {
	c1, c2 *netNS
	iperf  *proc
}

// proc is a process the lab started and stops by its PID.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// syncBuffer is a bytes.Buffer safe for a process's stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lab owns everything one overlay run creates: namespaces, a temporary
// directory and processes. close removes them in reverse order.
type lab struct {
	tag   string
	dir   string
	log   io.Writer
	nss   []*netNS
	procs []*proc
}

func newLab(log io.Writer) (*lab, error) {
	l := &lab{log: log}
	tag, err := uniqueTag()
	if err != nil {
		return l, err
	}
	l.tag = tag
	dir, err := os.MkdirTemp("", "ferry-bench-")
	if err != nil {
		return l, fmt.Errorf("temp dir: %w", err)
	}
	l.dir = dir
	return l, nil
}

func (l *lab) logf(format string, args ...any) {
	if l.log != nil {
		fmt.Fprintf(l.log, format+"\n", args...)
	}
}

// ns creates a namespace named ferrybench-TAG-role.
func (l *lab) ns(role string) (*netNS, error) {
	n, err := newNS(fmt.Sprintf("ferrybench-%s-%s", l.tag, role))
	if n != nil {
		l.nss = append(l.nss, n)
	}
	return n, err
}

// spawn starts name with args in namespace n; close stops it.
func (l *lab) spawn(n *netNS, name string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(name, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := n.start(p.cmd); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, n.name, err)
	}
	l.procs = append(l.procs, p)
	go func() { p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop ends the process: SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for 10s and was killed", p.name, p.cmd.Process.Pid)
	}
}

// close stops the processes, then deletes the namespaces and the
// temporary directory, newest first, and returns every failure.
func (l *lab) close() error {
	var errs []error
	for i := len(l.procs) - 1; i >= 0; i-- {
		errs = append(errs, l.procs[i].stop())
	}
	for i := len(l.nss) - 1; i >= 0; i-- {
		errs = append(errs, l.nss[i].remove())
	}
	if l.dir != "" {
		errs = append(errs, os.RemoveAll(l.dir))
	}
	l.logf("cleaned up %d namespaces and %d processes", len(l.nss), len(l.procs))
	return errors.Join(errs...)
}

// hostPair creates two host namespaces joined by a veth underlay
// (underlayDev on both, host1Addr and host2Addr) and two container
// namespaces.
func (l *lab) hostPair(path string) (h1, h2, c1, c2 *netNS, err error) {
	for _, p := range []struct {
		dst  **netNS
		role string
	}{{&h1, "h1"}, {&h2, "h2"}, {&c1, "c1"}, {&c2, "c2"}} {
		if *p.dst, err = l.ns(path[:1] + p.role); err != nil {
			return
		}
	}
	if err = veth(h1, underlayDev, h2, underlayDev); err != nil {
		return
	}
	if err = h1.addAddr(underlayDev, netip.PrefixFrom(host1Addr, underlayPrefix.Bits())); err != nil {
		return
	}
	err = h2.addAddr(underlayDev, netip.PrefixFrom(host2Addr, underlayPrefix.Bits()))
	return
}

// ferryPath builds ferry's path: a ferry daemon in each host namespace
// with one TAP port moved into the container namespace as eth0.
func (l *lab) ferryPath(ctx context.Context, ferryBin string) (*testbed, error) {
	h1, h2, c1, c2, err := l.hostPair(PathFerry)
	if err != nil {
		return nil, err
	}
	for _, d := range []struct {
		host, cont  *netNS
		local, peer netip.Addr
		addr        netip.Addr
		mac         string
	}{
		{h1, c1, host1Addr, host2Addr, cont1Addr, "02:42:0a:2a:00:01"},
		{h2, c2, host2Addr, host1Addr, cont2Addr, "02:42:0a:2a:00:02"},
	} {
		socket := filepath.Join(l.dir, d.host.name+".sock")
		cfg := fmt.Sprintf(`node:
  name: %s
  underlay: %s
  log_level: warn
control:
  socket: %s
metrics:
  listen: "off"
networks:
  - name: bench
    vni: %d
    port: %d
    subnet: 10.42.0.0/24
    peers: [%s]
    ports:
      - {name: tap0, netns: %s, ifname: %s, address: %s/%d, mac: "%s"}
`, d.host.name, d.local, socket, overlayVNI, overlayPort, d.peer, d.cont.name, containerDev, d.addr, overlayBits, d.mac)
		path := filepath.Join(l.dir, d.host.name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, fmt.Errorf("write ferry config: %w", err)
		}
		p, err := l.spawn(d.host, ferryBin, "run", "--config", path)
		if err != nil {
			return nil, err
		}
		if err := waitDaemon(ctx, p, socket); err != nil {
			return nil, err
		}
	}
	return l.finish(ctx, c1, c2)
}

// waitDaemon waits until the daemon answers on its control socket.
func waitDaemon(ctx context.Context, p *proc, socket string) error {
	deadline := time.Now().Add(daemonTimeout)
	client := ctl.NewClient(socket)
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := client.Status(rctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("ferry exited during start: %v\n%s", p.cmd.ProcessState, p.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ferry did not answer on %s within %v\n%s", socket, daemonTimeout, p.out.String())
		}
	}
}

// kernelPath builds the kernel's Docker-style path: in each host a VXLAN
// device and a bridge, and a veth from the bridge into the container.
func (l *lab) kernelPath(ctx context.Context, _ string) (*testbed, error) {
	h1, h2, c1, c2, err := l.hostPair(PathKernel)
	if err != nil {
		return nil, err
	}
	for _, d := range []struct {
		host, cont    *netNS
		local, remote netip.Addr
		addr          netip.Addr
	}{
		{h1, c1, host1Addr, host2Addr, cont1Addr},
		{h2, c2, host2Addr, host1Addr, cont2Addr},
	} {
		if err := veth(d.host, "vc0", d.cont, containerDev); err != nil {
			return nil, err
		}
		if err := kernelOverlay(d.host, underlayDev, d.local, d.remote, overlayVNI, overlayPort, "vc0"); err != nil {
			return nil, err
		}
		if err := d.cont.setMTU(containerDev, 1450); err != nil {
			return nil, err
		}
		if err := d.cont.addAddr(containerDev, netip.PrefixFrom(d.addr, overlayBits)); err != nil {
			return nil, err
		}
	}
	return l.finish(ctx, c1, c2)
}

// finish waits for the containers' addresses, starts the iperf3 server in c2 and checks that c1 reaches c2.
func (l *lab) finish(ctx context.Context, c1, c2 *netNS) (*testbed, error) {
	tb := &testbed{c1: c1, c2: c2}
	// A ferry daemon may answer before it has configured its ports.
	for _, c := range []struct {
		ns   *netNS
		addr netip.Addr
	}{{c1, cont1Addr}, {c2, cont2Addr}} {
		if err := waitAddr(ctx, c.ns, containerDev, c.addr); err != nil {
			return nil, err
		}
	}
	p, err := l.spawn(c2, "iperf3", "-s", "-p", fmt.Sprint(iperfPort))
	if err != nil {
		return nil, err
	}
	tb.iperf = p
	if err := waitListen(ctx, p, iperfPort); err != nil {
		return nil, err
	}
	if err := reachable(ctx, tb); err != nil {
		return nil, err
	}
	return tb, nil
}

// waitListen waits until the process listens on TCP port in its namespace,
// reading /proc/PID/net/tcp and tcp6 (which show the process's namespace) so that
// no test connection disturbs the server.
func waitListen(ctx context.Context, p *proc, port int) error {
	want := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		// iperf3 listens on a dual-stack IPv6 socket where it can.
		for _, file := range []string{"tcp", "tcp6"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", p.cmd.Process.Pid, file))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) > 3 && strings.HasSuffix(f[1]+" ", want) && f[3] == "0A" {
					return nil
				}
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.cmd.ProcessState, p.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on port %d after 5s\n%s", p.name, port, p.out.String())
		}
	}
}

// waitAddr waits up to daemonTimeout until link ifname in n is up and has
// address a.
func waitAddr(ctx context.Context, n *netNS, ifname string, a netip.Addr) error {
	deadline := time.Now().Add(daemonTimeout)
	for {
		err := n.withLink(ifname, func(h *netlink.Handle, l netlink.Link) error {
			if l.Attrs().Flags&net.FlagUp == 0 {
				return errors.New("down")
			}
			addrs, err := h.AddrList(l, unix.AF_INET)
			if err != nil {
				return err
			}
			for _, x := range addrs {
				if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
					return nil
				}
			}
			return fmt.Errorf("no address %s", a)
		})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("container not ready after %v: %w", daemonTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
