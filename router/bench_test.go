package router

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/ferry-overlay/ferry/header"
)

func BenchmarkAnswerARP(b *testing.B) {
	req := arpFrame(b, header.BroadcastMAC, 1, c1MAC, c1IP, gwIP, 0)
	out := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := AnswerARP(req, gwIP, gwMAC, out); !ok {
			b.Fatal("not answered")
		}
	}
}

// BenchmarkAnswerEcho answers a ping with 36 bytes of data; restoreEcho
// (included in the time) turns the reply back into the request.
func BenchmarkAnswerEcho(b *testing.B) {
	f := echoFrame(b, gwMAC, c1IP, gwIP, 8, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := AnswerEcho(f, gwIP, gwMAC); !ok {
			b.Fatal("not answered")
		}
		restoreEcho(f)
	}
}

func BenchmarkForward(b *testing.B) {
	p := udpPacket(b, c1IP, redIP, 1400, func(ip *layers.IPv4) { ip.TTL = 255 })
	b.ReportAllocs()
	for b.Loop() {
		if Forward(p) != OK {
			setTTL(header.IPv4(p), 255)
		}
	}
}

func BenchmarkBuildICMPError(b *testing.B) {
	for _, size := range []int{64, 1500} {
		b.Run(map[int]string{64: "quote 64B", 1500: "quote 548B"}[size], func(b *testing.B) {
			orig := udpPacket(b, c1IP, outIP, size-28, nil)
			out := make([]byte, MaxICMPErrorLen)
			b.ReportAllocs()
			for b.Loop() {
				if _, st := FragNeeded(out, orig, 1450, gwIP); st != OK {
					b.Fatal(st)
				}
			}
		})
	}
}

func BenchmarkFragment(b *testing.B) {
	p := udpPacket(b, c1IP, outIP, 1472, func(ip *layers.IPv4) { ip.Flags = 0 })
	out := buffers(2, 1450)
	b.ReportAllocs()
	for b.Loop() {
		out[0], out[1] = out[0][:1450], out[1][:1450]
		if n, st := Fragment(p, 1450, out); st != OK || n != 2 {
			b.Fatal(st)
		}
	}
}

// BenchmarkNeighboursResolve resolves a batch of 64 known next hops, the
// steady state; ns/op is per batch.
func BenchmarkNeighboursResolve(b *testing.B) {
	nb := newNeighbours(b, NeighbourOptions{})
	bs := make([]Binding, 64)
	ips := make([]netip.Addr, 64)
	for i := range bs {
		a := u32Addr(0x0a2a0000 | uint32(i+2))
		bs[i] = Binding{a, header.MAC{2, 0, 0, 0, 0, byte(i + 2)}}
		ips[i] = a
	}
	nb.Learn(bs, sec)
	macs := make([]header.MAC, 64)
	sol := make([]bool, 64)
	b.ReportAllocs()
	for b.Loop() {
		if nb.Resolve(ips, macs, sol, 2*sec) != 0 {
			b.Fatal("miss")
		}
	}
}

// BenchmarkNeighboursLearn refreshes a batch of 64 known bindings, the
// steady state; ns/op is per batch.
func BenchmarkNeighboursLearn(b *testing.B) {
	nb := newNeighbours(b, NeighbourOptions{})
	bs := make([]Binding, 64)
	for i := range bs {
		bs[i] = Binding{u32Addr(0x0a2a0000 | uint32(i+2)), header.MAC{2, 0, 0, 0, 0, byte(i + 2)}}
	}
	nb.Learn(bs, sec)
	b.ReportAllocs()
	var now int64 = 2 * sec
	for b.Loop() {
		now += 1000
		nb.Learn(bs, now)
	}
}
