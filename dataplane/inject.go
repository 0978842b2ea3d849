package dataplane

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/header"
)

// What-if traces: `ferry trace inject` runs a made-up packet through the
// real stage code on a dry worker: a Worker whose ports and tunnel are
// in-memory fakes that keep nothing, whose counters are its own (thrown
// away), and whose bridge stage looks destinations up without learning
// sources. The engine's tables and FDBs are the live ones, so the story is
// what the real pipeline would decide now, and nothing changes: no frame is
// sent, no MAC learned, no counter moved. On a network with a gateway the
// routed stages run in their dry forms too: the gateway answers ARP and
// pings without learning their senders, the neighbour stage reads the
// neighbour table (a miss sends no ARP request), and NAT asks its table for
// a plan (nat.Table.Plan: the rewrite of a tracked connection, or the
// translation and port a new one would get) without creating, advancing or
// expiring any connection.

// InjectSpec is the request of `ferry trace inject`.
type InjectSpec struct {
	// In is where the packet enters: a local port's name,
	// "peer:ADDR" for a VXLAN datagram from the peer at ADDR, or
	// "uplink:NAME" for an IPv4 packet read from that uplink (from the
	// outside, towards the nat_address: inbound NAT and routing).
	In string `json:"in"`
	// VNI is the VXLAN VNI of a datagram from a peer; 0 means the VNI of
	// the network the peer belongs to.
	VNI uint32 `json:"vni,omitempty"`
	// Packet describes the frame in words (see BuildFrame); Hex gives it
	// as bytes instead. Exactly one is set. A TUN port (an l3 network)
	// and an uplink carry bare IP packets: the description's eth part is
	// dropped, and Hex is the IP packet without a link layer.
	Packet string `json:"packet,omitempty"`
	Hex    string `json:"hex,omitempty"`
}

// maxInjectFrame bounds an injected frame.
const maxInjectFrame = 16384

// Inject runs the packet of spec through the pipeline in dry-run mode and
// returns its trace. It is safe to call concurrently with the workers and
// with other Injects.
func (e *Engine) Inject(spec InjectSpec) (TracePacket, error) {
	var frame []byte
	var err error
	switch {
	case spec.Packet != "" && spec.Hex != "":
		return TracePacket{}, fmt.Errorf("give a packet description or a hex frame, not both: %w", ErrInvalid)
	case spec.Hex != "":
		frame, err = hex.DecodeString(strings.Join(strings.Fields(strings.ReplaceAll(spec.Hex, ":", "")), ""))
		if err != nil {
			return TracePacket{}, fmt.Errorf("hex frame: %w: %w", err, ErrInvalid)
		}
	default:
		frame, err = BuildFrame(spec.Packet)
		if err != nil {
			return TracePacket{}, fmt.Errorf("%w: %w", err, ErrInvalid)
		}
	}
	if len(frame) > maxInjectFrame {
		return TracePacket{}, fmt.Errorf("frame of %d bytes: at most %d: %w", len(frame), maxInjectFrame, ErrInvalid)
	}

	t := e.tables.Load()
	s := &traceSession{filter: &Filter{}, port: -1, count: 1, rings: []*traceRing{{slots: make([]traceRec, 1)}}}
	s.remaining.Store(1)
	var src atomic.Pointer[observer]
	src.Store(&observer{trace: s})
	w := e.NewWorker(0, 1, maxInjectFrame)
	w.c = new(Counters)
	w.obsSrc = &src
	w.dry = true
	for _, p := range t.ports {
		w.SetPort(p.id, &MemPort{})
	}
	for _, u := range t.uplinks {
		w.SetUplink(u.id, &MemPort{})
	}
	tun := &MemTunnel{}
	w.SetTunnel(tun)
	for k := TunnelFlannelUDP; k < NumTunnelKinds; k++ {
		w.SetTunnelKind(k, &MemTunnel{})
	}

	upName, fromUplink := strings.CutPrefix(spec.In, "uplink:")
	if fromUplink {
		if spec.VNI != 0 {
			return TracePacket{}, fmt.Errorf("--vni is for packets from a peer (--in peer:ADDR): %w", ErrInvalid)
		}
		u, err := t.uplinkNamed(upName)
		if err != nil || upName == "" {
			return TracePacket{}, fmt.Errorf("--in %q: no such uplink: %w", spec.In, ErrNotFound)
		}
		if spec.Hex == "" {
			frame = frame[header.EthernetLen:] // an uplink carries bare IPv4
		}
		mp := &MemPort{}
		mp.Queue(frame)
		w.SetUplink(u.id, mp)
		if _, err := w.PollUplink(u.id); err != nil {
			return TracePacket{}, fmt.Errorf("dry run: %w", err)
		}
	} else if peerStr, ok := strings.CutPrefix(spec.In, "peer:"); ok {
		peer, err := netip.ParseAddr(peerStr)
		if err != nil {
			return TracePacket{}, fmt.Errorf("--in %q: not a peer address: %w", spec.In, ErrInvalid)
		}
		peer = peer.Unmap()
		vni := spec.VNI
		if vni == 0 {
			for _, n := range t.nets {
				if _, ok := n.peerIdx[peer]; ok {
					vni = n.vni
					break
				}
			}
			if vni == 0 {
				return TracePacket{}, fmt.Errorf("%s is a peer of no network; give the VNI: %w", peer, ErrInvalid)
			}
		}
		d := make([]byte, encap.VXLANHeaderLen+len(frame))
		encap.PutVXLAN(d, vni)
		copy(d[encap.VXLANHeaderLen:], frame)
		tun.Queue(peer, d)
		if _, err := w.PollTunnel(); err != nil {
			return TracePacket{}, fmt.Errorf("dry run: %w", err)
		}
	} else {
		if spec.VNI != 0 {
			return TracePacket{}, fmt.Errorf("--vni is for packets from a peer (--in peer:ADDR): %w", ErrInvalid)
		}
		id, ok := e.PortID(spec.In)
		if !ok {
			return TracePacket{}, fmt.Errorf("--in %q: no such port (give a port name or peer:ADDR): %w", spec.In, ErrNotFound)
		}
		if t.isL3Port(id) && spec.Hex == "" {
			frame = frame[header.EthernetLen:] // BuildFrame's Ethernet header
		}
		mp := &MemPort{}
		mp.Queue(frame)
		w.SetPort(id, mp)
		if _, err := w.PollPort(id); err != nil {
			return TracePacket{}, fmt.Errorf("dry run: %w", err)
		}
	}
	r := s.rings[0]
	if r.head.Load() != 1 {
		return TracePacket{}, fmt.Errorf("dry run recorded no trace")
	}
	return e.describeTrace(t, &r.slots[0]), nil
}

// BuildFrame builds an Ethernet frame from a description in words, for
// what-if traces:
//
//	eth [src MAC] [dst MAC]
//	ip|ip6 src ADDR dst ADDR [ttl N]
//	tcp|udp [sport N] [dport N] [flags SAFRPU]    (tcp flags, default S)
//	icmp [echo-request|echo-reply]
//	arp who-has ADDR tell ADDR
//	payload N                                     (N zero bytes)
//
// e.g. "eth src 02:42:0a:2a:00:02 dst 02:42:0a:2a:00:03 ip src 10.42.0.2
// dst 10.42.0.3 tcp dport 80". Missing MACs are 02:00:00:00:00:01 (src)
// and ff:ff:ff:ff:ff:ff (dst); ip is implied by tcp, udp or icmp given with
// addresses; lengths and checksums are filled in.
func BuildFrame(desc string) ([]byte, error) {
	words := strings.Fields(desc)
	if len(words) == 0 {
		return nil, fmt.Errorf("empty packet description")
	}
	eth := &layers.Ethernet{
		SrcMAC:       net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01},
		DstMAC:       net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		EthernetType: layers.EthernetTypeIPv4,
	}
	var (
		src, dst        netip.Addr
		ttl             uint8 = 64
		l4              string
		sport, dport    uint16 = 12345, 80
		flags                  = "S"
		icmpReply       bool
		arpWho, arpTell netip.Addr
		payload         int
	)
	i := 0
	next := func(what string) (string, error) {
		if i >= len(words) {
			return "", fmt.Errorf("packet description: %s needs a value", what)
		}
		v := words[i]
		i++
		return v, nil
	}
	mac := func(what string) (net.HardwareAddr, error) {
		v, err := next(what)
		if err != nil {
			return nil, err
		}
		m, err := net.ParseMAC(v)
		if err != nil || len(m) != 6 {
			return nil, fmt.Errorf("packet description: %s %q: not a MAC address", what, v)
		}
		return m, nil
	}
	addr := func(what string) (netip.Addr, error) {
		v, err := next(what)
		if err != nil {
			return netip.Addr{}, err
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("packet description: %s %q: not an IP address", what, v)
		}
		return a.Unmap(), nil
	}
	num := func(what string, bits int) (uint64, error) {
		v, err := next(what)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(v, 10, bits)
		if err != nil {
			return 0, fmt.Errorf("packet description: %s %q: not a number that fits %d bits", what, v, bits)
		}
		return n, nil
	}
	section := ""
	for i < len(words) {
		w := strings.ToLower(words[i])
		i++
		var err error
		switch {
		case w == "eth" || w == "ip" || w == "ip6" || w == "arp" || w == "payload":
			section = w
			switch w {
			case "arp":
				l4 = "arp"
			case "payload":
				var n uint64
				n, err = num("payload", 14)
				payload = int(n)
			}
		case w == "tcp" || w == "udp" || w == "icmp":
			section, l4 = w, w
		case section == "eth" && w == "src":
			eth.SrcMAC, err = mac("eth src")
		case section == "eth" && w == "dst":
			eth.DstMAC, err = mac("eth dst")
		case (section == "ip" || section == "ip6") && w == "src":
			src, err = addr("ip src")
		case (section == "ip" || section == "ip6") && w == "dst":
			dst, err = addr("ip dst")
		case (section == "ip" || section == "ip6") && w == "ttl":
			var n uint64
			n, err = num("ttl", 8)
			ttl = uint8(n)
		case (section == "tcp" || section == "udp") && w == "sport":
			var n uint64
			n, err = num("sport", 16)
			sport = uint16(n)
		case (section == "tcp" || section == "udp") && w == "dport":
			var n uint64
			n, err = num("dport", 16)
			dport = uint16(n)
		case section == "tcp" && w == "flags":
			flags, err = next("flags")
		case section == "icmp" && (w == "echo-request" || w == "echo-reply"):
			icmpReply = w == "echo-reply"
		case section == "arp" && w == "who-has":
			arpWho, err = addr("who-has")
		case section == "arp" && w == "tell":
			arpTell, err = addr("tell")
		default:
			return nil, fmt.Errorf("packet description: unexpected %q (after %q)", words[i-1], section)
		}
		if err != nil {
			return nil, err
		}
	}
	ls := []gopacket.SerializableLayer{eth}
	var netLayer gopacket.NetworkLayer
	switch {
	case l4 == "arp":
		if !arpWho.Is4() || !arpTell.Is4() {
			return nil, fmt.Errorf("packet description: arp needs who-has and tell IPv4 addresses")
		}
		eth.EthernetType = layers.EthernetTypeARP
		ls = append(ls, &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
			SourceHwAddress: eth.SrcMAC, SourceProtAddress: arpTell.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: arpWho.AsSlice(),
		})
	case src.IsValid() || dst.IsValid():
		if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
			return nil, fmt.Errorf("packet description: ip needs src and dst of one family")
		}
		proto := map[string]layers.IPProtocol{"tcp": layers.IPProtocolTCP, "udp": layers.IPProtocolUDP, "icmp": layers.IPProtocolICMPv4, "": layers.IPProtocolNoNextHeader}[l4]
		if src.Is4() {
			ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
			if l4 == "" {
				ip.Protocol = 253 // RFC 3692 experimentation
			}
			ls, netLayer = append(ls, ip), ip
		} else {
			if l4 == "icmp" {
				proto = layers.IPProtocolICMPv6
			}
			eth.EthernetType = layers.EthernetTypeIPv6
			ip := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
			ls, netLayer = append(ls, ip), ip
		}
		switch l4 {
		case "tcp":
			tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Window: 65535, Seq: 1}
			for _, f := range strings.ToUpper(flags) {
				switch f {
				case 'S':
					tcp.SYN = true
				case 'A':
					tcp.ACK = true
				case 'F':
					tcp.FIN = true
				case 'R':
					tcp.RST = true
				case 'P':
					tcp.PSH = true
				case 'U':
					tcp.URG = true
				default:
					return nil, fmt.Errorf("packet description: tcp flag %q: want letters of SAFRPU", f)
				}
			}
			if err := tcp.SetNetworkLayerForChecksum(netLayer); err != nil {
				return nil, fmt.Errorf("packet description: %w", err)
			}
			ls = append(ls, tcp)
		case "udp":
			udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
			if err := udp.SetNetworkLayerForChecksum(netLayer); err != nil {
				return nil, fmt.Errorf("packet description: %w", err)
			}
			ls = append(ls, udp)
		case "icmp":
			if src.Is4() {
				typ := uint8(layers.ICMPv4TypeEchoRequest)
				if icmpReply {
					typ = layers.ICMPv4TypeEchoReply
				}
				ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: 1, Seq: 1})
			} else {
				typ := uint8(layers.ICMPv6TypeEchoRequest)
				if icmpReply {
					typ = layers.ICMPv6TypeEchoReply
				}
				ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
				if err := ic.SetNetworkLayerForChecksum(netLayer); err != nil {
					return nil, fmt.Errorf("packet description: %w", err)
				}
				ls = append(ls, ic, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1})
			}
		}
	case l4 != "":
		return nil, fmt.Errorf("packet description: %s needs ip src and dst", l4)
	}
	ls = append(ls, gopacket.Payload(make([]byte, payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("packet description: building the frame: %w", err)
	}
	return buf.Bytes(), nil
}
