package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/ferry-overlay/ferry/config"
	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/internal/netconf"
	"github.com/ferry-overlay/ferry/nat"
)

// uplinkMTU is the MTU of every uplink TUN device.
const uplinkMTU = 1500

// natOptions turns the conntrack section into nat options for the uplink
// whose ferry-side address is natAddr.
func natOptions(ct *config.Conntrack, u *config.Uplink) nat.Options {
	return nat.Options{
		NATAddr:        u.NATAddress,
		MaxEntries:     ct.MaxEntries,
		TCPSynSent:     ct.TCPSynSent,
		TCPSynRecv:     ct.TCPSynRecv,
		TCPEstablished: ct.TCPEstablished,
		TCPFinWait:     ct.TCPFinWait,
		TCPCloseWait:   ct.TCPCloseWait,
		TCPLastAck:     ct.TCPLastAck,
		TCPTimeWait:    ct.TCPTimeWait,
		TCPClose:       ct.TCPClose,
		UDPUnreplied:   ct.UDPUnreplied,
		UDPAssured:     ct.UDPAssured,
		ICMP:           ct.ICMP,
		PortMin:        ct.PortMin,
		PortMax:        ct.PortMax,
	}
}

// publishRules returns the nat rules of the publish entries of every
// network that masquerades through the uplink named uplink.
func publishRules(cfg *config.Config, uplink string) []nat.Rule {
	var rules []nat.Rule
	for i := range cfg.Networks {
		nw := &cfg.Networks[i]
		if nw.Masquerade != uplink {
			continue
		}
		for _, p := range nw.Publish {
			proto := header.ProtoTCP
			if p.Proto == "udp" {
				proto = header.ProtoUDP
			}
			rules = append(rules, nat.Rule{Proto: proto, Port: p.Port, To: p.To})
		}
	}
	return rules
}

// createUplinks builds each uplink's NAT table with its publish rules,
// creates its TUN device (one queue per worker) with the kernel side's
// address, and attaches it to the engine and the workers.
func (n *node) createUplinks(cfg *config.Config, eng *dataplane.Engine, ws []*dataplane.Worker, workers int) error {
	if len(cfg.Uplinks) == 0 {
		return nil
	}
	specs := make([]dataplane.UplinkSpec, 0, len(cfg.Uplinks))
	for i := range cfg.Uplinks {
		u := &cfg.Uplinks[i]
		tbl, err := nat.New(natOptions(&cfg.Conntrack, u))
		if err != nil {
			return fmt.Errorf("uplink %q: %w", u.Name, err)
		}
		if _, err := tbl.SetRules(publishRules(cfg, u.Name)); err != nil {
			return fmt.Errorf("uplink %q: %w", u.Name, err)
		}
		s := dataplane.UplinkSpec{Name: u.Name, NAT: tbl, MTU: uplinkMTU}
		for j := range cfg.Networks {
			if cfg.Networks[j].Masquerade == u.Name {
				s.Networks = append(s.Networks, cfg.Networks[j].Name)
			}
		}
		specs = append(specs, s)
	}
	if err := eng.SetUplinks(specs); err != nil {
		return err
	}
	for i := range cfg.Uplinks {
		u := &cfg.Uplinks[i]
		if exists, err := netconf.LinkExists(u.Name); err != nil {
			return fmt.Errorf("uplink %q: %w", u.Name, err)
		} else if exists {
			return fmt.Errorf("uplink %q: a link with this name already exists", u.Name)
		}
		// node.offload: the uplink trades superpackets and partial
		// checksums with the host's stack like the ports do, so a
		// container's TCP stream is never cut on its way out or in.
		off := cfg.Node.Offload
		dev, err := n.newTunTap(cfg, u.Name, tuntap.TUN, workers)
		if err != nil {
			return fmt.Errorf("uplink %q: %w", u.Name, err)
		}
		n.onClose(dev.Close)
		if off {
			if err := dataplane.EnableTAPOffload(dev); err != nil {
				return fmt.Errorf("uplink %q: %w", u.Name, err)
			}
		}
		// ferry routes IPv4 only: keep the kernel's IPv6 chatter (router
		// solicitations, MLD) off the uplink.
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+u.Name+"/disable_ipv6", []byte("1"), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("uplink %q: disable IPv6: %w", u.Name, err)
		}
		if err := netconf.SetupOverlayDevice(u.Name, uplinkMTU, u.Address, u.Address.Masked()); err != nil {
			return fmt.Errorf("uplink %q: %w", u.Name, err)
		}
		for w, q := range dev.Queues() {
			ws[w].SetUplink(uint16(i), queueIO(q, off))
		}
		slog.Info("uplink ready", "uplink", u.Name, "address", u.Address, "nat_address", u.NATAddress, "queues", len(dev.Queues()))
	}
	return nil
}
