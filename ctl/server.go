package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ferry-overlay/ferry/dataplane"
)

// route is one endpoint of the API. Adding an endpoint is one line in
// (*server).routes and one handler method.
type route struct {
	method string
	path   string
	// params are the query parameters the endpoint accepts; any other is
	// a 400, so a typo (?net=blue) never silently means "everything".
	params []string
	handle func(r *http.Request) (any, error)
	// stream, if set instead of handle, writes the reply itself (a
	// pcap stream).
	stream func(w http.ResponseWriter, r *http.Request) error
}

func (s *server) routes() []route {
	return []route{
		{method: http.MethodGet, path: "/v1/status", handle: s.status},
		{method: http.MethodGet, path: "/v1/ports", handle: s.ports},
		{method: http.MethodGet, path: "/v1/peers", handle: s.peers},
		{method: http.MethodGet, path: "/v1/fdb", params: []string{"network"}, handle: s.fdb},
		{method: http.MethodGet, path: "/v1/runtime", handle: s.runtime},
		{method: http.MethodGet, path: "/v1/runtime/workers", handle: s.workerRuntime},
		{method: http.MethodPost, path: "/v1/runtime/clear", handle: s.clear},
		{method: http.MethodGet, path: "/v1/errors", handle: s.errors},
		{method: http.MethodPost, path: "/v1/errors/clear", handle: s.clear},
		{method: http.MethodPost, path: "/v1/fdb/add", handle: s.fdbAdd},
		{method: http.MethodPost, path: "/v1/fdb/del", handle: s.fdbDel},
		{method: http.MethodPost, path: "/v1/fdb/flush", params: []string{"network"}, handle: s.fdbFlush},
		{method: http.MethodPost, path: "/v1/peers/add", handle: s.peerAdd},
		{method: http.MethodPost, path: "/v1/peers/del", handle: s.peerDel},
		{method: http.MethodGet, path: "/v1/trace", handle: s.withOp(func(op Operator) (any, error) { return op.TraceStatus(), nil })},
		{method: http.MethodPost, path: "/v1/trace/start", handle: withOpBody(s, func(op Operator, spec dataplane.TraceSpec) (any, error) { return op.StartTrace(spec) })},
		{method: http.MethodPost, path: "/v1/trace/stop", handle: s.withOp(func(op Operator) (any, error) { return op.StopTrace(), nil })},
		{method: http.MethodPost, path: "/v1/trace/clear", handle: s.withOp(func(op Operator) (any, error) { return op.ClearTrace(), nil })},
		{method: http.MethodGet, path: "/v1/trace/show", handle: s.withOp(func(op Operator) (any, error) { return nonNil(op.TraceShow()), nil })},
		{method: http.MethodGet, path: "/v1/trace/paths", handle: s.withOp(func(op Operator) (any, error) { return nonNil(op.TracePaths()), nil })},
		{method: http.MethodPost, path: "/v1/trace/inject", handle: withOpBody(s, func(op Operator, spec dataplane.InjectSpec) (any, error) { return op.Inject(spec) })},
		{method: http.MethodGet, path: "/v1/pcap", params: pcapParams, stream: s.pcap},
		// Published ports and conntrack (nat.go).
		{method: http.MethodGet, path: "/v1/publish", handle: s.published},
		{method: http.MethodPost, path: "/v1/publish/add", handle: s.publishAdd},
		{method: http.MethodPost, path: "/v1/publish/del", handle: s.publishDel},
		{method: http.MethodGet, path: "/v1/conntrack", params: []string{"uplink"}, handle: s.conntrack},
		{method: http.MethodPost, path: "/v1/conntrack/flush", params: []string{"uplink"}, handle: s.conntrackFlush},
		{method: http.MethodPost, path: "/v1/conntrack/delete", handle: s.conntrackDelete},
	}
}

type server struct {
	b    Backend
	info NodeInfo
}

// NewServer returns the HTTP handler of the control API, serving b's state
// and info. Serve it on the listener from Listen with an http.Server. The
// handler is safe for concurrent requests as long as b is (see Backend).
//
// Every reply is JSON: the endpoint's value with status 200, or an ErrorBody
// with 400, 404, 405 or 500.
func NewServer(b Backend, info NodeInfo) http.Handler {
	s := &server{b: b, info: info}
	byPath := map[string][]route{}
	var paths []string
	for _, rt := range s.routes() {
		if byPath[rt.path] == nil {
			paths = append(paths, rt.path)
		}
		byPath[rt.path] = append(byPath[rt.path], rt)
	}
	mux := http.NewServeMux()
	for _, p := range paths {
		mux.Handle(p, endpoint(byPath[p]))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, &httpError{http.StatusNotFound, fmt.Sprintf("no endpoint %s", r.URL.Path)})
	})
	return mux
}

// endpoint serves one path: it picks the route by method and checks the
// query parameters before calling the route's handler.
func endpoint(rts []route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := slices.IndexFunc(rts, func(rt route) bool { return rt.method == r.Method })
		if i < 0 {
			allowed := make([]string, len(rts))
			for j, rt := range rts {
				allowed[j] = rt.method
			}
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, r, &httpError{http.StatusMethodNotAllowed,
				fmt.Sprintf("method %s not allowed on %s (use %s)", r.Method, r.URL.Path, strings.Join(allowed, " or "))})
			return
		}
		rt := rts[i]
		if err := checkQuery(r, rt.params); err != nil {
			writeError(w, r, err)
			return
		}
		if rt.stream != nil {
			if err := rt.stream(w, r); err != nil {
				writeError(w, r, err)
			}
			return
		}
		v, err := rt.handle(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, r, http.StatusOK, v)
	})
}

// checkQuery rejects a query string that does not parse, names a parameter
// not in allowed, or gives one more than once, so handlers can read
// r.URL.Query() without checks.
func checkQuery(r *http.Request, allowed []string) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return &httpError{http.StatusBadRequest, fmt.Sprintf("bad query string: %v", err)}
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			return &httpError{http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q", k)}
		}
		if len(vs) > 1 {
			return &httpError{http.StatusBadRequest, fmt.Sprintf("query parameter %q given %d times", k, len(vs))}
		}
	}
	return nil
}

// httpError is an error with the HTTP status it is reported with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// writeError replies with err as an ErrorBody: with its own status if it is
// an *httpError, else as a 500, which is also logged.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	if he, ok := errors.AsType[*httpError](err); ok {
		status = he.status
	} else if errors.Is(err, dataplane.ErrNotFound) {
		status = http.StatusNotFound
	} else if errors.Is(err, dataplane.ErrInvalid) {
		status = http.StatusBadRequest
	} else {
		slog.Error("control request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, r, status, ErrorBody{Error: err.Error()})
}

// writeJSON replies with v encoded as one line of JSON.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		slog.Error("control reply not encodable", "path", r.URL.Path, "err", err)
		status = http.StatusInternalServerError
		body, _ = json.Marshal(ErrorBody{Error: fmt.Sprintf("encoding reply: %v", err)})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func (s *server) status(*http.Request) (any, error) {
	return Status{
		Version:       s.info.Version,
		Node:          s.info.Name,
		UptimeSeconds: s.b.Uptime().Seconds(),
		Workers:       s.b.Workers(),
		WorkerCPUs:    s.info.WorkerCPUs,
		TAPIO:         s.info.TAPIO,
		Networks:      nonNil(s.b.Networks()),
	}, nil
}

func (s *server) ports(*http.Request) (any, error) { return nonNil(s.b.Ports()), nil }

func (s *server) peers(*http.Request) (any, error) { return nonNil(s.b.Peers()), nil }

func (s *server) fdb(r *http.Request) (any, error) {
	name := r.URL.Query().Get("network")
	entries, err := s.b.FDB(name)
	if err != nil {
		// The engine's only FDB error is an unknown network.
		return nil, &httpError{http.StatusNotFound, err.Error()}
	}
	return nonNil(entries), nil
}

func (s *server) runtime(*http.Request) (any, error) { return nonNil(s.b.Runtime()), nil }

func (s *server) workerRuntime(*http.Request) (any, error) {
	return nonNil(s.b.WorkerRuntime()), nil
}

func (s *server) errors(*http.Request) (any, error) { return nonNil(s.b.Errors()), nil }

// clear serves both clear endpoints: the engine zeroes stage and drop
// counters together, and the reply says so.
func (s *server) clear(*http.Request) (any, error) {
	s.b.ClearCounters()
	return Cleared{Counters: []string{"runtime", "errors"}}, nil
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
