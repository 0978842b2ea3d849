package offload

import (
	"bytes"

	"github.com/ferry-overlay/ferry/header"
)

// Train coalesces, in place, a train of tunnel datagrams read at once with
// UDP_GRO into a single superpacket, when the train is what a peer's TCP
// segmentation offload made of one: every datagram carries the next TCP
// segment of one flow.
//
// d holds the datagrams back to back, seg bytes each but the last, which
// may be shorter. Each starts with skip bytes of tunnel header (the same
// in all of them, which the caller has checked or does not care about),
// then a packet with the Coalescer's link-layer header. If there are at
// least two, every one is a TCP segment of the first one's flow (same
// addresses and ports) that may follow the one before by the rules of the
// Coalescer comment — valid checksums included — and a PSH or short
// segment comes last, Train moves the payloads behind the first segment,
// in place, finishes the superpacket as Coalesce does, and returns the new
// length of the first datagram (its tunnel header and the superpacket) and
// the virtio-net header for it. Otherwise it returns ok false and leaves d
// unchanged, and the caller splits the train into datagrams as usual.
//
// Why: a train the kernel delivers whole is nearly always one
// superpacket's worth of segments from the sending side; merging it before
// it is split costs one move of each payload instead of a copy out into a
// packet of its own and a copy back into the superpacket, and the pipeline
// then handles one packet instead of dozens. UDP datagrams are never
// merged here. Train allocates nothing.
func (c *Coalescer) Train(d []byte, seg, skip int) (n int, hdr VirtioNetHdr, ok bool) {
	if skip < 0 || seg <= skip || len(d) <= seg {
		return 0, hdr, false
	}
	m := (len(d) + seg - 1) / seg
	if len(d)-(m-1)*seg <= skip {
		return 0, hdr, false // the last datagram is no more than a tunnel header
	}
	at := func(i int) []byte { return d[i*seg+skip : min((i+1)*seg, len(d))] }
	h := at(0)
	hs, kind := c.candidate(h)
	if kind != kindSegment || hs.udp || hs.flags&header.TCPFlagPSH != 0 ||
		!checksumsValid(h, c.linkLen, hs.l4, hs.v6, false) {
		return 0, hdr, false
	}
	f := c.newFlow(h, 0, &hs)
	hAddrs, hPorts := c.flowKey(h, hs.l4, hs.v6)
	total := len(h)
	for i := 1; i < m; i++ {
		if f.closed {
			return 0, hdr, false // a PSH or short segment before the last
		}
		p := at(i)
		ps, kind := c.candidate(p)
		if kind != kindSegment || ps.udp || ps.v6 != hs.v6 {
			return 0, hdr, false
		}
		pAddrs, pPorts := c.flowKey(p, ps.l4, ps.v6)
		if !bytes.Equal(hAddrs, pAddrs) || !bytes.Equal(hPorts, pPorts) || !c.tcpFollows(h, p, &f, &ps) {
			return 0, hdr, false
		}
		plen := len(p) - f.payload
		total += plen
		if total-c.linkLen > maxSuperpacket || !checksumsValid(p, c.linkLen, f.l4, f.v6, false) {
			return 0, hdr, false
		}
		f.advance(plen, ps.flags)
		f.count++
		f.nextID++
	}
	// Every segment may follow: move each payload down behind the one
	// before (copy is a memmove; the destination never passes the
	// source, so nothing not yet moved is overwritten).
	end := skip + len(h)
	for i := 1; i < m; i++ {
		end += copy(d[end:], at(i)[f.payload:])
	}
	pkts := [1][]byte{d[skip:end]}
	var hdrs [1]VirtioNetHdr
	c.finish(pkts[:], hdrs[:], &f)
	return end, hdrs[0], true
}
