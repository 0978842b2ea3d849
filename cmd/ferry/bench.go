package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-overlay/ferry/bench"
	"github.com/ferry-overlay/ferry/config"
)

// newBenchCmd is `ferry bench`: the benchmark scenarios of package bench.
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure ferry's dataplane: in-process pipeline, or ferry against the kernel's overlay",
		Long: `Benchmarks a person can rerun. Every figure is repeated (--reps) and
reported as the median with its spread (±half the range, in percent).

  pipeline  synthetic frames through ferry's real stages on in-memory ports,
            no syscalls, one core: Mpps, ns per frame and per stage, allocations
  overlay   two hosts with one container each, in network namespaces, over
            ferry's path and the kernel's Docker-style VXLAN path, alternating:
            one TCP stream, small-packet UDP rate, request/response latency
            (needs root and iperf3)`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newBenchPipelineCmd(), newBenchOverlayCmd(), newBenchRelayCmd())
	return cmd
}

// jsonOutput reports whether the global -o flag asks for JSON.
func jsonOutput(cmd *cobra.Command) bool {
	f := cmd.Flag("output")
	return f != nil && f.Value.String() == outputJSON
}

func newBenchPipelineCmd() *cobra.Command {
	opts := bench.PipelineOptions{Duration: time.Second, Size: 64, Flows: 64, Reps: 5}
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Run synthetic frames through the real pipeline stages on fake ports (no syscalls, one core)",
		Long: `Runs four scenarios on one worker goroutine locked to one core, with
in-memory ports, tunnel and uplink that make no syscalls, so only the
pipeline's own cost is measured:

  port-to-peer    port-rx, ethernet-input, bridge, vxlan-encap, tunnel-tx
  peer-to-port    tunnel-rx, vxlan-decap, ethernet-input, bridge, port-tx
  flood           a broadcast from a port to one other port and two peers
  port-to-uplink  port-rx, ethernet-input, bridge, gateway, nat, uplink-tx:
                  frames to an outside address masqueraded through the
                  network's gateway (established connections, one per flow)

It prints Mpps, ns per frame, ns per packet of each stage (the engine's own
runtime counters) and heap allocations per frame (runtime.MemStats).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := bench.Pipeline(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return bench.WriteJSON(cmd.OutOrStdout(), rep)
			}
			return rep.WriteTable(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Frames, "frames", opts.Frames, "input frames per repetition of each scenario (0: run for --duration)")
	f.DurationVar(&opts.Duration, "duration", opts.Duration, "time per repetition of each scenario when --frames is 0")
	f.IntVar(&opts.Size, "size", opts.Size, fmt.Sprintf("inner Ethernet frame size in bytes, 42..%d", bench.MaxPipelineFrame))
	f.IntVar(&opts.Flows, "flows", opts.Flows, "distinct flows (UDP source ports) cycled through")
	f.IntVar(&opts.Reps, "reps", opts.Reps, "repetitions of each scenario")
	return cmd
}

func newBenchOverlayCmd() *cobra.Command {
	opts := bench.OverlayOptions{Duration: 10 * time.Second, Reps: 3, Size: 64, Encap: bench.EncapVXLAN, Mode: bench.ModeL2}
	var jsonFile, svgFile string
	var offload, restart bool
	cmd := &cobra.Command{
		Use:   "overlay",
		Short: "Compare ferry's overlay path with the kernel's VXLAN path in network namespaces (root, iperf3)",
		Long: `Builds, in network namespaces of its own, two hosts with one container each
over a veth underlay, twice: joined by ferry daemons (this binary, "ferry run",
with a network of --mode over --encap), and joined by the kernel's
Docker-style path (container veth, Linux bridge, kernel VXLAN), which is the
same for every --mode and --encap. Each repetition runs every workload
(--workloads: those named) on both paths, alternating which goes first:

  tcp             one iperf3 TCP stream (--streams N: N of them), receiver's
                  Gbit/s, with the kernel's default congestion control or
                  --tcp-cc
  udp-rate        UDP datagrams of --size bytes from --flows sendmmsg sockets,
                  counted at the receiver with recvmmsg (delivered and offered
                  kpps)
  latency         UDP request/response of --size bytes, one in flight: p50, p99
  loaded-latency  the same while the tcp workload's stream runs the same way
                  (what a request/response flow sees beside a bulk transfer)

ferry's path by --mode:

  l2  TAP ports moved into the containers, ferry's learning bridge;
      --encap vxlan (UDP 4789) or gre (the VNI as GRE key)
  l3  flannel style: each container on a Linux bridge in its host, routed
      through ferry's TUN device; --encap udp (flannel-UDP), gre or vxlan
      (flannel-vxlan)

With --flanneld PATH it also builds flannel's udp backend (the flanneld
binary at PATH, which you build from github.com/flannel-io/flannel; etcd from
etcd-server and etcd-client keeps its leases) between two more hosts, the
same containers on Linux bridges routed through flannel's TUN, and measures it
as a third path. Compare it with --mode l3 --encap udp, flannel's wire format.

With --baseline PATH it also runs ferry's path with the ferry binary at PATH
(an earlier build, say) and the same options, so one run says what a change
did: the figures of both builds, measured alternately, and their ratio.

ferry's daemons (and the baseline's) are restarted before every repetition
after the first (--restart=false keeps them), so the repetitions also sample
what a start decides, such as the worker each flow lands on.

It prints the medians and spreads of the paths and ferry's ratios, and with
--json and --svg writes the report and a bar chart. Everything it creates is
removed when it ends, also on SIGINT/SIGTERM. It needs root and iperf3 and
installs nothing: a missing tool is named with the command that installs it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("bench overlay: find the ferry binary: %w", err)
			}
			opts.FerryBin = bin
			opts.Log = cmd.ErrOrStderr()
			opts.Offload, opts.Restart = &offload, &restart
			rep, err := bench.Overlay(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if jsonFile != "" {
				if err := writeFile(jsonFile, func(w io.Writer) error { return bench.WriteJSON(w, rep) }); err != nil {
					return err
				}
			}
			if svgFile != "" {
				if err := writeFile(svgFile, rep.WriteSVG); err != nil {
					return err
				}
			}
			if jsonOutput(cmd) {
				return bench.WriteJSON(cmd.OutOrStdout(), rep)
			}
			return rep.WriteTable(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.DurationVar(&opts.Duration, "duration", opts.Duration, "time of each workload on each path in each repetition (at least 1s)")
	f.IntVar(&opts.Reps, "reps", opts.Reps, "repetitions; figures are the median over them")
	f.IntVar(&opts.Size, "size", opts.Size, fmt.Sprintf("UDP payload bytes of the packet-rate and latency workloads, %d..%d (%d below --underlay-mtu, %d with --ipv6)", bench.MinOverlaySize, bench.MaxOverlaySize(bench.DefaultUnderlayMTU, false), bench.DefaultUnderlayMTU-bench.MaxOverlaySize(bench.DefaultUnderlayMTU, false), bench.DefaultUnderlayMTU-bench.MaxOverlaySize(bench.DefaultUnderlayMTU, true)))
	f.BoolVar(&opts.IPv6, "ipv6", false, "run the workloads between the containers' IPv6 addresses (fd42::1, fd42::2) on both paths; the underlay stays IPv4; --mode l2 only")
	f.IntVar(&opts.UnderlayMTU, "underlay-mtu", bench.DefaultUnderlayMTU, fmt.Sprintf("MTU of the veth underlay between the hosts of every path, %d..%d (9000: jumbo frames); the overlays' MTUs follow from it", bench.MinUnderlayMTU, bench.MaxUnderlayMTU))
	f.StringVar(&opts.Encap, "encap", opts.Encap, "tunnel format of ferry's path: vxlan, gre, or udp (flannel-UDP, --mode l3 only)")
	f.StringVar(&opts.Mode, "mode", opts.Mode, "network type of ferry's path: l2 (TAP ports, learning bridge) or l3 (flannel-style TUN routing)")
	f.IntVar(&opts.Streams, "streams", 1, fmt.Sprintf("parallel TCP streams of the tcp workload (iperf3 -P), 1..%d", bench.MaxStreams))
	f.StringVar(&opts.TCPCC, "tcp-cc", "", "TCP congestion control of the tcp workload on both paths (iperf3 -C), such as cubic or bbr; default: the kernel's (net.ipv4.tcp_congestion_control)")
	f.IntVar(&opts.Flows, "flows", bench.DefaultFlows, fmt.Sprintf("UDP flows (sending sockets) of the packet-rate workload, 1..%d", bench.MaxFlows))
	f.IntVar(&opts.Workers, "workers", 0, fmt.Sprintf("dataplane workers of each ferry daemon, 1..%d; 0: one per CPU, ferry's default", config.MaxWorkers))
	f.IntSliceVar(&opts.CPUs, "cpus", nil, "pin each ferry daemon's workers to these CPUs (node.cpus), such as 0,1; default: not pinned")
	f.BoolVar(&offload, "offload", true, "ferry's TAP/TUN and UDP offloads (node.offload); --offload=false shows what they buy")
	f.StringVar(&opts.Flanneld, "flanneld", "", "also measure flannel's udp backend, run by the flanneld binary at this path (needs etcd and etcdctl)")
	f.StringVar(&opts.Baseline, "baseline", "", "also run ferry's path with the ferry binary at this path (an earlier build) and report this build's ratio to it")
	f.BoolVar(&opts.Floor, "floor", false, "also measure the userspace floor: hosts that relay each frame or superpacket as one UDP datagram and do nothing else, the least a TAP-and-socket dataplane costs on this machine")
	f.StringSliceVar(&opts.Workloads, "workloads", nil, fmt.Sprintf("run only these workloads, such as tcp,latency; default: all (%s)", strings.Join(bench.WorkloadNames(), ",")))
	f.BoolVar(&opts.KeepGoing, "keep-going", false, "record a failed workload in the report and go on")
	f.BoolVar(&restart, "restart", true, "restart ferry's daemons before every repetition after the first, so the repetitions also sample what a start decides")
	f.StringVar(&jsonFile, "json", "", "also write the report as JSON to this file")
	f.StringVar(&svgFile, "svg", "", "also draw the report as an SVG bar chart into this file")
	return cmd
}

// writeFile creates path and fills it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// newBenchRelayCmd is the userspace floor's forwarder, which `ferry bench
// overlay --floor` starts in each of the floor path's hosts; hidden, as
// it is of no use on its own.
func newBenchRelayCmd() *cobra.Command {
	var o bench.RelayOptions
	var addr, local, peer string
	cmd := &cobra.Command{
		Use:    "relay",
		Short:  "Relay a container's TAP over UDP, as the userspace floor of bench overlay --floor",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Address, err = netip.ParsePrefix(addr); err != nil {
				return fmt.Errorf("relay: --address: %w", err)
			}
			if o.Local, err = netip.ParseAddr(local); err != nil {
				return fmt.Errorf("relay: --local: %w", err)
			}
			if o.Peer, err = netip.ParseAddr(peer); err != nil {
				return fmt.Errorf("relay: --peer: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return bench.Relay(ctx, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Netns, "netns", "", "container namespace the TAP moves into")
	f.StringVar(&o.Ifname, "ifname", "eth0", "the TAP's name in the container")
	f.StringVar(&addr, "address", "", "the container's address with its prefix length")
	f.IntVar(&o.MTU, "mtu", 1450, "the container's MTU")
	f.StringVar(&local, "local", "", "this host's underlay address")
	f.StringVar(&peer, "peer", "", "the other host's underlay address")
	return cmd
}
