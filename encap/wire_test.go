package encap

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferry-overlay/ferry/header"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// This file has tshark, an independent dissector, read packets encapsulated
// by this package: whole frames as they cross the underlay (outer Ethernet
// and IPv4, the tunnel, the inner packet), written to a pcap file.

var (
	outerSrcMAC = header.MAC{0x02, 0, 0, 0, 0x77, 0x01}
	outerDstMAC = header.MAC{0x02, 0, 0, 0, 0x77, 0x02}
)

// onWire puts an outer Ethernet header in front of the outer IPv4 packet.
func onWire(ipPkt []byte) []byte {
	f := make([]byte, header.EthernetLen+len(ipPkt))
	header.Ethernet(f).Encode(outerDstMAC, outerSrcMAC, header.EtherTypeIPv4)
	copy(f[header.EthernetLen:], ipPkt)
	return f
}

// outerUDP wraps payload in UDP from port 49152 to dport inside outer IPv4,
// with a UDP checksum when withSum (flannel's kernel socket computes one;
// VXLAN senders usually leave it 0).
func outerUDP(dport uint16, payload []byte, withSum bool) []byte {
	u := make([]byte, header.UDPLen+len(payload))
	header.UDP(u).Encode(&header.UDPFields{SrcPort: 49152, DstPort: dport, Length: uint16(len(u))})
	copy(u[header.UDPLen:], payload)
	if withSum {
		sum := header.Checksum(u, header.PseudoHeaderChecksum(header.ProtoUDP, outerSrc, outerDst, uint16(len(u))))
		c := ^header.FoldChecksum(sum)
		if c == 0 {
			c = 0xffff
		}
		header.UDP(u).SetChecksum(c)
	}
	return outerIPv4(header.ProtoUDP, u)
}

// innerL4 serializes an inner IPv4 packet carrying l4 (TCP or UDP) and a
// payload with gopacket, with correct lengths and checksums.
func innerL4(t *testing.T, proto layers.IPProtocol, l4 interface {
	gopacket.SerializableLayer
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 63, Id: 99, Flags: layers.IPv4DontFragment, Protocol: proto,
		SrcIP: innerIPSrc.AsSlice(), DstIP: innerIPDst.AsSlice()}
	if err := l4.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, l4, gopacket.Payload("ferry over the wire")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withEthernet puts an inner Ethernet header (innerSrc -> innerDst) in
// front of an inner IPv4 packet.
func withEthernet(ipPkt []byte) []byte {
	f := make([]byte, header.EthernetLen+len(ipPkt))
	header.Ethernet(f).Encode(header.MAC(innerDst), header.MAC(innerSrc), header.EtherTypeIPv4)
	copy(f[header.EthernetLen:], ipPkt)
	return f
}

// pcapFile appends a classic libpcap file header (microsecond timestamps,
// link type Ethernet) to b. It is written by hand because gopacket's
// pcapgo would pull golang.org/x/net into the module.
func pcapFile(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, 0xa1b2c3d4) // magic, microseconds
	b = binary.LittleEndian.AppendUint16(b, 2)          // version 2.4
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0)     // thiszone
	b = binary.LittleEndian.AppendUint32(b, 0)     // sigfigs
	b = binary.LittleEndian.AppendUint32(b, 65535) // snaplen
	return binary.LittleEndian.AppendUint32(b, uint32(layers.LinkTypeEthernet))
}

// pcapRecord appends frame to a pcap file b as record i, captured i
// milliseconds after the first.
func pcapRecord(b []byte, i int, frame []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, 1700000000)
	b = binary.LittleEndian.AppendUint32(b, uint32(i)*1000)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(frame)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(frame)))
	return append(b, frame...)
}

// tsharkFields are the fields each frame is checked on, in this order.
var tsharkFields = []string{
	"frame.protocols", "gre.key", "gre.proto", "vxlan.vni", "ip.src", "ip.dst",
	"eth.src", "eth.dst", "_ws.expert.severity", "_ws.expert.message", "_ws.malformed",
}

// tsharkFrame is one frame of TestTsharkAgrees and what tshark must read
// in it.
type tsharkFrame struct {
	name       string
	frame      []byte
	want       map[string]string // field -> exact value ("" = absent)
	wantExpert string            // on a control frame: the complaint tshark must raise
}

// Wireshark expert severities (epan/proto.h PI_*): anything from warning up
// means the dissector found something wrong.
const expertWarn = 0x00600000

func TestTsharkAgrees(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed (apt package: tshark); skipping the dissector agreement test")
	}
	tcpSYN := innerL4(t, layers.IPProtocolTCP, &layers.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1000, SYN: true, Window: 64240})
	// Distinct flows per frame, so tshark's TCP analysis sees no
	// retransmission; unassigned ports, so the payload dissects as data.
	tcpSYN2 := innerL4(t, layers.IPProtocolTCP, &layers.TCP{SrcPort: 40002, DstPort: 5201, Seq: 2000, SYN: true, Window: 64240})
	udp := innerL4(t, layers.IPProtocolUDP, &layers.UDP{SrcPort: 40001, DstPort: 40009})
	badICMP := innerEthIPv4(84)
	badICMP[header.EthernetLen+header.IPv4MinLen+2] ^= 0xff // ICMP checksum
	frames := []tsharkFrame{
		{
			name:  "l2 gre: gre(key)/eth/ipv4/icmp",
			frame: onWire(outerIPv4(header.ProtoGRE, greEncapsulate(GREProtoTEB, 0x00abcdef, true, innerEthIPv4(84)))),
			want: map[string]string{
				"frame.protocols": "eth:ethertype:ip:gre:eth:ethertype:ip:icmp:data",
				"gre.key":         "0x00abcdef",
				"gre.proto":       "0x6558",
				"vxlan.vni":       "",
				"ip.src":          "192.0.2.1,10.244.1.2",
				"ip.dst":          "192.0.2.2,10.244.2.3",
				"eth.src":         "02:00:00:00:77:01,02:42:ac:11:00:02",
				"eth.dst":         "02:00:00:00:77:02,02:42:ac:11:00:03",
			},
		},
		{
			name:  "l3 gre: gre/ipv4/tcp",
			frame: onWire(outerIPv4(header.ProtoGRE, greEncapsulate(GREProtoIPv4, 0, false, tcpSYN))),
			want: map[string]string{
				"frame.protocols": "eth:ethertype:ip:gre:ip:tcp:data",
				"gre.key":         "",
				"gre.proto":       "0x0800",
				"vxlan.vni":       "",
				"ip.src":          "192.0.2.1,10.244.1.2",
				"ip.dst":          "192.0.2.2,10.244.2.3",
				"eth.src":         "02:00:00:00:77:01",
				"eth.dst":         "02:00:00:00:77:02",
			},
		},
		{
			name:  "flannel-udp: udp 8285/ipv4/udp",
			frame: onWire(outerUDP(FlannelUDPPort, udp, true)),
			want: map[string]string{
				"frame.protocols": "eth:ethertype:ip:udp:ip:udp:data",
				"gre.key":         "",
				"gre.proto":       "",
				"vxlan.vni":       "",
				"ip.src":          "192.0.2.1,10.244.1.2",
				"ip.dst":          "192.0.2.2,10.244.2.3",
				"eth.src":         "02:00:00:00:77:01",
				"eth.dst":         "02:00:00:00:77:02",
			},
		},
		{
			name:  "vxlan: udp 4789/vxlan/eth/ipv4/tcp",
			frame: onWire(outerUDP(DefaultVXLANPort, encapsulate(0x123456, withEthernet(tcpSYN2)), false)),
			want: map[string]string{
				"frame.protocols": "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:tcp:data",
				"gre.key":         "",
				"gre.proto":       "",
				"vxlan.vni":       "1193046",
				"ip.src":          "192.0.2.1,10.244.1.2",
				"ip.dst":          "192.0.2.2,10.244.2.3",
				"eth.src":         "02:00:00:00:77:01,02:42:ac:11:00:02",
				"eth.dst":         "02:00:00:00:77:02,02:42:ac:11:00:03",
			},
		},
	}

	// The control: the same l2 GRE frame with a broken inner ICMP
	// checksum must make tshark complain, or the checks above prove
	// nothing.
	frames = append(frames, tsharkFrame{
		name:       "control: inner icmp checksum broken",
		frame:      onWire(outerIPv4(header.ProtoGRE, greEncapsulate(GREProtoTEB, 7, true, badICMP))),
		want:       map[string]string{"gre.key": "0x00000007"},
		wantExpert: "Bad checksum",
	})

	path := filepath.Join(t.TempDir(), "encap.pcap")
	pcap := pcapFile(nil)
	for i, fr := range frames {
		pcap = pcapRecord(pcap, i, fr.frame)
	}
	if err := os.WriteFile(path, pcap, 0o600); err != nil {
		t.Fatal(err)
	}

	args := []string{"-r", path, "-n",
		"-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
		"-d", fmt.Sprintf("udp.port==%d,ip", FlannelUDPPort),
		"-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, fld := range tsharkFields {
		args = append(args, "-e", fld)
	}
	cmd := exec.Command(tshark, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no personal preferences
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("tshark %v: %v\n%s", args, err, stderr)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tshark printed %d lines for %d frames:\n%s", len(lines), len(frames), out)
	}
	for i, fr := range frames {
		t.Run(fr.name, func(t *testing.T) {
			vals := strings.Split(lines[i], "\t")
			if len(vals) != len(tsharkFields) {
				t.Fatalf("%d fields in %q", len(vals), lines[i])
			}
			got := make(map[string]string, len(vals))
			for j, fld := range tsharkFields {
				got[fld] = vals[j]
			}
			for fld, want := range fr.want {
				if got[fld] != want {
					t.Errorf("%s = %q, want %q", fld, got[fld], want)
				}
			}
			if got["_ws.malformed"] != "" {
				t.Errorf("tshark: malformed packet: %q", got["_ws.malformed"])
			}
			if fr.wantExpert != "" {
				if !strings.Contains(got["_ws.expert.message"], fr.wantExpert) {
					t.Errorf("control frame: expert messages %q lack %q", got["_ws.expert.message"], fr.wantExpert)
				}
				return
			}
			if got["_ws.expert.severity"] == "" {
				return
			}
			sev := strings.Split(got["_ws.expert.severity"], ",")
			msg := strings.Split(got["_ws.expert.message"], ",")
			for k, s := range sev {
				v, err := strconv.ParseUint(s, 0, 32)
				if err != nil {
					t.Fatalf("severity %q: %v", s, err)
				}
				if v >= expertWarn {
					m := ""
					if k < len(msg) {
						m = msg[k]
					}
					t.Errorf("tshark expert info, severity %#x: %s", v, m)
				}
			}
		})
	}
}
