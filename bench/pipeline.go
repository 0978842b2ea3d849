package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"github.com/ferry-overlay/ferry/dataplane"
	"github.com/ferry-overlay/ferry/encap"
	"github.com/ferry-overlay/ferry/header"
	"github.com/ferry-overlay/ferry/nat"
	"github.com/ferry-overlay/ferry/router"
)

// PipelineOptions configures [Pipeline].
type PipelineOptions struct {
	// Frames, if positive, is how many input frames each repetition of a
	// scenario runs; otherwise each repetition runs for Duration.
	Frames int `json:"frames,omitempty"`
	// Duration is how long each repetition of a scenario runs when Frames
	// is 0.
	Duration time.Duration `json:"duration_ns"`
	// Size is the Ethernet frame size (without FCS) of the inner frames,
	// 42 (an empty UDP datagram) up to MaxPipelineFrame.
	Size int `json:"size"`
	// Flows is the number of distinct flows (UDP source ports) cycled
	// through, 1..65535; they spread over the outer source ports.
	Flows int `json:"flows"`
	// Reps is the number of repetitions of each scenario, at least 1.
	Reps int `json:"reps"`
}

// Limits and defaults of the pipeline scenario.
const (
	// PipelineMTU is the network MTU of the simulated network (a 1500-byte
	// underlay minus VXLAN's 50 bytes).
	PipelineMTU = 1450
	// MaxPipelineFrame is the largest inner frame that fits PipelineMTU.
	MaxPipelineFrame = PipelineMTU + 14
	minPipelineFrame = 42
)

// Validate reports the first option out of range.
func (o PipelineOptions) Validate() error {
	switch {
	case o.Frames < 0:
		return fmt.Errorf("frames %d: must not be negative", o.Frames)
	case o.Frames == 0 && o.Duration <= 0:
		return fmt.Errorf("duration %v: must be positive when frames is 0", o.Duration)
	case o.Size < minPipelineFrame || o.Size > MaxPipelineFrame:
		return fmt.Errorf("size %d: must be %d..%d bytes", o.Size, minPipelineFrame, MaxPipelineFrame)
	case o.Flows < 1 || o.Flows > 65535:
		return fmt.Errorf("flows %d: must be 1..65535", o.Flows)
	case o.Reps < 1:
		return fmt.Errorf("reps %d: must be at least 1", o.Reps)
	}
	return nil
}

// StageTime is one pipeline stage's share of a scenario.
type StageTime struct {
	// Stage is the stage's name, as `ferry runtime` shows it.
	Stage string `json:"stage"`
	// PacketsPerFrame is how many packets the stage handled per input
	// frame (2 for tunnel-tx when a flood goes to two peers).
	PacketsPerFrame float64 `json:"packets_per_frame"`
	// NsPerPacket is the stage's time per packet it handled, from the
	// engine's runtime counters.
	NsPerPacket Summary `json:"ns_per_packet"`
}

// ScenarioResult is the outcome of one pipeline scenario.
type ScenarioResult struct {
	// Name identifies the scenario: port-to-peer, peer-to-port, flood or
	// port-to-uplink.
	Name string `json:"name"`
	// Path lists the stages a frame goes through.
	Path string `json:"path"`
	// FramesIn is the number of frames read over all repetitions, and
	// FramesOut the number written to ports and tunnels; FramesOut is
	// OutPerFrame × FramesIn when nothing was dropped.
	FramesIn    uint64 `json:"frames_in"`
	FramesOut   uint64 `json:"frames_out"`
	OutPerFrame int    `json:"out_per_frame"`
	// Drops is the number of frames dropped, by any stage, over all
	// repetitions (0 in a healthy run).
	Drops uint64 `json:"drops"`
	// Mpps is input frames per second, in millions.
	Mpps Summary `json:"mpps"`
	// NsPerFrame is wall-clock time per input frame, all stages included.
	NsPerFrame Summary `json:"ns_per_frame"`
	// AllocsPerFrame is heap allocations per input frame (runtime.MemStats
	// Mallocs before and after the run); the fast path's target is 0.
	AllocsPerFrame Summary `json:"allocs_per_frame"`
	// Stages is the per-stage time, in pipeline order, of the stages the
	// scenario uses.
	Stages []StageTime `json:"stages"`
}

// PipelineReport is what `ferry bench pipeline -o json` prints.
type PipelineReport struct {
	Options   PipelineOptions  `json:"options"`
	Machine   Machine          `json:"machine"`
	Scenarios []ScenarioResult `json:"scenarios"`
}

// The simulated network: two local ports p0 and p1, two peers, and one MAC
// behind each.
var (
	macLocal  = [6]byte{0x02, 0x42, 0, 0, 0, 0x0a} // on p0
	macRemote = [6]byte{0x02, 0x42, 0, 0, 0, 0x0b} // behind peer1
	macBcast  = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	peer1     = netip.AddrFrom4([4]byte{192, 168, 77, 2})
	peer2     = netip.AddrFrom4([4]byte{192, 168, 77, 3})
)

// The benchmark's network: its name and VNI, and for the masquerade
// scenario its gateway, subnet, the uplink's NAT address and the outside
// destination (TEST-NET-2, never sent anywhere: the uplink is in memory).
const (
	pipelineVNI     = 42
	pipelineNetwork = "bench"
)

var (
	pipelineGateway = netip.MustParseAddr("10.42.0.1")
	pipelineSubnet  = netip.MustParsePrefix("10.42.0.0/24")
	pipelineNATAddr = netip.MustParseAddr("100.64.0.2")
	outsideAddr     = [4]byte{198, 51, 100, 1}
	insideDst       = [4]byte{10, 42, 0, 3}
)

// scenario describes one pipeline workload.
type scenario struct {
	name, path string
	outPerIn   int
	fromPeer   bool
	// masquerade gives the network a gateway and an uplink with NAT, and
	// sends the frames to the gateway for an address outside.
	masquerade bool
	dst, src   [6]byte
	stages     []dataplane.Stage
}

var scenarios = []scenario{
	{
		name: "port-to-peer", path: "port-rx ethernet-input bridge vxlan-encap tunnel-tx",
		outPerIn: 1, dst: macRemote, src: macLocal,
		stages: []dataplane.Stage{dataplane.StagePortRx, dataplane.StageEthernetInput, dataplane.StageBridge, dataplane.StageVXLANEncap, dataplane.StageTunnelTx},
	},
	{
		name: "peer-to-port", path: "tunnel-rx vxlan-decap ethernet-input bridge port-tx",
		outPerIn: 1, fromPeer: true, dst: macLocal, src: macRemote,
		stages: []dataplane.Stage{dataplane.StageTunnelRx, dataplane.StageVXLANDecap, dataplane.StageEthernetInput, dataplane.StageBridge, dataplane.StagePortTx},
	},
	{
		name: "flood", path: "port-rx ethernet-input bridge flood port-tx vxlan-encap tunnel-tx (1 port + 2 peers)",
		outPerIn: 3, dst: macBcast, src: macLocal,
		stages: []dataplane.Stage{dataplane.StagePortRx, dataplane.StageEthernetInput, dataplane.StageBridge, dataplane.StageFlood, dataplane.StagePortTx, dataplane.StageVXLANEncap, dataplane.StageTunnelTx},
	},
	{
		name: "port-to-uplink", path: "port-rx ethernet-input bridge gateway nat uplink-tx (masquerade, established flows)",
		outPerIn: 1, masquerade: true, dst: [6]byte(router.GatewayMAC(pipelineNetwork)), src: macLocal,
		stages: []dataplane.Stage{dataplane.StagePortRx, dataplane.StageEthernetInput, dataplane.StageBridge, dataplane.StageGateway, dataplane.StageNAT, dataplane.StageUplinkTx},
	},
}

// Pipeline runs every pipeline scenario Reps times on the calling goroutine,
// locked to its OS thread (one core, one worker), and returns the report.
// It stops early with ctx's error when ctx ends.
func Pipeline(ctx context.Context, opts PipelineOptions) (*PipelineReport, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("bench pipeline: %w", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rep := &PipelineReport{Options: opts, Machine: thisMachine()}
	for _, sc := range scenarios {
		r, err := runScenario(ctx, sc, opts)
		if err != nil {
			return nil, fmt.Errorf("bench pipeline: %s: %w", sc.name, err)
		}
		rep.Scenarios = append(rep.Scenarios, r)
	}
	return rep, nil
}

// rig is one engine with one worker on in-memory ports, tunnel and
// uplink.
type rig struct {
	eng   *dataplane.Engine
	w     *dataplane.Worker
	ports [2]*dataplane.MemPort
	tun   *dataplane.MemTunnel
	up    *dataplane.MemPort
}

// newRig builds the benchmark's network; with masquerade it has a gateway
// and an uplink that masquerades it, with room for flows connections.
func newRig(masquerade bool, flows int) (*rig, error) {
	spec := dataplane.NetworkSpec{
		Name: pipelineNetwork, VNI: pipelineVNI, MTU: PipelineMTU, Ageing: time.Hour,
		Ports: []string{"p0", "p1"}, Peers: []netip.Addr{peer1, peer2},
	}
	if masquerade {
		spec.Gateway, spec.Subnet = pipelineGateway, pipelineSubnet
	}
	eng, err := dataplane.NewEngine([]dataplane.NetworkSpec{spec}, 1)
	if err != nil {
		return nil, err
	}
	r := &rig{eng: eng, w: eng.NewWorker(0, 4*dataplane.MaxBatch, 2048), tun: &dataplane.MemTunnel{Ports: 4}, up: &dataplane.MemPort{}}
	for i := range r.ports {
		r.ports[i] = &dataplane.MemPort{}
		r.w.SetPort(uint16(i), r.ports[i])
	}
	r.w.SetTunnel(r.tun)
	if masquerade {
		tbl, err := nat.New(nat.Options{NATAddr: pipelineNATAddr, MaxEntries: flows + 1024})
		if err != nil {
			return nil, err
		}
		if err := eng.SetUplinks([]dataplane.UplinkSpec{{Name: "up0", NAT: tbl, MTU: PipelineMTU, Networks: []string{pipelineNetwork}}}); err != nil {
			return nil, err
		}
		r.w.SetUplink(0, r.up)
	}
	// Teach the bridge where both MACs are, as traffic would.
	r.tun.Queue(peer1, vxlanWrap(buildFrame(macBcast, macRemote, insideDst, 60, 1)))
	r.ports[0].Queue(buildFrame(macBcast, macLocal, insideDst, 60, 1))
	if err := r.drain(); err != nil {
		return nil, err
	}
	r.eng.ClearCounters()
	return r, nil
}

// drain polls the tunnel and port p0 until both are empty.
func (r *rig) drain() error {
	for {
		n, err := r.w.PollTunnel()
		if err != nil {
			return err
		}
		m, err := r.w.PollPort(0)
		if err != nil {
			return err
		}
		if n+m == 0 {
			return nil
		}
	}
}

func (r *rig) out() uint64 {
	return uint64(r.tun.TxPackets + r.ports[0].TxPackets + r.ports[1].TxPackets + r.up.TxPackets)
}

func (r *rig) drops() uint64 {
	var n uint64
	for _, d := range r.eng.Errors() {
		n += d.Packets
	}
	return n
}

func runScenario(ctx context.Context, sc scenario, opts PipelineOptions) (ScenarioResult, error) {
	res := ScenarioResult{Name: sc.name, Path: sc.path, OutPerFrame: sc.outPerIn}
	var mpps, nsFrame, allocs []float64
	stageNs := make([][]float64, len(sc.stages))
	stagePkts := make([]uint64, len(sc.stages))
	for range opts.Reps {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		r, err := newRig(sc.masquerade, opts.Flows)
		if err != nil {
			return res, err
		}
		dstIP := insideDst
		if sc.masquerade {
			dstIP = outsideAddr
		}
		poll := func() (int, error) { return r.w.PollPort(0) }
		if sc.fromPeer {
			for f := range opts.Flows {
				r.tun.Queue(peer1, vxlanWrap(buildFrame(sc.dst, sc.src, dstIP, opts.Size, uint16(1024+f))))
			}
			r.tun.Loop = true
			poll = r.w.PollTunnel
		} else {
			for f := range opts.Flows {
				r.ports[0].Queue(buildFrame(sc.dst, sc.src, dstIP, opts.Size, uint16(1024+f)))
			}
			r.ports[0].Loop = true
		}
		// Warm up: one pass over every flow (the masquerade scenario's
		// connections are made here), then the measured run.
		for range (opts.Flows + dataplane.MaxBatch - 1) / dataplane.MaxBatch {
			if _, err := poll(); err != nil {
				return res, err
			}
		}
		r.eng.ClearCounters()
		out0 := r.out()
		in, el, mallocs, err := loop(poll, opts)
		if err != nil {
			return res, err
		}
		res.FramesIn += in
		res.FramesOut += r.out() - out0
		res.Drops += r.drops()
		mpps = append(mpps, float64(in)/el.Seconds()/1e6)
		nsFrame = append(nsFrame, float64(el.Nanoseconds())/float64(in))
		allocs = append(allocs, float64(mallocs)/float64(in))
		rt := r.eng.Runtime()
		for i, s := range sc.stages {
			stageNs[i] = append(stageNs[i], rt[s].NsPerPkt)
			stagePkts[i] += rt[s].Packets
		}
	}
	res.Mpps, res.NsPerFrame, res.AllocsPerFrame = Summarize(mpps), Summarize(nsFrame), Summarize(allocs)
	for i, s := range sc.stages {
		res.Stages = append(res.Stages, StageTime{
			Stage:           s.String(),
			PacketsPerFrame: float64(stagePkts[i]) / float64(res.FramesIn),
			NsPerPacket:     Summarize(stageNs[i]),
		})
	}
	return res, nil
}

// loop calls poll until opts.Frames frames were read or opts.Duration
// passed, and returns the frames read, the time taken and the heap
// allocations made meanwhile.
func loop(poll func() (int, error), opts PipelineOptions) (frames uint64, elapsed time.Duration, mallocs uint64, err error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	deadline := start.Add(opts.Duration)
	for {
		// Check the clock once per 16 batches: cheap next to 1024 frames.
		for range 16 {
			n, err := poll()
			if err != nil {
				return frames, 0, 0, err
			}
			frames += uint64(n)
		}
		if opts.Frames > 0 {
			if frames >= uint64(opts.Frames) {
				break
			}
		} else if time.Now().After(deadline) {
			break
		}
	}
	elapsed = time.Since(start)
	runtime.ReadMemStats(&after)
	return frames, elapsed, after.Mallocs - before.Mallocs, nil
}

// buildFrame returns an Ethernet/IPv4/UDP frame of size bytes from src to
// dst, 10.42.0.2:sport → dstIP:5001, with a valid IPv4 checksum and a zero
// (absent) UDP checksum.
func buildFrame(dst, src [6]byte, dstIP [4]byte, size int, sport uint16) []byte {
	b := make([]byte, size)
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	ip[8] = 64
	ip[9] = 17
	copy(ip[12:16], []byte{10, 42, 0, 2})
	copy(ip[16:20], dstIP[:])
	header.IPv4(ip).SetChecksum(header.IPv4(ip).CalculateChecksum())
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], 5001)
	binary.BigEndian.PutUint16(udp[4:], uint16(size-34))
	for i := 42; i < size; i++ {
		b[i] = byte(i)
	}
	return b
}

// vxlanWrap returns the VXLAN payload (header and inner frame) that a peer
// sends for frame on the benchmark's network.
func vxlanWrap(frame []byte) []byte {
	b := make([]byte, encap.VXLANHeaderLen+len(frame))
	encap.PutVXLAN(b, pipelineVNI)
	copy(b[encap.VXLANHeaderLen:], frame)
	return b
}
