package ctl

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/ferry-overlay/ferry/dataplane"
)

// NATOperator is what a backend implements to serve published ports and
// connection tracking (GET /v1/publish, POST /v1/publish/add and
// /v1/publish/del, GET /v1/conntrack, POST /v1/conntrack/flush and
// /v1/conntrack/delete). An uplink
// name "" means the only uplink (add, del) or every uplink (list, flush).
// Implementations must be safe for concurrent calls.
type NATOperator interface {
	// Published lists the published ports.
	Published() []dataplane.PublishInfo
	// AddPublish publishes proto port to to, replacing the rule for the
	// same port, and returns the uplink's name and how many connections
	// of a replaced rule ended.
	AddPublish(uplink, proto string, port uint16, to netip.AddrPort) (string, int, error)
	// DeletePublish removes a rule and ends its connections.
	DeletePublish(uplink, proto string, port uint16) (string, int, error)
	// Conntrack lists the tracked connections.
	Conntrack(uplink string) ([]dataplane.ConnInfo, error)
	// FlushConntrack removes tracked connections and returns how many.
	FlushConntrack(uplink string) (int, error)
	// DeleteConntrack removes the tracked connections whose original
	// tuple matches f and returns how many.
	DeleteConntrack(uplink string, f dataplane.ConntrackFilter) (int, error)
}

// ConntrackDeleteRequest is the body of POST /v1/conntrack/delete: the
// connections to delete, by their original tuple (conntrack -D's shape),
// on one uplink or ("") all.
type ConntrackDeleteRequest struct {
	Uplink string `json:"uplink,omitempty"`
	dataplane.ConntrackFilter
}

// The engine is the NATOperator the daemon serves.
var _ NATOperator = (*dataplane.Engine)(nil)

// PublishRequest is the body of POST /v1/publish/add and /v1/publish/del.
// Proto is "tcp" or "udp"; To ("10.42.0.2:80") is for add only.
type PublishRequest struct {
	Uplink string `json:"uplink,omitempty"`
	Proto  string `json:"proto"`
	Port   uint16 `json:"port"`
	To     string `json:"to,omitempty"`
}

// PublishDone is the reply of the publish changes.
type PublishDone struct {
	Message string `json:"message"`
	// Ended is how many tracked connections of the old rule were removed.
	Ended int `json:"ended"`
}

func (s *server) natOperator() (NATOperator, error) {
	op, ok := s.b.(NATOperator)
	if !ok {
		return nil, &httpError{http.StatusNotImplemented, "this backend has no NAT"}
	}
	return op, nil
}

func (s *server) published(*http.Request) (any, error) {
	op, err := s.natOperator()
	if err != nil {
		return nil, err
	}
	return op.Published(), nil
}

func (s *server) publishChange(r *http.Request, add bool) (any, error) {
	op, err := s.natOperator()
	if err != nil {
		return nil, err
	}
	var req PublishRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if !add {
		name, n, err := op.DeletePublish(req.Uplink, req.Proto, req.Port)
		if err != nil {
			return nil, &httpError{http.StatusBadRequest, err.Error()}
		}
		return PublishDone{Message: fmt.Sprintf("%s %d of uplink %s unpublished; %d connections ended", req.Proto, req.Port, name, n), Ended: n}, nil
	}
	to, err := netip.ParseAddrPort(req.To)
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("to %q: not an ADDRESS:PORT like 10.42.0.2:80", req.To)}
	}
	name, n, err := op.AddPublish(req.Uplink, req.Proto, req.Port, to)
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, err.Error()}
	}
	return PublishDone{Message: fmt.Sprintf("%s %d of uplink %s published to %s; %d connections of the old rule ended", req.Proto, req.Port, name, to, n), Ended: n}, nil
}

func (s *server) publishAdd(r *http.Request) (any, error) { return s.publishChange(r, true) }
func (s *server) publishDel(r *http.Request) (any, error) { return s.publishChange(r, false) }

func (s *server) conntrack(r *http.Request) (any, error) {
	op, err := s.natOperator()
	if err != nil {
		return nil, err
	}
	cs, err := op.Conntrack(r.URL.Query().Get("uplink"))
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, err.Error()}
	}
	return cs, nil
}

func (s *server) conntrackFlush(r *http.Request) (any, error) {
	op, err := s.natOperator()
	if err != nil {
		return nil, err
	}
	n, err := op.FlushConntrack(r.URL.Query().Get("uplink"))
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, err.Error()}
	}
	return Flushed{Removed: n}, nil
}

func (s *server) conntrackDelete(r *http.Request) (any, error) {
	op, err := s.natOperator()
	if err != nil {
		return nil, err
	}
	var req ConntrackDeleteRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	n, err := op.DeleteConntrack(req.Uplink, req.ConntrackFilter)
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, err.Error()}
	}
	return Flushed{Removed: n}, nil
}

// DeleteConntrack removes the tracked connections req names and returns
// how many.
func (c *Client) DeleteConntrack(ctx context.Context, req ConntrackDeleteRequest) (Flushed, error) {
	var v Flushed
	err := c.doBody(ctx, http.MethodPost, "/v1/conntrack/delete", nil, req, &v)
	return v, err
}

// Published lists the published ports of every uplink.
func (c *Client) Published(ctx context.Context) ([]dataplane.PublishInfo, error) {
	var v []dataplane.PublishInfo
	err := c.do(ctx, http.MethodGet, "/v1/publish", nil, &v)
	return v, err
}

// AddPublish publishes a port (see PublishRequest).
func (c *Client) AddPublish(ctx context.Context, req PublishRequest) (PublishDone, error) {
	var v PublishDone
	err := c.doBody(ctx, http.MethodPost, "/v1/publish/add", nil, req, &v)
	return v, err
}

// DeletePublish removes a published port and ends its connections.
func (c *Client) DeletePublish(ctx context.Context, req PublishRequest) (PublishDone, error) {
	var v PublishDone
	err := c.doBody(ctx, http.MethodPost, "/v1/publish/del", nil, req, &v)
	return v, err
}

// Conntrack lists the tracked connections of uplink ("" for all).
func (c *Client) Conntrack(ctx context.Context, uplink string) ([]dataplane.ConnInfo, error) {
	var v []dataplane.ConnInfo
	err := c.do(ctx, http.MethodGet, "/v1/conntrack", uplinkQuery(uplink), &v)
	return v, err
}

// FlushConntrack removes the tracked connections of uplink ("" for all).
func (c *Client) FlushConntrack(ctx context.Context, uplink string) (Flushed, error) {
	var v Flushed
	err := c.do(ctx, http.MethodPost, "/v1/conntrack/flush", uplinkQuery(uplink), &v)
	return v, err
}

func uplinkQuery(uplink string) url.Values {
	if uplink == "" {
		return nil
	}
	return url.Values{"uplink": {uplink}}
}
