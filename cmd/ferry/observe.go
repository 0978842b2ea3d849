package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/dataplane"
)

// printDone reports a change the daemon made.
func (c *cli) printDone(cmd *cobra.Command, d ctl.Done, err error) error {
	if err != nil {
		return err
	}
	return c.print(cmd, d, func(w io.Writer) { fmt.Fprintln(w, d.Message) })
}

// newFDBChangeCmds returns `fdb add`, `fdb del` and `fdb flush`.
func newFDBChangeCmds(c *cli) []*cobra.Command {
	var port, peer string
	add := &cobra.Command{
		Use:   "add NETWORK MAC (--port PORT | --peer ADDR)",
		Short: "Pin a MAC to a local port or a peer with a static entry",
		Long: `Add a static FDB entry: frames to MAC go to the local port or the peer, and
learning never moves or ages it. An existing entry for MAC is replaced.`,
		Example: "  ferry fdb add blue 02:42:0a:2a:00:09 --peer 192.168.77.2",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (port == "") == (peer == "") {
				return fmt.Errorf("give exactly one of --port and --peer")
			}
			d, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) (ctl.Done, error) {
				return cl.AddFDB(ctx, ctl.FDBRequest{Network: args[0], MAC: args[1], Port: port, Peer: peer})
			})
			return c.printDone(cmd, d, err)
		},
	}
	add.Flags().StringVar(&port, "port", "", "local port the MAC is at")
	add.Flags().StringVar(&peer, "peer", "", "underlay address of the peer the MAC is behind")
	del := &cobra.Command{
		Use:   "del NETWORK MAC",
		Short: "Remove a MAC's FDB entry, static or learned",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) (ctl.Done, error) {
				return cl.DeleteFDB(ctx, ctl.FDBRequest{Network: args[0], MAC: args[1]})
			})
			return c.printDone(cmd, d, err)
		},
	}
	flush := &cobra.Command{
		Use:   "flush [NETWORK]",
		Short: "Remove the learned FDB entries of one network, or of all (static ones stay)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			network := ""
			if len(args) == 1 {
				network = args[0]
			}
			f, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) (ctl.Flushed, error) {
				return cl.FlushFDB(ctx, network)
			})
			if err != nil {
				return err
			}
			return c.print(cmd, f, func(w io.Writer) { fmt.Fprintf(w, "removed %d learned entries\n", f.Removed) })
		},
	}
	return []*cobra.Command{add, del, flush}
}

func newPeerCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "peer",
		Short: "Add or remove a remote host (VXLAN peer) of a network at runtime",
		Long: `Add or remove a peer of a network while traffic flows. A new peer gets
flooded frames from the next batch on and its datagrams are accepted; a removed
peer gets nothing more, its datagrams are dropped as unknown-peer, and the FDB
entries behind it are flushed. Changes last until the daemon restarts (the
config file is not rewritten). "ferry peers" lists the peers.`,
	}
	change := func(use, short string, add bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NETWORK ADDR",
			Short: short,
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				a, err := netip.ParseAddr(args[1])
				if err != nil {
					return fmt.Errorf("peer %q: not an IP address", args[1])
				}
				d, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) (ctl.Done, error) {
					req := ctl.PeerRequest{Network: args[0], Address: a}
					if add {
						return cl.AddPeer(ctx, req)
					}
					return cl.RemovePeer(ctx, req)
				})
				return c.printDone(cmd, d, err)
			},
		}
	}
	cmd.AddCommand(
		change("add", "Add a peer to a network", true),
		change("del", "Remove a peer from a network and flush its FDB entries", false),
	)
	return cmd
}

// filterHelp documents the filter language for trace and pcap.
const filterHelp = `Filter expressions (tcpdump style, on the inner frame):
  host ADDR, src host ADDR, dst host ADDR     IP address (ARP: sender/target)
  net PREFIX, src net PREFIX, dst net PREFIX  e.g. net 10.42.0.0/24
  port N, src port N, dst port N              TCP or UDP port
  proto tcp|udp|icmp|arp|ip|ip6               also bare: tcp, udp, icmp, arp
  ether host MAC, ether src MAC, ether dst MAC
  vni N                                       the network's VXLAN VNI
combined with and (&&), or (||), not (!) and parentheses.`

func printTraceStatus(c *cli, cmd *cobra.Command, st dataplane.TraceStatus) error {
	return c.print(cmd, st, func(w io.Writer) {
		if st.Started.IsZero() {
			fmt.Fprintln(w, "no trace (start one with: ferry trace start)")
			return
		}
		state := "stopped"
		if st.Running {
			state = "running"
		}
		row(w, "trace:", state)
		row(w, "traced:", fmt.Sprintf("%d of %d packets", st.Traced, st.Count))
		if st.Port != "" {
			row(w, "port:", st.Port)
		}
		if st.Filter != "" {
			row(w, "filter:", st.Filter)
		}
		if st.Overflow > 0 {
			row(w, "overflow:", fmt.Sprintf("%d packets not recorded (trace buffer full)", st.Overflow))
		}
	})
}

// printTracePacket writes one traced packet: a header line, then one line
// per step with the time since ingress.
func printTracePacket(w io.Writer, p dataplane.TracePacket) {
	what := "Packet"
	if p.DryRun {
		what = "What-if packet (dry run: nothing sent, learned or counted)"
	}
	if p.Seq > 0 {
		what += fmt.Sprintf(" %d", p.Seq)
	}
	fmt.Fprintf(w, "%s, worker %d, %s, %d bytes\n", what, p.Worker, p.Time.Format("15:04:05.000000"), p.Length)
	for _, s := range p.Steps {
		fmt.Fprintf(w, "  %+9.3fus  %-15s %s\n", float64(s.ElapsedNs)/1e3, s.Stage, s.Decision)
	}
	if p.Lost > 0 {
		fmt.Fprintf(w, "  (%d more steps not recorded)\n", p.Lost)
	}
}

func newTraceCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Trace packets through the pipeline, stage by stage; or ask where a made-up packet would go",
		Long: `Packet trace: "ferry trace start" marks the next packets that enter ferry
(from a local port or the tunnel) and match the port and filter; every stage
then records what it decided about them — decoded headers at ingress, FDB hit
(which port or peer) or miss (flooded to how many ports and peers), VXLAN
encapsulation to which peer with which VNI, or the drop reason. The trace
buffer keeps at most 512 packets. Without a subcommand, shows the trace's state.

What-if trace: "ferry trace inject" runs a packet you describe through the same
stage code on the live tables, without sending it, learning from it or counting
it, and prints the same story.

` + filterHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := call(cmd, c, (*ctl.Client).TraceStatus)
			if err != nil {
				return err
			}
			return printTraceStatus(c, cmd, st)
		},
	}
	var spec dataplane.TraceSpec
	start := &cobra.Command{
		Use:     "start",
		Short:   "Start tracing the next packets (replaces the previous trace)",
		Example: "  ferry trace start --count 10 --filter 'icmp and host 10.42.0.3'\n  ferry trace start --port tap-c1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) (dataplane.TraceStatus, error) {
				return cl.StartTrace(ctx, spec)
			})
			if err != nil {
				return err
			}
			return printTraceStatus(c, cmd, st)
		},
	}
	start.Flags().IntVar(&spec.Count, "count", dataplane.DefaultTraceCount, fmt.Sprintf("packets to trace (at most %d)", dataplane.MaxTraceCount))
	start.Flags().StringVar(&spec.Port, "port", "", "trace only frames read from this local port")
	start.Flags().StringVar(&spec.Filter, "filter", "", "trace only packets matching this filter expression")
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the traced packets, each with every stage's decision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pkts, err := call(cmd, c, (*ctl.Client).TraceShow)
			if err != nil {
				return err
			}
			return c.print(cmd, pkts, func(w io.Writer) {
				if len(pkts) == 0 {
					fmt.Fprintln(w, "no packets traced")
				}
				for i, p := range pkts {
					if i > 0 {
						fmt.Fprintln(w)
					}
					printTracePacket(w, p)
				}
			})
		},
	}
	paths := &cobra.Command{
		Use:   "paths",
		Short: "Group the traced packets by the stages they took, with counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := call(cmd, c, (*ctl.Client).TracePaths)
			if err != nil {
				return err
			}
			return c.print(cmd, ps, func(w io.Writer) {
				row(w, "PACKETS", "PATH")
				for _, p := range ps {
					row(w, p.Packets, p.Path)
				}
			})
		},
	}
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop tracing; the traced packets stay for show and paths",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := call(cmd, c, (*ctl.Client).StopTrace)
			if err != nil {
				return err
			}
			return printTraceStatus(c, cmd, st)
		},
	}
	clearCmd := &cobra.Command{
		Use:   "clear",
		Short: "Discard the traced packets (a running trace goes on)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := call(cmd, c, (*ctl.Client).ClearTrace)
			if err != nil {
				return err
			}
			return printTraceStatus(c, cmd, st)
		},
	}
	cmd.AddCommand(start, show, paths, stop, clearCmd, newInjectCmd(c))
	return cmd
}

func newInjectCmd(c *cli) *cobra.Command {
	var spec dataplane.InjectSpec
	cmd := &cobra.Command{
		Use:   "inject --in PORT|peer:ADDR|uplink:NAME [--vni N] (DESCRIPTION | --hex FRAME)",
		Short: "Ask where a made-up packet would go, and why (dry run: nothing is sent or changed)",
		Long: `Run a made-up packet through the real pipeline decisions on the live FDB and
tables — FDB lookup (without learning), flood sets, split horizon, VXLAN
encapsulation target; on gateway networks the route, the next hop from the
neighbour table and the NAT rewrite or the translation a new connection would
get — without sending it anywhere, learning from it, creating a connection or
counting it, and print every stage's decision.

--in names where it enters: a local port, peer:ADDR for a VXLAN datagram
from that peer (with --vni, default the VNI of the peer's network), or
uplink:NAME for an IPv4 packet from the outside (the eth part is dropped).

The packet is a description in words (or --hex with the bytes of a frame):
  eth [src MAC] [dst MAC]                  default src 02:00:00:00:00:01, dst broadcast
  ip|ip6 src ADDR dst ADDR [ttl N]
  tcp|udp [sport N] [dport N] [flags SA]   tcp default flags S, dport 80
  icmp [echo-request|echo-reply]
  arp who-has ADDR tell ADDR
  payload N                                N bytes of zeros`,
		Example: `  ferry trace inject --in tap-c1 'eth src 02:42:0a:2a:00:02 dst 02:42:0a:2a:00:03 ip src 10.42.0.2 dst 10.42.0.3 tcp dport 80'
  ferry trace inject --in peer:192.168.77.2 --vni 42 'eth dst ff:ff:ff:ff:ff:ff arp who-has 10.42.0.3 tell 10.42.0.9'`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Packet = strings.Join(args, " ")
			if (spec.Packet == "") == (spec.Hex == "") {
				return fmt.Errorf("give a packet description or --hex FRAME (one of them)")
			}
			tp, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) (dataplane.TracePacket, error) {
				return cl.Inject(ctx, spec)
			})
			if err != nil {
				return err
			}
			return c.print(cmd, tp, func(w io.Writer) { printTracePacket(w, tp) })
		},
	}
	cmd.Flags().StringVar(&spec.In, "in", "", "where the packet enters: a local port, peer:ADDR or uplink:NAME")
	cmd.Flags().Uint32Var(&spec.VNI, "vni", 0, "VXLAN VNI of a datagram from a peer (default: the peer's network)")
	cmd.Flags().StringVar(&spec.Hex, "hex", "", "the frame as hex bytes instead of a description")
	_ = cmd.MarkFlagRequired("in")
	return cmd
}

func newPcapCmd(c *cli) *cobra.Command {
	var (
		req    ctl.PcapRequest
		output string
	)
	cmd := &cobra.Command{
		Use:   "pcap --point POINT -w FILE|- [--filter EXPR] [--count N] [--snaplen N] [--duration D]",
		Short: "Capture packets at a point of the pipeline into a pcapng file (or stream it)",
		Long: `Capture packets at one point of the pipeline as pcapng, which tcpdump and
Wireshark read. Points:
  rx:PORT, tx:PORT          frames read from / written to a local port (on a
                            TUN port: bare IP packets, link type RAW)
  tunnel-rx, tunnel-tx      outer VXLAN, GRE or flannel-UDP packets from / to
                            every peer
  tunnel-rx:PEER, ...:PEER  outer packets of one peer only
  pre-nat, post-nat         the IPv4 packet just before / after NAT rewrites it
                            (link type RAW)
  drop                      dropped packets; each carries a pcapng comment with
                            the stage and reason (tshark: frame.comment)
At tunnel points the sockets see no outer headers; ferry writes outer Ethernet
(placeholder MACs) and IP headers with the real addresses, then UDP with the
real ports (VXLAN, flannel-UDP) or nothing (GRE, IP protocol 47), so Wireshark
dissects the packets as on the wire.

A capture is always bounded: by --count (default 1000; 0 = no count bound),
--max-size (default 64 MiB) and optionally --duration. "-w -" streams to stdout
as packets arrive:
  ferry pcap --point tunnel-tx -w - | tcpdump -n -r -
If the reader falls behind, packets are not captured (never delayed) and the
number missed is reported at the end.

` + filterHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == "" {
				return fmt.Errorf("give -w FILE, or -w - for stdout")
			}
			if req.Count == 0 {
				req.Count = -1 // the API's "no count bound"
			}
			var out io.Writer = cmd.OutOrStdout()
			if output != "-" {
				f, err := os.Create(output)
				if err != nil {
					return fmt.Errorf("pcap: %w", err)
				}
				defer f.Close()
				out = f
			}
			// Interrupting a capture (Ctrl-C) ends it cleanly.
			sum, err := ctl.NewClient(c.socket).Pcap(cmd.Context(), req, out)
			if err != nil {
				return err
			}
			if cmd.Context().Err() == nil {
				msg := fmt.Sprintf("%d packets captured", sum.Packets)
				if sum.Dropped > 0 {
					msg += fmt.Sprintf(", %d missed (reader too slow)", sum.Dropped)
				}
				fmt.Fprintln(cmd.ErrOrStderr(), msg)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Point, "point", "", "capture point: rx:PORT, tx:PORT, tunnel-rx[:PEER], tunnel-tx[:PEER] or drop")
	f.StringVar(&req.Filter, "filter", "", "capture only packets matching this filter expression")
	f.IntVar(&req.Count, "count", ctl.DefaultPcapCount, "stop after this many packets (0: no count bound)")
	f.IntVar(&req.Snaplen, "snaplen", dataplane.DefaultSnaplen, "bytes kept of each packet")
	f.DurationVar(&req.Duration, "duration", 0, "stop after this long (e.g. 30s; 0: no time bound)")
	f.Int64Var(&req.MaxBytes, "max-size", ctl.DefaultPcapMaxBytes, "stop before the file grows past this many bytes")
	f.StringVarP(&output, "write", "w", "", `pcapng file to write, or "-" for stdout`)
	_ = cmd.MarkFlagRequired("point")
	return cmd
}
