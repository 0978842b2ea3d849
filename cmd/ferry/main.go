// Command ferry is the ferry daemon and its command-line client in one
// binary: `ferry run` runs the userspace overlay dataplane, and the other
// subcommands (status, ports, peers, fdb, peer, runtime, errors, trace,
// pcap, version) talk to a running daemon over its control socket and print
// tables, or with -o json the very structs the control API returns.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ferry-overlay/ferry/ctl"
)

// version is the build's version, set at link time with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		// One line, so scripts and logs get the whole message.
		fmt.Fprintln(os.Stderr, "ferry: "+strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

// Output formats of -o.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// cli holds the global flags that every subcommand reads.
type cli struct {
	socket string
	output string
}

// defaultSocket is $FERRY_SOCKET if set, else the daemon's default.
func defaultSocket() string {
	if s := os.Getenv("FERRY_SOCKET"); s != "" {
		return s
	}
	return ctl.DefaultSocket
}

func newRootCmd() *cobra.Command {
	c := &cli{}
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Userspace packet dataplane for container overlays",
		Long: `ferry switches container traffic in userspace and carries it between hosts
in VXLAN tunnels. "ferry run" starts the daemon; the other commands query a
running daemon over its control socket.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if c.output != outputTable && c.output != outputJSON {
				return fmt.Errorf("unknown output format %q (want %s or %s)", c.output, outputTable, outputJSON)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&c.socket, "socket", defaultSocket(), "control socket of the daemon (env FERRY_SOCKET)")
	root.PersistentFlags().StringVarP(&c.output, "output", "o", outputTable, "output format: table or json")
	root.AddCommand(
		newRunCmd(c),
		newVersionCmd(c),
		newStatusCmd(c),
		newPortsCmd(c),
		newPeersCmd(c),
		newFDBCmd(c),
		newRuntimeCmd(c),
		newErrorsCmd(c),
		newPeerCmd(c),
		newTraceCmd(c),
		newPcapCmd(c),
		newBenchCmd(),
		newPublishCmd(c), newConntrackCmd(c), // nat.go
	)
	return root
}
