package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferry-overlay/ferry/config"
	"github.com/ferry-overlay/ferry/daemon"
)

// defaultConfig is read by `ferry run` without --config.
const defaultConfig = "/etc/ferry/ferry.yaml"

func newRunCmd(c *cli) *cobra.Command {
	var (
		configPath string
		pprof      bool
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the ferry daemon until SIGINT or SIGTERM",
		Long: `Run the ferry daemon: create the configured ports and tunnels, forward
traffic, and serve the control socket and metrics until SIGINT or SIGTERM;
then remove everything it created.

--socket, when given, overrides control.socket from the config file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("socket") {
				cfg.Control.Socket = c.socket
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Node.SlogLevel()})))
			slog.Info("ferry starting", "version", version, "config", configPath, "node", cfg.Node.Name)
			if err := daemon.Run(cmd.Context(), cfg, daemon.Options{Version: version, Pprof: pprof}); err != nil {
				return fmt.Errorf("run: %w", err)
			}
			slog.Info("ferry stopped")
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", defaultConfig, "config file (YAML)")
	cmd.Flags().BoolVar(&pprof, "pprof", false, "serve /debug/pprof/ on the metrics listener (loopback addresses only)")
	return cmd
}
