package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"

	"github.com/ferry-overlay/ferry/dataplane"
)

// maxReply bounds how much of a reply the client reads, so a confused peer
// on the socket cannot make the CLI buffer without limit.
const maxReply = 64 << 20

// Client calls the control API of a daemon over its unix socket. The zero
// value is not usable; call NewClient. A Client is safe for concurrent use
// and reuses connections; deadlines come from each call's context.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon listening on socketPath. It does
// not connect until the first call.
func NewClient(socketPath string) *Client {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		DisableCompression: true,
	}
	return &Client{socket: socketPath, hc: &http.Client{Transport: tr}}
}

// Socket returns the socket path the client dials.
func (c *Client) Socket() string { return c.socket }

// UnreachableError is returned when the client cannot connect to the
// socket at all: no daemon, a dead socket, or no permission.
type UnreachableError struct {
	Socket string
	Err    error // the dial error
}

// Error says what the user most likely has to do.
func (e *UnreachableError) Error() string {
	if errors.Is(e.Err, syscall.EACCES) || errors.Is(e.Err, syscall.EPERM) {
		return fmt.Sprintf("cannot reach ferry at %s: permission denied (the socket is mode 0600; run as its owner, usually root)", e.Socket)
	}
	if errors.Is(e.Err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("cannot reach ferry at %s: stale socket, no daemon listens on it (is `ferry run` running?)", e.Socket)
	}
	return fmt.Sprintf("cannot reach ferry at %s: is `ferry run` running?", e.Socket)
}

// Unwrap returns the dial error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// APIError is a reply with a non-2xx status: the daemon understood the
// request and refused it.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the reply's "error" field
}

// Error returns the daemon's message.
func (e *APIError) Error() string { return e.Message }

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var v Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &v)
	return v, err
}

// Ports returns the local ports with their counters.
func (c *Client) Ports(ctx context.Context) ([]dataplane.PortInfo, error) {
	var v []dataplane.PortInfo
	err := c.do(ctx, http.MethodGet, "/v1/ports", nil, &v)
	return v, err
}

// Peers returns the remote peers with their counters.
func (c *Client) Peers(ctx context.Context) ([]dataplane.PeerInfo, error) {
	var v []dataplane.PeerInfo
	err := c.do(ctx, http.MethodGet, "/v1/peers", nil, &v)
	return v, err
}

// FDB returns the MAC table of the named network, or of every network when
// network is "". An unknown network is an *APIError with status 404.
func (c *Client) FDB(ctx context.Context, network string) ([]dataplane.FDBEntry, error) {
	var q url.Values
	if network != "" {
		q = url.Values{"network": {network}}
	}
	var v []dataplane.FDBEntry
	err := c.do(ctx, http.MethodGet, "/v1/fdb", q, &v)
	return v, err
}

// Runtime returns the per-stage runtime counters, in pipeline order.
func (c *Client) Runtime(ctx context.Context) ([]dataplane.StageStats, error) {
	var v []dataplane.StageStats
	err := c.do(ctx, http.MethodGet, "/v1/runtime", nil, &v)
	return v, err
}

// WorkerRuntime returns the per-stage runtime counters of each worker on
// its own, by worker number.
func (c *Client) WorkerRuntime(ctx context.Context) ([]dataplane.WorkerStats, error) {
	var v []dataplane.WorkerStats
	err := c.do(ctx, http.MethodGet, "/v1/runtime/workers", nil, &v)
	return v, err
}

// ClearRuntime zeroes the runtime counters, and with them the drop
// counters (the engine clears both together).
func (c *Client) ClearRuntime(ctx context.Context) (Cleared, error) {
	var v Cleared
	err := c.do(ctx, http.MethodPost, "/v1/runtime/clear", nil, &v)
	return v, err
}

// Errors returns the non-zero drop counters, largest first.
func (c *Client) Errors(ctx context.Context) ([]dataplane.DropStats, error) {
	var v []dataplane.DropStats
	err := c.do(ctx, http.MethodGet, "/v1/errors", nil, &v)
	return v, err
}

// ClearErrors zeroes the drop counters, and with them the runtime counters
// (the engine clears both together).
func (c *Client) ClearErrors(ctx context.Context) (Cleared, error) {
	var v Cleared
	err := c.do(ctx, http.MethodPost, "/v1/errors/clear", nil, &v)
	return v, err
}

// do sends one request without a body and decodes a 2xx reply's JSON into
// out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	return c.doBody(ctx, method, path, q, nil, out)
}

// send opens one request, with in (if not nil) as its JSON body, and
// returns the response of a 2xx reply for the caller to read and close.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, in any) (*http.Response, error) {
	u := url.URL{Scheme: "http", Host: "ferry", Path: path, RawQuery: q.Encode()}
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encoding request %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("building request %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
			return nil, &UnreachableError{Socket: c.socket, Err: err}
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxReply))
		var eb ErrorBody
		if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(body))
		}
		return nil, &APIError{Status: resp.StatusCode, Message: eb.Error}
	}
	return resp, nil
}

// doBody sends one request, with in (if not nil) as its JSON body, and
// decodes a 2xx reply's JSON into out.
func (c *Client) doBody(ctx context.Context, method, path string, q url.Values, in, out any) error {
	resp, err := c.send(ctx, method, path, q, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return fmt.Errorf("%s %s: reading reply: %w", method, path, err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decoding reply: %w", method, path, err)
	}
	return nil
}

// AddFDB adds a static FDB entry (req.Port or req.Peer set).
func (c *Client) AddFDB(ctx context.Context, req FDBRequest) (Done, error) {
	var v Done
	err := c.doBody(ctx, http.MethodPost, "/v1/fdb/add", nil, req, &v)
	return v, err
}

// DeleteFDB removes an FDB entry, static or learned.
func (c *Client) DeleteFDB(ctx context.Context, req FDBRequest) (Done, error) {
	var v Done
	err := c.doBody(ctx, http.MethodPost, "/v1/fdb/del", nil, req, &v)
	return v, err
}

// FlushFDB removes the learned entries of one network, or of all for "".
func (c *Client) FlushFDB(ctx context.Context, network string) (Flushed, error) {
	var q url.Values
	if network != "" {
		q = url.Values{"network": {network}}
	}
	var v Flushed
	err := c.do(ctx, http.MethodPost, "/v1/fdb/flush", q, &v)
	return v, err
}

// AddPeer adds a peer to a network.
func (c *Client) AddPeer(ctx context.Context, req PeerRequest) (Done, error) {
	var v Done
	err := c.doBody(ctx, http.MethodPost, "/v1/peers/add", nil, req, &v)
	return v, err
}

// RemovePeer removes a peer from a network and flushes its FDB entries.
func (c *Client) RemovePeer(ctx context.Context, req PeerRequest) (Done, error) {
	var v Done
	err := c.doBody(ctx, http.MethodPost, "/v1/peers/del", nil, req, &v)
	return v, err
}

// StartTrace starts a packet trace, replacing any previous one.
func (c *Client) StartTrace(ctx context.Context, spec dataplane.TraceSpec) (dataplane.TraceStatus, error) {
	var v dataplane.TraceStatus
	err := c.doBody(ctx, http.MethodPost, "/v1/trace/start", nil, spec, &v)
	return v, err
}

// StopTrace stops the trace; its packets stay for TraceShow.
func (c *Client) StopTrace(ctx context.Context) (dataplane.TraceStatus, error) {
	var v dataplane.TraceStatus
	err := c.do(ctx, http.MethodPost, "/v1/trace/stop", nil, &v)
	return v, err
}

// ClearTrace discards the traced packets collected so far.
func (c *Client) ClearTrace(ctx context.Context) (dataplane.TraceStatus, error) {
	var v dataplane.TraceStatus
	err := c.do(ctx, http.MethodPost, "/v1/trace/clear", nil, &v)
	return v, err
}

// TraceStatus returns the state of the current or last trace.
func (c *Client) TraceStatus(ctx context.Context) (dataplane.TraceStatus, error) {
	var v dataplane.TraceStatus
	err := c.do(ctx, http.MethodGet, "/v1/trace", nil, &v)
	return v, err
}

// TraceShow returns the traced packets, oldest first.
func (c *Client) TraceShow(ctx context.Context) ([]dataplane.TracePacket, error) {
	var v []dataplane.TracePacket
	err := c.do(ctx, http.MethodGet, "/v1/trace/show", nil, &v)
	return v, err
}

// TracePaths returns the traced packets grouped by path.
func (c *Client) TracePaths(ctx context.Context) ([]dataplane.TracePath, error) {
	var v []dataplane.TracePath
	err := c.do(ctx, http.MethodGet, "/v1/trace/paths", nil, &v)
	return v, err
}

// Inject runs a made-up packet through the pipeline without sending it and
// returns its trace.
func (c *Client) Inject(ctx context.Context, spec dataplane.InjectSpec) (dataplane.TracePacket, error) {
	var v dataplane.TracePacket
	err := c.doBody(ctx, http.MethodPost, "/v1/trace/inject", nil, spec, &v)
	return v, err
}

// Pcap runs a capture and copies the pcapng stream to out as it arrives,
// until the daemon ends it (count, size or time bound) or ctx is done. A
// capture ended by ctx is not an error; its summary is then unknown (zero).
func (c *Client) Pcap(ctx context.Context, req PcapRequest, out io.Writer) (PcapSummary, error) {
	q := url.Values{"point": {req.Point}}
	if req.Filter != "" {
		q.Set("filter", req.Filter)
	}
	if req.Snaplen != 0 {
		q.Set("snaplen", strconv.Itoa(req.Snaplen))
	}
	if req.Count != 0 {
		q.Set("count", strconv.Itoa(req.Count))
	}
	if req.MaxBytes != 0 {
		q.Set("max_bytes", strconv.FormatInt(req.MaxBytes, 10))
	}
	if req.Duration != 0 {
		q.Set("duration", req.Duration.String())
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/pcap", q, nil)
	if err != nil {
		return PcapSummary{}, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		if ctx.Err() != nil {
			return PcapSummary{}, nil
		}
		return PcapSummary{}, fmt.Errorf("capture: %w", err)
	}
	var sum PcapSummary
	sum.Packets, _ = strconv.ParseUint(resp.Trailer.Get(PcapPacketsTrailer), 10, 64)
	sum.Dropped, _ = strconv.ParseUint(resp.Trailer.Get(PcapDroppedTrailer), 10, 64)
	return sum, nil
}
