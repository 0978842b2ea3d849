package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"

	"github.com/ferry-overlay/ferry/config"
	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/internal/netconf"
	"github.com/ferry-overlay/ferry/internal/subnetfile"
)

// tunnelKind maps a config encap to the dataplane's tunnel kind.
func tunnelKind(e config.Encap) dataplane.TunnelKind {
	switch e {
	case config.EncapGRE:
		return dataplane.TunnelGRE
	case config.EncapUDP:
		return dataplane.TunnelFlannelUDP
	}
	return dataplane.TunnelVXLAN
}

// l3Spec fills in the l3 part of an engine spec for l3 network nw: its one
// port is its TUN device, and its peers come with their subnets and VTEP
// MACs.
func l3Spec(nw *config.Network, s *dataplane.NetworkSpec) {
	s.Ports = []string{nw.Device}
	l := &dataplane.L3Spec{Network: nw.Network, Subnet: nw.Subnet, VTEPMAC: [6]byte(nw.VTEPMAC)}
	for _, p := range nw.Peers {
		l.PeerSubnets = append(l.PeerSubnets, p.Subnet)
		l.PeerMACs = append(l.PeerMACs, [6]byte(p.VTEPMAC))
	}
	s.L3 = l
}

// createL3Devices creates the TUN device of every l3 network with one queue
// per worker, gives it its /32 and the route for the whole network (as
// flannel does), gives worker i queue i, and writes the network's flannel
// subnet file if it has one. All of it is undone on close.
func (n *node) createL3Devices(cfg *config.Config, eng *dataplane.Engine, ws []*dataplane.Worker, mtus []int, workers int) error {
	for ni := range cfg.Networks {
		nw := &cfg.Networks[ni]
		if nw.Mode != config.ModeL3 {
			continue
		}
		if exists, err := netconf.LinkExists(nw.Device); err != nil {
			return fmt.Errorf("network %q: device %q: %w", nw.Name, nw.Device, err)
		} else if exists {
			return fmt.Errorf("network %q: device %q: a link with this name already exists", nw.Name, nw.Device)
		}
		// node.offload: the host's stack hands ferry TCP/UDP superpackets
		// and partial checksums, and takes them from it (offload.go).
		off := cfg.Node.Offload
		dev, err := n.newTunTap(cfg, nw.Device, tuntap.TUN, workers)
		if err != nil {
			return fmt.Errorf("network %q: device %q: %w", nw.Name, nw.Device, err)
		}
		// Closing the last queue destroys the device, and with it its
		// address and route.
		n.onClose(func() error {
			slog.Debug("removing device", "device", nw.Device)
			return dev.Close()
		})
		if off {
			if err := dataplane.EnableTAPOffload(dev); err != nil {
				return fmt.Errorf("network %q: device %q: %w", nw.Name, nw.Device, err)
			}
		}
		if err := netconf.SetupOverlayDevice(nw.Device, mtus[ni], nw.DeviceAddress(), nw.Network); err != nil {
			return fmt.Errorf("network %q: %w", nw.Name, err)
		}
		if err := n.watchKernelDrops(nw.Device, "", nw.Device); err != nil {
			return fmt.Errorf("network %q: device %q: %w", nw.Name, nw.Device, err)
		}
		id, ok := eng.PortID(nw.Device)
		if !ok {
			return fmt.Errorf("network %q: device %q not in the engine", nw.Name, nw.Device)
		}
		for i, q := range dev.Queues() {
			ws[i].SetPort(id, queueIO(q, off))
		}
		if nw.SubnetFile != "" {
			f := subnetfile.File{Network: nw.Network, Subnet: nw.BridgeAddress(), MTU: mtus[ni], IPMasq: false}
			if err := subnetfile.Write(nw.SubnetFile, f); err != nil {
				return fmt.Errorf("network %q: %w", nw.Name, err)
			}
			path := nw.SubnetFile
			n.onClose(func() error {
				if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("remove subnet file: %w", err)
				}
				return nil
			})
		}
		slog.Info("l3 device ready", "device", nw.Device, "network", nw.Name, "encap", nw.Encap, "address", nw.DeviceAddress(), "route", nw.Network, "mtu", mtus[ni], "queues", len(dev.Queues()), "subnet_file", nw.SubnetFile)
	}
	return nil
}

// openTunnels opens each worker's tunnel sockets on the underlay address:
// one VXLAN UDP socket set if a network uses vxlan, one flannel-UDP set if
// one uses udp, and one raw GRE socket if one uses gre. Only worker 0's GRE
// socket receives: the kernel gives every raw GRE socket a copy of every
// GRE packet.
func (n *node) openTunnels(cfg *config.Config, ws []*dataplane.Worker) error {
	if len(cfg.Networks) == 0 || !cfg.Node.Underlay.IsValid() {
		return nil
	}
	var port [dataplane.NumTunnelKinds]uint16
	var used [dataplane.NumTunnelKinds]bool
	for i := range cfg.Networks {
		k := tunnelKind(cfg.Networks[i].Encap)
		if !used[k] {
			used[k], port[k] = true, cfg.Networks[i].Port
		}
	}
	local := cfg.Node.Underlay
	// The first worker's source ports, which the others send from too
	// (see dataplane.UDPTunnel).
	var srcPorts [dataplane.NumTunnelKinds][]uint16
	for i, w := range ws {
		for _, k := range []dataplane.TunnelKind{dataplane.TunnelVXLAN, dataplane.TunnelFlannelUDP} {
			if !used[k] {
				continue
			}
			t, err := dataplane.NewUDPTunnel(local, port[k], sourcePorts(len(ws)), srcPorts[k])
			if err != nil {
				return fmt.Errorf("worker %d: %s: %w", i, k, err)
			}
			n.onClose(t.Close)
			if cfg.Node.Offload { // UDP_SEGMENT out, UDP_GRO in (VXLAN and flannel-UDP alike)
				if err := t.EnableOffload(); err != nil {
					slog.Warn("UDP_GRO unavailable; receiving one datagram per buffer", "worker", i, "err", err)
				}
			}
			w.SetTunnelKind(k, t)
			srcPorts[k] = t.SourcePorts()
			if i == 0 {
				slog.Info("tunnel ready", "encap", k, "local", netip.AddrPortFrom(local, port[k]), "source_ports", t.SourcePorts())
			}
		}
		if used[dataplane.TunnelGRE] {
			t, err := dataplane.NewGRETunnel(local, i > 0)
			if err != nil {
				return fmt.Errorf("worker %d: %w", i, err)
			}
			n.onClose(t.Close)
			w.SetTunnelKind(dataplane.TunnelGRE, t)
			if i == 0 {
				slog.Info("tunnel ready", "encap", dataplane.TunnelGRE, "local", local)
			}
		}
	}
	return nil
}
