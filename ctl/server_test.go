package ctl

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/ferry-overlay/ferry/ctl/ctltest"
	"github.com/ferry-overlay/ferry/dataplane"
)

var testInfo = NodeInfo{Name: "node-1", Version: "v1.2.3-test"}

// serve runs one request through a fresh server over fake and returns the
// recorded reply.
func serve(t *testing.T, fake *ctltest.Backend, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	NewServer(fake, testInfo).ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

// decodeInto decodes body strictly into a new value of want's type and
// compares it with want.
func decodeInto(t *testing.T, body []byte, want any) {
	t.Helper()
	got := reflect.New(reflect.TypeOf(want))
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(got.Interface()); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	if !reflect.DeepEqual(got.Elem().Interface(), want) {
		t.Errorf("reply decoded to\n%+v\nwant\n%+v", got.Elem().Interface(), want)
	}
}

func TestEndpointsReturnBackendValues(t *testing.T) {
	fake := ctltest.New()
	tests := []struct {
		name   string
		method string
		target string
		want   any
	}{
		{"status reports node, version, uptime, workers and networks", http.MethodGet, "/v1/status", Status{
			Version: testInfo.Version, Node: testInfo.Name, UptimeSeconds: fake.Up.Seconds(),
			Workers: fake.NumWorkers, Networks: fake.NetworkList,
		}},
		{"ports lists every port with counters", http.MethodGet, "/v1/ports", fake.PortList},
		{"peers lists every peer with last-heard", http.MethodGet, "/v1/peers", fake.PeerList},
		{"fdb without a network returns all entries", http.MethodGet, "/v1/fdb", fake.FDBEntries},
		{"fdb of one network returns only its entries", http.MethodGet, "/v1/fdb?network=red", fake.FDBEntries[2:]},
		{"runtime lists stages", http.MethodGet, "/v1/runtime", fake.StageList},
		{"errors lists drop counters", http.MethodGet, "/v1/errors", fake.DropList},
		{"runtime clear says it cleared both", http.MethodPost, "/v1/runtime/clear", Cleared{Counters: []string{"runtime", "errors"}}},
		{"errors clear says it cleared both", http.MethodPost, "/v1/errors/clear", Cleared{Counters: []string{"runtime", "errors"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(t, fake, tt.method, tt.target)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, body %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			decodeInto(t, rec.Body.Bytes(), tt.want)
		})
	}
}

func TestClearEndpointsClearTheBackend(t *testing.T) {
	for _, target := range []string{"/v1/runtime/clear", "/v1/errors/clear"} {
		t.Run(target, func(t *testing.T) {
			fake := ctltest.New()
			if rec := serve(t, fake, http.MethodPost, target); rec.Code != http.StatusOK {
				t.Fatalf("status %d, body %s", rec.Code, rec.Body)
			}
			if n := fake.Clears(); n != 1 {
				t.Errorf("ClearCounters called %d times, want 1", n)
			}
		})
	}
}

func TestEmptyListsEncodeAsEmptyArrays(t *testing.T) {
	fake := &ctltest.Backend{}
	for _, target := range []string{"/v1/ports", "/v1/peers", "/v1/fdb", "/v1/runtime", "/v1/errors"} {
		t.Run(target, func(t *testing.T) {
			rec := serve(t, fake, http.MethodGet, target)
			if got := strings.TrimSpace(rec.Body.String()); rec.Code != http.StatusOK || got != "[]" {
				t.Errorf("got %d %q, want 200 []", rec.Code, got)
			}
		})
	}
	rec := serve(t, fake, http.MethodGet, "/v1/status")
	if !strings.Contains(rec.Body.String(), `"networks":[]`) {
		t.Errorf("status with no networks = %s, want \"networks\":[]", rec.Body)
	}
}

func TestErrorReplies(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		target    string
		status    int
		errSubstr string
		allow     string // expected Allow header, for 405
	}{
		{"unknown network is 404", http.MethodGet, "/v1/fdb?network=green", http.StatusNotFound, `no network "green"`, ""},
		{"unknown path is 404", http.MethodGet, "/v1/nothing", http.StatusNotFound, "no endpoint /v1/nothing", ""},
		{"unversioned path is 404", http.MethodGet, "/status", http.StatusNotFound, "no endpoint /status", ""},
		{"POST to a GET endpoint is 405", http.MethodPost, "/v1/ports", http.StatusMethodNotAllowed, "method POST not allowed", "GET"},
		{"GET to a clear endpoint is 405", http.MethodGet, "/v1/runtime/clear", http.StatusMethodNotAllowed, "use POST", "POST"},
		{"DELETE on status is 405", http.MethodDelete, "/v1/status", http.StatusMethodNotAllowed, "method DELETE not allowed", "GET"},
		{"unknown query parameter is 400", http.MethodGet, "/v1/fdb?net=blue", http.StatusBadRequest, `unknown query parameter "net"`, ""},
		{"query parameter on an endpoint without any is 400", http.MethodGet, "/v1/ports?network=blue", http.StatusBadRequest, `unknown query parameter "network"`, ""},
		{"repeated query parameter is 400", http.MethodGet, "/v1/fdb?network=blue&network=red", http.StatusBadRequest, "given 2 times", ""},
		{"malformed query string is 400", http.MethodGet, "/v1/fdb?network=%zz", http.StatusBadRequest, "bad query string", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := ctltest.New()
			rec := serve(t, fake, tt.method, tt.target)
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var eb ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
				t.Fatalf("error body %q is not JSON: %v", rec.Body, err)
			}
			if !strings.Contains(eb.Error, tt.errSubstr) {
				t.Errorf("error %q does not contain %q", eb.Error, tt.errSubstr)
			}
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if fake.Clears() != 0 {
				t.Errorf("a refused request cleared the counters")
			}
		})
	}
}

// The API's JSON field names are a contract with scripts; pin a few.
func TestJSONFieldNames(t *testing.T) {
	fake := ctltest.New()
	fake.PortList = []dataplane.PortInfo{{Name: "p", Network: "n"}}
	tests := []struct {
		target string
		fields []string
	}{
		{"/v1/status", []string{`"version"`, `"node"`, `"uptime_seconds"`, `"workers"`, `"networks"`, `"vni"`, `"fdb_entries"`}},
		{"/v1/ports", []string{`"name"`, `"network"`, `"rx_packets"`, `"rx_bytes"`, `"tx_packets"`, `"tx_bytes"`, `"drops"`}},
		{"/v1/peers", []string{`"address":"192.0.2.10"`, `"last_heard_ns":12000000000`}},
		{"/v1/fdb", []string{`"mac"`, `"port"`, `"peer"`, `"age_ns"`, `"static"`}},
		{"/v1/runtime", []string{`"stage"`, `"packets"`, `"batches"`, `"nanoseconds"`, `"packets_per_batch"`, `"ns_per_packet"`}},
		{"/v1/errors", []string{`"stage"`, `"reason"`, `"help"`, `"packets"`}},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			body := serve(t, fake, http.MethodGet, tt.target).Body.String()
			for _, f := range tt.fields {
				if !strings.Contains(body, f) {
					t.Errorf("reply %s lacks %s", body, f)
				}
			}
		})
	}
}
