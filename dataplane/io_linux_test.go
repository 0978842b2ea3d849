package dataplane

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/internal/netconf"
	"github.com/ferry-overlay/ferry/internal/nstest"
	"github.com/ferry-overlay/ferry/offload"
)

// TestWriteByFlowKeepsRepliesOnOneQueue is the reason flowQueues exists:
// the kernel hands a flow's packets to ferry on the queue the flow was last
// written through, so two workers writing one connection's packets through
// their own queues would move it between them. Two adapters (two workers)
// write TCP SYNs of 16 flows into a two-queue device, eight each; the
// kernel answers each with a RST of the same flow, and every RST must come
// out of the queue flowQueues picked for its SYN, whichever worker wrote
// it, with both queues in use.
func TestWriteByFlowKeepsRepliesOnOneQueue(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tc := range []struct {
		name string
		kind tuntap.Kind
		vnet bool
	}{
		{"tap", tuntap.TAP, false},
		{"tap with vnet header", tuntap.TAP, true},
		{"tun", tuntap.TUN, false},
		{"tun with vnet header", tuntap.TUN, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := nstest.NewNS(t, "fq")
			var dev *tuntap.Device
			err := netconf.Do(ns.Name, func() error {
				var err error
				dev, err = tuntap.Create(tuntap.Options{Name: nstest.Name(t, "fq"), Kind: tc.kind, Queues: 2, VnetHdr: tc.vnet})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dev.Close() })
			ns.AddAddr(t, dev.Name(), netip.MustParsePrefix("10.79.0.1/24"))
			ns.Sysctl(t, "net.ipv6.conf.all.disable_ipv6", "1")
			h := ns.Handle(t)
			link, err := h.LinkByName(dev.Name())
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(link); err != nil {
				t.Fatal(err)
			}
			peerMAC := net.HardwareAddr{0x02, 0, 0, 0, 0x79, 2}
			if tc.kind == tuntap.TAP {
				// A permanent neighbour, so the RSTs need no ARP.
				err := h.NeighAdd(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT,
					IP: net.IP{10, 79, 0, 2}, HardwareAddr: peerMAC})
				if err != nil {
					t.Fatal(err)
				}
			}

			ports := make([]PortIO, 2)
			for i := range ports {
				if tc.vnet {
					ports[i] = NewTAPVnetQueue(dev, i)
				} else {
					ports[i] = NewTAPQueue(dev, i)
				}
			}
			fq := newFlowQueues(dev)
			pool := NewPool(32, 0)
			const flows = 16
			want := map[uint16]int{} // source port -> queue picked
			for sport := uint16(40000); sport < 40000+flows; sport++ {
				want[sport] = fq.pick(synFrame(t, tc.kind, link.Attrs().HardwareAddr, peerMAC, sport)).Index()
			}
			used := map[int]bool{}
			for _, q := range want {
				used[q] = true
			}
			if len(used) != 2 {
				t.Fatalf("16 flows all picked one queue: %v", want)
			}
			// The device records a flow's queue after it has delivered the
			// packet written, so a reply sent while the write is still
			// being processed (the RST here) leaves by the queue the flow
			// had before; the second round's RSTs show the recorded queue.
			var got map[uint16]int
			for range 2 {
				for w := range ports {
					var pkts []*Packet
					for f := w; f < flows; f += 2 {
						p := pool.Get()
						p.SetBytes(synFrame(t, tc.kind, link.Attrs().HardwareAddr, peerMAC, uint16(40000+f)))
						pkts = append(pkts, p)
					}
					if n, err := ports[w].WriteBatch(pkts); n != len(pkts) || err != nil {
						t.Fatalf("worker %d WriteBatch = %d, %v; want %d, nil", w, n, err, len(pkts))
					}
					for _, p := range pkts {
						pool.Put(p)
					}
				}
				got = readRSTs(t, dev, tc.kind, tc.vnet, flows)
			}
			for sport, q := range want {
				if g, ok := got[sport]; !ok {
					t.Errorf("flow from port %d: no RST", sport)
				} else if g != q {
					t.Errorf("flow from port %d: RST on queue %d, its packets were written through queue %d", sport, g, q)
				}
			}
		})
	}
}

// synFrame returns a TCP SYN from 10.79.0.2:sport to 10.79.0.1:9 (no
// listener, so the kernel answers with a RST), as a frame for a device of
// kind k.
func synFrame(t *testing.T, k tuntap.Kind, devMAC, peerMAC net.HardwareAddr, sport uint16) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IP{10, 79, 0, 2}, DstIP: net.IP{10, 79, 0, 1}}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 9, Seq: 1000, SYN: true, Window: 1000}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	ls := []gopacket.SerializableLayer{ip, tcp}
	if k == tuntap.TAP {
		ls = append([]gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: peerMAC, DstMAC: devMAC, EthernetType: layers.EthernetTypeIPv4}}, ls...)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readRSTs reads both queues of dev until n TCP RSTs to 10.79.0.2 have
// arrived, or two seconds pass, and returns the queue each came out of by
// destination port.
func readRSTs(t *testing.T, dev *tuntap.Device, k tuntap.Kind, vnet bool, n int) map[uint16]int {
	first := layers.LayerTypeIPv4
	if k == tuntap.TAP {
		first = layers.LayerTypeEthernet
	}
	off := 0
	if vnet {
		off = offload.VirtioNetHdrLen // in front of every frame read
	}
	got := map[uint16]int{}
	bufs, sizes := [][]byte{make([]byte, 70000)}, []int{0}
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		for qi, q := range dev.Queues() {
			m, err := q.Read(bufs, sizes, 0)
			if err != nil {
				t.Fatal(err)
			}
			if m == 0 {
				continue
			}
			p := gopacket.NewPacket(bufs[0][off:sizes[0]], first, gopacket.Default)
			if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && tcp.RST {
				if _, dup := got[uint16(tcp.DstPort)]; dup {
					t.Errorf("two RSTs to port %d", tcp.DstPort)
				}
				got[uint16(tcp.DstPort)] = qi
			}
		}
		fds := []unix.PollFd{{Fd: int32(dev.Queues()[0].Fd()), Events: unix.POLLIN}, {Fd: int32(dev.Queues()[1].Fd()), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 50); err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
	}
	if len(got) < n {
		t.Errorf("%d RSTs arrived within 2s, want %d", len(got), n)
	}
	return got
}
