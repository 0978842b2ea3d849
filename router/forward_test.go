package router

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

func TestForward(t *testing.T) {
	ttl := func(v uint8) func(*layers.IPv4) { return func(ip *layers.IPv4) { ip.TTL = v } }
	badSum := udpPacket(t, c1IP, redIP, 10, nil)
	badSum[10] ^= 0x01
	shortLen := udpPacket(t, c1IP, redIP, 10, nil)
	shortLen[3] = 10 // Total Length 10 < IHL*4
	cases := []struct {
		name string
		pkt  []byte
		want Status
	}{
		{"TTL 64 is forwarded with TTL 63", udpPacket(t, c1IP, redIP, 10, nil), OK},
		{"TTL 2 is forwarded with TTL 1", udpPacket(t, c1IP, redIP, 10, ttl(2)), OK},
		{"TTL 255 is forwarded with TTL 254", udpPacket(t, c1IP, redIP, 10, ttl(255)), OK},
		{"TTL 1 expires", udpPacket(t, c1IP, redIP, 10, ttl(1)), TTLExpired},
		{"TTL 0 expires", udpPacket(t, c1IP, redIP, 10, ttl(0)), TTLExpired},
		{"with link padding", append(udpPacket(t, c1IP, redIP, 10, nil), 0, 0, 0), OK},
		{"bad header checksum", badSum, BadChecksum},
		{"total length below the header", shortLen, Malformed},
		{"truncated header", udpPacket(t, c1IP, redIP, 10, nil)[:19], Malformed},
		{"total length beyond the buffer", udpPacket(t, c1IP, redIP, 10, nil)[:30], Malformed},
		{"source 0.0.0.0", udpPacket(t, netip.MustParseAddr("0.0.0.0"), redIP, 10, nil), MartianSource},
		{"source loopback", udpPacket(t, netip.MustParseAddr("127.0.0.1"), redIP, 10, nil), MartianSource},
		{"source link-local", udpPacket(t, netip.MustParseAddr("169.254.1.1"), redIP, 10, nil), MartianSource},
		{"source multicast", udpPacket(t, netip.MustParseAddr("224.0.0.5"), redIP, 10, nil), MartianSource},
		{"source broadcast", udpPacket(t, netip.MustParseAddr("255.255.255.255"), redIP, 10, nil), MartianSource},
		{"destination multicast", udpPacket(t, c1IP, netip.MustParseAddr("239.1.2.3"), 10, nil), MartianDestination},
		{"destination broadcast", udpPacket(t, c1IP, netip.MustParseAddr("255.255.255.255"), 10, nil), MartianDestination},
		{"destination class E", udpPacket(t, c1IP, netip.MustParseAddr("240.0.0.1"), 10, nil), MartianDestination},
		{"destination loopback", udpPacket(t, c1IP, netip.MustParseAddr("127.0.0.53"), 10, nil), MartianDestination},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := bytes.Clone(tc.pkt)
			if got := Forward(p); got != tc.want {
				t.Fatalf("Forward = %v, want %v", got, tc.want)
			}
			if tc.want != OK {
				if !bytes.Equal(p, tc.pkt) {
					t.Fatal("packet modified on a drop")
				}
				return
			}
			ip := decodeIPv4(t, p).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if ip.TTL != tc.pkt[8]-1 {
				t.Fatalf("TTL %d, want %d", ip.TTL, tc.pkt[8]-1)
			}
			// Only TTL and checksum changed; the incremental checksum
			// equals a full recompute.
			want := bytes.Clone(tc.pkt)
			want[8]--
			header.IPv4(want).SetChecksum(header.IPv4(want).CalculateChecksum())
			if !bytes.Equal(p, want) {
				t.Fatalf("got  % x\nwant % x", p, want)
			}
		})
	}
}

// TestForwardChecksumEveryTTL checks the incremental update against a full
// recompute for every TTL and many header contents, including the RFC 1624
// corner where the sum becomes 0xffff.
func TestForwardChecksumEveryTTL(t *testing.T) {
	for id := 0; id < 1<<16; id += 251 {
		for ttl := 2; ttl < 256; ttl++ {
			p := udpPacket(t, c1IP, redIP, 0, func(ip *layers.IPv4) { ip.TTL = uint8(ttl); ip.Id = uint16(id) })
			if st := Forward(p); st != OK {
				t.Fatalf("id %d ttl %d: %v", id, ttl, st)
			}
			ip := header.IPv4(p)
			if got, want := ip.Checksum(), ip.CalculateChecksum(); got != want {
				t.Fatalf("id %d ttl %d: checksum %#04x, full recompute %#04x", id, ttl, got, want)
			}
		}
	}
}

func TestNeedsFrag(t *testing.T) {
	df := udpPacket(t, c1IP, redIP, 1472, nil) // 1500 bytes
	noDF := udpPacket(t, c1IP, redIP, 1472, func(ip *layers.IPv4) { ip.Flags = 0 })
	cases := []struct {
		name string
		pkt  []byte
		mtu  int
		want bool
	}{
		{"DF, fits exactly", df, 1500, false},
		{"DF, one byte too big", df, 1499, true},
		{"DF, overlay MTU 1450", df, 1450, true},
		{"no DF, too big (Fragment's job)", noDF, 1450, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := NeedsFrag(tc.pkt, tc.mtu); got != tc.want {
				t.Fatalf("NeedsFrag(%d bytes, %d) = %v, want %v", len(tc.pkt), tc.mtu, got, tc.want)
			}
		})
	}
}

func TestStatusString(t *testing.T) {
	for s := OK; s < numStatuses; s++ {
		if statusNames[s] == "" {
			t.Errorf("status %d has no name", s)
		}
	}
	if got := TTLExpired.String(); got != "ttl-expired" {
		t.Errorf("TTLExpired = %q", got)
	}
	if got := numStatuses.String(); got != "unknown" {
		t.Errorf("numStatuses = %q", got)
	}
}
