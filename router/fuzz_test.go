package router

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

// Fuzz targets for every function that reads untrusted bytes. Each checks
// invariants: no panic, nothing written when the call declines, and every
// output a well-formed packet whose checksums verify.

func FuzzAnswerARP(f *testing.F) {
	f.Add(arpFrame(f, header.BroadcastMAC, 1, c1MAC, c1IP, gwIP, 0))
	f.Add(arpFrame(f, header.BroadcastMAC, 1, c1MAC, c1IP, c2IP, 18))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := bytes.Clone(frame)
		out := make([]byte, 64)
		n, ok := AnswerARP(frame, gwIP, gwMAC, out)
		if !bytes.Equal(frame, orig) {
			t.Fatal("frame modified")
		}
		if !ok {
			if n != 0 {
				t.Fatalf("n = %d without an answer", n)
			}
			return
		}
		a := header.ARP(out[14:n])
		if n != 42 || !a.IsValid() || a.Op() != header.ARPReply || a.SenderIP() != gwIP || a.SenderMAC() != gwMAC ||
			header.Ethernet(out).Src() != gwMAC || header.Ethernet(out).Dst() != header.ARP(frame[14:]).SenderMAC() {
			t.Fatalf("bad reply % x", out[:n])
		}
	})
}

func FuzzAnswerEcho(f *testing.F) {
	f.Add(echoFrame(f, gwMAC, c1IP, gwIP, 8, nil))
	f.Add(echoFrame(f, gwMAC, c1IP, gwIP, 8, func(ip *layers.IPv4) {
		ip.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}}
	}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := bytes.Clone(frame)
		n, ok := AnswerEcho(frame, gwIP, gwMAC)
		if !ok {
			if !bytes.Equal(frame, orig) {
				t.Fatal("frame modified without an answer")
			}
			return
		}
		ip := header.IPv4(frame[14:n])
		if !ip.IsValid(len(ip)) || ip.CalculateChecksum() != ip.Checksum() || ip.Src() != gwIP || ip.TTL() != 64 {
			t.Fatalf("bad reply % x", frame[:n])
		}
		icmp := header.ICMPv4(ip.Payload())
		// The reply's checksum verifies iff the request's did.
		reqOK := header.FoldChecksum(header.Checksum(header.IPv4(orig[14:]).Payload(), 0)) == 0xffff
		if icmp.Type() != 0 || icmpChecksumOK(frame[14:n]) != reqOK {
			t.Fatalf("bad ICMP reply % x", frame[:n])
		}
	})
}

func FuzzForward(f *testing.F) {
	f.Add(udpPacket(f, c1IP, redIP, 10, nil))
	f.Add(udpPacket(f, c1IP, redIP, 10, func(ip *layers.IPv4) { ip.TTL = 1 }))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		orig := bytes.Clone(pkt)
		st := Forward(pkt)
		if st != OK {
			if !bytes.Equal(pkt, orig) {
				t.Fatalf("%v: packet modified", st)
			}
			return
		}
		ip := header.IPv4(pkt)
		if ip.TTL() != orig[8]-1 || ip.CalculateChecksum() != ip.Checksum() {
			t.Fatalf("TTL %d (was %d), checksum %#x want %#x", ip.TTL(), orig[8], ip.Checksum(), ip.CalculateChecksum())
		}
	})
}

func FuzzBuildICMPError(f *testing.F) {
	f.Add(udpPacket(f, c1IP, outIP, 10, nil), uint8(11), uint8(0), uint16(0))
	f.Add(udpPacket(f, c1IP, outIP, 1472, nil), uint8(3), uint8(4), uint16(1450))
	f.Add(icmpPacket(f, c1IP, outIP, 3, 1, nil), uint8(11), uint8(0), uint16(0))
	f.Fuzz(func(t *testing.T, orig []byte, typ, code uint8, mtu uint16) {
		out := make([]byte, MaxICMPErrorLen)
		n, st := BuildICMPError(out, orig, typ, code, mtu, gwIP)
		if st != OK {
			if n != 0 {
				t.Fatalf("%v with n = %d", st, n)
			}
			return
		}
		ip := header.IPv4(out[:n])
		oip := header.IPv4(orig)
		q := min(int(oip.TotalLength()), MaxQuoteLen)
		if n > MaxICMPErrorLen || n != 28+q || !ip.IsValid(n) || ip.CalculateChecksum() != ip.Checksum() ||
			!icmpChecksumOK(out[:n]) || ip.Dst() != oip.Src() || !bytes.Equal(out[28:n], orig[:q]) {
			t.Fatalf("bad error % x", out[:n])
		}
	})
}

func FuzzFragment(f *testing.F) {
	f.Add(udpPacket(f, c1IP, redIP, 1472, func(ip *layers.IPv4) { ip.Flags = 0 }), uint16(576))
	f.Add(udpPacket(f, c1IP, redIP, 300, func(ip *layers.IPv4) {
		ip.Flags = 0
		ip.Options = []layers.IPv4Option{notCopiedOpt, nopOpt, copiedOpt}
	}), uint16(68))
	// Found by fuzzing: a packet that fits, with a bad checksum, is copied
	// as it is.
	f.Add([]byte("H0\x00 0000000000000000000000000000000000"), uint16(91))
	f.Fuzz(func(t *testing.T, pkt []byte, mtu uint16) {
		out := buffers(64, int(mtu))
		n, st := Fragment(pkt, int(mtu), out)
		if st != OK {
			if n != 0 {
				t.Fatalf("%v with n = %d", st, n)
			}
			return
		}
		oip := header.IPv4(pkt)
		if int(oip.TotalLength()) <= int(mtu) {
			// A packet that fits is copied as it is, checksum and all.
			if n != 1 || !bytes.Equal(out[0], pkt[:oip.TotalLength()]) {
				t.Fatalf("packet that fits: n = %d, % x", n, out[0])
			}
			return
		}
		data := 0
		for i, fr := range out[:n] {
			ip := header.IPv4(fr)
			if !ip.IsValid(len(fr)) || int(ip.TotalLength()) != len(fr) || len(fr) > max(int(mtu), int(oip.TotalLength())) ||
				ip.CalculateChecksum() != ip.Checksum() || ip.FragmentOffset() != oip.FragmentOffset()+data ||
				(i < n-1 && (!ip.MoreFragments() || len(ip.Payload())%8 != 0)) ||
				(i == n-1 && ip.MoreFragments() != oip.MoreFragments()) {
				t.Fatalf("fragment %d of %d bad: % x", i, n, fr)
			}
			if !bytes.Equal(ip.Payload(), oip.Payload()[data:data+len(ip.Payload())]) {
				t.Fatalf("fragment %d data differs", i)
			}
			data += len(ip.Payload())
		}
		if data != len(oip.Payload()) {
			t.Fatalf("fragments carry %d of %d bytes", data, len(oip.Payload()))
		}
	})
}
