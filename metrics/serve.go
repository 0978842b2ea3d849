package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferry-overlay/ferry/ctl"
)

// Serve listens on listen (host:port; port 0 picks a free port) and serves,
// in a new goroutine:
//
//	/metrics        b's counters (see Collector), labelled with info, plus
//	                the Go runtime and process collectors, from a private
//	                registry
//	/healthz        200 "ok" while the process serves HTTP
//	/readyz         200 "ready" or 503 "not ready", as ready reports
//	/debug/pprof/   net/http/pprof, only if pprof is set
//
// ready is called on every /readyz request, from a serving goroutine; nil
// means ready as soon as the server runs.
//
// pprof is refused (with an error, before anything is served) unless the
// listener is bound to a loopback address, because profiles expose memory
// contents and cost CPU. (Importing net/http/pprof also registers its
// handlers on http.DefaultServeMux, which ferry never serves.)
//
// On success the server is running and srv.Addr holds the bound address.
// Stop it with srv.Shutdown or srv.Close, which also close the listener.
// Errors of the serving goroutine other than shutdown are logged.
func Serve(listen string, b Backend, info ctl.NodeInfo, pprof bool, ready func() bool) (*http.Server, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	if pprof {
		if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
			ln.Close()
			return nil, fmt.Errorf("pprof is only served on a loopback address, and metrics listen on %s", ln.Addr())
		}
	}
	mux, err := newMux(b, info, pprof, ready)
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv := &http.Server{
		Addr:              ln.Addr().String(),
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics server stopped", "addr", srv.Addr, "err", err)
		}
	}()
	slog.Info("metrics listening", "addr", srv.Addr, "pprof", pprof)
	return srv, nil
}

// newMux builds the handler of Serve; the loopback check for pprof is the
// caller's.
func newMux(b Backend, info ctl.NodeInfo, pprof bool, ready func() bool) (*http.ServeMux, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		NewCollector(b, info),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(slog.Default().Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			plain(w, http.StatusServiceUnavailable, "not ready")
			return
		}
		plain(w, http.StatusOK, "ready")
	})
	if pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	return mux, nil
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}
