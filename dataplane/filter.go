package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ferry-overlay/ferry/header"
)

// Filter is a compiled packet filter in the spirit of tcpdump's expressions,
// used by `ferry trace --filter` and `ferry pcap --filter`:
//
//	host ADDR          src or dst IP is ADDR (ARP: sender or target)
//	src host ADDR      (and dst host ADDR)
//	net PREFIX         src or dst IP in PREFIX (src net, dst net)
//	port N             TCP/UDP src or dst port N (src port, dst port)
//	proto P            P is tcp, udp, icmp (v4 or v6), arp, ip or ip6;
//	                   the bare words tcp, udp, icmp, arp, ip, ip6 too
//	ether host MAC     src or dst MAC (ether src MAC, ether dst MAC)
//	vni N              the packet belongs to the network with VXLAN VNI N
//	                   (the GRE key of an l2 GRE network; the configured
//	                   vni of an l3 network); never matches uplink packets
//
// Packets without an Ethernet header (TUN ports, uplinks, flannel-UDP and
// l3 GRE payloads, the NAT points) are matched with MatchIP: host, net,
// port and proto look at their IP header, and ether never matches them.
//
// combined with and (&&), or (||), not (!) and parentheses; not binds
// tighter than and, and than or. The empty expression matches everything.
//
// A Filter is immutable once compiled and safe for concurrent use; Match
// does not allocate.
type Filter struct {
	root *fnode
	src  string
}

type fop uint8

const (
	fAnd fop = iota
	fOr
	fNot
	fHost
	fNet
	fPort
	fProto
	fEther
	fVNI
)

// Directions of a primitive.
const (
	dirAny uint8 = iota
	dirSrc
	dirDst
)

// Protocols of `proto`.
const (
	protoTCP uint32 = iota
	protoUDP
	protoICMP
	protoARP
	protoIP
	protoIP6
)

type fnode struct {
	op     fop
	dir    uint8
	num    uint32
	addr   netip.Addr
	prefix netip.Prefix
	mac    header.MAC
	l, r   *fnode
}

// ParseFilter compiles expr. Errors name the offending word and its
// position (1-based, in words).
func ParseFilter(expr string) (*Filter, error) {
	p := &fparser{toks: tokenize(expr)}
	f := &Filter{src: strings.TrimSpace(expr)}
	if len(p.toks) == 0 {
		return f, nil
	}
	root, err := p.or()
	if err != nil {
		return nil, fmt.Errorf("filter %q: %w", f.src, err)
	}
	if p.i < len(p.toks) {
		return nil, fmt.Errorf("filter %q: unexpected %q at word %d", f.src, p.toks[p.i], p.i+1)
	}
	f.root = root
	return f, nil
}

// String returns the expression the filter was compiled from.
func (f *Filter) String() string { return f.src }

// Match reports whether an Ethernet frame with the decoded headers p
// (header.Parsed.Decode), in the network with VXLAN VNI vni, passes the
// filter. A nil Filter matches everything.
func (f *Filter) Match(p *header.Parsed, vni uint32) bool {
	if f == nil || f.root == nil {
		return true
	}
	return f.root.match(p, vni, true)
}

// MatchIP is Match for a bare IP packet decoded with
// header.Parsed.DecodeIP: it has no link layer, so ether primitives never
// match it. Pass NoVNI for a packet of no network (an uplink's).
func (f *Filter) MatchIP(p *header.Parsed, vni uint32) bool {
	if f == nil || f.root == nil {
		return true
	}
	return f.root.match(p, vni, false)
}

// NoVNI is the vni of a packet that belongs to no network (one read from
// an uplink): no vni primitive matches it.
const NoVNI uint32 = 1 << 24

// matches decodes b, an Ethernet frame or (ip) a bare IP packet, into the
// worker's scratch and applies f.
func (w *Worker) matches(f *Filter, b []byte, ip bool, vni uint32) bool {
	if ip {
		w.parsed.DecodeIP(b)
		return f.MatchIP(&w.parsed, vni)
	}
	w.parsed.Decode(b)
	return f.Match(&w.parsed, vni)
}

func (n *fnode) match(p *header.Parsed, vni uint32, eth bool) bool {
	switch n.op {
	case fAnd:
		return n.l.match(p, vni, eth) && n.r.match(p, vni, eth)
	case fOr:
		return n.l.match(p, vni, eth) || n.r.match(p, vni, eth)
	case fNot:
		return !n.l.match(p, vni, eth)
	case fHost:
		if !p.SrcIP.IsValid() {
			return false
		}
		return (n.dir != dirDst && p.SrcIP == n.addr) || (n.dir != dirSrc && p.DstIP == n.addr)
	case fNet:
		if !p.SrcIP.IsValid() {
			return false
		}
		return (n.dir != dirDst && n.prefix.Contains(p.SrcIP)) || (n.dir != dirSrc && n.prefix.Contains(p.DstIP))
	case fPort:
		if !p.HasPorts() {
			return false
		}
		return (n.dir != dirDst && uint32(p.SrcPort) == n.num) || (n.dir != dirSrc && uint32(p.DstPort) == n.num)
	case fProto:
		switch n.num {
		case protoTCP:
			return p.IPVersion != 0 && p.IPProto == header.ProtoTCP
		case protoUDP:
			return p.IPVersion != 0 && p.IPProto == header.ProtoUDP
		case protoICMP:
			return (p.IPVersion == 4 && p.IPProto == header.ProtoICMPv4) || (p.IPVersion == 6 && p.IPProto == header.ProtoICMPv6)
		case protoARP:
			return eth && p.Status != header.DecodeRunt && p.EtherType == header.EtherTypeARP
		case protoIP:
			return p.IPVersion == 4
		case protoIP6:
			return p.IPVersion == 6
		}
		return false
	case fEther:
		if !eth || p.Status == header.DecodeRunt {
			return false
		}
		return (n.dir != dirDst && p.SrcMAC == n.mac) || (n.dir != dirSrc && p.DstMAC == n.mac)
	case fVNI:
		return vni == n.num
	}
	return false
}

// tokenize splits expr into words, with parentheses, "!", "&&" and "||"
// as words of their own.
func tokenize(expr string) []string {
	var toks []string
	cur := strings.Builder{}
	flush := func() {
		if cur.Len() > 0 {
			toks = append(toks, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			flush()
		case c == '(' || c == ')':
			flush()
			toks = append(toks, string(c))
		case c == '!' && (i+1 >= len(expr) || expr[i+1] != '='):
			flush()
			toks = append(toks, "!")
		case (c == '&' || c == '|') && i+1 < len(expr) && expr[i+1] == c:
			flush()
			toks = append(toks, expr[i:i+2])
			i++
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return toks
}

type fparser struct {
	toks []string
	i    int
	// depth bounds nesting, so a hostile expression cannot exhaust the
	// stack.
	depth int
}

const maxFilterDepth = 64

func (p *fparser) peek() string {
	if p.i < len(p.toks) {
		return strings.ToLower(p.toks[p.i])
	}
	return ""
}

func (p *fparser) next() (string, error) {
	if p.i >= len(p.toks) {
		return "", fmt.Errorf("unexpected end of expression")
	}
	t := p.toks[p.i]
	p.i++
	return t, nil
}

func (p *fparser) or() (*fnode, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t == "or" || t == "||"; t = p.peek() {
		p.i++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &fnode{op: fOr, l: l, r: r}
	}
	return l, nil
}

func (p *fparser) and() (*fnode, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t == "and" || t == "&&"; t = p.peek() {
		p.i++
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &fnode{op: fAnd, l: l, r: r}
	}
	return l, nil
}

func (p *fparser) not() (*fnode, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxFilterDepth {
		return nil, fmt.Errorf("nested more than %d deep", maxFilterDepth)
	}
	switch p.peek() {
	case "not", "!":
		p.i++
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &fnode{op: fNot, l: x}, nil
	case "(":
		p.i++
		x, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("missing ) at word %d", p.i+1)
		}
		p.i++
		return x, nil
	}
	return p.primitive()
}

func (p *fparser) primitive() (*fnode, error) {
	at := p.i + 1
	w, err := p.next()
	if err != nil {
		return nil, err
	}
	w = strings.ToLower(w)
	dir := dirAny
	switch w {
	case "src", "dst":
		dw := w
		dir = dirSrc
		if w == "dst" {
			dir = dirDst
		}
		if w, err = p.next(); err != nil {
			return nil, err
		}
		w = strings.ToLower(w)
		if w != "host" && w != "net" && w != "port" {
			return nil, fmt.Errorf("word %d: %s must be followed by host, net or port, not %q", at, dw, w)
		}
	}
	switch w {
	case "host":
		arg, err := p.next()
		if err != nil {
			return nil, err
		}
		a, err := netip.ParseAddr(arg)
		if err != nil {
			return nil, fmt.Errorf("word %d: host %q: not an IP address", at, arg)
		}
		return &fnode{op: fHost, dir: dir, addr: a.Unmap()}, nil
	case "net":
		arg, err := p.next()
		if err != nil {
			return nil, err
		}
		pf, err := netip.ParsePrefix(arg)
		if err != nil {
			return nil, fmt.Errorf("word %d: net %q: not a prefix like 10.0.0.0/8", at, arg)
		}
		return &fnode{op: fNet, dir: dir, prefix: pf.Masked()}, nil
	case "port":
		arg, err := p.next()
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseUint(arg, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("word %d: port %q: not a number 0-65535", at, arg)
		}
		return &fnode{op: fPort, dir: dir, num: uint32(n)}, nil
	case "proto":
		arg, err := p.next()
		if err != nil {
			return nil, err
		}
		return protoNode(at, strings.ToLower(arg))
	case "tcp", "udp", "icmp", "icmp6", "arp", "ip", "ip6":
		return protoNode(at, w)
	case "ether":
		kind, err := p.next()
		if err != nil {
			return nil, err
		}
		switch strings.ToLower(kind) {
		case "host":
		case "src":
			dir = dirSrc
		case "dst":
			dir = dirDst
		default:
			return nil, fmt.Errorf("word %d: ether must be followed by host, src or dst, not %q", at, kind)
		}
		arg, err := p.next()
		if err != nil {
			return nil, err
		}
		hw, err := net.ParseMAC(arg)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("word %d: %q: not a MAC address", at, arg)
		}
		return &fnode{op: fEther, dir: dir, mac: header.MAC(hw)}, nil
	case "vni":
		arg, err := p.next()
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseUint(arg, 10, 24)
		if err != nil {
			return nil, fmt.Errorf("word %d: vni %q: not a number 0-16777215", at, arg)
		}
		return &fnode{op: fVNI, num: uint32(n)}, nil
	}
	return nil, fmt.Errorf("word %d: unknown primitive %q (want host, net, port, proto, tcp, udp, icmp, arp, ether, vni, not or a parenthesis)", at, w)
}

func protoNode(at int, name string) (*fnode, error) {
	var n uint32
	switch name {
	case "tcp":
		n = protoTCP
	case "udp":
		n = protoUDP
	case "icmp", "icmp6":
		n = protoICMP
	case "arp":
		n = protoARP
	case "ip":
		n = protoIP
	case "ip6":
		n = protoIP6
	default:
		return nil, fmt.Errorf("word %d: proto %q: want tcp, udp, icmp, arp, ip or ip6", at, name)
	}
	return &fnode{op: fProto, num: n}, nil
}
