package dataplane

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/dataplane/udpsock"
)

// TestUDPTunnelsShareSourcePorts checks what keeps a flow on one worker of
// the peer: the second worker's tunnel, given the first's source ports,
// sends from the very same ports, so a datagram sent from source index i
// arrives from the same port whichever worker sent it.
func TestUDPTunnelsShareSourcePorts(t *testing.T) {
	// A free port for the tunnels, probed on the peer's address.
	probe, err := udpsock.Listen(udpsock.Options{Addr: netip.MustParseAddrPort("127.0.0.2:0")})
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().Port()
	probe.Close()

	local, peer := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	open := func(addr netip.Addr, spread int, ports []uint16) *UDPTunnel {
		t.Helper()
		u, err := NewUDPTunnel(addr, port, spread, ports)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		return u
	}
	first := open(local, 4, nil)
	second := open(local, 4, first.SourcePorts())
	rx := open(peer, 1, nil)

	ports := first.SourcePorts()
	seen := map[uint16]bool{}
	for _, p := range ports {
		if p == 0 || seen[p] {
			t.Fatalf("first worker's source ports %v: want 4 distinct ports", ports)
		}
		seen[p] = true
	}
	if got := second.SourcePorts(); fmt.Sprint(got) != fmt.Sprint(ports) {
		t.Fatalf("second worker's source ports %v, want the first's %v", got, ports)
	}

	pool := NewPool(8, 0)
	for w, u := range []*UDPTunnel{first, second} {
		for i := range ports {
			p := pool.Get()
			p.SetBytes([]byte(fmt.Sprintf("worker %d source %d", w, i)))
			if n, err := u.WriteBatch(i, []*Packet{p}, []netip.Addr{peer}); n != 1 || err != nil {
				t.Fatalf("worker %d source %d: WriteBatch = %d, %v", w, i, n, err)
			}
			pool.Put(p)
			got := readOne(t, rx, pool)
			if want := fmt.Sprintf("worker %d source %d", w, i); got.text != want || got.sport != ports[i] {
				t.Errorf("received %q from port %d, want %q from port %d", got.text, got.sport, want, ports[i])
			}
		}
	}
}

type datagram struct {
	text  string
	sport uint16
}

// readOne reads one datagram from u, waiting up to two seconds.
func readOne(t *testing.T, u *UDPTunnel, pool *Pool) datagram {
	t.Helper()
	p := pool.Get()
	defer pool.Put(p)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		n, err := u.ReadBatch([]*Packet{p})
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return datagram{string(p.Bytes()), u.RxSourcePort(0)}
		}
	}
	t.Fatal("no datagram within 2s")
	return datagram{}
}

// TestPinThread checks that a pinned thread runs on its one CPU only, and
// that AllowedCPUs lists as many CPUs as the process may use.
func TestPinThread(t *testing.T) {
	allowed, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(allowed) != runtime.NumCPU() {
		t.Errorf("AllowedCPUs = %v, but runtime.NumCPU = %d", allowed, runtime.NumCPU())
	}
	cpu := allowed[len(allowed)-1]
	got := make(chan []int, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the pinned thread ends with the goroutine
		if err := PinThread(cpu); err != nil {
			t.Error(err)
			got <- nil
			return
		}
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			t.Error(err)
		}
		var on []int
		for c := range 1024 {
			if set.IsSet(c) {
				on = append(on, c)
			}
		}
		got <- on
	}()
	if on := <-got; len(on) != 1 || on[0] != cpu {
		t.Errorf("pinned thread may run on %v, want only CPU %d", on, cpu)
	}
	if after, err := AllowedCPUs(); err != nil || len(after) != len(allowed) {
		t.Errorf("this goroutine's thread may run on %v (%v) after another was pinned, want %v", after, err, allowed)
	}
}
