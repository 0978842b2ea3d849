package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/config"
	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/header"
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
	// every workload on every path, the paths taking turns at going first.
	Reps int `json:"reps"`
	// Size is the UDP payload size in bytes of the packet-rate and latency
	// workloads, MinOverlaySize..MaxOverlaySize(UnderlayMTU, IPv6).
	Size int `json:"size"`
	// IPv6 runs every workload between the containers' IPv6 addresses
	// (containerAddr6: fd42::1 and fd42::2 on one /64, given to the
	// containers of every path), so the figures are those of IPv6
	// traffic through the overlay: TCP segmentation and checksums of
	// IPv6 (TSO6), 20 bytes more header per packet. The underlay stays
	// IPv4. ModeL2 only: ferry's l3 networks route IPv4.
	IPv6 bool `json:"ipv6"`
	// UnderlayMTU is the MTU of the veth underlay between the hosts of
	// every path, MinUnderlayMTU..MaxUnderlayMTU; 0 means
	// DefaultUnderlayMTU, which [Overlay] fills in for the report. The
	// overlays take theirs from it as they would from a NIC: the kernel's
	// VXLAN device 50 bytes less, ferry what its daemons detect (its
	// networks' overhead less), flannel what flanneld detects. Jumbo
	// frames (9000) are what many clouds and data centres run.
	UnderlayMTU int `json:"underlay_mtu"`
	// Encap is the tunnel format of ferry's path: EncapVXLAN, EncapGRE or,
	// in ModeL3 only, EncapUDP (flannel-UDP). Empty means EncapVXLAN.
	Encap string `json:"encap"`
	// Mode is the network type of ferry's path: ModeL2 (TAP ports moved
	// into the containers, a learning bridge) or ModeL3 (flannel style:
	// containers on a Linux bridge in each host, routed through ferry's
	// TUN device). Empty means ModeL2. The kernel's path is the same
	// Docker-style VXLAN path whatever the mode and encapsulation.
	Mode string `json:"mode"`
	// Streams is the number of parallel TCP streams of the TCP workload
	// (iperf3 -P), 1..MaxStreams; 0 means 1.
	Streams int `json:"streams"`
	// TCPCC is the TCP congestion control of the TCP workload's sender
	// (iperf3 -C), on both paths. Empty means the kernel's default
	// (net.ipv4.tcp_congestion_control), which [Overlay] fills in for the
	// report: on paths like these the choice moves the figure a lot (BBR
	// paces to what it measures, CUBIC fills every queue).
	TCPCC string `json:"tcp_cc"`
	// Workers is the number of dataplane workers of each ferry daemon
	// (node.workers), 1..config.MaxWorkers; 0 means ferry's default, one
	// per CPU, which [Overlay] fills in for the report.
	Workers int `json:"workers"`
	// CPUs pins the workers of each ferry daemon (node.cpus: worker i on
	// CPUs[i mod len]); empty leaves them to the scheduler. Both hosts'
	// daemons get the same list.
	CPUs []int `json:"cpus,omitempty"`
	// Offload turns ferry's TAP/TUN and UDP offloads on or off
	// (node.offload), to see what they buy; nil means ferry's default
	// (on), which [Overlay] fills in for the report.
	Offload *bool `json:"offload"`
	// Flows is the number of sending sockets (UDP flows) of the
	// packet-rate workload, 1..MaxFlows; 0 means DefaultFlows.
	Flows int `json:"flows"`
	// Flanneld, if set, is the path of a flanneld binary (flannel's
	// daemon, github.com/flannel-io/flannel): the run then also builds
	// flannel's udp backend between two more hosts, with etcd from the
	// distribution, and measures it as a third path. ferry's path is best
	// compared with it in ModeL3 over EncapUDP, flannel's own wire format.
	Flanneld string `json:"flanneld,omitempty"`
	// Baseline, if set, is the path of another ferry binary (an earlier
	// build, say): the run then also builds ferry's path with it, with
	// the same options, and measures it beside this one, so a change is
	// judged against its baseline in one run, alternating, as the
	// figures here ask.
	Baseline string `json:"baseline,omitempty"`
	// Floor also measures the userspace floor (relay_linux.go): a path
	// whose hosts relay each of the containers' frames and superpackets
	// as one UDP datagram, with none of a dataplane's work, so the report
	// shows how far ferry is from the least its design costs on this
	// machine, beside how far it is from the kernel.
	Floor bool `json:"floor,omitempty"`
	// Workloads names the workloads to run, of WorkloadNames, in any
	// order (they run in the order of WorkloadNames); empty means all,
	// which [Overlay] fills in for the report. The report has only the
	// figures of those run.
	Workloads []string `json:"workloads"`
	// KeepGoing records a failed workload in the report and goes on,
	// instead of stopping the run.
	KeepGoing bool `json:"keep_going"`
	// Restart restarts the ferry daemons of ferry's path (and of the
	// baseline's) before every repetition after the first, so the
	// repetitions also sample what a start decides: which worker of the
	// receiving host each flow's outer source port hashes to, which moves
	// the packet rate by tens of percent from one start to the next. nil
	// means true, which [Overlay] fills in for the report.
	Restart *bool `json:"restart"`
	// Log, if not nil, receives one line per step, for a person watching.
	Log io.Writer `json:"-"`
}

// MinOverlaySize is the smallest UDP payload of the overlay workloads: it
// must carry the latency probe's 8-byte sequence number.
const MinOverlaySize = 8

// MaxOverlaySize is the largest UDP payload of the overlay workloads on an
// underlay of MTU underlayMTU: one datagram must fit the smallest overlay
// MTU of the kernel's path and every ferry combination, the VXLAN ones',
// 50 bytes below the underlay's (l2 gre is 42 below, l3 udp 28, l3 gre
// 24), less 20 bytes of IPv4 header (40 of IPv6, with ipv6) and 8 of UDP
// header. 1422 on a 1500-byte underlay, 1402 over IPv6.
func MaxOverlaySize(underlayMTU int, ipv6 bool) int {
	ipHeader := header.IPv4MinLen
	if ipv6 {
		ipHeader = header.IPv6Len
	}
	return underlayMTU - encap.VXLANOverhead - ipHeader - header.UDPLen
}

// Underlay MTUs of the overlay benchmark: the kernel's default for a veth
// (and Ethernet's), unless asked otherwise; at least IPv6's minimum link
// MTU, at most jumbo frames of 9000 bytes.
const (
	DefaultUnderlayMTU = 1500
	MinUnderlayMTU     = 1280
	MaxUnderlayMTU     = 9000
)

// MaxStreams is the most parallel TCP streams the TCP workload runs.
const MaxStreams = 16

// Flows of the UDP packet-rate workload: DefaultFlows sender sockets
// unless asked otherwise, at most MaxFlows. Several, so multi-queue
// devices and several workers share the load; each flow goes to one
// worker per host by hash, so with few flows a run's figure depends on
// how they happened to spread.
const (
	DefaultFlows = 4
	MaxFlows     = 64
)

// Network types and encapsulations of ferry's path, as the config keys
// `mode` and `encap` spell them.
const (
	ModeL2     = string(config.ModeL2)
	ModeL3     = string(config.ModeL3)
	EncapVXLAN = encap.EncapVXLAN
	EncapGRE   = encap.EncapGRE
	EncapUDP   = encap.EncapUDP
)

// withDefaults returns o with an empty Encap and Mode set to their
// defaults, EncapVXLAN and ModeL2.
func (o OverlayOptions) withDefaults() OverlayOptions {
	if o.Encap == "" {
		o.Encap = EncapVXLAN
	}
	if o.Mode == "" {
		o.Mode = ModeL2
	}
	if o.Streams == 0 {
		o.Streams = 1
	}
	if o.UnderlayMTU == 0 {
		o.UnderlayMTU = DefaultUnderlayMTU
	}
	if o.Workers == 0 {
		o.Workers = min(runtime.NumCPU(), config.MaxWorkers)
	}
	if o.Flows == 0 {
		o.Flows = DefaultFlows
	}
	if o.Offload == nil {
		on := config.DefaultOffload
		o.Offload = &on
	}
	if o.Restart == nil {
		on := true
		o.Restart = &on
	}
	if len(o.Workloads) == 0 {
		o.Workloads = WorkloadNames()
	}
	return o
}

// runs reports whether the options ask for the workload called name.
func (o OverlayOptions) runs(name string) bool {
	return len(o.Workloads) == 0 || slices.Contains(o.Workloads, name)
}

// offload reports whether ferry's path runs with offloads (Offload, nil
// meaning ferry's default).
func (o OverlayOptions) offload() bool {
	if o.Offload == nil {
		return config.DefaultOffload
	}
	return *o.Offload
}

// Validate reports the first option out of range, naming it. An empty
// Encap or Mode stands for its default.
func (o OverlayOptions) Validate() error {
	d := o.withDefaults()
	switch {
	case d.Mode != ModeL2 && d.Mode != ModeL3:
		return fmt.Errorf("mode %q: must be l2 or l3", o.Mode)
	case d.Encap != EncapVXLAN && d.Encap != EncapGRE && d.Encap != EncapUDP:
		return fmt.Errorf("encap %q: must be vxlan, udp or gre", o.Encap)
	case d.Encap == EncapUDP && d.Mode == ModeL2:
		return errors.New("encap udp: flannel-UDP carries IP packets, not Ethernet frames: use it with mode l3 (mode l2 takes vxlan or gre)")
	case o.IPv6 && d.Mode == ModeL3:
		return errors.New("ipv6: ferry's l3 networks route IPv4 only: use it with mode l2")
	case o.IPv6 && o.Flanneld != "":
		return errors.New("ipv6: the flannel path is built for IPv4 only: leave out flanneld")
	case o.FerryBin == "":
		return errors.New("no ferry binary given")
	case o.Duration < time.Second:
		return fmt.Errorf("duration %v: must be at least 1s", o.Duration)
	case o.Reps < 1:
		return fmt.Errorf("reps %d: must be at least 1", o.Reps)
	case o.UnderlayMTU != 0 && (o.UnderlayMTU < MinUnderlayMTU || o.UnderlayMTU > MaxUnderlayMTU):
		return fmt.Errorf("underlay-mtu %d: must be %d..%d", o.UnderlayMTU, MinUnderlayMTU, MaxUnderlayMTU)
	case o.Size < MinOverlaySize || o.Size > MaxOverlaySize(d.UnderlayMTU, o.IPv6):
		over := ""
		if o.IPv6 {
			over = " over IPv6"
		}
		return fmt.Errorf("size %d: must be %d..%d bytes of UDP payload%s on a %d-byte underlay", o.Size, MinOverlaySize, MaxOverlaySize(d.UnderlayMTU, o.IPv6), over, d.UnderlayMTU)
	case o.Streams < 0 || o.Streams > MaxStreams:
		return fmt.Errorf("streams %d: must be 1..%d", o.Streams, MaxStreams)
	case o.Flows < 0 || o.Flows > MaxFlows:
		return fmt.Errorf("flows %d: must be 1..%d", o.Flows, MaxFlows)
	case o.Workers < 0 || o.Workers > config.MaxWorkers:
		return fmt.Errorf("workers %d: must be 1..%d, or 0 for one per CPU", o.Workers, config.MaxWorkers)
	case !validCPUs(o.CPUs):
		return fmt.Errorf("cpus %v: want distinct CPU numbers 0..%d", o.CPUs, config.MaxCPU)
	case o.TCPCC != "" && !validCCName(o.TCPCC):
		return fmt.Errorf("tcp-cc %q: not a congestion control name (lower-case letters, digits and _, at most 15)", o.TCPCC)
	}
	for i, w := range o.Workloads {
		switch {
		case !slices.Contains(WorkloadNames(), w):
			return fmt.Errorf("workloads: %q is not a workload: want %s", w, strings.Join(WorkloadNames(), ", "))
		case slices.Contains(o.Workloads[:i], w):
			return fmt.Errorf("workloads: %q is named twice", w)
		}
	}
	return nil
}

// validCPUs reports whether cpus could be node.cpus: CPU numbers in
// range, each at most once.
func validCPUs(cpus []int) bool {
	for i, c := range cpus {
		if c < 0 || c > config.MaxCPU || slices.Contains(cpus[:i], c) {
			return false
		}
	}
	return true
}

// validCCName reports whether name can be a Linux TCP congestion control
// name (TCP_CA_NAME_MAX is 16 with the terminating NUL).
func validCCName(name string) bool {
	if len(name) == 0 || len(name) > 15 {
		return false
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// Where the kernel lists its TCP congestion controls: the default of new
// sockets, and those a socket may ask for (built in or loaded).
const (
	ccDefaultFile   = "/proc/sys/net/ipv4/tcp_congestion_control"
	ccAvailableFile = "/proc/sys/net/ipv4/tcp_available_congestion_control"
)

// resolveCC returns the congestion control the TCP workload will use:
// want if the kernel has it, the kernel's default if want is empty, and
// an error naming the option and what the kernel has otherwise.
func resolveCC(want, defaultText, availableText string) (string, error) {
	if want == "" {
		if cc := strings.TrimSpace(defaultText); cc != "" {
			return cc, nil
		}
		return "", errors.New("tcp-cc: the kernel reports no default congestion control")
	}
	avail := strings.Fields(availableText)
	if slices.Contains(avail, want) {
		return want, nil
	}
	return "", fmt.Errorf("tcp-cc %q: not available in this kernel (it has: %s); if a module provides it, load it first: modprobe tcp_%s", want, strings.Join(avail, " "), want)
}

// kernelCC is resolveCC with this machine's lists.
func kernelCC(want string) (string, error) {
	def, err := os.ReadFile(ccDefaultFile)
	if err != nil {
		return "", fmt.Errorf("tcp-cc: %w", err)
	}
	avail, err := os.ReadFile(ccAvailableFile)
	if err != nil {
		return "", fmt.Errorf("tcp-cc: %w", err)
	}
	return resolveCC(want, string(def), string(avail))
}

// The paths the overlay scenario compares: always ferry's and the
// kernel's; flannel's udp backend when OverlayOptions.Flanneld names a
// flanneld; ferry's path run by another ferry binary when
// OverlayOptions.Baseline names one; the userspace floor with
// OverlayOptions.Floor.
const (
	PathFerry    = "ferry"
	PathKernel   = "kernel"
	PathFlannel  = "flannel"
	PathBaseline = "baseline"
	PathFloor    = "floor"
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
	// RatioByRep summarises ferry's figure over the kernel's repetition
	// by repetition (each repetition runs the paths back to back): its
	// range says how far the ratio moves between repetitions. Absent when
	// no repetition has both.
	RatioByRep *Summary `json:"ratio_by_rep,omitempty"`
	// Flannel summarises flannel's udp backend, FlannelRatio is
	// Ferry.Median / Flannel.Median and FlannelRatioByRep the ratios
	// repetition by repetition, when the run measured that path.
	Flannel           *Summary `json:"flannel,omitempty"`
	FlannelRatio      *float64 `json:"ferry_per_flannel,omitempty"`
	FlannelRatioByRep *Summary `json:"ferry_per_flannel_by_rep,omitempty"`
	// Baseline summarises ferry's path run by the baseline binary,
	// BaselineRatio is Ferry.Median / Baseline.Median and
	// BaselineRatioByRep the ratios repetition by repetition, when the run
	// measured it.
	Baseline           *Summary `json:"baseline,omitempty"`
	BaselineRatio      *float64 `json:"ferry_per_baseline,omitempty"`
	BaselineRatioByRep *Summary `json:"ferry_per_baseline_by_rep,omitempty"`
	// Floor summarises the userspace floor, FloorRatio is Ferry.Median /
	// Floor.Median and FloorRatioByRep the ratios repetition by
	// repetition, when the run measured it.
	Floor           *Summary `json:"floor,omitempty"`
	FloorRatio      *float64 `json:"ferry_per_floor,omitempty"`
	FloorRatioByRep *Summary `json:"ferry_per_floor_by_rep,omitempty"`
}

// OverlayReport is the outcome of [Overlay]; it is also the JSON that
// `--json FILE` writes.
type OverlayReport struct {
	// Options are the options of the run, with Encap and Mode filled in.
	Options OverlayOptions `json:"options"`
	Machine Machine        `json:"machine"`
	// Started is when the run started.
	Started time.Time `json:"started"`
	// FerryBinary says which binary ran ferry's path ("ferry at PATH
	// (version, Go version)"), so a report names the build it measured.
	FerryBinary string `json:"ferry_binary"`
	// FerryPath and KernelPath say what each path is made of, such as
	// "ferry l3 over gre: container veth → Linux bridge → …".
	FerryPath  string `json:"ferry_path"`
	KernelPath string `json:"kernel_path"`
	// ContainerMTU is, by path name, the MTU of the containers'
	// interface on each path, which the underlay's MTU and the path's
	// encapsulation set.
	ContainerMTU map[string]int `json:"container_mtu"`
	// FlannelPath says what the flannel path is made of, when the run
	// measured one.
	FlannelPath string `json:"flannel_path,omitempty"`
	// BaselinePath says which binary the baseline path ran, as
	// FerryBinary does for ferry's path, when the run measured one.
	BaselinePath string `json:"baseline_path,omitempty"`
	// FloorPath says what the userspace floor is made of, when the run
	// measured it.
	FloorPath string `json:"floor_path,omitempty"`
	// Metrics are, in order: TCP throughput, retransmissions and CPU cost, UDP
	// packets delivered and offered per second, latency p50 and p99, and
	// latency p50 and p99 under TCP load.
	Metrics []Metric `json:"metrics"`
	// Errors lists the workloads that failed (with --keep-going), as
	// "rep 2 ferry tcp: …".
	Errors []string `json:"errors,omitempty"`
}

// Metric names of the overlay report.
const (
	MetricTCP = "tcp_gbps"
	// MetricTCPRetrans is the segments the TCP workload's sender
	// retransmitted in one run: loss or reordering on the path (a
	// dataplane that reorders a flow shows here first).
	MetricTCPRetrans = "tcp_retransmits"
	// MetricTCPCPU is the CPU time the whole machine was busy during the
	// TCP workload, per MB received: the path's cost per byte, whatever
	// its speed.
	MetricTCPCPU = "tcp_cpu_us_per_mb"
	MetricUDPRx  = "udp_rx_pps"
	MetricUDPTx  = "udp_tx_pps"
	MetricLatP50 = "latency_p50_us"
	MetricLatP99 = "latency_p99_us"
	// MetricLoadedP50 and MetricLoadedP99 are the latency workload's
	// round trips while the TCP workload's stream runs the same way: what
	// a request/response flow sees when a bulk transfer shares the path
	// and whatever forwards it (threads kept busy, queues kept full).
	MetricLoadedP50 = "loaded_latency_p50_us"
	MetricLoadedP99 = "loaded_latency_p99_us"
	overlayVNI      = 42
	overlayPort     = 4789
	iperfPort       = 5201
	udpRatePort     = 5300
	latencyPort     = 5301
	latencyProcs    = 4 // GOMAXPROCS while the echo server runs: see startEcho
	underlayDev     = "ul0"
	containerDev    = "eth0"
	daemonTimeout   = 15 * time.Second
)

var (
	underlayPrefix = netip.MustParsePrefix("192.168.77.0/24")
	host1Addr      = netip.MustParseAddr("192.168.77.1")
	host2Addr      = netip.MustParseAddr("192.168.77.2")
	overlayBits    = 24
	// l3Network is the whole overlay of an l3 ferry path; host i owns
	// 10.42.i.0/24, its bridge has .1 and its container .2.
	l3Network = netip.MustParsePrefix("10.42.0.0/16")
)

// The devices of an l3 ferry host: ferry's TUN device, the containers'
// bridge, and the host end of the container's veth.
const (
	l3Device   = "ferry0"
	l3Bridge   = "cbr0"
	l3HostVeth = "vc0"
)

// containerAddr returns the address of container i (1 or 2) on a path of
// mode: 10.42.0.i on one l2 subnet (the kernel's path and ferry's l2 path),
// 10.42.i.2 in host i's subnet on an l3 path.
func containerAddr(mode string, i int) netip.Addr {
	if mode == ModeL3 {
		return netip.AddrFrom4([4]byte{10, 42, byte(i), 2})
	}
	return netip.AddrFrom4([4]byte{10, 42, 0, byte(i)})
}

// containerAddr6 returns the IPv6 address of container i (1 or 2) of an l2
// path with OverlayOptions.IPv6: fd42::i, on the /64 of containerBits6.
func containerAddr6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x42, 15: byte(i)})
}

// containerBits6 is the prefix length of the containers' IPv6 subnet.
const containerBits6 = 64

// kernelPathDesc says what the kernel's path is made of.
const kernelPathDesc = "kernel VXLAN, l2, Docker-style: container veth → Linux bridge → vxlan device (VNI 42, UDP 4789) → veth underlay"

// ferryPathDesc says what ferry's path is made of for mode and encap
// (defaults filled in).
func ferryPathDesc(mode, enc string) string {
	wire := map[string]string{
		ModeL2 + EncapVXLAN: "VXLAN, UDP 4789",
		ModeL2 + EncapGRE:   "GRE with the VNI as key, IP protocol 47",
		ModeL3 + EncapVXLAN: "flannel-vxlan, UDP 8472",
		ModeL3 + EncapGRE:   "GRE, IP protocol 47",
		ModeL3 + EncapUDP:   "flannel-UDP, UDP 8285",
	}[mode+enc]
	if mode == ModeL3 {
		return fmt.Sprintf("ferry l3 over %s: container veth → Linux bridge → host routing → TUN %s → ferry (%s) → veth underlay", enc, l3Device, wire)
	}
	return fmt.Sprintf("ferry l2 over %s: container TAP → ferry (learning bridge, %s) → veth underlay", enc, wire)
}

// metricDefs are the overlay report's figures, in report order.
var metricDefs = []Metric{
	{Name: MetricTCP, Title: "TCP, one stream", Unit: "Gbit/s", HigherIsBetter: true},
	{Name: MetricTCPRetrans, Title: "TCP retransmissions per run", Unit: "segments"},
	{Name: MetricTCPCPU, Title: "CPU per MB of TCP (whole machine)", Unit: "µs/MB"},
	{Name: MetricUDPRx, Title: "UDP delivered", Unit: "kpps", HigherIsBetter: true},
	{Name: MetricUDPTx, Title: "UDP offered", Unit: "kpps", HigherIsBetter: true},
	{Name: MetricLatP50, Title: "latency p50", Unit: "µs"},
	{Name: MetricLatP99, Title: "latency p99", Unit: "µs"},
	{Name: MetricLoadedP50, Title: "latency p50 under TCP load", Unit: "µs"},
	{Name: MetricLoadedP99, Title: "latency p99 under TCP load", Unit: "µs"},
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
// joined by ferry daemons (FerryBin run in each host namespace with a
// network of opts.Mode over opts.Encap: l2, the TAP moved into the
// container; l3, the container on a Linux bridge routed through ferry's TUN
// device), once by the kernel's Docker-style path (container veth, Linux
// bridge, kernel VXLAN), whatever the mode — both over a veth underlay —
// and, when opts.Flanneld is set, a third time with flannel's udp backend;
// it runs each workload on every path in every repetition, rotating the
// order. It
// removes every namespace and stops every process it started before it
// returns, also when ctx ends or SIGINT/SIGTERM arrives (which end the run
// with an error). It needs root and iperf3 (and, for flannel, etcd and
// etcdctl).
func Overlay(ctx context.Context, opts OverlayOptions) (rep *OverlayReport, err error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("bench overlay: %w", err)
	}
	opts = opts.withDefaults()
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("bench overlay: %w", ErrNeedsRoot)
	}
	if err := CheckTools(); err != nil {
		return nil, fmt.Errorf("bench overlay: %w", err)
	}
	builds := []pathBuilder{{PathFerry, (*lab).ferryPath}, {PathKernel, (*lab).kernelPath}}
	if opts.Flanneld != "" {
		if err := flannelTools(opts.Flanneld); err != nil {
			return nil, fmt.Errorf("bench overlay: %w", err)
		}
		builds = append(builds, pathBuilder{PathFlannel, (*lab).flannelPath})
	}
	// The machine as the run finds it, before the run loads it.
	started, machine := time.Now(), thisMachine()
	ferryDesc, err := describeFerry(ctx, opts.FerryBin)
	if err != nil {
		return nil, fmt.Errorf("bench overlay: %w", err)
	}
	var baselineDesc string
	if opts.Baseline != "" {
		if baselineDesc, err = describeFerry(ctx, opts.Baseline); err != nil {
			return nil, fmt.Errorf("bench overlay: baseline: %w", err)
		}
		builds = append(builds, pathBuilder{PathBaseline, (*lab).baselinePath})
	}
	if opts.Floor {
		builds = append(builds, pathBuilder{PathFloor, (*lab).floorPath})
	}
	if opts.TCPCC, err = kernelCC(opts.TCPCC); err != nil {
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
	mtus := map[string]int{}
	figs := map[string]map[string]figures{}
	var names []string
	for _, build := range builds {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("bench overlay: interrupted before the %s path: %w", build.name, context.Cause(ctx))
		}
		lab.logf("setting up the %s path", build.name)
		tb, err := build.fn(lab, ctx, opts)
		if err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("bench overlay: interrupted while setting up the %s path: %w", build.name, context.Cause(ctx))
		}
		if err != nil {
			return nil, fmt.Errorf("bench overlay: %s path: %w", build.name, err)
		}
		lab.logf("the %s path's containers: %s → %s, MTU %d", build.name, tb.addr1, tb.addr2, tb.mtu)
		paths[build.name] = tb
		mtus[build.name] = tb.mtu
		figs[build.name] = map[string]figures{}
		names = append(names, build.name)
	}
	rep = &OverlayReport{Options: opts, Machine: machine, Started: started.UTC().Truncate(time.Second), FerryBinary: ferryDesc, FerryPath: ferryPathDesc(opts.Mode, opts.Encap), KernelPath: kernelPathDesc, ContainerMTU: mtus}
	if opts.Flanneld != "" {
		rep.FlannelPath = flannelPathDesc
	}
	rep.BaselinePath = baselineDesc
	if opts.Floor {
		rep.FloorPath = floorPathDesc
	}
	for i := range opts.Reps {
		for _, path := range pathOrder(names, i) {
			if tb := paths[path]; i > 0 && *opts.Restart && tb.restart != nil {
				lab.logf("rep %d/%d: restarting the %s path's daemons", i+1, opts.Reps, path)
				if err := tb.restart(ctx); err != nil {
					if ctx.Err() != nil {
						return nil, fmt.Errorf("bench overlay: interrupted while restarting the %s path before rep %d: %w", path, i+1, context.Cause(ctx))
					}
					return nil, fmt.Errorf("bench overlay: rep %d %s: %w", i+1, path, err)
				}
			}
			for _, w := range workloads {
				if !opts.runs(w.name) {
					continue
				}
				if ctx.Err() != nil {
					return nil, fmt.Errorf("bench overlay: interrupted before rep %d %s %s: %w", i+1, path, w.name, context.Cause(ctx))
				}
				lab.logf("rep %d/%d: %s %s (%v)", i+1, opts.Reps, path, w.name, opts.Duration)
				vals, err := w.run(ctx, paths[path], opts)
				if err != nil && ctx.Err() != nil {
					// The workload failed because the run was cut short;
					// its own error (a killed iperf3) would only confuse.
					return nil, fmt.Errorf("bench overlay: interrupted during rep %d %s %s: %w", i+1, path, w.name, context.Cause(ctx))
				}
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
					if figs[path][k] == nil {
						figs[path][k] = figures{}
					}
					figs[path][k][i] = v
				}
			}
		}
	}
	rep.Metrics = overlayMetrics(opts, figs)
	return rep, nil
}

// figures are one path's values of one metric by repetition (from 0); a
// repetition whose workload failed (--keep-going) has none.
type figures map[int]float64

// inOrder returns the values in the order of their repetitions.
func (f figures) inOrder() []float64 {
	vals := make([]float64, 0, len(f))
	for _, rep := range slices.Sorted(maps.Keys(f)) {
		vals = append(vals, f[rep])
	}
	return vals
}

// pairedRatios returns, in the order of the repetitions, a's value over
// b's for each repetition that has both and where b's is not 0. A
// repetition runs every path back to back, so its ratio compares the
// paths under the same conditions of the machine; how far these ratios
// spread says what one run's ratio is worth.
func pairedRatios(a, b figures) []float64 {
	var rs []float64
	for _, rep := range slices.Sorted(maps.Keys(a)) {
		if bv, ok := b[rep]; ok && bv != 0 {
			rs = append(rs, a[rep]/bv)
		}
	}
	return rs
}

// overlayMetrics builds the report's metrics from the figures of each
// path (by path name, then metric name): each path's summary, and ferry's
// ratio to each other path measured, of the medians and repetition by
// repetition.
func overlayMetrics(opts OverlayOptions, figs map[string]map[string]figures) []Metric {
	var ms []Metric
	for _, d := range metricDefs {
		if !opts.runs(workloadOf(d.Name)) {
			continue
		}
		m := d
		switch m.Name {
		case MetricTCP:
			m.Title = tcpTitle(opts.Streams, opts.TCPCC)
		case MetricUDPRx, MetricUDPTx:
			m.Title = fmt.Sprintf("%s (%d %s)", m.Title, opts.Flows, plural(opts.Flows, "flow", "flows"))
		}
		ferry := figs[PathFerry][d.Name]
		m.Ferry = Summarize(ferry.inOrder())
		// compare summarises path's figures and ferry's ratios to them.
		compare := func(path string) (Summary, *float64, *Summary) {
			other := figs[path][d.Name]
			sum := Summarize(other.inOrder())
			var byRep *Summary
			if rs := pairedRatios(ferry, other); len(rs) > 0 {
				s := Summarize(rs)
				byRep = &s
			}
			return sum, ratioOf(m.Ferry, sum), byRep
		}
		m.Kernel, m.Ratio, m.RatioByRep = compare(PathKernel)
		if opts.Flanneld != "" {
			f, r, byRep := compare(PathFlannel)
			m.Flannel, m.FlannelRatio, m.FlannelRatioByRep = &f, r, byRep
		}
		if opts.Baseline != "" {
			b, r, byRep := compare(PathBaseline)
			m.Baseline, m.BaselineRatio, m.BaselineRatioByRep = &b, r, byRep
		}
		if opts.Floor {
			f, r, byRep := compare(PathFloor)
			m.Floor, m.FloorRatio, m.FloorRatioByRep = &f, r, byRep
		}
		ms = append(ms, m)
	}
	return ms
}

// pathBuilder builds one path of the comparison in a lab.
type pathBuilder struct {
	name string
	fn   func(*lab, context.Context, OverlayOptions) (*testbed, error)
}

// pathOrder is the order the paths run in repetition rep: names rotated
// by rep, so each path goes first as often as the others (with two paths,
// they alternate).
func pathOrder(names []string, rep int) []string {
	k := rep % len(names)
	return append(slices.Clone(names[k:]), names[:k]...)
}

// ratioOf returns a pointer to a.Median / b.Median, or nil when either has
// no sample or b's median is 0.
func ratioOf(a, b Summary) *float64 {
	if len(a.Samples) == 0 || len(b.Samples) == 0 {
		return nil
	}
	r := Ratio(a.Median, b.Median)
	if math.IsNaN(r) {
		return nil
	}
	return &r
}

// iperfArgs is the iperf3 client command line of the TCP workload: secs
// seconds to server, JSON output, opts' streams and congestion control.
func iperfArgs(server netip.Addr, secs int, opts OverlayOptions) []string {
	args := []string{"-c", server.String(), "-p", strconv.Itoa(iperfPort), "-t", strconv.Itoa(secs), "-J"}
	if opts.TCPCC != "" {
		args = append(args, "-C", opts.TCPCC)
	}
	if opts.Streams > 1 {
		args = append(args, "-P", strconv.Itoa(opts.Streams))
	}
	return args
}

// plural returns one or many for n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// tcpTitle names the TCP figure after its streams and congestion
// control, as "TCP, one stream (bbr)".
func tcpTitle(streams int, cc string) string {
	n := "one stream"
	if streams > 1 {
		n = fmt.Sprintf("%d streams", streams)
	}
	return fmt.Sprintf("TCP, %s (%s)", n, cc)
}

// workload is one measurement run on one path; it returns values by
// metric name, of the metrics it lists.
type workload struct {
	name    string
	metrics []string
	run     func(ctx context.Context, tb *testbed, opts OverlayOptions) (map[string]float64, error)
}

// workloads are the overlay scenario's workloads, in the order each
// repetition runs them.
var workloads = []workload{
	{"tcp", []string{MetricTCP, MetricTCPRetrans, MetricTCPCPU}, runTCP},
	{"udp-rate", []string{MetricUDPRx, MetricUDPTx}, runUDPRate},
	{"latency", []string{MetricLatP50, MetricLatP99}, runLatency},
	{"loaded-latency", []string{MetricLoadedP50, MetricLoadedP99}, runLoadedLatency},
}

// WorkloadNames returns the names of the overlay scenario's workloads, in
// the order each repetition runs them: what OverlayOptions.Workloads and
// --workloads accept.
func WorkloadNames() []string {
	names := make([]string, len(workloads))
	for i, w := range workloads {
		names[i] = w.name
	}
	return names
}

// workloadOf returns the name of the workload that measures metric.
func workloadOf(metric string) string {
	for _, w := range workloads {
		if slices.Contains(w.metrics, metric) {
			return w.name
		}
	}
	return ""
}

// testbed is one built path: the sending container c1 (address addr1)
// and the receiving container c2 (address addr2), with an iperf3 server
// running in c2.
type testbed struct {
	c1, c2 *netNS
	// addr1 and addr2 are the addresses the workloads use: path1 and
	// path2, or with ipv6 the IPv6 ones the bench adds (containerAddr6).
	addr1, addr2 netip.Addr
	// path1 and path2 are the IPv4 addresses the path gives its
	// containers (ferry's daemons on an l2 path), which mark them ready.
	path1, path2 netip.Addr
	// ipv6 says the workloads run over IPv6 (OverlayOptions.IPv6).
	ipv6 bool
	// mtu is the MTU of both containers' interface.
	mtu   int
	iperf *proc
	// restart, on a path with daemons of its own (ferry's), stops and
	// starts them again and waits until the containers reach each other.
	restart func(context.Context) error
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

// pathCodes are the paths' one-letter codes in namespace names.
var pathCodes = map[string]string{PathFerry: "f", PathKernel: "k", PathFlannel: "n", PathBaseline: "b", PathFloor: "u"}

// hostPair creates two host namespaces joined by a veth underlay
// (underlayDev on both, MTU mtu, host1Addr and host2Addr) and two
// container namespaces, for the named path.
func (l *lab) hostPair(path string, mtu int) (h1, h2, c1, c2 *netNS, err error) {
	for _, p := range []struct {
		dst  **netNS
		role string
	}{{&h1, "h1"}, {&h2, "h2"}, {&c1, "c1"}, {&c2, "c2"}} {
		if *p.dst, err = l.ns(pathCodes[path] + p.role); err != nil {
			return
		}
	}
	if err = veth(h1, underlayDev, h2, underlayDev); err != nil {
		return
	}
	for _, h := range []*netNS{h1, h2} {
		if err = h.setMTU(underlayDev, mtu); err != nil {
			return
		}
	}
	if err = h1.addAddr(underlayDev, netip.PrefixFrom(host1Addr, underlayPrefix.Bits())); err != nil {
		return
	}
	err = h2.addAddr(underlayDev, netip.PrefixFrom(host2Addr, underlayPrefix.Bits()))
	return
}

// ferryHost is one simulated host of ferry's path, as its config names
// it.
type ferryHost struct {
	// index is 1 or 2: which host (on l3, host i owns 10.42.i.0/24).
	index int
	// name is the host namespace's name, also the node's name.
	name string
	// local and peer are this host's and the other host's underlay
	// addresses.
	local, peer netip.Addr
	// socket is the daemon's control socket.
	socket string
	// container is the container namespace's name; on l2 the TAP port
	// moves into it.
	container string
}

// ferryConfig returns the `ferry run` config of host h for opts' mode,
// encapsulation, workers and offloads (defaults filled in). l2: one network on 10.42.0.0/24
// with one TAP port moved into the container as eth0, with the container's
// address and a fixed MAC. l3: network 10.42.0.0/16, this host's subnet
// 10.42.i.0/24, the TUN device ferry0, and the other host as the peer that
// owns its subnet. Ports take the encapsulation's default.
func ferryConfig(opts OverlayOptions, h ferryHost) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  name: %s\n  underlay: %s\n  log_level: warn\n  offload: %t\n", h.name, h.local, opts.offload())
	if opts.Workers > 0 {
		fmt.Fprintf(&b, "  workers: %d\n", opts.Workers)
	}
	if len(opts.CPUs) > 0 {
		cpus := make([]string, len(opts.CPUs))
		for i, c := range opts.CPUs {
			cpus[i] = strconv.Itoa(c)
		}
		fmt.Fprintf(&b, "  cpus: [%s]\n", strings.Join(cpus, ", "))
	}
	fmt.Fprintf(&b, "control:\n  socket: %s\nmetrics:\n  listen: \"off\"\n", h.socket)
	fmt.Fprintf(&b, "networks:\n  - name: bench\n    mode: %s\n    encap: %s\n", opts.Mode, opts.Encap)
	if opts.Mode == ModeL3 {
		other := 3 - h.index
		fmt.Fprintf(&b, "    network: %s\n    subnet: %s\n    device: %s\n", l3Network, l3Subnet(h.index), l3Device)
		fmt.Fprintf(&b, "    peers:\n      - {underlay: %s, subnet: %s}\n", h.peer, l3Subnet(other))
		return b.String()
	}
	addr := containerAddr(ModeL2, h.index)
	fmt.Fprintf(&b, "    vni: %d\n    subnet: %s\n    peers: [%s]\n", overlayVNI, netip.PrefixFrom(addr, overlayBits).Masked(), h.peer)
	fmt.Fprintf(&b, "    ports:\n      - {name: tap0, netns: %s, ifname: %s, address: %s/%d, mac: \"02:42:0a:2a:00:%02x\"}\n",
		h.container, containerDev, addr, overlayBits, h.index)
	return b.String()
}

// l3Subnet is host i's share of l3Network: 10.42.i.0/24.
func l3Subnet(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, byte(i), 0}), 24)
}

// ferryPath builds ferry's path: a ferry daemon in each host namespace
// with a network of opts.Mode over opts.Encap. l2: one TAP port moved into
// the container namespace as eth0. l3, as flannel and Docker: ferry's TUN
// device routes the overlay, and the container hangs off a Linux bridge
// with the host's subnet (the network's MTU on both), forwarding on.
func (l *lab) ferryPath(ctx context.Context, opts OverlayOptions) (*testbed, error) {
	return l.ferryPathOf(ctx, opts, PathFerry, opts.FerryBin)
}

// baselinePath is ferryPath run by the baseline binary.
func (l *lab) baselinePath(ctx context.Context, opts OverlayOptions) (*testbed, error) {
	return l.ferryPathOf(ctx, opts, PathBaseline, opts.Baseline)
}

// describeFerry names a ferry binary for the report: "ferry at PATH
// (VERSION, GO)", from its `version` command, which also shows it runs.
func describeFerry(ctx context.Context, bin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s version: %w\n%s", bin, err, out)
	}
	var parts []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) >= 2 {
			parts = append(parts, strings.Join(f[1:], " "))
		}
	}
	return fmt.Sprintf("ferry at %s (%s)", bin, strings.Join(parts, ", ")), nil
}

// ferryPathOf builds ferry's path as the named path, run by binary bin.
func (l *lab) ferryPathOf(ctx context.Context, opts OverlayOptions, path, bin string) (*testbed, error) {
	h1, h2, c1, c2, err := l.hostPair(path, opts.UnderlayMTU)
	if err != nil {
		return nil, err
	}
	var daemons []ferryDaemon
	for i, d := range []struct{ host, cont, peer *netNS }{{h1, c1, h2}, {h2, c2, h1}} {
		h := ferryHost{
			index: i + 1, name: d.host.name, local: hostAddr(i + 1), peer: hostAddr(2 - i),
			socket: filepath.Join(l.dir, d.host.name+".sock"), container: d.cont.name,
		}
		text := ferryConfig(opts, h)
		cfg, err := config.Parse([]byte(text))
		if err != nil {
			return nil, fmt.Errorf("ferry config of %s: %w\n%s", h.name, err, text)
		}
		if opts.Mode == ModeL3 {
			n := &cfg.Networks[0]
			if err := l3Host(d.host, d.cont, n.EffectiveMTU(opts.UnderlayMTU), n.BridgeAddress(), containerAddr(ModeL3, h.index)); err != nil {
				return nil, err
			}
		}
		cfgFile := filepath.Join(l.dir, d.host.name+".yaml")
		if err := os.WriteFile(cfgFile, []byte(text), 0o600); err != nil {
			return nil, fmt.Errorf("write ferry config: %w", err)
		}
		daemons = append(daemons, ferryDaemon{d.host, cfgFile, h.socket})
	}
	start := func(ctx context.Context) ([]*proc, error) {
		var ps []*proc
		for _, d := range daemons {
			p, err := l.spawn(d.host, bin, "run", "--config", d.cfgFile)
			if err != nil {
				return nil, err
			}
			ps = append(ps, p)
			if err := waitDaemon(ctx, p, d.socket); err != nil {
				return nil, err
			}
		}
		return ps, nil
	}
	running, err := start(ctx)
	if err != nil {
		return nil, err
	}
	tb, err := l.finish(ctx, c1, c2, containerAddr(opts.Mode, 1), containerAddr(opts.Mode, 2), opts.IPv6)
	if err != nil {
		return nil, err
	}
	tb.restart = func(ctx context.Context) error {
		for _, p := range running {
			if err := p.stop(); err != nil {
				return fmt.Errorf("restart: stop %s: %w", p.name, err)
			}
		}
		ps, err := start(ctx)
		if err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		running = ps
		return tb.ready(ctx)
	}
	return tb, nil
}

// ferryDaemon is what starts one of a path's ferry daemons: its host, its
// config file and its control socket.
type ferryDaemon struct {
	host            *netNS
	cfgFile, socket string
}

// hostAddr is host i's underlay address (1 or 2).
func hostAddr(i int) netip.Addr {
	if i == 1 {
		return host1Addr
	}
	return host2Addr
}

// l3Host builds a routed host's container side: the bridge cbr0 with
// address br (the host's subnet), a veth from it into the container (eth0,
// address addr in that subnet, a default route via the bridge), mtu on
// every one of them, and IPv4 forwarding in the host.
func l3Host(host, cont *netNS, mtu int, br netip.Prefix, addr netip.Addr) error {
	if err := host.addBridge(l3Bridge); err != nil {
		return err
	}
	if err := veth(host, l3HostVeth, cont, containerDev); err != nil {
		return err
	}
	for _, dev := range []string{l3Bridge, l3HostVeth} {
		if err := host.setMTU(dev, mtu); err != nil {
			return err
		}
	}
	if err := host.enslave(l3HostVeth, l3Bridge); err != nil {
		return err
	}
	if err := host.addAddr(l3Bridge, br); err != nil {
		return err
	}
	if err := host.linkUp(l3Bridge); err != nil {
		return err
	}
	if err := host.sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	if err := cont.setMTU(containerDev, mtu); err != nil {
		return err
	}
	if err := cont.addAddr(containerDev, netip.PrefixFrom(addr, br.Bits())); err != nil {
		return err
	}
	return cont.addDefaultRoute(br.Addr())
}

// waitDaemon waits until the daemon answers on its control socket.
func waitDaemon(ctx context.Context, p *proc, socket string) error {
	client := ctl.NewClient(socket)
	return waitProc(ctx, p, daemonTimeout, 100*time.Millisecond, "answer on "+socket, func() bool {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := client.Status(rctx)
		return err == nil
	})
}

// waitProc checks ready every interval until it holds, for at most
// timeout, and fails at once when p exits or ctx ends; what says what p
// was to do, for the errors, which carry p's output.
func waitProc(ctx context.Context, p *proc, timeout, every time.Duration, what string, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ready() {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it would %s: %v\n%s", p.name, what, p.cmd.ProcessState, p.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not %s within %v\n%s", p.name, what, timeout, p.out.String())
		}
	}
	return nil
}

// floorPath builds the userspace floor: in each host a relay (`ferry
// bench relay`, Relay) whose TAP is the container's eth0, with the MTU the
// kernel's path gives its containers, over a veth underlay of
// floorUnderlayMTU so that a superpacket fits one datagram.
func (l *lab) floorPath(ctx context.Context, opts OverlayOptions) (*testbed, error) {
	h1, h2, c1, c2, err := l.hostPair(PathFloor, floorUnderlayMTU)
	if err != nil {
		return nil, err
	}
	for i, d := range []struct{ host, cont *netNS }{{h1, c1}, {h2, c2}} {
		addr := netip.PrefixFrom(containerAddr(ModeL2, i+1), overlayBits)
		p, err := l.spawn(d.host, opts.FerryBin, "bench", "relay", "--netns", d.cont.name, "--ifname", containerDev,
			"--address", addr.String(), "--mtu", strconv.Itoa(opts.UnderlayMTU-encap.VXLANOverhead),
			"--local", hostAddr(i+1).String(), "--peer", hostAddr(2-i).String())
		if err != nil {
			return nil, err
		}
		if err := waitOutput(ctx, p, "ready"); err != nil {
			return nil, err
		}
	}
	return l.finish(ctx, c1, c2, containerAddr(ModeL2, 1), containerAddr(ModeL2, 2), opts.IPv6)
}

// waitOutput waits until process p has printed want, for daemonTimeout.
func waitOutput(ctx context.Context, p *proc, want string) error {
	return waitProc(ctx, p, daemonTimeout, 20*time.Millisecond, "print "+strconv.Quote(want), func() bool {
		return strings.Contains(p.out.String(), want)
	})
}

// kernelPath builds the kernel's Docker-style path: in each host a VXLAN
// device and a bridge, and a veth from the bridge into the container.
func (l *lab) kernelPath(ctx context.Context, opts OverlayOptions) (*testbed, error) {
	h1, h2, c1, c2, err := l.hostPair(PathKernel, opts.UnderlayMTU)
	if err != nil {
		return nil, err
	}
	for _, d := range []struct {
		host, cont    *netNS
		local, remote netip.Addr
		addr          netip.Addr
	}{
		{h1, c1, host1Addr, host2Addr, containerAddr(ModeL2, 1)},
		{h2, c2, host2Addr, host1Addr, containerAddr(ModeL2, 2)},
	} {
		if err := veth(d.host, "vc0", d.cont, containerDev); err != nil {
			return nil, err
		}
		if err := kernelOverlay(d.host, underlayDev, d.local, d.remote, overlayVNI, overlayPort, "vc0"); err != nil {
			return nil, err
		}
		if err := d.cont.setMTU(containerDev, opts.UnderlayMTU-encap.VXLANOverhead); err != nil {
			return nil, err
		}
		if err := d.cont.addAddr(containerDev, netip.PrefixFrom(d.addr, overlayBits)); err != nil {
			return nil, err
		}
	}
	return l.finish(ctx, c1, c2, containerAddr(ModeL2, 1), containerAddr(ModeL2, 2), opts.IPv6)
}

// finish waits for the containers' addresses (c1 has addr1, c2 addr2),
// with ipv6 gives them their IPv6 addresses, starts the iperf3 server in
// c2 and checks that c1 reaches c2.
func (l *lab) finish(ctx context.Context, c1, c2 *netNS, addr1, addr2 netip.Addr, ipv6 bool) (*testbed, error) {
	tb := &testbed{c1: c1, c2: c2, addr1: addr1, addr2: addr2, path1: addr1, path2: addr2, ipv6: ipv6}
	if err := tb.waitAddrs(ctx); err != nil {
		return nil, err
	}
	mtu1, err := c1.mtu(containerDev)
	if err != nil {
		return nil, err
	}
	mtu2, err := c2.mtu(containerDev)
	if err != nil {
		return nil, err
	}
	if mtu1 != mtu2 {
		return nil, fmt.Errorf("the containers' MTUs differ: %d in %s, %d in %s", mtu1, c1.name, mtu2, c2.name)
	}
	tb.mtu = mtu1
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

// waitAddrs waits until both containers have the path's addresses (a
// ferry daemon may answer before it has configured its ports), and with
// ipv6 then gives them their IPv6 addresses, without duplicate address
// detection so they are usable at once: a restarted daemon's port is a
// new device, without them.
func (tb *testbed) waitAddrs(ctx context.Context) error {
	for _, c := range []struct {
		ns   *netNS
		addr netip.Addr
	}{{tb.c1, tb.path1}, {tb.c2, tb.path2}} {
		if err := waitAddr(ctx, c.ns, containerDev, c.addr); err != nil {
			return err
		}
	}
	if !tb.ipv6 {
		return nil
	}
	for i, c := range []*netNS{tb.c1, tb.c2} {
		if err := c.addAddr(containerDev, netip.PrefixFrom(containerAddr6(i+1), containerBits6)); err != nil {
			return err
		}
	}
	tb.addr1, tb.addr2 = containerAddr6(1), containerAddr6(2)
	return nil
}

// ready waits, after the path's daemons were restarted, until the
// containers have their addresses again and reach each other.
func (tb *testbed) ready(ctx context.Context) error {
	if err := tb.waitAddrs(ctx); err != nil {
		return err
	}
	return reachable(ctx, tb)
}

// waitListen waits until the process listens on TCP port in its namespace,
// reading /proc/PID/net/tcp and tcp6 (which show the process's namespace) so that
// no test connection disturbs the server.
func waitListen(ctx context.Context, p *proc, port int) error {
	want := fmt.Sprintf(":%04X ", port)
	return waitProc(ctx, p, 5*time.Second, 50*time.Millisecond, fmt.Sprintf("listen on port %d", port), func() bool {
		// iperf3 listens on a dual-stack IPv6 socket where it can.
		for _, file := range []string{"tcp", "tcp6"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", p.cmd.Process.Pid, file))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) > 3 && strings.HasSuffix(f[1]+" ", want) && f[3] == "0A" {
					return true
				}
			}
		}
		return false
	})
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
