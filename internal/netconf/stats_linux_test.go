package netconf_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/internal/netconf"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// TestLinkStatsCountsTAPQueueDrops has a container send more frames into a
// TAP than its queue holds while nobody reads the other end (ferry's side
// stalled): the kernel drops the rest, and LinkStats, reading from outside
// the container's namespace, must report exactly the drop count the
// kernel's own `ip -s link` shows — the queue length (txqueuelen 10) short
// of what was sent.
func TestLinkStatsCountsTAPQueueDrops(t *testing.T) {
	ns := nstest.NewNS(t, "nst")
	// No IPv6: its router solicitations would take queue slots.
	ns.Sysctl(t, "net.ipv6.conf.all.disable_ipv6", "1")
	ns.Sysctl(t, "net.ipv6.conf.default.disable_ipv6", "1")
	name := nstest.Name(t, "fk")
	x := randomOctet()
	const queueLen, sent = 10, 50
	var dev *tuntap.Device
	do(t, ns.Name, func() error {
		var err error
		if dev, err = tuntap.Create(tuntap.Options{Name: name, Kind: tuntap.TAP, Queues: 1}); err != nil {
			return err
		}
		return netconf.SetupLink(name, 1500, [6]byte{2, 0xf0, 0x0d, 0, 1, x}, true)
	})
	t.Cleanup(func() { dev.Close() })
	local, peer := netip.AddrFrom4([4]byte{10, 98, x, 1}), netip.AddrFrom4([4]byte{10, 98, x, 2})
	ns.AddAddr(t, name, netip.PrefixFrom(local, 24))
	for _, args := range [][]string{
		{"link", "set", name, "txqueuelen", fmt.Sprint(queueLen)},
		{"neigh", "replace", peer.String(), "lladdr", "02:f0:0d:00:02:01", "dev", name, "nud", "permanent"},
	} {
		if out, err := ns.Exec(t, 5*time.Second, "ip", args...); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	st, err := netconf.OpenLinkStats(ns.Name, name)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before, err := st.Drops()
	if err != nil {
		t.Fatal(err)
	}
	do(t, ns.Name, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: peer.As4(), Port: 9}
		for range sent {
			if err := unix.Sendto(fd, []byte("stalled ferry"), 0, to); err != nil {
				return fmt.Errorf("sendto: %w", err)
			}
		}
		return nil
	})
	after, err := st.Drops()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ns.Exec(t, 5*time.Second, "ip", "-s", "-j", "link", "show", name)
	if err != nil {
		t.Fatalf("ip -s link: %v: %s", err, out)
	}
	var links []struct {
		Stats64 struct {
			Tx struct {
				Dropped uint64 `json:"dropped"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link: %v: %s", err, out)
	}
	if after.TxDropped != links[0].Stats64.Tx.Dropped {
		t.Fatalf("LinkStats says %d dropped, ip -s link says %d", after.TxDropped, links[0].Stats64.Tx.Dropped)
	}
	if got := after.TxDropped - before.TxDropped; got != sent-queueLen {
		t.Fatalf("%d frames dropped, want %d (%d sent, queue of %d)", got, sent-queueLen, sent, queueLen)
	}
}
