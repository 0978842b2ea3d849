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
}

// Status is the reply of GET /v1/status.
type Status struct {
	Version string `json:"version"`
	Node    string `json:"node"`
	// UptimeSeconds is the engine's uptime in seconds, with fractions.
	UptimeSeconds float64                 `json:"uptime_seconds"`
	Workers       int                     `json:"workers"`
	Networks      []dataplane.NetworkInfo `json:"networks"`
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
// status of 400 (bad request), 404 (unknown path or network), 405 (wrong
// method) or 500 (internal error).
type ErrorBody struct {
	Error string `json:"error"`
}
