package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/dataplane/udpsock"
	"github.com/ferry-overlay/ferry/internal/netconf"
	"github.com/ferry-overlay/ferry/internal/sysraw"
)

// The userspace floor path (OverlayOptions.Floor) relays each frame a
// container's TAP hands over, superpackets included, as one UDP datagram
// to the other host, and back, in batches through the same system calls
// ferry's workers make: the least a userspace dataplane built on a TAP
// device and a UDP socket can do per packet, with none of a real one's
// work (no bridge, no encapsulation, no segmentation to the wire's MTU, no
// checksums). Its figures are the floor of that design on the machine
// that runs it, so ferry's can be read against them: how much of ferry's
// distance to the kernel is ferry's own, and how much is the design's.
//
// It is not a wire format: a superpacket goes out as a datagram of up to
// 64 KiB, so the floor path's underlay has an MTU of floorUnderlayMTU,
// and its containers' TAPs are limited to floorGSOMaxSize-byte
// superpackets so that each fits one datagram.
const (
	floorUnderlayMTU = 65535
	floorGSOMaxSize  = 65000
	// floorPort is the UDP port the relays send from and to.
	floorPort = 4790
	// floorTAP is the relay's TAP device in the host, before it moves
	// into the container.
	floorTAP = "fl0"
)

// floorPathDesc says what the floor path is made of.
const floorPathDesc = "userspace floor: container TAP → one thread per host relaying each frame or superpacket as one UDP datagram, in batches with ferry's system calls (no bridge, no encapsulation, no segmentation) → veth underlay of MTU 65535"

// RelayOptions configures [Relay], the userspace floor's forwarder in one
// host.
type RelayOptions struct {
	// Netns is the container namespace the TAP moves into, as Ifname with
	// Address and MTU.
	Netns   string
	Ifname  string
	Address netip.Prefix
	MTU     int
	// Local is the host's underlay address, Peer the other host's.
	Local, Peer netip.Addr
}

// Relay creates the floor path's TAP device (with virtio-net headers,
// TCP/UDP offloads and batched I/O through io_uring, as ferry's ports
// have), places it in the container, writes "ready" to ready, and then
// relays, on one locked thread waiting in epoll, every frame read from the
// TAP to Peer as one UDP datagram, virtio-net header included, and every
// datagram from Peer into the TAP, a batch at a time with the same calls
// ferry makes (io_uring reads and writes of the TAP, recvmmsg with
// UDP_GRO, sendmmsg with runs of equal datagrams as UDP_SEGMENT
// messages), until ctx ends. It then writes how many frames went each way
// and how many the socket or the device refused (full, or the peer not yet
// listening), which it drops.
func Relay(ctx context.Context, o RelayOptions, ready io.Writer) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if !o.Local.Is4() || !o.Peer.Is4() {
		return errors.New("relay: the underlay addresses must be IPv4")
	}
	dev, err := tuntap.Create(tuntap.Options{Name: floorTAP, Kind: tuntap.TAP, Queues: 1, VnetHdr: true, IOURing: true})
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	defer dev.Close()
	if err := dataplane.EnableTAPOffload(dev); err != nil {
		return fmt.Errorf("relay: offloads: %w", err)
	}
	if err := netconf.SetupLink(floorTAP, o.MTU, [6]byte{}, false); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	link, err := netlink.LinkByName(floorTAP)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if err := netlink.LinkSetGSOMaxSize(link, floorGSOMaxSize); err != nil {
		return fmt.Errorf("relay: gso_max_size %d: %w", floorGSOMaxSize, err)
	}
	if err := netconf.PlaceInNetns(floorTAP, o.Netns, o.Ifname, o.Address, netip.Addr{}); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	sock, err := udpsock.Listen(udpsock.Options{Addr: netip.AddrPortFrom(o.Local, floorPort), RecvBuf: 4 << 20, SendBuf: 4 << 20, Batch: relayBatch})
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	defer sock.Close()
	// ferry's tunnels send runs of equal datagrams as one UDP_SEGMENT
	// message and read them back merged (UDP_GRO); so does the floor.
	if err := sock.EnableGSO(); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if err := sock.EnableGRO(); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("relay: eventfd: %w", err)
	}
	defer unix.Close(stop)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("relay: epoll: %w", err)
	}
	defer unix.Close(ep)
	q := dev.Queues()[0]
	for i, fd := range []int{q.Fd(), sock.Fd(), stop} {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}); err != nil {
			return fmt.Errorf("relay: epoll add: %w", err)
		}
	}
	done := context.AfterFunc(ctx, func() { unix.Write(stop, []byte{1, 0, 0, 0, 0, 0, 0, 0}) })
	defer done()
	fmt.Fprintln(ready, "ready")

	r := newRelayState(o.Peer)
	events := make([]unix.EpollEvent, 3)
	for {
		n, e := sysraw.EpollWait(ep, events, -1)
		if e == unix.EINTR {
			runtime.Gosched()
			continue
		}
		if e != 0 {
			return fmt.Errorf("relay: epoll_wait: %w", e)
		}
		for _, ev := range events[:n] {
			switch ev.Fd {
			case 0:
				err = r.out(q, sock)
			case 1:
				err = r.in(sock, q)
			default:
				fmt.Fprintf(ready, "relayed %d frames out, %d in; dropped %d out, %d in\n", r.sent, r.received, r.sentLost, r.receivedLost)
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
}

// relayBatch is the most frames the relay moves per call, as a ferry
// worker's batches.
const relayBatch = 64

// relayState is a relay's buffers and counts.
type relayState struct {
	bufs, frames                           [][]byte
	sizes                                  []int
	to                                     []netip.AddrPort
	sent, received, sentLost, receivedLost uint64
}

func newRelayState(peer netip.Addr) *relayState {
	r := &relayState{
		bufs:   make([][]byte, relayBatch),
		frames: make([][]byte, 0, relayBatch*udpsock.MaxGSOSegments), // a GRO buffer holds many
		sizes:  make([]int, relayBatch),
		to:     make([]netip.AddrPort, relayBatch),
	}
	for i := range r.bufs {
		r.bufs[i] = make([]byte, 1<<16)
		r.to[i] = netip.AddrPortFrom(peer, floorPort)
	}
	return r
}

// out moves one batch of frames from the TAP to the peer.
func (r *relayState) out(q *tuntap.Queue, sock *udpsock.Conn) error {
	n, err := q.Read(r.bufs, r.sizes, 0)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r.frames = r.frames[:n]
	for i := range n {
		r.frames[i] = r.bufs[i][:r.sizes[i]]
	}
	for done := 0; done < n; {
		k, err := sock.WriteGrouped(r.frames[done:n], r.to[done:n], 0)
		r.sent += uint64(k - len(sock.Skipped()))
		r.sentLost += uint64(len(sock.Skipped()))
		done += k
		if errors.Is(err, udpsock.ErrTxFull) {
			r.sentLost += uint64(n - done)
			break
		}
		if err != nil {
			return fmt.Errorf("relay: %w", err)
		}
	}
	return nil
}

// in moves one batch of datagrams from the peer into the TAP.
func (r *relayState) in(sock *udpsock.Conn, q *tuntap.Queue) error {
	k, err := sock.ReadBatch(r.bufs, r.sizes, nil, 0)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r.frames = r.frames[:0]
	for i := range k {
		b := r.bufs[i][:r.sizes[i]]
		seg := sock.GROSize(i)
		if seg == 0 {
			seg = len(b)
		}
		for off := 0; off < len(b); off += seg {
			r.frames = append(r.frames, b[off:min(off+seg, len(b))])
		}
	}
	n := len(r.frames)
	for done := 0; done < n; {
		k, err := q.Write(r.frames[done:n], 0)
		r.received += uint64(k)
		done += k
		switch {
		case err == nil:
		case errors.Is(err, tuntap.ErrTxFull), errors.Is(err, tuntap.ErrLinkDown):
			r.receivedLost += uint64(n - done)
			return nil
		default:
			r.receivedLost++ // this frame was refused on its own
			done++
		}
	}
	return nil
}
