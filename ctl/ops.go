package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ferry-overlay/ferry/dataplane"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

// operator returns the backend's Operator, or a 501 error.
func (s *server) operator() (Operator, error) {
	op, ok := s.b.(Operator)
	if !ok {
		return nil, &httpError{http.StatusNotImplemented, "this backend does not support changes, traces or captures"}
	}
	return op, nil
}

// decodeBody decodes the request's JSON body into v, strictly: unknown
// fields and trailing data are a 400.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &httpError{http.StatusBadRequest, fmt.Sprintf("bad request body: %v", err)}
	}
	if dec.More() {
		return &httpError{http.StatusBadRequest, "bad request body: data after the JSON object"}
	}
	return nil
}

func parseMAC(s string) ([6]byte, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return [6]byte{}, &httpError{http.StatusBadRequest, fmt.Sprintf("mac %q: not a MAC address like 02:42:0a:2a:00:02", s)}
	}
	return [6]byte(hw), nil
}

func (s *server) fdbAdd(r *http.Request) (any, error) {
	op, err := s.operator()
	if err != nil {
		return nil, err
	}
	var req FDBRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	mac, err := parseMAC(req.MAC)
	if err != nil {
		return nil, err
	}
	var peer netip.Addr
	where := "port " + req.Port
	if req.Peer != "" {
		if peer, err = netip.ParseAddr(req.Peer); err != nil {
			return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("peer %q: not an IP address", req.Peer)}
		}
		where = "peer " + peer.String()
	}
	if err := op.AddStaticFDB(req.Network, mac, req.Port, peer); err != nil {
		return nil, err
	}
	return Done{Message: fmt.Sprintf("static entry %s at %s added to network %s", req.MAC, where, req.Network)}, nil
}

func (s *server) fdbDel(r *http.Request) (any, error) {
	op, err := s.operator()
	if err != nil {
		return nil, err
	}
	var req FDBRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Port != "" || req.Peer != "" {
		return nil, &httpError{http.StatusBadRequest, "fdb del takes a network and a MAC only"}
	}
	mac, err := parseMAC(req.MAC)
	if err != nil {
		return nil, err
	}
	if err := op.DeleteFDB(req.Network, mac); err != nil {
		return nil, err
	}
	return Done{Message: fmt.Sprintf("entry %s removed from network %s", req.MAC, req.Network)}, nil
}

func (s *server) fdbFlush(r *http.Request) (any, error) {
	op, err := s.operator()
	if err != nil {
		return nil, err
	}
	n, err := op.FlushFDB(r.URL.Query().Get("network"))
	if err != nil {
		return nil, err
	}
	return Flushed{Removed: n}, nil
}

func (s *server) peerChange(r *http.Request, add bool) (any, error) {
	op, err := s.operator()
	if err != nil {
		return nil, err
	}
	var req PeerRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if add {
		if err := op.AddPeer(req.Network, req.Address); err != nil {
			return nil, err
		}
		return Done{Message: fmt.Sprintf("peer %s added to network %s", req.Address, req.Network)}, nil
	}
	if err := op.RemovePeer(req.Network, req.Address); err != nil {
		return nil, err
	}
	return Done{Message: fmt.Sprintf("peer %s removed from network %s; its FDB entries were flushed", req.Address, req.Network)}, nil
}

func (s *server) peerAdd(r *http.Request) (any, error) { return s.peerChange(r, true) }

func (s *server) peerDel(r *http.Request) (any, error) { return s.peerChange(r, false) }

// withOp makes a handler of f, called with the backend's Operator (or
// the 501 of a backend without one).
func (s *server) withOp(f func(Operator) (any, error)) func(*http.Request) (any, error) {
	return func(*http.Request) (any, error) {
		op, err := s.operator()
		if err != nil {
			return nil, err
		}
		return f(op)
	}
}

// withOpBody is withOp for a handler that takes a JSON body of type T,
// decoded strictly (decodeBody).
func withOpBody[T any](s *server, f func(Operator, T) (any, error)) func(*http.Request) (any, error) {
	return func(r *http.Request) (any, error) {
		op, err := s.operator()
		if err != nil {
			return nil, err
		}
		var body T
		if err := decodeBody(r, &body); err != nil {
			return nil, err
		}
		return f(op, body)
	}
}

var pcapParams = []string{"point", "filter", "snaplen", "count", "max_bytes", "duration"}

// parsePcapQuery reads the query of GET /v1/pcap.
func parsePcapQuery(r *http.Request) (PcapRequest, error) {
	q := r.URL.Query()
	req := PcapRequest{CaptureSpec: dataplane.CaptureSpec{Point: q.Get("point"), Filter: q.Get("filter")}}
	if req.Point == "" {
		return req, &httpError{http.StatusBadRequest, "point is required (rx:PORT, tx:PORT, tunnel-rx[:PEER], tunnel-tx[:PEER] or drop)"}
	}
	ints := []struct {
		name string
		dst  *int64
	}{{"snaplen", new(int64)}, {"count", new(int64)}, {"max_bytes", &req.MaxBytes}}
	for _, p := range ints {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return req, &httpError{http.StatusBadRequest, fmt.Sprintf("%s %q: not a number", p.name, v)}
			}
			*p.dst = n
		}
	}
	req.Snaplen, req.Count = int(*ints[0].dst), int(*ints[1].dst)
	if v := q.Get("duration"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return req, &httpError{http.StatusBadRequest, fmt.Sprintf("duration %q: not a duration like 30s", v)}
		}
		req.Duration = d
	}
	if req.Count == 0 {
		req.Count = DefaultPcapCount
	}
	if req.MaxBytes <= 0 {
		req.MaxBytes = DefaultPcapMaxBytes
	}
	return req, nil
}

// pcapPoll is how often a capture's rings are drained.
const pcapPoll = 20 * time.Millisecond

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// pcap streams a capture as pcapng, chunk by chunk, until its count, size
// or time bound is reached or the client goes away. The packet count and
// the capture drops are sent as HTTP trailers.
func (s *server) pcap(w http.ResponseWriter, r *http.Request) error {
	op, err := s.operator()
	if err != nil {
		return err
	}
	req, err := parsePcapQuery(r)
	if err != nil {
		return err
	}
	c, err := op.StartCapture(req.CaptureSpec)
	if err != nil {
		return err
	}
	defer c.Stop()

	w.Header().Set("Content-Type", "application/x-pcapng")
	w.Header().Set("Trailer", PcapPacketsTrailer+", "+PcapDroppedTrailer)
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	cw := &countingWriter{w: w}
	snap := req.Snaplen
	if snap == 0 {
		snap = dataplane.DefaultSnaplen
	}
	ng, err := pcapgo.NewNgWriterInterface(cw, pcapgo.NgInterface{
		Name:        "ferry:" + req.Point,
		Description: "ferry capture point " + req.Point,
		Filter:      req.Filter,
		LinkType:    c.LinkType(),
		SnapLength:  uint32(snap),
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "ferry " + s.info.Version}})
	if err != nil {
		return nil // headers are sent; the client sees a short stream
	}
	var deadline <-chan time.Time
	if req.Duration > 0 {
		t := time.NewTimer(req.Duration)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(pcapPoll)
	defer tick.Stop()
	var (
		written uint64
		buf     []dataplane.CapturedPacket
		done    bool
	)
	for !done {
		select {
		case <-r.Context().Done():
			return nil
		case <-deadline:
			done = true
		case <-tick.C:
		}
		limit := 0
		if req.Count > 0 {
			limit = req.Count - int(written)
		}
		buf = c.Read(buf[:0], limit)
		for _, p := range buf {
			// A block is 32 bytes of framing, the data padded to 4,
			// and a comment option.
			if cw.n+int64(32+len(p.Data)+3+len(p.Comment)+8) > req.MaxBytes {
				done = true
				break
			}
			ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: p.Length}
			var opts pcapgo.NgPacketOptions
			if p.Comment != "" {
				opts.Comments = []string{p.Comment}
			}
			if err := ng.WritePacketWithOptions(ci, p.Data, opts); err != nil {
				return nil
			}
			written++
		}
		if req.Count > 0 && written >= uint64(req.Count) {
			done = true
		}
		if err := ng.Flush(); err != nil {
			return nil
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
	w.Header().Set(PcapPacketsTrailer, strconv.FormatUint(written, 10))
	w.Header().Set(PcapDroppedTrailer, strconv.FormatUint(c.Dropped(), 10))
	return nil
}
