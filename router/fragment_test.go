package router

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/ip4defrag"
	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

// Options for the fragmentation tests: router alert (0x94, copied) and
// record route (0x07, not copied), with a NOP between them.
var (
	copiedOpt    = layers.IPv4Option{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}
	notCopiedOpt = layers.IPv4Option{OptionType: 0x07, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}
	nopOpt       = layers.IPv4Option{OptionType: 1, OptionLength: 1}
)

func buffers(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, size)
	}
	return out
}

func TestFragment(t *testing.T) {
	noDF := func(ip *layers.IPv4) { ip.Flags = 0 }
	cases := []struct {
		name        string
		pkt         []byte
		mtu         int
		wantLens    []int
		wantHdrRest int // header length of fragments after the first
	}{
		{"1500 into MTU 1450", udpPacket(t, c1IP, redIP, 1472, noDF), 1450, []int{1444, 76}, 20},
		{"1500 into the minimum MTU 68", udpPacket(t, c1IP, redIP, 1472, noDF), 68, append(repeat(68, 30), 60), 20},
		{"data a multiple of 8 fills the last fragment", udpPacket(t, c1IP, redIP, 1592, noDF), 820, []int{820, 820}, 20},
		{"options: copied kept, others only in the first", udpPacket(t, c1IP, redIP, 1000, func(ip *layers.IPv4) {
			ip.Flags = 0
			ip.Options = []layers.IPv4Option{notCopiedOpt, nopOpt, copiedOpt}
		}), 576, []int{576, 24 + 464}, 24},
		{"a first fragment is fragmented again, the last keeps MF", udpPacket(t, c1IP, redIP, 1000, func(ip *layers.IPv4) {
			ip.Flags = layers.IPv4MoreFragments
		}), 600, []int{596, 452}, 20},
		{"a packet that fits is copied", udpPacket(t, c1IP, redIP, 100, noDF), 1500, []int{128}, 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(tc.pkt)
			out := buffers(len(tc.wantLens)+2, tc.mtu)
			n, st := Fragment(tc.pkt, tc.mtu, out)
			if st != OK || n != len(tc.wantLens) {
				t.Fatalf("(%d, %v), want (%d, ok)", n, st, len(tc.wantLens))
			}
			if !bytes.Equal(tc.pkt, orig) {
				t.Fatal("input modified")
			}
			oip := header.IPv4(orig)
			data := 0
			for i, f := range out[:n] {
				if len(f) != tc.wantLens[i] || len(f) > tc.mtu {
					t.Fatalf("fragment %d: %d bytes, want %d (mtu %d)", i, len(f), tc.wantLens[i], tc.mtu)
				}
				fip := decodeIPv4(t, f).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				last := i == n-1
				wantMF := !last || oip.MoreFragments()
				if fip.Id != oip.ID() || fip.TTL != oip.TTL() || fip.TOS != oip.TOS() || fip.Protocol != layers.IPProtocol(oip.Protocol()) ||
					(fip.Flags&layers.IPv4MoreFragments != 0) != wantMF || fip.Flags&layers.IPv4DontFragment != 0 ||
					int(fip.FragOffset)*8 != oip.FragmentOffset()+data {
					t.Fatalf("fragment %d: %+v", i, fip)
				}
				hl := header.IPv4(f).HeaderLength()
				switch {
				case i == 0 && !bytes.Equal(f[20:hl], orig[20:oip.HeaderLength()]):
					t.Fatalf("first fragment's options % x, want % x", f[20:hl], orig[20:oip.HeaderLength()])
				case i > 0 && hl != tc.wantHdrRest:
					t.Fatalf("fragment %d header %d bytes, want %d", i, hl, tc.wantHdrRest)
				case i > 0 && hl > 20 && !bytes.Equal(f[20:24], []byte{0x94, 4, 0, 0}):
					t.Fatalf("fragment %d options % x, want the router alert only", i, f[20:hl])
				}
				if !last && (len(f)-hl)%8 != 0 {
					t.Fatalf("fragment %d carries %d data bytes, not a multiple of 8", i, len(f)-hl)
				}
				if !bytes.Equal(f[hl:], orig[oip.HeaderLength()+data:oip.HeaderLength()+data+len(f)-hl]) {
					t.Fatalf("fragment %d data differs", i)
				}
				data += len(f) - hl
			}
			if data != int(oip.TotalLength())-oip.HeaderLength() {
				t.Fatalf("fragments carry %d bytes, want %d", data, int(oip.TotalLength())-oip.HeaderLength())
			}
			if n > 1 && !oip.MoreFragments() {
				checkReassembles(t, orig, out[:n])
			}
		})
	}
}

func repeat(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// checkReassembles reassembles frags with gopacket's ip4defrag and checks
// the result carries orig's payload and addresses.
func checkReassembles(t *testing.T, orig []byte, frags [][]byte) {
	t.Helper()
	d := ip4defrag.NewIPv4Defragmenter()
	var whole *layers.IPv4
	for i, f := range frags {
		p := gopacket.NewPacket(f, layers.LayerTypeIPv4, gopacket.Default)
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		got, err := d.DefragIPv4(ip)
		if err != nil {
			t.Fatalf("defrag fragment %d: %v", i, err)
		}
		if got != nil {
			if i != len(frags)-1 {
				t.Fatalf("reassembled after fragment %d of %d", i, len(frags))
			}
			whole = got
		}
	}
	if whole == nil {
		t.Fatal("not reassembled")
	}
	oip := header.IPv4(orig)
	if !bytes.Equal(whole.Payload, oip.Payload()) || !whole.SrcIP.Equal(nip(oip.Src())) || !whole.DstIP.Equal(nip(oip.Dst())) {
		t.Fatalf("reassembled %d bytes %v -> %v, want %d bytes", len(whole.Payload), whole.SrcIP, whole.DstIP, len(oip.Payload()))
	}
	// The UDP checksum of the original verifies over the reassembled data.
	p := gopacket.NewPacket(append(bytes.Clone(orig[:oip.HeaderLength()]), whole.Payload...), layers.LayerTypeIPv4, gopacket.Default)
	if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		want := udp.Checksum
		if err := udp.SetNetworkLayerForChecksum(p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, udp, gopacket.Payload(udp.Payload)); err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint16(buf.Bytes()[6:8]); got != want {
			t.Fatalf("reassembled UDP checksum %#04x, want %#04x", got, want)
		}
	}
}

func TestFragmentRefuses(t *testing.T) {
	noDF := func(ip *layers.IPv4) { ip.Flags = 0 }
	badOpt := udpPacket(t, c1IP, redIP, 200, func(ip *layers.IPv4) {
		ip.Flags = 0
		ip.Options = []layers.IPv4Option{copiedOpt}
	})
	badOpt[21] = 9 // option length past the options field
	header.IPv4(badOpt).SetChecksum(header.IPv4(badOpt).CalculateChecksum())
	farOff := udpPacket(t, c1IP, redIP, 1000, func(ip *layers.IPv4) { ip.Flags = 0; ip.FragOffset = 8100 })
	cases := []struct {
		name string
		pkt  []byte
		mtu  int
		out  [][]byte
		want Status
	}{
		{"DF set", udpPacket(t, c1IP, redIP, 1472, nil), 1450, buffers(2, 1450), DontFragment},
		{"MTU below 68", udpPacket(t, c1IP, redIP, 1472, noDF), 67, buffers(40, 1500), MTUTooSmall},
		{"too few buffers", udpPacket(t, c1IP, redIP, 1472, noDF), 1450, buffers(1, 1450), ShortBuffer},
		{"a buffer too short", udpPacket(t, c1IP, redIP, 1472, noDF), 1450, [][]byte{make([]byte, 1450), make([]byte, 75)}, ShortBuffer},
		{"no buffer for a packet that fits", udpPacket(t, c1IP, redIP, 10, noDF), 1450, nil, ShortBuffer},
		{"option length past the header", badOpt, 100, buffers(10, 100), Malformed},
		{"offset plus data past 65535", farOff, 576, buffers(10, 576), Malformed},
		{"truncated", []byte{0x45, 0}, 576, buffers(1, 576), Malformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, st := Fragment(tc.pkt, tc.mtu, tc.out)
			if st != tc.want || n != 0 {
				t.Fatalf("(%d, %v), want (0, %v)", n, st, tc.want)
			}
			for i, b := range tc.out {
				if !bytes.Equal(b, make([]byte, len(b))) {
					t.Fatalf("buffer %d written", i)
				}
			}
		})
	}
}
