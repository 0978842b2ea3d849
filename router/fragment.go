package router

import (
	"encoding/binary"

	"github.com/ferry-overlay/ferry/header"
)

// MinMTU is the smallest MTU an IPv4 link may have (RFC 791: every module
// must forward a 68-byte datagram without further fragmentation).
const MinMTU = 68

// IPv4 option types with a special length (RFC 791 §3.1).
const (
	optEnd = 0 // end of option list
	optNOP = 1 // no operation
	// optCopied is the copied flag of an option type: set, the option
	// goes into every fragment; clear, only into the first.
	optCopied = 0x80
)

// Fragment splits the IPv4 packet pkt (from its IP header on; bytes past
// Total Length are ignored), which has DF clear and is larger than mtu,
// into fragments of at most mtu bytes, as RFC 791 §3.2 describes. Each
// fragment is written to out[i], which the call reslices to the fragment's
// length; it returns how many it wrote and OK.
//
// Every fragment carries pkt's identification, TOS, TTL, protocol and
// addresses, and a full header checksum. The first carries pkt's options;
// the others only the options whose copied flag is set, padded with
// end-of-options to a multiple of 4 bytes. Each fragment but the last
// holds a multiple of 8 data bytes and has MF set; the last keeps pkt's MF,
// and offsets continue from pkt's own, so a fragment can be fragmented
// again. A packet that already fits is copied whole to out[0] (n = 1).
//
// It writes nothing, and returns n = 0 with: Malformed if pkt's header or
// options are not well formed; DontFragment if DF is set (the sender is
// owed FragNeeded); MTUTooSmall if mtu is below MinMTU or leaves no room
// for 8 data bytes after the header; ShortBuffer if out has too few
// buffers or one is shorter than the fragment it must hold (len(out[i]) >=
// mtu always suffices). Call it after Forward, so the TTL is already
// decremented. It does not allocate.
func Fragment(pkt []byte, mtu int, out [][]byte) (n int, st Status) {
	ip := header.IPv4(pkt)
	if !ip.IsValid(len(pkt)) {
		return 0, Malformed
	}
	hlen := ip.HeaderLength()
	tlen := int(ip.TotalLength())
	if tlen <= mtu {
		if len(out) == 0 || len(out[0]) < tlen {
			return 0, ShortBuffer
		}
		out[0] = out[0][:copy(out[0], pkt[:tlen])]
		return 1, OK
	}
	if ip.DF() {
		return 0, DontFragment
	}
	// The header of every fragment after the first: the fixed part and
	// the copied options, padded.
	var rest [header.IPv4MaxLen]byte
	copy(rest[:], pkt[:header.IPv4MinLen])
	rlen, ok := copiedOptions(rest[header.IPv4MinLen:], pkt[header.IPv4MinLen:hlen])
	if !ok {
		return 0, Malformed
	}
	rlen += header.IPv4MinLen
	if mtu < MinMTU || mtu < hlen+8 {
		return 0, MTUTooSmall
	}
	data := tlen - hlen
	flagsOff := binary.BigEndian.Uint16(pkt[6:8])
	baseOff := int(flagsOff & 0x1fff)
	if baseOff*8+data > 0xffff {
		return 0, Malformed // it would end past the largest datagram
	}
	// Count the fragments and check the buffers before writing any.
	first := (mtu - hlen) &^ 7
	step := (mtu - rlen) &^ 7
	count := 1 + (data-first+step-1)/step
	if len(out) < count {
		return 0, ShortBuffer
	}
	for i := range count {
		h, d := rlen, step
		if i == 0 {
			h, d = hlen, first
		}
		if i == count-1 {
			d = data - first - (count-2)*step
		}
		if len(out[i]) < h+d {
			return 0, ShortBuffer
		}
	}
	lastMF := flagsOff & 0x2000
	off := 0 // data bytes written so far
	for i := range count {
		hdr, d := rest[:rlen], step
		if i == 0 {
			hdr, d = pkt[:hlen], first
		}
		mf := uint16(0x2000)
		if i == count-1 {
			d, mf = data-off, lastMF
		}
		f := out[i][:len(hdr)+d]
		copy(f, hdr)
		copy(f[len(hdr):], pkt[hlen+off:hlen+off+d])
		f[0] = header.IPv4Version<<4 | uint8(len(hdr)/4)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		// Flags other than MF (DF is clear; the reserved bit is kept).
		binary.BigEndian.PutUint16(f[6:], flagsOff&0x8000|mf|uint16(baseOff+off/8))
		fip := header.IPv4(f)
		fip.SetChecksum(0)
		fip.SetChecksum(fip.CalculateChecksum())
		out[i] = f
		off += d
	}
	return count, OK
}

// copiedOptions writes to dst the options of opts (a header's options
// field) whose copied flag is set, pads them with end-of-options to a
// multiple of 4 bytes and returns their padded length. It reports false
// when an option's length is below 2 or runs past the field.
func copiedOptions(dst, opts []byte) (int, bool) {
	n := 0
	for i := 0; i < len(opts); {
		t := opts[i]
		if t == optEnd {
			break
		}
		if t == optNOP {
			i++
			continue
		}
		if i+1 >= len(opts) {
			return 0, false
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return 0, false
		}
		if t&optCopied != 0 {
			n += copy(dst[n:], opts[i:i+l])
		}
		i += l
	}
	pad := (4 - n%4) % 4
	clear(dst[n : n+pad])
	return n + pad, true
}
