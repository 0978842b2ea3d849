package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/dataplane"
)

// requestTimeout bounds one control request of a client command.
const requestTimeout = 10 * time.Second

// call runs one request against the daemon with the command's context and
// requestTimeout.
// f is a Client method expression such as (*ctl.Client).Ports.
func call[T any](cmd *cobra.Command, c *cli, f func(*ctl.Client, context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
	defer cancel()
	return f(ctl.NewClient(c.socket), ctx)
}

// print writes v to the command's output: indented JSON of v itself with
// -o json, else the table that table writes.
func (c *cli) print(cmd *cobra.Command, v any, table func(w io.Writer)) error {
	out := cmd.OutOrStdout()
	if c.output == outputJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// row writes one tab-separated table row.
func row(w io.Writer, cells ...any) {
	for i, cell := range cells {
		if i > 0 {
			fmt.Fprint(w, "\t")
		}
		fmt.Fprint(w, cell)
	}
	fmt.Fprintln(w)
}

// versionInfo is what `ferry version -o json` prints.
type versionInfo struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func newVersionCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this ferry binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
			return c.print(cmd, v, func(w io.Writer) {
				row(w, "ferry", v.Version)
				row(w, "go", v.GoVersion+" "+v.Platform)
			})
		},
	}
}

func newStatusCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's version, uptime, workers and networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := call(cmd, c, (*ctl.Client).Status)
			if err != nil {
				return err
			}
			return c.print(cmd, st, func(w io.Writer) {
				row(w, "node:", st.Node)
				row(w, "version:", st.Version)
				row(w, "uptime:", age(st.Uptime()))
				row(w, "workers:", st.Workers)
				if len(st.WorkerCPUs) > 0 {
					cpus := make([]string, len(st.WorkerCPUs))
					for i, c := range st.WorkerCPUs {
						cpus[i] = strconv.Itoa(c)
					}
					row(w, "worker CPUs:", strings.Join(cpus, ","))
				}
				if st.TAPIO != "" {
					row(w, "TAP/TUN I/O:", st.TAPIO)
				}
				row(w)
				row(w, "NETWORK", "VNI", "MTU", "PORTS", "PEERS", "FDB")
				for _, n := range st.Networks {
					row(w, n.Name, n.VNI, n.MTU, n.Ports, n.Peers, n.FDBEntries)
				}
			})
		},
	}
}

func newPortsCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "ports",
		Short: "List local ports with their counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ports, err := call(cmd, c, (*ctl.Client).Ports)
			if err != nil {
				return err
			}
			return c.print(cmd, ports, func(w io.Writer) {
				row(w, "PORT", "NETWORK", "RX PACKETS", "RX BYTES", "TX PACKETS", "TX BYTES", "DROPS", "KERNEL DROPS IN/OUT")
				for _, p := range ports {
					kernel := "-"
					if p.KernelTxDropped != nil {
						// in: sent by the container, dropped before ferry
						// read it; out: written by ferry, dropped after.
						kernel = fmt.Sprintf("%d/%d", *p.KernelTxDropped, *p.KernelRxDropped)
					}
					row(w, p.Name, p.Network, p.RxPackets, bytesSI(p.RxBytes), p.TxPackets, bytesSI(p.TxBytes), p.Drops, kernel)
				}
			})
		},
	}
}

func newPeersCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "List remote peers (tunnel endpoints) with their counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			peers, err := call(cmd, c, (*ctl.Client).Peers)
			if err != nil {
				return err
			}
			return c.print(cmd, peers, func(w io.Writer) {
				row(w, "NETWORK", "PEER", "RX PACKETS", "RX BYTES", "TX PACKETS", "TX BYTES", "DROPS", "LAST HEARD")
				for _, p := range peers {
					heard := "never"
					if p.LastHeard != nil {
						heard = age(*p.LastHeard) + " ago"
					}
					row(w, p.Network, p.Address, p.RxPackets, bytesSI(p.RxBytes), p.TxPackets, bytesSI(p.TxBytes), p.Drops, heard)
				}
			})
		},
	}
}

func newFDBCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fdb [NETWORK]",
		Short: "Show the MAC table of one network, or of all; add, delete or flush entries",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			network := ""
			if len(args) == 1 {
				network = args[0]
			}
			entries, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) ([]dataplane.FDBEntry, error) {
				return cl.FDB(ctx, network)
			})
			if err != nil {
				return err
			}
			return c.print(cmd, entries, func(w io.Writer) {
				row(w, "NETWORK", "MAC", "LOCATION", "TYPE", "AGE")
				for _, e := range entries {
					where := "port " + e.Port
					if e.Peer != "" {
						where = "peer " + e.Peer
					}
					kind, ago := "learned", age(e.Age)
					if e.Static {
						kind, ago = "static", "-"
					}
					row(w, e.Network, e.MAC, where, kind, ago)
				}
			})
		},
	}
	cmd.AddCommand(newFDBChangeCmds(c)...)
	return cmd
}

// printCleared reports a counter clear.
func (c *cli) printCleared(cmd *cobra.Command, cl ctl.Cleared) error {
	return c.print(cmd, cl, func(w io.Writer) {
		fmt.Fprintf(w, "cleared counters: %s\n", joinAnd(cl.Counters))
	})
}

func newRuntimeCmd(c *cli) *cobra.Command {
	var perWorker bool
	cmd := &cobra.Command{
		Use:   "runtime",
		Short: "Show per-stage packets, batches and time per packet",
		Long: `Show per-stage packets, batches and time per packet, summed over the
workers; with --per-worker, each worker's stages that saw packets (an idle
worker says so), to see how the load spreads.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if perWorker {
				ws, err := call(cmd, c, (*ctl.Client).WorkerRuntime)
				if err != nil {
					return err
				}
				return c.print(cmd, ws, func(w io.Writer) {
					row(w, "WORKER", "STAGE", "PACKETS", "BATCHES", "PACKETS/BATCH", "NS/PACKET")
					for _, wk := range ws {
						idle := true
						for _, s := range wk.Stages {
							if s.Packets > 0 {
								idle = false
								row(w, wk.Worker, s.Stage, s.Packets, s.Batches, fmt.Sprintf("%.1f", s.PerBatch), fmt.Sprintf("%.1f", s.NsPerPkt))
							}
						}
						if idle {
							row(w, wk.Worker, "(idle)", 0, 0, "-", "-")
						}
					}
				})
			}
			stages, err := call(cmd, c, (*ctl.Client).Runtime)
			if err != nil {
				return err
			}
			return c.print(cmd, stages, func(w io.Writer) {
				row(w, "STAGE", "PACKETS", "BATCHES", "PACKETS/BATCH", "NS/PACKET")
				for _, s := range stages {
					perBatch, nsPerPkt := "-", "-"
					if s.Packets > 0 {
						perBatch, nsPerPkt = fmt.Sprintf("%.1f", s.PerBatch), fmt.Sprintf("%.1f", s.NsPerPkt)
					}
					row(w, s.Stage, s.Packets, s.Batches, perBatch, nsPerPkt)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&perWorker, "per-worker", false, "each worker's stages on their own")
	cmd.AddCommand(&cobra.Command{
		Use:   "clear",
		Short: "Zero the runtime counters (and the error counters with them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := call(cmd, c, (*ctl.Client).ClearRuntime)
			if err != nil {
				return err
			}
			return c.printCleared(cmd, cl)
		},
	})
	return cmd
}

func newErrorsCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "errors",
		Short: "Show dropped packets by stage and reason, largest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			drops, err := call(cmd, c, (*ctl.Client).Errors)
			if err != nil {
				return err
			}
			return c.print(cmd, drops, func(w io.Writer) {
				if len(drops) == 0 {
					fmt.Fprintln(w, "no packets dropped")
					return
				}
				row(w, "STAGE", "REASON", "PACKETS", "MEANING")
				for _, d := range drops {
					row(w, d.Stage, d.Reason, d.Packets, d.Help)
				}
			})
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "clear",
		Short: "Zero the error counters (and the runtime counters with them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := call(cmd, c, (*ctl.Client).ClearErrors)
			if err != nil {
				return err
			}
			return c.printCleared(cmd, cl)
		},
	})
	return cmd
}
