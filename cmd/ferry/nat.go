package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/dataplane"
)

// newPublishCmd returns `ferry publish` with add and del.
func newPublishCmd(c *cli) *cobra.Command {
	var uplink string
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "List the ports published on the uplinks' nat_address; add or remove one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := call(cmd, c, (*ctl.Client).Published)
			if err != nil {
				return err
			}
			return c.print(cmd, ps, func(w io.Writer) {
				row(w, "UPLINK", "PROTO", "PORT", "TO")
				for _, p := range ps {
					row(w, p.Uplink, p.Proto, p.Port, p.To)
				}
			})
		},
	}
	port := func(s string) (uint16, error) {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("port %q: want 1..65535", s)
		}
		return uint16(n), nil
	}
	change := func(cmd *cobra.Command, req ctl.PublishRequest, add bool) error {
		d, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) (ctl.PublishDone, error) {
			if add {
				return cl.AddPublish(ctx, req)
			}
			return cl.DeletePublish(ctx, req)
		})
		if err != nil {
			return err
		}
		return c.print(cmd, d, func(w io.Writer) { fmt.Fprintln(w, d.Message) })
	}
	add := &cobra.Command{
		Use:     "add tcp|udp PORT ADDRESS:PORT",
		Short:   "Publish a port of the uplink's nat_address to a container (replaces a rule for the same port)",
		Example: "  ferry publish add tcp 8080 10.42.0.2:80",
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := port(args[1])
			if err != nil {
				return err
			}
			return change(cmd, ctl.PublishRequest{Uplink: uplink, Proto: args[0], Port: p, To: args[2]}, true)
		},
	}
	del := &cobra.Command{
		Use:   "del tcp|udp PORT",
		Short: "Remove a published port and end the connections it created",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := port(args[1])
			if err != nil {
				return err
			}
			return change(cmd, ctl.PublishRequest{Uplink: uplink, Proto: args[0], Port: p}, false)
		},
	}
	for _, sub := range []*cobra.Command{add, del} {
		sub.Flags().StringVar(&uplink, "uplink", "", "the uplink (default: the only one)")
	}
	cmd.AddCommand(add, del)
	return cmd
}

// newConntrackCmd returns `ferry conntrack` with flush and delete.
func newConntrackCmd(c *cli) *cobra.Command {
	var uplink string
	cmd := &cobra.Command{
		Use:   "conntrack",
		Short: "List the connections NAT tracks, conntrack -L style; flush them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) ([]dataplane.ConnInfo, error) {
				return cl.Conntrack(ctx, uplink)
			})
			if err != nil {
				return err
			}
			return c.print(cmd, cs, func(w io.Writer) {
				for _, x := range cs {
					fmt.Fprintf(w, "%s %s\n", x.Uplink, x.Text)
				}
			})
		},
	}
	flush := &cobra.Command{
		Use:   "flush",
		Short: "Remove every tracked connection",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) (ctl.Flushed, error) {
				return cl.FlushConntrack(ctx, uplink)
			})
			if err != nil {
				return err
			}
			return c.print(cmd, f, func(w io.Writer) { fmt.Fprintf(w, "removed %d connections\n", f.Removed) })
		},
	}
	cmd.PersistentFlags().StringVar(&uplink, "uplink", "", "only this uplink (default: all)")
	cmd.AddCommand(flush, newConntrackDeleteCmd(c, &uplink))
	return cmd
}

// newConntrackDeleteCmd returns `ferry conntrack delete`, conntrack -D's
// shape: the flags select connections by their original tuple.
func newConntrackDeleteCmd(c *cli, uplink *string) *cobra.Command {
	var proto, src, dst string
	var sport, dport uint16
	cmd := &cobra.Command{
		Use:   "delete [--proto tcp|udp|icmp] [--src ADDR] [--dst ADDR] [--sport N] [--dport N]",
		Short: "Remove the tracked connections whose original tuple matches every flag given",
		Long: `Remove the tracked connections whose original tuple (the first packet's: the
first src/dst of each line of ferry conntrack) matches every flag given, as
conntrack -D does, and print how many were removed. At least one flag is
needed; ferry conntrack flush removes every connection.`,
		Example: "  ferry conntrack delete --proto tcp --src 10.42.0.2 --dst 198.18.0.2 --dport 80",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := ctl.ConntrackDeleteRequest{Uplink: *uplink, ConntrackFilter: dataplane.ConntrackFilter{Proto: proto, Sport: sport, Dport: dport}}
			for _, a := range []struct {
				flag, s string
				to      *netip.Addr
			}{{"--src", src, &req.Src}, {"--dst", dst, &req.Dst}} {
				if a.s == "" {
					continue
				}
				addr, err := netip.ParseAddr(a.s)
				if err != nil {
					return fmt.Errorf("%s %q: not an IP address", a.flag, a.s)
				}
				*a.to = addr
			}
			f, err := call(cmd, c, func(cl *ctl.Client, ctx context.Context) (ctl.Flushed, error) {
				return cl.DeleteConntrack(ctx, req)
			})
			if err != nil {
				return err
			}
			return c.print(cmd, f, func(w io.Writer) { fmt.Fprintf(w, "deleted %d connections\n", f.Removed) })
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&proto, "proto", "", "protocol: tcp, udp or icmp")
	fl.StringVar(&src, "src", "", "original source address")
	fl.StringVar(&dst, "dst", "", "original destination address")
	fl.Uint16Var(&sport, "sport", 0, "original source port (tcp, udp)")
	fl.Uint16Var(&dport, "dport", 0, "original destination port (tcp, udp)")
	return cmd
}
