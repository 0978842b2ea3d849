package nstest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Ping sends count ICMP echo requests from the namespace from to the address
// to with the ping tool (`ping -c count -W 1 -i 0.2`), and returns an error,
// including ping's output, unless at least one reply came back. It is
// bounded by a timeout of count*0.2s plus a few seconds.
func Ping(t testing.TB, from *NS, to netip.Addr, count int) error {
	t.Helper()
	timeout := time.Duration(count)*200*time.Millisecond + 3*time.Second
	out, err := from.Exec(t, timeout, "ping", "-n", "-c", strconv.Itoa(count), "-W", "1", "-i", "0.2", to.String())
	if err != nil {
		return fmt.Errorf("ping %v from %s: %w\n%s", to, from, err, out)
	}
	return nil
}

// transferSeed seeds the pseudo-random stream TCPTransfer sends, so every
// transfer of a given size sends the same bytes.
var transferSeed = [32]byte([]byte("ferry/nstest TCPTransfer seed 01"))

// TCPTransfer moves size bytes of deterministic pseudo-random data over TCP
// through the kernels' real TCP stacks: it listens on addr in the namespace
// to (so addr must be an address of to), dials addr from the namespace from,
// sends the data and closes the sending direction, and reads everything the
// receiver got until end of stream. It returns the SHA-256 of the bytes sent
// and of the bytes received; err is non-nil if any step failed or the
// receiver got a different number of bytes than sent. The whole transfer,
// connection setup included, must finish within timeout.
func TCPTransfer(t testing.TB, from, to *NS, addr netip.AddrPort, size int64, timeout time.Duration) (sent, received [32]byte, err error) {
	t.Helper()
	return TCPTransferVia(t, from, to, addr, addr, size, timeout)
}

// TCPTransferVia is TCPTransfer through a translated address: the receiver
// listens on addr in to, and the sender dials dial, which something on the
// way (a published port) translates to addr.
func TCPTransferVia(t testing.TB, from, to *NS, addr, dial netip.AddrPort, size int64, timeout time.Duration) (sent, received [32]byte, err error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var ln *net.TCPListener
	err = to.Do(func() error {
		var err error
		ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		return sent, received, fmt.Errorf("tcp transfer: listen on %v in %s: %w", addr, to, err)
	}
	defer ln.Close()
	if err := ln.SetDeadline(deadline); err != nil {
		return sent, received, fmt.Errorf("tcp transfer: listener deadline: %w", err)
	}

	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		c, err := ln.AcceptTCP()
		if err != nil {
			r.err = fmt.Errorf("accept in %s: %w", to, err)
			done <- r
			return
		}
		defer c.Close()
		h := sha256.New()
		if err := c.SetDeadline(deadline); err != nil {
			r.err = fmt.Errorf("receiver deadline: %w", err)
		} else if r.n, err = io.Copy(h, c); err != nil {
			r.err = fmt.Errorf("receive in %s after %d bytes: %w", to, r.n, err)
		}
		h.Sum(r.sum[:0])
		done <- r
	}()

	var conn *net.TCPConn
	err = from.Do(func() error {
		d := net.Dialer{Deadline: deadline}
		c, err := d.Dial("tcp", dial.String())
		if err != nil {
			return err
		}
		conn = c.(*net.TCPConn)
		return nil
	})
	if err != nil {
		// Unblock the receiver's Accept.
		ln.Close()
		r := <-done
		return sent, received, errors.Join(fmt.Errorf("tcp transfer: dial %v from %s: %w", dial, from, err), r.err)
	}
	defer conn.Close()

	hs := sha256.New()
	src := io.TeeReader(io.LimitReader(mrand.NewChaCha8(transferSeed), size), hs)
	var sendErr error
	if err := conn.SetDeadline(deadline); err != nil {
		sendErr = fmt.Errorf("sender deadline: %w", err)
	} else if n, err := io.Copy(conn, src); err != nil {
		sendErr = fmt.Errorf("send from %s after %d bytes: %w", from, n, err)
	} else if err := conn.CloseWrite(); err != nil {
		sendErr = fmt.Errorf("close sending side: %w", err)
	}
	if sendErr != nil {
		// Reset the connection so the receiver stops waiting.
		conn.Close()
	}
	r := <-done
	hs.Sum(sent[:0])
	received = r.sum
	err = errors.Join(sendErr, r.err)
	if err == nil && r.n != size {
		err = fmt.Errorf("received %d bytes, sent %d", r.n, size)
	}
	if err != nil {
		err = fmt.Errorf("tcp transfer %s -> %v (%v in %s): %w", from, dial, addr, to, err)
	}
	return sent, received, err
}

// UDPBroadcast checks how a broadcast spreads: it binds a UDP socket on
// 0.0.0.0 port bcast.Port() in each of listeners (distinct namespaces, which
// may include from), sends one datagram carrying a random token from the
// namespace from to bcast (a subnet broadcast such as 10.0.0.255:9999, or
// 255.255.255.255:9999 when from has a route for it, such as a default
// route), and returns how many copies of that datagram each listener received
// within window after the send, in the order of listeners. Unrelated
// datagrams are not counted. "Every container exactly once" is a result of
// all ones.
func UDPBroadcast(t testing.TB, from *NS, bcast netip.AddrPort, listeners []*NS, window time.Duration) ([]int, error) {
	t.Helper()
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return nil, fmt.Errorf("udp broadcast: token: %w", err)
	}
	conns := make([]*net.UDPConn, len(listeners))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i, l := range listeners {
		err := l.Do(func() error {
			var err error
			conns[i], err = net.ListenUDP("udp4", &net.UDPAddr{Port: int(bcast.Port())})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("udp broadcast: listen on port %d in %s: %w", bcast.Port(), l, err)
		}
	}

	deadline := time.Now().Add(window)
	counts := make([]int, len(listeners))
	errs := make([]error, len(listeners))
	var wg sync.WaitGroup
	for i, c := range conns {
		if err := c.SetReadDeadline(deadline); err != nil {
			return nil, fmt.Errorf("udp broadcast: read deadline: %w", err)
		}
		wg.Go(func() {
			buf := make([]byte, 64)
			for {
				n, err := c.Read(buf)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return
				}
				if err != nil {
					errs[i] = fmt.Errorf("read in %s: %w", listeners[i], err)
					return
				}
				if bytes.Equal(buf[:n], token) {
					counts[i]++
				}
			}
		})
	}

	sendErr := from.Do(func() error {
		// Go sets SO_BROADCAST on IPv4 UDP sockets.
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(bcast))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(token)
		return err
	})
	if sendErr != nil {
		sendErr = fmt.Errorf("send to %v from %s: %w", bcast, from, sendErr)
	}
	wg.Wait()
	if err := errors.Join(append(errs, sendErr)...); err != nil {
		return counts, fmt.Errorf("udp broadcast: %w", err)
	}
	return counts, nil
}
