package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferry-overlay/ferry/dataplane/udpsock"
)

// iperfResult is the part of `iperf3 -J` client output the TCP workload
// reads: the receiver's rate, the sender's retransmitted segments, and
// what the test really ran (streams, the sender's congestion control) so
// the report never names a setting iperf3 did not use.
type iperfResult struct {
	Start struct {
		TestStart struct {
			NumStreams int `json:"num_streams"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		SumSent struct {
			Retransmits *int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		SenderCC string `json:"sender_tcp_congestion"`
	} `json:"end"`
	Error string `json:"error"`
}

// parseIperf returns the TCP workload's figures from `iperf3 -J` client
// output — the receiver's throughput (MetricTCP, Gbit/s) and, when iperf3
// reports it, the segments the sender retransmitted (MetricTCPRetrans) —
// and the bytes received. It returns an error if the test did not run
// streams streams with congestion control cc (iperf3 versions that do not
// report the congestion control are taken at their word).
func parseIperf(out []byte, streams int, cc string) (vals map[string]float64, received float64, err error) {
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, 0, fmt.Errorf("iperf3 -J output is not JSON: %w", err)
	}
	if r.Error != "" {
		return nil, 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return nil, 0, errors.New("iperf3 reported no received bytes")
	}
	if n := r.Start.TestStart.NumStreams; n != streams {
		return nil, 0, fmt.Errorf("iperf3 ran %d streams, asked for %d", n, streams)
	}
	if got := r.End.SenderCC; got != "" && got != cc {
		return nil, 0, fmt.Errorf("iperf3's sender used congestion control %q, asked for %q", got, cc)
	}
	vals = map[string]float64{MetricTCP: r.End.SumReceived.BitsPerSecond / 1e9}
	if n := r.End.SumSent.Retransmits; n != nil {
		vals[MetricTCPRetrans] = float64(*n)
	}
	return vals, r.End.SumReceived.Bytes, nil
}

// runTCP runs opts.Streams iperf3 TCP streams with congestion control
// opts.TCPCC from c1 to the server in c2; the figures are their sum at the
// receiver, the sender's retransmissions, and the CPU time the whole
// machine was busy per MB received (MetricTCPCPU; both simulated hosts,
// the applications and, on ferry's path, the daemons share this machine).
func runTCP(ctx context.Context, tb *testbed, opts OverlayOptions) (map[string]float64, error) {
	cpu, cerr := startCPUClock()
	run, err := startIperf(ctx, tb, int(math.Ceil(opts.Duration.Seconds())), opts)
	if err != nil {
		return nil, err
	}
	vals, received, err := run.wait()
	if err != nil {
		return nil, err
	}
	if busy, err := cpu.busySince(); cerr == nil && err == nil && received > 0 {
		vals[MetricTCPCPU] = busy.Seconds() * 1e6 / (received / 1e6)
	}
	return vals, nil
}

// iperfRun is an iperf3 client started by startIperf.
type iperfRun struct {
	cmd    *exec.Cmd
	out    syncBuffer
	opts   OverlayOptions
	cancel context.CancelFunc
}

// startIperf starts an iperf3 client in c1 against the server in c2 for
// secs seconds, with opts' streams and congestion control, bounded by
// secs plus 20 seconds.
func startIperf(ctx context.Context, tb *testbed, secs int, opts OverlayOptions) (*iperfRun, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+20)*time.Second)
	r := &iperfRun{opts: opts, cancel: cancel}
	r.cmd = exec.CommandContext(ctx, "iperf3", iperfArgs(tb.addr2, secs, opts)...)
	r.cmd.WaitDelay = time.Second
	r.cmd.Stdout = &r.out
	if err := tb.c1.start(r.cmd); err != nil {
		cancel()
		return nil, fmt.Errorf("start iperf3: %w", err)
	}
	return r, nil
}

// wait waits for the client to end and returns its figures (parseIperf)
// and the bytes the receiver got.
func (r *iperfRun) wait() (vals map[string]float64, received float64, err error) {
	defer r.cancel()
	werr := r.cmd.Wait()
	vals, received, err = parseIperf([]byte(r.out.String()), r.opts.Streams, r.opts.TCPCC)
	if err != nil {
		return nil, 0, errors.Join(err, werr)
	}
	return vals, received, nil
}

// runUDPRate blasts datagrams of opts.Size bytes from c1 to c2 with
// sendmmsg from opts.Flows sockets, by one goroutine per CPU, for
// opts.Duration, and counts at the receiver in c2 with recvmmsg. A sendmmsg
// batch costs about 1.2 µs per datagram here, so the sender alone is not
// the bottleneck; its offered rate is reported alongside, and where the
// path forwards inside the sender's system call (the kernel's path), the
// two figures agree by construction.
func runUDPRate(ctx context.Context, tb *testbed, opts OverlayOptions) (map[string]float64, error) {
	var rx *udpsock.Conn
	err := tb.c2.do(func() error {
		var err error
		rx, err = udpsock.Listen(udpsock.Options{Addr: netip.AddrPortFrom(tb.addr2, udpRatePort), RecvBuf: 8 << 20, Batch: 64})
		return err
	})
	if err != nil {
		return nil, err
	}
	defer rx.Close()
	var txs []*udpsock.Conn
	defer func() {
		for _, c := range txs {
			c.Close()
		}
	}()
	err = tb.c1.do(func() error {
		for range opts.Flows {
			c, err := udpsock.Listen(udpsock.Options{Addr: netip.AddrPortFrom(tb.addr1, 0), SendBuf: 1 << 20, Batch: 64})
			if err != nil {
				return err
			}
			txs = append(txs, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var got uint64
	var first, last time.Time
	var rxErr error
	wg.Go(func() {
		bufs := make([][]byte, 64)
		for i := range bufs {
			bufs[i] = make([]byte, 2048)
		}
		sizes := make([]int, 64)
		pfd := []unix.PollFd{{Fd: int32(rx.Fd()), Events: unix.POLLIN}}
		for !stop.Load() {
			n, err := rx.ReadBatch(bufs, sizes, nil, 0)
			if err != nil {
				rxErr = err
				return
			}
			if n == 0 {
				unix.Poll(pfd, 20)
				continue
			}
			now := time.Now()
			if got == 0 {
				first = now
			} else {
				last = now
			}
			got += uint64(n)
		}
	})

	// One sending goroutine per CPU, each with its share of the sockets,
	// so that a path which forwards inside the sender's system call (the
	// kernel's) can use every CPU too.
	senders := min(runtime.NumCPU(), len(txs))
	var sent atomic.Uint64
	txErrs := make([]error, senders)
	var txWG sync.WaitGroup
	start := time.Now()
	deadline := start.Add(opts.Duration)
	for g := range senders {
		txWG.Go(func() {
			txErrs[g] = blast(ctx, txs[g:], senders, netip.AddrPortFrom(tb.addr2, udpRatePort), opts.Size, deadline, &sent)
		})
	}
	txWG.Wait()
	txErr := errors.Join(txErrs...)
	txTime := time.Since(start)
	// Let what is in flight arrive, then stop the receiver.
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if err := errors.Join(txErr, rxErr, ctx.Err()); err != nil {
		return nil, err
	}
	if got < 2 || !last.After(first) {
		return nil, fmt.Errorf("receiver got %d of %d datagrams", got, sent.Load())
	}
	return map[string]float64{
		MetricUDPRx: float64(got) / last.Sub(first).Seconds() / 1e3,
		MetricUDPTx: float64(sent.Load()) / txTime.Seconds() / 1e3,
	}, nil
}

// blast sends datagrams of size bytes to dst from every stride-th socket
// of txs in turn, in sendmmsg batches of 64, until deadline, and adds the
// number sent to sent.
func blast(ctx context.Context, txs []*udpsock.Conn, stride int, dst netip.AddrPort, size int, deadline time.Time, sent *atomic.Uint64) error {
	payload := make([]byte, size)
	bufs := make([][]byte, 64)
	to := make([]netip.AddrPort, 64)
	for i := range bufs {
		bufs[i], to[i] = payload, dst
	}
	var mine []*udpsock.Conn
	for i := 0; i < len(txs); i += stride {
		mine = append(mine, txs[i])
	}
	var n uint64
	defer func() { sent.Add(n) }()
	for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		c := mine[i%len(mine)]
		k, err := c.WriteBatch(bufs, to, 0)
		n += uint64(k - len(c.Skipped()))
		if errors.Is(err, udpsock.ErrTxFull) {
			unix.Poll([]unix.PollFd{{Fd: int32(c.Fd()), Events: unix.POLLOUT}}, 5)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// echoServer answers every datagram on a blocking UDP socket in c2 until
// stopped; it returns the socket's port.
type echoServer struct {
	fd    int
	stop  atomic.Bool
	done  chan struct{}
	procs int // GOMAXPROCS to restore on close
}

func startEcho(tb *testbed) (*echoServer, error) {
	// The echo server and the ping-pong client each keep a P while they
	// wait (rawRecvFrom): leave two more for everything else while they
	// run, and no more than before for the other workloads, whose
	// senders and receivers share the CPUs with the daemons.
	s := &echoServer{done: make(chan struct{}), procs: runtime.GOMAXPROCS(0)}
	if s.procs < latencyProcs {
		runtime.GOMAXPROCS(latencyProcs)
	}
	err := tb.c2.do(func() error {
		fd, err := blockingUDP(netip.AddrPortFrom(tb.addr2, latencyPort), 100*time.Millisecond)
		s.fd = fd
		return err
	})
	if err != nil {
		runtime.GOMAXPROCS(s.procs)
		return nil, err
	}
	go func() {
		defer close(s.done)
		buf := make([]byte, 2048)
		var from unix.RawSockaddrInet6 // room for either family's address
		for !s.stop.Load() {
			n, fromLen, errno := rawRecvFrom(s.fd, buf, &from)
			if errno != 0 {
				continue // timeout (EAGAIN) or EINTR: check stop
			}
			rawSendTo(s.fd, buf[:n], &from, fromLen)
		}
	}()
	return s, nil
}

func (s *echoServer) close() {
	s.stop.Store(true)
	<-s.done
	unix.Close(s.fd)
	runtime.GOMAXPROCS(s.procs)
}

// blockingUDP opens a blocking UDP socket of addr's family bound to addr
// with a receive timeout, in the calling thread's namespace.
func blockingUDP(addr netip.AddrPort, timeout time.Duration) (int, error) {
	family := unix.AF_INET
	if addr.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("udp socket: %w", err)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("udp socket: SO_RCVTIMEO: %w", err)
	}
	if err := unix.Bind(fd, sockaddr(addr)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("udp socket: bind %v: %w", addr, err)
	}
	return fd, nil
}

// sockaddr is a as the socket calls take it, IPv4 or IPv6.
func sockaddr(a netip.AddrPort) unix.Sockaddr {
	if a.Addr().Is6() {
		return &unix.SockaddrInet6{Addr: a.Addr().As16(), Port: int(a.Port())}
	}
	return &unix.SockaddrInet4{Addr: a.Addr().As4(), Port: int(a.Port())}
}

// pingPong sends probes of size bytes from c1 to the echo server in c2 one
// at a time until deadline or until count replies came (count 0: no limit),
// and returns the round-trip times of the replies and how many probes got
// none within a second.
func pingPong(ctx context.Context, tb *testbed, size, count int, deadline time.Time) (rtts []time.Duration, lost int, err error) {
	var fd int
	err = tb.c1.do(func() error {
		var err error
		fd, err = blockingUDP(netip.AddrPortFrom(tb.addr1, 0), time.Second)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sockaddr(netip.AddrPortFrom(tb.addr2, latencyPort))); err != nil {
		return nil, 0, fmt.Errorf("udp connect: %w", err)
	}
	out, in := make([]byte, size), make([]byte, 2048)
	for seq := uint64(1); time.Now().Before(deadline) && ctx.Err() == nil && (count == 0 || len(rtts) < count); seq++ {
		binary.BigEndian.PutUint64(out, seq)
		t0 := time.Now()
		if _, errno := rawSendTo(fd, out, nil, 0); errno != 0 {
			return rtts, lost, fmt.Errorf("udp send: %w", errno)
		}
		for {
			n, _, errno := rawRecvFrom(fd, in, nil)
			if errno != 0 {
				if errno == unix.EAGAIN || errno == unix.ECONNREFUSED {
					lost++
					break
				}
				if errno == unix.EINTR {
					continue
				}
				return rtts, lost, fmt.Errorf("udp receive: %w", errno)
			}
			if n >= 8 && binary.BigEndian.Uint64(in) == seq {
				rtts = append(rtts, time.Since(t0))
				break
			}
			// A late reply to an earlier probe: keep waiting for this one.
		}
	}
	return rtts, lost, ctx.Err()
}

// rawRecvFrom is recvfrom(2) on a blocking socket with SO_RCVTIMEO, made
// as a raw system call; from, if not nil, receives the sender's address
// (an IPv4 one as a sockaddr_in). It returns the byte count, the address
// length and the errno.
//
// Why raw: the latency workload measures the path, not the Go scheduler.
// Through syscall.Syscall a receive that blocks longer than 20 µs has its
// P taken by sysmon and handed to another thread, and the goroutine must
// win a P back when the reply wakes it: more wake-ups on the same two CPUs,
// and more of them the slower the path is, so the slower path's round
// trips grow more than the faster one's. Measured on the bench's two
// paths with a Go ping-pong, p50 went from 120 to 79 µs over ferry and
// from 35 to 37 µs over the kernel. A raw call keeps its P while it
// blocks; the bench raises GOMAXPROCS so that the client and the echo
// server holding theirs leave Ps for the rest. A signal (the runtime's
// preemption request included) ends the wait with EINTR, since the
// socket has a receive timeout, and the callers yield to the scheduler
// then.
func rawRecvFrom(fd int, b []byte, from *unix.RawSockaddrInet6) (int, uint32, unix.Errno) {
	var fromLen uint32
	var pfrom, plen uintptr
	if from != nil {
		fromLen = unix.SizeofSockaddrInet6
		pfrom, plen = uintptr(unsafe.Pointer(from)), uintptr(unsafe.Pointer(&fromLen))
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0, pfrom, plen)
	if errno == unix.EINTR {
		runtime.Gosched()
	}
	return int(n), fromLen, errno
}

// rawSendTo is sendto(2) of b as a raw system call (see rawRecvFrom), to
// the address to (toLen bytes) or, with to nil, on a connected socket.
func rawSendTo(fd int, b []byte, to *unix.RawSockaddrInet6, toLen uint32) (int, unix.Errno) {
	var pto uintptr
	if to != nil {
		pto = uintptr(unsafe.Pointer(to))
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0, pto, uintptr(toLen))
	return int(n), errno
}

// reachable checks that c1 reaches c2 through the path (and resolves ARP on
// the way), with up to 10 s of probes.
func reachable(ctx context.Context, tb *testbed) error {
	s, err := startEcho(tb)
	if err != nil {
		return err
	}
	defer s.close()
	rtts, lost, err := pingPong(ctx, tb, 64, 3, time.Now().Add(10*time.Second))
	if err != nil {
		return err
	}
	if len(rtts) < 3 {
		return fmt.Errorf("no connectivity from c1 to %s: %d probes unanswered in 10s", tb.addr2, lost)
	}
	return nil
}

// runLatency measures UDP request/response round trips of opts.Size bytes
// from c1 to an echo server in c2, one request in flight at a time.
func runLatency(ctx context.Context, tb *testbed, opts OverlayOptions) (map[string]float64, error) {
	s, err := startEcho(tb)
	if err != nil {
		return nil, err
	}
	defer s.close()
	p50, p99, err := roundTrips(ctx, tb, opts)
	if err != nil {
		return nil, err
	}
	return map[string]float64{MetricLatP50: p50, MetricLatP99: p99}, nil
}

// loadRampUp is how long the loaded-latency workload lets its TCP stream
// run before it measures: BBR's start-up, or CUBIC's slow start, is over
// by then on these paths.
const loadRampUp = time.Second

// runLoadedLatency is runLatency while the TCP workload's iperf3 stream
// (its streams and congestion control) runs from c1 to c2, from
// loadRampUp before the round trips start until after they end. The
// requests travel with the stream's data and the replies with its ACKs.
func runLoadedLatency(ctx context.Context, tb *testbed, opts OverlayOptions) (map[string]float64, error) {
	s, err := startEcho(tb)
	if err != nil {
		return nil, err
	}
	defer s.close()
	run, err := startIperf(ctx, tb, int(math.Ceil((opts.Duration+loadRampUp).Seconds()))+1, opts)
	if err != nil {
		return nil, err
	}
	select {
	case <-time.After(loadRampUp):
	case <-ctx.Done():
	}
	p50, p99, perr := roundTrips(ctx, tb, opts)
	// The stream must have carried data throughout, or the figures are
	// of an idle path.
	if _, received, err := run.wait(); err != nil || received == 0 {
		return nil, errors.Join(fmt.Errorf("the TCP load (iperf3) did not run: %v", err), perr)
	}
	if perr != nil {
		return nil, perr
	}
	return map[string]float64{MetricLoadedP50: p50, MetricLoadedP99: p99}, nil
}

// roundTrips runs the ping-pong for opts.Duration against the echo server
// already running in c2 and returns the p50 and p99 round trip in µs; at
// least 100 replies must come back.
func roundTrips(ctx context.Context, tb *testbed, opts OverlayOptions) (p50, p99 float64, err error) {
	rtts, lost, err := pingPong(ctx, tb, opts.Size, 0, time.Now().Add(opts.Duration))
	if err != nil {
		return 0, 0, err
	}
	if len(rtts) < 100 {
		return 0, 0, fmt.Errorf("only %d replies (%d probes lost)", len(rtts), lost)
	}
	us := make([]float64, len(rtts))
	for i, d := range rtts {
		us[i] = float64(d.Nanoseconds()) / 1e3
	}
	return Percentile(us, 50), Percentile(us, 99), nil
}

// Percentile returns the p-th percentile (0 < p <= 100) of samples by the
// nearest-rank method: the smallest sample with at least p % of all samples
// at or below it. It does not modify samples; with none it returns 0.
func Percentile(samples []float64, p float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// cpuClock is a reading of the machine's busy CPU time from /proc/stat,
// to measure how much CPU a workload cost (netperf's "service demand").
type cpuClock struct{ busy uint64 }

// startCPUClock reads the clock.
func startCPUClock() (cpuClock, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuClock{}, err
	}
	return parseProcStat(b)
}

// busySince returns the CPU time, summed over all CPUs, the machine was
// busy since c was read.
func (c cpuClock) busySince() (time.Duration, error) {
	now, err := startCPUClock()
	if err != nil {
		return 0, err
	}
	return time.Duration(now.busy-c.busy) * time.Second / userHZ, nil
}

// userHZ is the unit of /proc/stat's times, USER_HZ, which Linux fixes at
// 100 for user space whatever the kernel's own tick.
const userHZ = 100

// parseProcStat reads the first line of /proc/stat, "cpu user nice system
// idle iowait irq softirq steal guest guest_nice": busy is user, nice,
// system, irq and softirq (guest time is already in user and nice; steal
// is time the hypervisor gave to someone else).
func parseProcStat(b []byte) (cpuClock, error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return cpuClock{}, fmt.Errorf("/proc/stat: first line %q is not the cpu totals", line)
	}
	var c cpuClock
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		n, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return cpuClock{}, fmt.Errorf("/proc/stat: cpu field %d: %w", i, err)
		}
		c.busy += n
	}
	return c, nil
}
