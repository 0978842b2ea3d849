// Package daemon assembles a running ferry node from its config: it creates
// the TAP devices and places them in their namespaces, opens the tunnel
// sockets, starts one worker per core on the dataplane engine, and serves the
// control socket and metrics, until its context ends; then it removes
// everything it created.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferry-overlay/ferry/config"
	"github.com/ferry-overlay/ferry/ctl"
	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/internal/netconf"
	"github.com/ferry-overlay/ferry/internal/uring"
	"github.com/ferry-overlay/ferry/metrics"
)

// Options are the daemon's settings that do not come from the config file.
type Options struct {
	// Version is reported by the control API and metrics.
	Version string
	// Pprof serves net/http/pprof on the metrics listener (loopback only).
	Pprof bool
}

const (
	// poolPerWorker is the number of packet buffers each worker owns: a
	// receive batch is all a worker holds at once, so a few batches'
	// worth leaves ample room.
	poolPerWorker = 8 * dataplane.MaxBatch
	// defaultUnderlayMTU is used when the underlay MTU cannot be found.
	defaultUnderlayMTU = 1500
)

// node is everything Run created, so that it can be undone in reverse.
type node struct {
	undo    []func() error
	runners []*dataplane.Runner
	wg      sync.WaitGroup
	ready   bool
	mu      sync.Mutex
	// kernelStats holds the kernel counters of each port's device, by
	// port name; complete before the engine reads it (kernelDrops).
	kernelStats map[string]*netconf.LinkStats
	// ioURing is whether TAP and TUN queues use io_uring: node.io_uring,
	// and the kernel lets ferry make one (ioURingWorks).
	ioURing bool
}

func (n *node) onClose(f func() error) { n.undo = append(n.undo, f) }

// newTunTap creates a TAP or TUN device with queues queues and the node's
// I/O settings: the virtio-net header with node.offload, batched reads and
// writes through io_uring with node.io_uring where the kernel allows it.
func (n *node) newTunTap(cfg *config.Config, name string, kind tuntap.Kind, queues int) (*tuntap.Device, error) {
	dev, err := tuntap.Create(tuntap.Options{Name: name, Kind: kind, Queues: queues, VnetHdr: cfg.Node.Offload, IOURing: n.ioURing})
	if err != nil {
		return nil, err
	}
	if _, rerr := dev.IOURing(); rerr != nil {
		// The probe worked, this device's rings did not (out of
		// memory, or a TUN driver that refuses non-blocking reads
		// through io_uring): it still works, a system call per frame.
		slog.Warn("io_uring refused for a device: its queues use one system call per frame", "device", dev.Name(), "err", rerr)
	}
	return dev, nil
}

// ioURingWorks reports whether the kernel lets ferry make an io_uring, and
// says why not when it does not: io_uring disabled
// (kernel.io_uring_disabled), refused by a seccomp filter (a container
// runtime's default profile), or missing from the kernel.
func ioURingWorks() bool {
	if err := uring.Available(); err != nil {
		slog.Warn("io_uring unavailable: TAP/TUN queues use one system call per frame (node.io_uring)", "err", err)
		return false
	}
	return true
}

// watchKernelDrops opens the kernel counters of port's device, ifname in
// namespace ns ("" for ferry's own), for kernelDrops.
func (n *node) watchKernelDrops(port, ns, ifname string) error {
	ls, err := netconf.OpenLinkStats(ns, ifname)
	if err != nil {
		return err
	}
	n.onClose(ls.Close)
	if n.kernelStats == nil {
		n.kernelStats = map[string]*netconf.LinkStats{}
	}
	n.kernelStats[port] = ls
	return nil
}

// kernelDrops is the engine's KernelStatsFunc: the drop counters of the
// named port's device, read from the kernel now.
func (n *node) kernelDrops(port string) (tx, rx uint64, ok bool) {
	s := n.kernelStats[port]
	if s == nil {
		return 0, 0, false
	}
	d, err := s.Drops()
	if err != nil {
		slog.Debug("kernel counters unreadable", "port", port, "err", err)
		return 0, 0, false
	}
	return d.TxDropped, d.RxDropped, true
}

// close undoes everything, newest first, and reports every failure.
func (n *node) close() error {
	for _, r := range n.runners {
		r.Stop()
	}
	n.wg.Wait()
	for _, r := range n.runners {
		r.Close()
	}
	var errs []error
	for i := len(n.undo) - 1; i >= 0; i-- {
		if err := n.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkCPUs returns an error naming the first of node.cpus this process
// may not run on (outside its affinity mask, e.g. under taskset or a
// cgroup's cpuset), before anything is created.
func checkCPUs(cpus []int) error {
	if len(cpus) == 0 {
		return nil
	}
	allowed, err := dataplane.AllowedCPUs()
	if err != nil {
		return fmt.Errorf("node.cpus: %w", err)
	}
	for i, c := range cpus {
		if !slices.Contains(allowed, c) {
			return &config.Error{Path: fmt.Sprintf("node.cpus[%d]", i), Msg: fmt.Sprintf("CPU %d is not one ferry may run on (allowed: %s)", c, cpuList(allowed))}
		}
	}
	return nil
}

// workerCPUs returns the CPU of each of workers workers under node.cpus
// (worker i on cpus[i mod len(cpus)]), or nil when cpus is empty.
func workerCPUs(cpus []int, workers int) []int {
	if len(cpus) == 0 {
		return nil
	}
	out := make([]int, workers)
	for i := range out {
		out[i] = cpus[i%len(cpus)]
	}
	return out
}

// cpuList formats sorted CPU numbers as the kernel's CPU lists do:
// "0-3,6".
func cpuList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", cpus[i], cpus[j])
		} else {
			fmt.Fprintf(&b, "%d", cpus[i])
		}
		i = j + 1
	}
	return b.String()
}

// Run builds the node described by cfg and forwards traffic until ctx is
// cancelled. On return, every device, socket and file it created is gone.
// A failure while starting undoes what was already created.
func Run(ctx context.Context, cfg *config.Config, opts Options) (err error) {
	n := &node{}
	defer func() {
		if cerr := n.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()

	workers := cfg.Node.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	if need := dataplane.MinGOMAXPROCS(workers); runtime.GOMAXPROCS(0) < need {
		// Each worker keeps a P while it waits for traffic (Runner.Run).
		runtime.GOMAXPROCS(need)
	}
	if err := checkCPUs(cfg.Node.CPUs); err != nil {
		return err
	}
	underlayMTU := cfg.Node.UnderlayMTU
	if underlayMTU == 0 && cfg.Node.Underlay.IsValid() {
		if m, err := netconf.LinkMTUForAddr(cfg.Node.Underlay); err == nil {
			underlayMTU = m
		} else {
			slog.Warn("cannot find the underlay MTU; assuming 1500", "underlay", cfg.Node.Underlay, "err", err)
		}
	}
	if underlayMTU == 0 {
		underlayMTU = defaultUnderlayMTU
	}

	specs, mtus := buildSpecs(cfg, underlayMTU)
	eng, err := dataplane.NewEngine(specs, workers)
	if err != nil {
		return err
	}
	ws := make([]*dataplane.Worker, workers)
	for i := range ws {
		ws[i] = eng.NewWorker(i, poolPerWorker, 0)
		if cfg.Node.Offload {
			ws[i].EnableOffload() // GSO/GRO path (node.offload)
		}
	}

	// Claim the control socket and the metrics port first: if another
	// ferry owns them, fail before touching any device (which could be
	// that ferry's). The control API is served only once everything is
	// up, so a client that gets an answer talks to a ready node (a
	// connection made earlier waits in the listen backlog).
	info := ctl.NodeInfo{Name: cfg.Node.Name, Version: opts.Version, WorkerCPUs: workerCPUs(cfg.Node.CPUs, workers), TAPIO: ctl.TAPIOSyscalls}
	if n.ioURing = cfg.Node.IOURing && ioURingWorks(); n.ioURing {
		info.TAPIO = ctl.TAPIOURing
	}
	ctlLn, err := ctl.Listen(cfg.Control.Socket)
	if err != nil {
		return err
	}
	ctlSrv := &http.Server{Handler: ctl.NewServer(eng, info), ReadHeaderTimeout: 5 * time.Second}
	n.onClose(func() error {
		if err := ctlSrv.Close(); err != nil {
			return err
		}
		// Removes the socket file; already closed if it was served.
		if err := ctlLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	if err := n.serveMetrics(cfg.Metrics.Listen, eng, info, opts.Pprof); err != nil {
		return err
	}
	if err := n.createPorts(cfg, eng, ws, mtus, workers); err != nil {
		return err
	}
	if err := n.createL3Devices(cfg, eng, ws, mtus, workers); err != nil { // l3.go
		return err
	}
	eng.SetKernelStats(n.kernelDrops) // every port's device exists now
	if err := n.openTunnels(cfg, ws); err != nil {
		return err
	}
	if err := n.createUplinks(cfg, eng, ws, workers); err != nil { // uplink.go
		return err
	}

	for i, w := range ws {
		r, err := dataplane.NewRunner(w)
		if err != nil {
			return err
		}
		if info.WorkerCPUs != nil {
			r.PinTo(info.WorkerCPUs[i])
		}
		n.runners = append(n.runners, r)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := r.Run(); err != nil {
				slog.Error("worker stopped", "worker", i, "err", err)
			}
		}()
	}
	n.mu.Lock()
	n.ready = true
	n.mu.Unlock()
	go ctlSrv.Serve(ctlLn)
	slog.Info("ferry running", "node", cfg.Node.Name, "workers", workers, "networks", len(cfg.Networks), "control", cfg.Control.Socket, "metrics", cfg.Metrics.Listen)

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			slog.Info("shutting down")
			return nil
		case <-tick.C:
			eng.Expire()
		}
	}
}

// buildSpecs turns the config's networks into engine specs and returns the
// MTU of each network.
func buildSpecs(cfg *config.Config, underlayMTU int) ([]dataplane.NetworkSpec, []int) {
	specs := make([]dataplane.NetworkSpec, 0, len(cfg.Networks))
	mtus := make([]int, 0, len(cfg.Networks))
	for i := range cfg.Networks {
		nw := &cfg.Networks[i]
		mtu := nw.EffectiveMTU(underlayMTU)
		s := dataplane.NetworkSpec{
			Name:   nw.Name,
			VNI:    nw.VNI,
			MTU:    mtu,
			Ageing: nw.MACAgeing,
			FDBMax: nw.FDBMax,
			Peers:  nw.PeerAddrs(),
			Encap:  tunnelKind(nw.Encap), // l3.go
			// The network's router (dataplane/router.go).
			Gateway: nw.Gateway,
			Subnet:  nw.Subnet,
		}
		if nw.Mode == config.ModeL3 {
			l3Spec(nw, &s)
		}
		for _, p := range nw.Ports {
			s.Ports = append(s.Ports, p.Name)
		}
		for _, f := range nw.FDB {
			s.Static = append(s.Static, dataplane.StaticEntry{MAC: [6]byte(f.MAC), Port: f.Port, Peer: f.Peer})
		}
		specs = append(specs, s)
		mtus = append(mtus, mtu)
	}
	return specs, mtus
}

// createPorts creates every TAP device with one queue per worker, sets it
// up, places it in its namespace, and gives worker i queue i.
func (n *node) createPorts(cfg *config.Config, eng *dataplane.Engine, ws []*dataplane.Worker, mtus []int, workers int) error {
	for ni := range cfg.Networks {
		nw := &cfg.Networks[ni]
		// Superpackets from a container are cut at tunnel-tx
		// (offload.go), and routed whole through the gateway and NAT,
		// then cut for an uplink (offload_route.go).
		off := cfg.Node.Offload
		for _, p := range nw.Ports {
			if exists, err := netconf.LinkExists(p.Name); err != nil {
				return fmt.Errorf("port %q: %w", p.Name, err)
			} else if exists {
				return fmt.Errorf("port %q: a link with this name already exists (another ferry's port, or not ferry's)", p.Name)
			}
			dev, err := n.newTunTap(cfg, p.Name, tuntap.TAP, workers)
			if err != nil {
				return fmt.Errorf("port %q: %w", p.Name, err)
			}
			// Closing the last queue destroys the device, wherever it
			// lives by then.
			n.onClose(func() error {
				slog.Debug("removing port", "port", p.Name)
				return dev.Close()
			})
			// node.offload: the container hands ferry superpackets and
			// partial checksums, and takes them from it.
			if off {
				if err := dataplane.EnableTAPOffload(dev); err != nil {
					return fmt.Errorf("port %q: %w", p.Name, err)
				}
				if nw.Encap == config.EncapVXLAN {
					if err := netconf.SetGSOMaxSegs(p.Name, dataplane.VXLANGSOMaxSegs(mtus[ni])); err != nil {
						return fmt.Errorf("port %q: %w", p.Name, err)
					}
				}
			}
			if err := netconf.SetupLink(p.Name, mtus[ni], [6]byte(p.MAC), true); err != nil {
				return fmt.Errorf("port %q: %w", p.Name, err)
			}
			if p.Netns != "" {
				var gw netip.Addr
				if nw.Gateway.IsValid() {
					gw = nw.Gateway
				}
				if err := netconf.PlaceInNetns(p.Name, p.Netns, p.Ifname, p.Address, gw); err != nil {
					return fmt.Errorf("port %q: %w", p.Name, err)
				}
			}
			ifname := p.Name
			if p.Netns != "" && p.Ifname != "" {
				ifname = p.Ifname
			}
			if err := n.watchKernelDrops(p.Name, p.Netns, ifname); err != nil {
				return fmt.Errorf("port %q: %w", p.Name, err)
			}
			id, ok := eng.PortID(p.Name)
			if !ok {
				return fmt.Errorf("port %q: not in the engine", p.Name)
			}
			for i, q := range dev.Queues() {
				ws[i].SetPort(id, queueIO(q, off))
			}
			slog.Info("port ready", "port", p.Name, "network", nw.Name, "netns", p.Netns, "ifname", p.Ifname, "mtu", mtus[ni], "queues", len(dev.Queues()))
		}
	}
	return nil
}

func (n *node) serveMetrics(listen string, eng *dataplane.Engine, info ctl.NodeInfo, pprof bool) error {
	if listen == "" {
		return nil
	}
	srv, err := metrics.Serve(listen, eng, info, pprof, n.isReady)
	if err != nil {
		return err
	}
	n.onClose(func() error { return srv.Close() })
	return nil
}

func (n *node) isReady() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ready
}

// sourcePorts returns how many outer UDP source ports the workers send
// from (all from the same ones), chosen by inner flow hash: the peer's
// receive sockets spread flows over its workers by source port, so a few
// ports per worker, and at least 16, keep every worker of a peer busy
// (with 4 ports and 2 workers, one start in 8 put every port, and all
// traffic from this host, on one worker of the peer).
func sourcePorts(workers int) int {
	return min(dataplane.MaxSpread, max(16, 4*workers))
}

// queueIO adapts one queue of a TAP or TUN device to the dataplane: with
// vnet (node.offload, the device made with Options.VnetHdr) its frames
// carry a virtio-net header and may be superpackets.
func queueIO(q *tuntap.Queue, vnet bool) dataplane.PortIO {
	if vnet {
		return dataplane.NewTAPVnetQueue(q)
	}
	return dataplane.NewTAPQueue(q)
}
