package e2e

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// TestE2EPcapTunnelTxDuringTCP captures 200 packets at h1's tunnel-tx
// while c1 sends 8 MB transfers over TCP to c2. With offloads on, the container hands
// ferry 64 KB superpackets; the capture must still hold what the wire
// carries: every packet at most an underlay frame (14 + 1500 bytes), a
// VXLAN VNI 42 datagram whose inner IPv4/TCP packet has the length it says
// and valid IP and TCP checksums, with at most an MSS of payload. Every
// transfer must arrive intact.
func TestE2EPcapTunnelTxDuringTCP(t *testing.T) {
	r := newObsRig(t, "192.168.86.0/24")
	// A transfer may end before the capture is listening: send starts
	// another whenever none is running, until the capture has its packets.
	var wg sync.WaitGroup
	var running atomic.Bool
	file := capturePoint(t, r.f1, "tunnel-tx", "tcp and dst port 5201", 200, func() {
		if !running.CompareAndSwap(false, true) {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer running.Store(false)
			sent, got, err := nstest.TCPTransfer(t, r.c1, r.c2, netip.MustParseAddrPort("10.42.0.3:5201"), 8<<20, 60*time.Second)
			if err != nil || sent != got {
				t.Errorf("TCP transfer: %v (hash sent %x, received %x)", err, sent, got)
			}
		}()
	})
	wg.Wait()
	lt, pkts := readPcap(t, file)
	if lt != layers.LinkTypeEthernet || len(pkts) != 200 {
		t.Fatalf("capture: link type %v, %d packets; want Ethernet, 200", lt, len(pkts))
	}
	full := 0
	for i, b := range pkts {
		if len(b) > 14+1500 {
			t.Fatalf("packet %d: %d bytes, more than an underlay frame", i, len(b))
		}
		pkt := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
		vx, _ := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if vx == nil || vx.VNI != 42 {
			t.Fatalf("packet %d is not VXLAN VNI 42: %v", i, pkt)
		}
		inner := vx.Payload[14:]
		ip := header.IPv4(inner)
		if len(inner) < 40 || int(ip.TotalLength()) != len(inner) || ip.Protocol() != header.ProtoTCP {
			t.Fatalf("packet %d: inner packet of %d bytes is not the IPv4/TCP packet it says", i, len(inner))
		}
		if header.FoldChecksum(header.Checksum(inner[:20], 0)) != 0xffff {
			t.Fatalf("packet %d: inner IPv4 header checksum does not verify", i)
		}
		tcp := inner[20:]
		sum := header.PseudoHeaderChecksum(header.ProtoTCP, ip.Src(), ip.Dst(), uint16(len(tcp)))
		if header.FoldChecksum(header.Checksum(tcp, sum)) != 0xffff {
			t.Fatalf("packet %d (seq %d): inner TCP checksum does not verify", i, binary.BigEndian.Uint32(tcp[4:]))
		}
		if payload := len(tcp) - int(tcp[12]>>4)*4; payload > 1450-40 {
			t.Fatalf("packet %d: %d bytes of TCP payload, more than an MSS at MTU 1450", i, payload)
		} else if payload >= 1000 {
			full++
		}
	}
	if full == 0 {
		t.Fatal("no full-size data segment captured")
	}
	t.Logf("%d packets, %d full-size segments, all within the underlay MTU with valid checksums", len(pkts), full)
}
