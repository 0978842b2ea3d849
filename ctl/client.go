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

// do sends one request and decodes a 2xx reply's JSON into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	u := url.URL{Scheme: "http", Host: "ferry", Path: path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return fmt.Errorf("building request %s %s: %w", method, path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
			return &UnreachableError{Socket: c.socket, Err: err}
		}
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return fmt.Errorf("%s %s: reading reply: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(body))
		}
		return &APIError{Status: resp.StatusCode, Message: eb.Error}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decoding reply: %w", method, path, err)
	}
	return nil
}
