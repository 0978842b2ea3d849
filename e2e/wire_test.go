package e2e

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

// TestE2ETunnelCapture captures ferry's tunnel traffic on a host's underlay
// with tcpdump, for every encapsulation in both modes, and has tshark
// dissect it: no malformed packet, the protocol stack expected, and the
// inner addresses and the GRE key or VNI as sent.
func TestE2ETunnelCapture(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tool := range []string{"tcpdump", "tshark"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install %s): skipping the capture test", tool, tool)
		}
	}
	cases := []struct {
		name, enc string
		l2        bool
		filter    string // tcpdump filter for the tunnel
		decode    []string
		stack     string // frame.protocols of an echo request
		idField   string // GRE key or VNI field, "" if none (l3 GRE: no key, so empty)
		id        string
	}{
		{"l3-udp", "udp", false, "udp port 8285", []string{"-d", "udp.port==8285,ip"}, "eth:ethertype:ip:udp:ip:icmp:data", "", ""},
		{"l3-gre", "gre", false, "ip proto 47", nil, "eth:ethertype:ip:gre:ip:icmp:data", "gre.key", ""},
		{"l3-vxlan", "vxlan", false, "udp port 8472", []string{"-d", "udp.port==8472,vxlan"}, "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:icmp:data", "vxlan.vni", "1"},
		{"l2-gre", "gre", true, "ip proto 47", nil, "eth:ethertype:ip:gre:eth:ethertype:ip:icmp:data", "gre.key", "0x0000002a"}, // tshark shows the key in hex: VNI 42,
		{"l2-vxlan", "vxlan", true, "udp port 4789", nil, "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:icmp:data", "vxlan.vni", "42"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h1 *nstest.Host
			var from *nstest.NS
			var src, dst string
			if c.l2 {
				ul := nstest.NewUnderlay(t, netip.MustParsePrefix("192.168.77.0/24"))
				a, b := ul.AddHost(t, "h1"), ul.AddHost(t, "h2")
				c1, c2 := nstest.NewNS(t, "c1"), nstest.NewNS(t, "c2")
				cfg := func(h *nstest.Host, peer netip.Addr, port, ns, addr, mac string) string {
					s := l2Config(h, 42, []netip.Addr{peer}, []portSpec{{port, ns, addr, mac}})
					return strings.Replace(s, "    vni: 42\n", "    vni: 42\n    encap: "+c.enc+"\n", 1)
				}
				startFerry(t, a, cfg(a, b.Addr, nstest.Name(t, "t1"), c1.Name, "10.42.0.2/24", macC1a))
				startFerry(t, b, cfg(b, a.Addr, nstest.Name(t, "t2"), c2.Name, "10.42.0.4/24", macC2a))
				h1, from, src, dst = a, c1, "10.42.0.2", "10.42.0.4"
				mustPing(t, from, dst) // resolve ARP before the capture
			} else {
				a, _ := l3Pair(t, c.enc)
				h1, from, src, dst = a.Host, a.container, "10.244.1.2", "10.244.2.2"
			}
			file := filepath.Join(t.TempDir(), "tunnel.pcap")
			td := exec.Command("ip", "netns", "exec", h1.Name, "timeout", "20", "tcpdump", "-n", "-U", "--immediate-mode", "-i", nstest.UnderlayDev, "-c", "200", "-w", file, c.filter)
			var tdOut bytes.Buffer
			td.Stdout, td.Stderr = &tdOut, &tdOut
			if err := td.Start(); err != nil {
				t.Fatal(err)
			}
			// tcpdump says "listening on" once its filter is attached.
			for i := 0; i < 50 && !strings.Contains(tdOut.String(), "listening on"); i++ {
				time.Sleep(100 * time.Millisecond)
			}
			mustPing(t, from, dst)
			time.Sleep(300 * time.Millisecond)
			td.Process.Signal(os.Interrupt) // our tcpdump (via timeout), by PID
			if err := td.Wait(); err != nil {
				t.Fatalf("tcpdump: %v\n%s", err, tdOut.String())
			}
			args := append([]string{"-r", file, "-n"}, c.decode...)
			if out, err := exec.Command("tshark", append(args, "-Y", "_ws.malformed || _ws.expert.severity >= warning")...).Output(); err != nil || len(bytes.TrimSpace(out)) != 0 {
				t.Errorf("tshark finds malformed or suspicious packets (err %v):\n%s", err, out)
			}
			fields := []string{"-T", "fields", "-E", "separator=|", "-e", "frame.protocols", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type"}
			if c.idField != "" {
				fields = append(fields, "-e", c.idField)
			}
			// Other traffic (IPv6 neighbour discovery inside l2 tunnels)
			// may be captured too; the pings are what is checked.
			out, err := exec.Command("tshark", append(append(args, "-Y", "icmp"), fields...)...).Output()
			if err != nil {
				t.Fatalf("tshark: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 6 {
				t.Fatalf("tshark shows %d packets, want 6 (3 echo requests, 3 replies):\n%s\ntcpdump: %s", len(lines), out, tdOut.String())
			}
			for i, l := range lines {
				f := strings.Split(l, "|")
				wantSrc, wantDst, wantType := h1.Addr.String()+","+src, ","+dst, "8"
				if i%2 == 1 {
					wantSrc, wantDst, wantType = ","+dst, ","+src, "0"
				}
				ok := f[0] == c.stack && strings.HasSuffix(f[2], wantDst) && f[3] == wantType
				ok = ok && (i%2 == 1 || f[1] == wantSrc) && (i%2 == 0 || strings.HasSuffix(f[1], wantSrc))
				if c.idField != "" {
					ok = ok && f[4] == c.id
				}
				if !ok {
					t.Errorf("packet %d: %q; want stack %s, inner %s > %s, icmp type %s, %s %q", i, l, c.stack, src, dst, wantType, c.idField, c.id)
				}
			}
			t.Logf("tshark:\n%s", out)
		})
	}
}

// echo builds an IPv4 ICMP echo request from src to dst with the given TTL,
// as a container's kernel would.
func echo(src, dst netip.Addr, ttl uint8, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	ip := header.IPv4(b)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8], b[9] = ttl, 1
	ip.SetSrc(src)
	ip.SetDst(dst)
	ip.SetChecksum(ip.CalculateChecksum())
	icmp := b[20:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	copy(icmp[8:], payload)
	binary.BigEndian.PutUint16(icmp[2:], ^header.FoldChecksum(header.Checksum(icmp, 0)))
	return b
}

// TestE2EFlannelUDPWireFormat plays flannel's udp backend by hand on a
// peer host with no ferry: a datagram built as flannel builds it (the inner
// IPv4 packet is the whole UDP payload, its TTL already decremented once by
// the sender) sent from the peer's underlay address to ferry's port 8285 is
// delivered into the container, and the container's reply comes back on a
// plain UDP socket in exactly that format: one IPv4 packet, nothing before
// or after it, TTL decremented by the host's forwarding and once more by
// ferry, header checksum right.
func TestE2EFlannelUDPWireFormat(t *testing.T) {
	nstest.RequireRoot(t)
	ul := nstest.NewUnderlay(t, netip.MustParsePrefix("192.168.77.0/24"))
	a := newL3Host(t, ul, 1, 1472)
	peer := ul.AddHost(t, "fake")
	a.ferry = startFerry(t, a.Host, l3Config(a.Host, 1, "udp", "", map[netip.Addr]int{peer.Addr: 2}))

	var conn *net.UDPConn
	if err := peer.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer.Addr, 8285)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	podSrc, podDst := netip.MustParseAddr("10.244.2.5"), netip.MustParseAddr("10.244.1.2")
	payload := []byte("ferry speaks flannel-udp")
	// The pod's kernel sent it with TTL 64; flannel on its host took one.
	req := echo(podSrc, podDst, 63, 0x4242, 1, payload)
	ferry := net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.Addr, 8285))
	var got []byte
	buf := make([]byte, 2048)
	for try := 0; try < 5 && got == nil; try++ {
		if _, err := conn.WriteToUDP(req, ferry); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue
		}
		if from.Addr() != a.Addr {
			t.Fatalf("reply from %s, want ferry's %s", from, a.Addr)
		}
		got = buf[:n]
	}
	if got == nil {
		t.Fatalf("no reply from the container through ferry\n%s", a.ferry.logs())
	}
	ip := header.IPv4(got)
	if !ip.IsValid(len(got)) || int(ip.TotalLength()) != len(got) {
		t.Fatalf("payload is not exactly one IPv4 packet: %x", got)
	}
	if ip.Src() != podDst || ip.Dst() != podSrc || ip.Protocol() != 1 {
		t.Errorf("reply %s > %s proto %d, want %s > %s ICMP", ip.Src(), ip.Dst(), ip.Protocol(), podDst, podSrc)
	}
	// Container sends with 64; h1's kernel forwarding takes one, ferry one.
	if ip.TTL() != 62 {
		t.Errorf("reply TTL %d, want 62 (64, minus h1's forwarding, minus ferry as flannel does)", ip.TTL())
	}
	if ip.Checksum() != ip.CalculateChecksum() {
		t.Errorf("reply header checksum %#04x, want %#04x", ip.Checksum(), ip.CalculateChecksum())
	}
	icmp := got[ip.HeaderLength():]
	wantICMP := echo(podSrc, podDst, 63, 0x4242, 1, payload)[20:]
	wantICMP[0] = 0 // echo reply
	binary.BigEndian.PutUint16(wantICMP[2:], 0)
	binary.BigEndian.PutUint16(wantICMP[2:], ^header.FoldChecksum(header.Checksum(wantICMP, 0)))
	if !bytes.Equal(icmp, wantICMP) {
		t.Errorf("ICMP reply\n got %x\nwant %x", icmp, wantICMP)
	}
	// The peer's datagrams were all accepted.
	out, err := a.ferry.ctl("errors")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "unknown-peer") {
		t.Errorf("unexpected unknown-peer drops:\n%s", out)
	}
}
