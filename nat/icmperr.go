package nat

import (
	"encoding/binary"

	"github.com/ferry-overlay/ferry/header"
)

// icmpError translates an ICMP error (destination unreachable, including
// fragmentation needed; time exceeded; parameter problem) about a tracked
// connection, so that its addressee sees it as the error about the packet
// it sent itself: the outer destination (and the outer source, when the
// error comes from the far end of the flow) and the quoted packet's
// addresses, ports or echo identifier are translated, with the quoted IPv4
// header checksum, the quoted TCP/UDP/ICMP checksum (when the quote holds
// it), the outer ICMP checksum and the outer IPv4 checksum all updated
// incrementally. The connection's state and expiry are left alone, as the
// kernel does for "related" packets. Called under the read lock.
//
// The quote is untrusted: it must hold an IPv4 header (version 4, IHL >= 5)
// and the first 8 bytes of a TCP, UDP or ICMP echo header, not be a
// non-first fragment, and come back to the quoted packet's source.
func (t *Table) icmpError(now int64, b []byte, p *parsed, dir Dir) Verdict {
	icmp := b[p.l4:p.l4e]
	q := icmp[header.ICMPv4MinLen:]
	if len(q) < header.IPv4MinLen || q[0]>>4 != header.IPv4Version {
		return DropBadICMPError
	}
	qh := header.IPv4(q)
	hl := qh.HeaderLength()
	if hl < header.IPv4MinLen || len(q) < hl+8 || qh.FragmentOffset() != 0 {
		return DropBadICMPError
	}
	il4 := q[hl:]
	proto := qh.Protocol()
	var sport, dport uint16
	switch proto {
	case header.ProtoTCP, header.ProtoUDP:
		sport, dport = binary.BigEndian.Uint16(il4[0:]), binary.BigEndian.Uint16(il4[2:])
	case header.ProtoICMPv4:
		if typ := il4[0]; typ != header.ICMPv4EchoRequest && typ != header.ICMPv4EchoReply {
			return DropBadICMPError
		}
		sport = binary.BigEndian.Uint16(il4[offICMPIdent:])
		dport = sport
	default:
		return DropBadICMPError
	}
	qk := makeKey(proto, binary.BigEndian.Uint32(q[offIPSrc:]), binary.BigEndian.Uint32(q[offIPDst:]), sport, dport)
	// An error goes back to the sender of the packet it quotes.
	if p.k.dst() != qk.src() {
		return DropBadICMPError
	}
	// The quoted packet travelled against the error, so the error
	// matches the connection's tuple that is the quote's reverse.
	idx, w := t.find(qk.reverse())
	if idx < 0 || now >= t.entries[idx].expires.Load() {
		if dir == Inbound {
			return NoMatch
		}
		return DropNoFlow
	}
	e := &t.entries[idx]
	if e.dirs[w] != dir {
		return DropInvalid
	}
	// The quote becomes the other tuple (the reverse of what a packet
	// matching tuple w becomes); the error goes to that tuple's source.
	nq := e.tuples[1-w]

	outer := binary.BigEndian.Uint16(icmp[offICMPChecksum:])
	innerIP := binary.BigEndian.Uint16(q[offIPChecksum:])
	// The quoted transport checksum, if the quote holds it.
	csOff := -1
	switch proto {
	case header.ProtoTCP:
		if len(il4) >= offTCPChecksum+2 {
			csOff = offTCPChecksum
		}
	case header.ProtoUDP:
		if binary.BigEndian.Uint16(il4[offUDPChecksum:]) != 0 {
			csOff = offUDPChecksum
		}
	default:
		csOff = offICMPChecksum
	}
	var l4c uint16
	if csOff >= 0 {
		l4c = binary.BigEndian.Uint16(il4[csOff:])
	}
	pseudo := proto != header.ProtoICMPv4
	if s, ns := qk.src(), nq.src(); s != ns {
		innerIP = header.UpdateChecksum32(innerIP, s, ns)
		if pseudo && csOff >= 0 {
			l4c = header.UpdateChecksum32(l4c, s, ns)
		}
		put32(q[offIPSrc:], ns, &outer)
	}
	if d, nd := qk.dst(), nq.dst(); d != nd {
		innerIP = header.UpdateChecksum32(innerIP, d, nd)
		if pseudo && csOff >= 0 {
			l4c = header.UpdateChecksum32(l4c, d, nd)
		}
		put32(q[offIPDst:], nd, &outer)
	}
	if pseudo {
		if s, ns := qk.sport(), nq.sport(); s != ns {
			if csOff >= 0 {
				l4c = header.UpdateChecksum16(l4c, s, ns)
			}
			put16(il4[0:], ns, &outer)
		}
		if d, nd := qk.dport(), nq.dport(); d != nd {
			if csOff >= 0 {
				l4c = header.UpdateChecksum16(l4c, d, nd)
			}
			put16(il4[2:], nd, &outer)
		}
	} else if id, nid := qk.sport(), nq.sport(); id != nid {
		l4c = header.UpdateChecksum16(l4c, id, nid)
		put16(il4[offICMPIdent:], nid, &outer)
	}
	if csOff >= 0 {
		if l4c == 0 && proto == header.ProtoUDP {
			l4c = 0xffff
		}
		put16(il4[csOff:], l4c, &outer)
	}
	put16(q[offIPChecksum:], innerIP, &outer)
	binary.BigEndian.PutUint16(icmp[offICMPChecksum:], outer)

	// Outer header: to the quote's new source; from the quote's new
	// destination when the far end of the flow itself sent the error.
	ipc := binary.BigEndian.Uint16(b[offIPChecksum:])
	if d, nd := p.k.dst(), nq.src(); d != nd {
		ipc = header.UpdateChecksum32(ipc, d, nd)
		binary.BigEndian.PutUint32(b[offIPDst:], nd)
	}
	if s := p.k.src(); s == qk.dst() {
		if ns := nq.dst(); s != ns {
			ipc = header.UpdateChecksum32(ipc, s, ns)
			binary.BigEndian.PutUint32(b[offIPSrc:], ns)
		}
	}
	binary.BigEndian.PutUint16(b[offIPChecksum:], ipc)
	return Translated
}

// put16 writes v at b[0:2] and updates the checksum *sum that covers the
// word (RFC 1624), so an enclosing checksum follows every change. The word
// must sit at an even offset from the start of the checksummed data.
func put16(b []byte, v uint16, sum *uint16) {
	old := binary.BigEndian.Uint16(b)
	*sum = header.UpdateChecksum16(*sum, old, v)
	binary.BigEndian.PutUint16(b, v)
}

// put32 is put16 for a 32-bit word.
func put32(b []byte, v uint32, sum *uint16) {
	old := binary.BigEndian.Uint32(b)
	*sum = header.UpdateChecksum32(*sum, old, v)
	binary.BigEndian.PutUint32(b, v)
}
