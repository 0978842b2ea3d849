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
	"github.com/ferry-overlay/ferry/internal/netconf"
	"github.com/ferry-overlay/ferry/internal/sysraw"
)

// The userspace floor path (OverlayOptions.Floor) relays each frame a
// container's TAP hands over, superpackets included, as one UDP datagram
// to the other host, and back: the least a userspace dataplane built on a
// TAP device and a UDP socket can do per packet, with none of a real one's
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
const floorPathDesc = "userspace floor: container TAP → one thread per host relaying each frame or superpacket as one UDP datagram (no bridge, no encapsulation, no segmentation) → veth underlay of MTU 65535"

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

// Relay creates the floor path's TAP device (with virtio-net headers and
// TCP/UDP offloads, as ferry's ports have), places it in the container,
// writes "ready" to ready, and then relays, on one locked thread waiting
// in epoll, every frame read from the TAP to Peer as one UDP datagram,
// virtio-net header included, and every datagram from Peer into the TAP,
// until ctx ends. It then writes how many frames went each way and how
// many the socket or the device refused (full, or the peer not yet
// listening), which it drops.
func Relay(ctx context.Context, o RelayOptions, ready io.Writer) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dev, err := tuntap.Create(tuntap.Options{Name: floorTAP, Kind: tuntap.TAP, Queues: 1, VnetHdr: true})
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
	sock, err := relaySocket(o.Local, o.Peer)
	if err != nil {
		return err
	}
	defer unix.Close(sock)
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
	tap := dev.Queues()[0].Fd()
	for i, fd := range []int{tap, sock, stop} {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}); err != nil {
			return fmt.Errorf("relay: epoll add: %w", err)
		}
	}
	done := context.AfterFunc(ctx, func() { unix.Write(stop, []byte{1, 0, 0, 0, 0, 0, 0, 0}) })
	defer done()
	fmt.Fprintln(ready, "ready")

	var out, in, outLost, inLost uint64
	buf := make([]byte, 1<<16)
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
			var from, to int
			var moved, lost *uint64
			switch ev.Fd {
			case 0:
				from, to, moved, lost = tap, sock, &out, &outLost
			case 1:
				from, to, moved, lost = sock, tap, &in, &inLost
			default:
				fmt.Fprintf(ready, "relayed %d frames out, %d in; dropped %d out, %d in\n", out, in, outLost, inLost)
				return nil
			}
			// Everything that waits, one system call a frame each way:
			// the floor has no batching either.
			for {
				m, e := sysraw.Read(from, buf)
				if e == unix.EAGAIN {
					break
				}
				if e == unix.ECONNREFUSED || e == unix.EINTR {
					continue // the peer's relay was not up yet; cleared
				}
				if e != 0 {
					return fmt.Errorf("relay: read: %w", e)
				}
				switch _, e := sysraw.Write(to, buf[:m]); e {
				case 0:
					*moved++
				case unix.EAGAIN, unix.ENOBUFS, unix.ECONNREFUSED, unix.EIO:
					*lost++
				default:
					return fmt.Errorf("relay: write %d bytes: %w", m, e)
				}
			}
		}
	}
}

// relaySocket opens the relay's non-blocking UDP socket on local,
// connected to peer, with 4 MiB buffers as ferry's tunnel sockets have.
func relaySocket(local, peer netip.Addr) (int, error) {
	if !local.Is4() || !peer.Is4() {
		return -1, errors.New("relay: the underlay addresses must be IPv4")
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("relay: socket: %w", err)
	}
	for _, opt := range []int{unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 4<<20); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("relay: socket buffer: %w", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: local.As4(), Port: floorPort}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("relay: bind %s:%d: %w", local, floorPort, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: peer.As4(), Port: floorPort}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("relay: connect %s:%d: %w", peer, floorPort, err)
	}
	return fd, nil
}
