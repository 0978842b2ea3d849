// Package ctl is ferry's control socket: an HTTP+JSON API on a unix socket
// (default /run/ferry/ferry.sock, mode 0600), its server, and the typed client
// that the ferry CLI uses. Because it is plain HTTP, curl works too:
//
//	curl --unix-socket /run/ferry/ferry.sock http://ferry/v1/status
//
// The JSON bodies are the engine's own query types (dataplane.PortInfo,
// dataplane.PeerInfo, ...), so the daemon, the API and `ferry ... -o json`
// share one definition. docs/api.md lists every endpoint.
//
// The daemon wires it as:
//
//	ln, err := ctl.Listen(cfg.Control.Socket)
//	srv := &http.Server{Handler: ctl.NewServer(engine, info), ReadHeaderTimeout: 10 * time.Second}
//	go srv.Serve(ln)
//	...
//	srv.Shutdown(ctx) // closes ln, which removes the socket file
package ctl

import (
	"net/netip"
	"time"

	"github.com/ferry-overlay/ferry/dataplane"
)

// DefaultSocket is where the daemon listens and the CLI connects unless the
// config (control.socket) or --socket / FERRY_SOCKET say otherwise.
const DefaultSocket = "/run/ferry/ferry.sock"

// Backend is the engine's read API that the control socket serves.
// *dataplane.Engine implements it; tests use ctltest.Backend. Every method
// must be safe to call from any goroutine at any time, since requests are
// served concurrently with the dataplane, and must return slices the caller
// may keep (the server encodes them after the call returns).
type Backend interface {
	// Networks summarises every network.
	Networks() []dataplane.NetworkInfo
	// Ports lists the local ports with their counters.
	Ports() []dataplane.PortInfo
	// Peers lists the remote peers with their counters.
	Peers() []dataplane.PeerInfo
	// FDB returns the MAC table of one network, or of all networks for "".
	// It fails only for a network name that does not exist.
	FDB(network string) ([]dataplane.FDBEntry, error)
	// Runtime returns per-stage packets, batches and time.
	Runtime() []dataplane.StageStats
	// WorkerRuntime returns Runtime for each worker on its own.
	WorkerRuntime() []dataplane.WorkerStats
	// Errors returns the non-zero drop counters, largest first.
	Errors() []dataplane.DropStats
	// ClearCounters zeroes the stage and drop counters together.
	ClearCounters()
	// Uptime is how long the engine has been running.
	Uptime() time.Duration
	// Workers is the number of dataplane workers.
	Workers() int
}

// The engine is the Backend the daemon serves.
var _ Backend = (*dataplane.Engine)(nil)

// NodeInfo identifies the daemon in status replies and metrics. It is fixed
// when the server is built.
type NodeInfo struct {
	// Name is the node's name (config node.name, usually the hostname).
	Name string
	// Version is the ferry build version (set at link time, "dev" otherwise).
	Version string
	// WorkerCPUs is the CPU each worker is pinned to (node.cpus, worker i
	// at index i), or nil when the workers are not pinned.
	WorkerCPUs []int
	// TAPIO is how the workers read and write TAP and TUN queues: TAPIOURing
	// or TAPIOSyscalls.
	TAPIO string
}

// The values of NodeInfo.TAPIO and Status.TAPIO.
const (
	// TAPIOURing: batches through an io_uring per queue (node.io_uring).
	TAPIOURing = "io_uring"
	// TAPIOSyscalls: one read or write system call per frame
	// (node.io_uring off, or refused by the kernel).
	TAPIOSyscalls = "syscalls"
)

// Status is the reply of GET /v1/status.
type Status struct {
	Version string `json:"version"`
	Node    string `json:"node"`
	// UptimeSeconds is the engine's uptime in seconds, with fractions.
	UptimeSeconds float64 `json:"uptime_seconds"`
	Workers       int     `json:"workers"`
	// WorkerCPUs is the CPU each worker is pinned to (config node.cpus;
	// worker i at index i), absent when the workers are not pinned.
	WorkerCPUs []int `json:"worker_cpus,omitempty"`
	// TAPIO is how the workers read and write TAP and TUN queues:
	// "io_uring" or "syscalls".
	TAPIO    string                  `json:"tap_io"`
	Networks []dataplane.NetworkInfo `json:"networks"`
}

// Uptime returns UptimeSeconds as a duration.
func (s Status) Uptime() time.Duration {
	return time.Duration(s.UptimeSeconds * float64(time.Second))
}

// Cleared is the reply of POST /v1/runtime/clear and POST /v1/errors/clear.
// The engine keeps stage and drop counters together and zeroes them
// together, so both endpoints clear both; Counters names what was cleared
// ("runtime" and "errors") so a caller is never surprised.
type Cleared struct {
	Counters []string `json:"cleared"`
}

// ErrorBody is the body of every error reply: {"error": "..."}, with an HTTP
// status of 400 (bad request), 404 (unknown path, network, port, peer or
// MAC), 405 (wrong method), 500 (internal error) or 501 (the backend does
// not support the endpoint).
type ErrorBody struct {
	Error string `json:"error"`
}

// Operator is the engine's write and observation API: FDB and peer changes,
// packet traces, what-if traces and captures. *dataplane.Engine implements
// it; NewServer serves these endpoints when its Backend is also an
// Operator, and answers 501 otherwise. Every method must be safe to call
// from any goroutine at any time. Errors wrapping dataplane.ErrNotFound are
// answered with 404, those wrapping dataplane.ErrInvalid with 400.
type Operator interface {
	// AddStaticFDB pins mac to a local port or a peer (one of them).
	AddStaticFDB(network string, mac [6]byte, port string, peer netip.Addr) error
	// DeleteFDB removes mac's entry, static or learned.
	DeleteFDB(network string, mac [6]byte) error
	// FlushFDB removes the learned entries of a network ("" for all)
	// and returns how many.
	FlushFDB(network string) (int, error)
	// AddPeer adds a peer to a network while traffic flows.
	AddPeer(network string, addr netip.Addr) error
	// RemovePeer removes a peer and flushes its FDB entries.
	RemovePeer(network string, addr netip.Addr) error
	// StartTrace starts a packet trace, replacing the previous one.
	StartTrace(spec dataplane.TraceSpec) (dataplane.TraceStatus, error)
	// StopTrace stops selecting packets; the traced ones stay.
	StopTrace() dataplane.TraceStatus
	// ClearTrace discards the traced packets.
	ClearTrace() dataplane.TraceStatus
	// TraceStatus describes the current or last trace.
	TraceStatus() dataplane.TraceStatus
	// TraceShow returns the traced packets, oldest first.
	TraceShow() []dataplane.TracePacket
	// TracePaths groups the traced packets by path.
	TracePaths() []dataplane.TracePath
	// Inject returns the what-if trace of a made-up packet.
	Inject(spec dataplane.InjectSpec) (dataplane.TracePacket, error)
	// StartCapture starts a capture; the caller must Stop it.
	StartCapture(spec dataplane.CaptureSpec) (*dataplane.Capture, error)
}

// The engine is the Operator the daemon serves.
var _ Operator = (*dataplane.Engine)(nil)

// FDBRequest is the body of POST /v1/fdb/add and /v1/fdb/del. MAC is
// "02:42:0a:2a:00:02"; for add, exactly one of Port (a local port's name)
// and Peer (a peer's underlay address) is set.
type FDBRequest struct {
	Network string `json:"network"`
	MAC     string `json:"mac"`
	Port    string `json:"port,omitempty"`
	Peer    string `json:"peer,omitempty"`
}

// PeerRequest is the body of POST /v1/peers/add and /v1/peers/del.
type PeerRequest struct {
	Network string     `json:"network"`
	Address netip.Addr `json:"address"`
}

// Done is the reply of a change that succeeded: what was done, in words.
type Done struct {
	Message string `json:"message"`
}

// Flushed is the reply of POST /v1/fdb/flush, /v1/conntrack/flush and
// /v1/conntrack/delete.
type Flushed struct {
	// Removed is how many entries (learned MACs, connections) were
	// removed.
	Removed int `json:"removed"`
}

// Capture bounds of GET /v1/pcap.
const (
	// DefaultPcapCount is the packet count of a capture that gives none.
	DefaultPcapCount = 1000
	// DefaultPcapMaxBytes is the size bound of a capture that gives none.
	DefaultPcapMaxBytes = 64 << 20
	// PcapPacketsTrailer and PcapDroppedTrailer are the HTTP trailers of
	// a pcap stream: packets written, and packets the capture missed
	// because the reader was too slow.
	PcapPacketsTrailer = "Ferry-Capture-Packets"
	PcapDroppedTrailer = "Ferry-Capture-Dropped"
)

// PcapRequest are the query parameters of GET /v1/pcap.
type PcapRequest struct {
	dataplane.CaptureSpec
	// Count stops the capture after this many packets; 0 means
	// DefaultPcapCount, negative means no count bound.
	Count int
	// MaxBytes stops the capture when the file would grow past it; 0
	// means DefaultPcapMaxBytes.
	MaxBytes int64
	// Duration stops the capture after this long; 0 means no time bound.
	Duration time.Duration
}

// PcapSummary is what a finished capture reports (from the trailers).
type PcapSummary struct {
	Packets uint64 `json:"packets"`
	Dropped uint64 `json:"dropped"`
}
