package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sampleReport is an overlay report with every kind of metric: both paths
// measured, one path missing, and a zero kernel median.
func sampleReport() *OverlayReport {
	r := &OverlayReport{
		Options: OverlayOptions{Duration: 10 * time.Second, Reps: 3, Size: 64, UnderlayMTU: 9000, Workers: 2},
		Machine: Machine{CPUs: 2, Kernel: "6.18", Go: "go1.26"},
		Errors:  []string{"rep 2 ferry tcp: boom"},
		// As on jumbo frames: the VXLAN paths' 50 bytes less.
		ContainerMTU: map[string]int{PathFerry: 8950, PathKernel: 8950},
	}
	for _, d := range metricDefs {
		m := d
		m.Ferry = Summarize([]float64{1, 2, 3})
		m.Kernel = Summarize([]float64{4, 4, 4})
		if m.Name == MetricUDPTx {
			m.Kernel = Summarize(nil)
		} else {
			ratio := m.Ferry.Median / m.Kernel.Median
			m.Ratio = &ratio
		}
		r.Metrics = append(r.Metrics, m)
	}
	return r
}

func TestOverlayReportJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Options struct {
			Duration    int64 `json:"duration_ns"`
			Reps        int   `json:"reps"`
			Size        int   `json:"size"`
			UnderlayMTU int   `json:"underlay_mtu"`
		} `json:"options"`
		ContainerMTU map[string]int `json:"container_mtu"`
		Machine      struct {
			CPUs int `json:"cpus"`
		} `json:"machine"`
		Metrics []struct {
			Name   string          `json:"name"`
			Unit   string          `json:"unit"`
			Ferry  Summary         `json:"ferry"`
			Kernel Summary         `json:"kernel"`
			Ratio  json.RawMessage `json:"ratio"`
		} `json:"metrics"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("report JSON does not decode: %v\n%s", err, b.String())
	}
	if got.Options.Duration != int64(10*time.Second) || got.Options.Reps != 3 || got.Options.Size != 64 || got.Options.UnderlayMTU != 9000 || got.Machine.CPUs != 2 {
		t.Errorf("options/machine = %+v %+v", got.Options, got.Machine)
	}
	if !maps.Equal(got.ContainerMTU, map[string]int{PathFerry: 8950, PathKernel: 8950}) {
		t.Errorf("container_mtu = %v, want ferry and kernel 8950", got.ContainerMTU)
	}
	var names []string
	for _, m := range got.Metrics {
		names = append(names, m.Name)
		if m.Ferry.Median != 2 || m.Ferry.Spread != 2 || len(m.Ferry.Samples) != 3 {
			t.Errorf("%s ferry = %+v, want median 2 spread 2 over 3 samples", m.Name, m.Ferry)
		}
		switch {
		case m.Name == MetricUDPTx && m.Ratio != nil:
			t.Errorf("%s has a ratio %s without kernel samples", m.Name, m.Ratio)
		case m.Name != MetricUDPTx && string(m.Ratio) != "0.5":
			t.Errorf("%s ratio = %s, want 0.5", m.Name, m.Ratio)
		}
	}
	want := "tcp_gbps tcp_retransmits tcp_cpu_us_per_mb udp_rx_pps udp_tx_pps latency_p50_us latency_p99_us loaded_latency_p50_us loaded_latency_p99_us"
	if strings.Join(names, " ") != want {
		t.Errorf("metrics = %v, want %s", names, want)
	}
	if len(got.Errors) != 1 {
		t.Errorf("errors = %v, want the one failure", got.Errors)
	}
}

func TestOverlayReportTable(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"UDP payload 64 B, underlay MTU 9000 (2 CPUs, 6.18)\n", "  container MTU: ferry 8950, kernel 8950\n",
		"TCP, one stream", "Gbit/s", "2.00 ±50%", "4.00", "0.50×", "latency p99", "failed: rep 2 ferry tcp: boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestOverlaySVG checks that the chart is well-formed XML with one panel
// per metric and, in each, a ferry and a kernel series.
func TestOverlaySVG(t *testing.T) {
	rep := sampleReport()
	var b bytes.Buffer
	if err := rep.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	panels := svgBars(t, b.Bytes())
	if len(panels) != len(rep.Metrics) {
		t.Fatalf("%d panels, want one per metric (%d)", len(panels), len(rep.Metrics))
	}
	for _, m := range rep.Metrics {
		p := panels[m.Name]
		wantKernelBars := 1
		if m.Name == MetricUDPTx {
			wantKernelBars = 0 // no data: a note, no bar
		}
		if p[PathFerry] != 1 || p[PathKernel] != wantKernelBars {
			t.Errorf("panel %s bars = %v, want ferry 1, kernel %d", m.Name, p, wantKernelBars)
		}
		if _, ok := p[PathKernel]; !ok {
			t.Errorf("panel %s has no kernel series", m.Name)
		}
		if _, ok := p[PathFlannel]; ok {
			t.Errorf("panel %s has a flannel series in a run without flannel", m.Name)
		}
	}
}

// svgBars parses an overlay chart, failing the test unless it is
// well-formed SVG, and returns each panel's (metric's) bars by series.
func svgBars(t *testing.T, svg []byte) map[string]map[string]int {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var root string
	panels := map[string]map[string]int{} // metric id -> series -> bars
	var panel string
	var series []string // stack of open <g> series names ("" for others)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			attr := map[string]string{}
			for _, a := range el.Attr {
				attr[a.Name.Local] = a.Value
			}
			if el.Name.Local == "g" {
				s := ""
				switch {
				case attr["class"] == "metric":
					panel = attr["id"]
					panels[panel] = map[string]int{}
				case strings.HasPrefix(attr["class"], "series "):
					s = strings.TrimPrefix(attr["class"], "series ")
					panels[panel][s] += 0
				}
				series = append(series, s)
			}
			if el.Name.Local == "rect" && len(series) > 0 && series[len(series)-1] != "" {
				panels[panel][series[len(series)-1]]++
			}
		case xml.EndElement:
			if el.Name.Local == "g" {
				series = series[:len(series)-1]
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return panels
}

// flannelReport is sampleReport with flannel's udp backend measured too:
// 8 for every figure, none for UDP offered.
func flannelReport() *OverlayReport {
	r := sampleReport()
	r.FlannelPath = flannelPathDesc
	for i := range r.Metrics {
		m := &r.Metrics[i]
		f := Summarize([]float64{8, 8, 8})
		if m.Name == MetricUDPTx {
			f = Summarize(nil)
		}
		m.Flannel = &f
		m.FlannelRatio = ratioOf(m.Ferry, f)
	}
	return r
}

// TestOverlayReportWithFlannel checks the third path in every output: the
// table's flannel and ferry/flannel columns and its description, the JSON
// fields, and a flannel bar in each chart panel that has data.
func TestOverlayReportWithFlannel(t *testing.T) {
	rep := flannelReport()
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	out := table.String()
	for _, want := range []string{"vs flannel udp", "  flannel: " + flannelPathDesc, "ferry/kernel  ferry/flannel", "8.00", "0.25×"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var got struct {
		FlannelPath string `json:"flannel_path"`
		Metrics     []struct {
			Name         string   `json:"name"`
			Flannel      *Summary `json:"flannel"`
			FlannelRatio *float64 `json:"ferry_per_flannel"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.FlannelPath != flannelPathDesc {
		t.Errorf("flannel_path = %q", got.FlannelPath)
	}
	for _, m := range got.Metrics {
		if m.Flannel == nil {
			t.Errorf("%s: no flannel summary in the JSON", m.Name)
			continue
		}
		switch {
		case m.Name == MetricUDPTx && m.FlannelRatio != nil:
			t.Errorf("%s: ferry_per_flannel %v without flannel samples", m.Name, *m.FlannelRatio)
		case m.Name != MetricUDPTx && (m.FlannelRatio == nil || *m.FlannelRatio != 0.25 || m.Flannel.Median != 8):
			t.Errorf("%s: flannel %+v ratio %v, want median 8 and 0.25", m.Name, m.Flannel, m.FlannelRatio)
		}
	}

	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	for _, m := range rep.Metrics {
		p := svgBars(t, svg.Bytes())[m.Name]
		want := 1
		if m.Name == MetricUDPTx {
			want = 0
		}
		if p[PathFlannel] != want || p[PathFerry] != 1 {
			t.Errorf("panel %s bars = %v, want ferry 1, flannel %d", m.Name, p, want)
		}
	}
}

// TestOverlayReportWithBaseline checks a run with every optional path:
// the table names all four paths, aligned, and has a column and a ratio
// for each; the JSON carries the baseline; each chart panel has four
// bars and ferry's ratio to each other path.
func TestOverlayReportWithFloor(t *testing.T) {
	rep := flannelReport()
	rep.FlannelPath = ""
	rep.FloorPath = floorPathDesc
	for i := range rep.Metrics {
		m := &rep.Metrics[i]
		m.Flannel, m.FlannelRatio, m.FlannelRatioByRep = nil, nil, nil
		f := Summarize([]float64{4, 4})
		m.Floor = &f
		m.FloorRatio = ratioOf(m.Ferry, f)
	}
	checkOptionalPath(t, rep, PathFloor, 3, "ferry/floor 0.50×",
		[]string{
			"vs kernel VXLAN (l2) vs userspace floor",
			"  floor:  " + floorPathDesc + "\n",
			"ferry/kernel  ferry/floor",
			"0.50×", // ferry's median 2 against the floor's 4
		},
		[]string{`"floor_path": "userspace floor: `, `"ferry_per_floor": 0.5`, `"floor": {`})
}

func TestOverlayReportWithBaseline(t *testing.T) {
	rep := flannelReport()
	rep.BaselinePath = "ferry at /tmp/old/ferry (v0.9, go1.26.8)"
	for i := range rep.Metrics {
		m := &rep.Metrics[i]
		b := Summarize([]float64{1, 1})
		m.Baseline = &b
		m.BaselineRatio = ratioOf(m.Ferry, b)
	}
	checkOptionalPath(t, rep, PathBaseline, 4, "ferry/baseline 2.00×",
		[]string{
			"vs flannel udp vs baseline ferry",
			"  baseline: ferry at /tmp/old/ferry (v0.9, go1.26.8)\n",
			"  ferry:    " + rep.FerryPath + "\n",
			"ferry/kernel  ferry/flannel  ferry/baseline",
			"2.00×", // ferry's median 2 against the baseline's 1
		},
		[]string{`"baseline_path": "ferry at /tmp/old/ferry (v0.9, go1.26.8)"`, `"ferry_per_baseline": 2`})
}

// checkOptionalPath renders rep, which measured the optional path, as a
// table, JSON and a chart, and checks that the table and the JSON hold
// the strings given, that every panel of the chart has series bars, one
// of them the path's, and that the chart gives ferry's ratio to it.
func checkOptionalPath(t *testing.T, rep *OverlayReport, path string, series int, chartRatio string, table, json []string) {
	t.Helper()
	var tb bytes.Buffer
	if err := rep.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	for _, want := range table {
		if !strings.Contains(tb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tb.String())
		}
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range json {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	panels := svgBars(t, svg.Bytes())
	for _, m := range rep.Metrics {
		if p := panels[m.Name]; p[path] != 1 || p[PathFerry] != 1 || len(p) != series {
			t.Errorf("panel %s bars = %v, want %d series with one %s bar", m.Name, p, series, path)
		}
	}
	if !strings.Contains(svg.String(), chartRatio) {
		t.Errorf("chart lacks %q", chartRatio)
	}
}

// TestTwoPathJSONHasNoFlannel checks that a run without flannel leaves the
// flannel fields out of the JSON rather than writing nulls.
func TestTwoPathJSONHasNoFlannel(t *testing.T) {
	var js bytes.Buffer
	if err := WriteJSON(&js, sampleReport()); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"flannel`, `"ferry_per_flannel"`, `"baseline`, `"ferry_per_baseline"`, `"floor`, `"ferry_per_floor"`} {
		if strings.Contains(js.String(), key) {
			t.Errorf("JSON of a two-path run has %s:\n%s", key, js.String())
		}
	}
}

func TestWrapTitle(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"latency p50", []string{"latency p50"}},
		{"CPU per MB of TCP (whole machine)", []string{"CPU per MB of TCP (whole", "machine)"}},
		{"TCP retransmissions per run", []string{"TCP retransmissions per", "run"}},
		{"averyveryverylongwordwithoutspaces", []string{"averyveryverylongwordwithoutspaces"}},
		{"averyveryverylongwordwithout spaces", []string{"averyveryverylongwordwithout", "spaces"}},
	} {
		if got := wrapTitle(tc.in, panelTitleChars); !slices.Equal(got, tc.want) {
			t.Errorf("wrapTitle(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPipelineReportTable(t *testing.T) {
	rep := &PipelineReport{
		Options: PipelineOptions{Duration: time.Second, Size: 64, Flows: 64, Reps: 2},
		Scenarios: []ScenarioResult{{
			Name: "port-to-peer", FramesIn: 100, FramesOut: 100, OutPerFrame: 1,
			Mpps: Summarize([]float64{20, 22}), NsPerFrame: Summarize([]float64{45, 50}), AllocsPerFrame: Summarize([]float64{0, 0}),
			Stages: []StageTime{{Stage: "bridge", PacketsPerFrame: 1, NsPerPacket: Summarize([]float64{11, 11})}},
		}},
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"64-byte frames", "port-to-peer  21.00 ±5%", "47.5 ±5%", "bridge", "11.0"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestPercentile(t *testing.T) {
	s := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	cases := []struct {
		name string
		p    float64
		want float64
	}{
		{"p50 of 10 is the 5th", 50, 5},
		{"p99 of 10 is the largest", 99, 10},
		{"p10 is the smallest", 10, 1},
		{"p100", 100, 10},
		{"tiny p still takes the first", 0.001, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(s, tc.p); got != tc.want {
				t.Fatalf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
	if Percentile(nil, 50) != 0 {
		t.Error("Percentile of nothing is not 0")
	}
}

func TestParseIperf(t *testing.T) {
	const ran = `{"start":{"test_start":{"num_streams":2}},"end":{"sum_sent":{"bits_per_second":2e9%s},"sum_received":{"bytes":1.875e9,"bits_per_second":1.5e9}%s}}`
	cases := []struct {
		name    string
		in      string
		want    map[string]float64
		wantErr string // "" for success
	}{
		{"receiver rate and retransmissions", fmt.Sprintf(ran, `,"retransmits":17`, `,"sender_tcp_congestion":"cubic"`),
			map[string]float64{MetricTCP: 1.5, MetricTCPRetrans: 17}, ""},
		{"no retransmissions", fmt.Sprintf(ran, `,"retransmits":0`, ""), map[string]float64{MetricTCP: 1.5, MetricTCPRetrans: 0}, ""},
		{"an iperf3 that reports neither retransmissions nor congestion control", fmt.Sprintf(ran, "", ""),
			map[string]float64{MetricTCP: 1.5}, ""},
		{"other congestion control", fmt.Sprintf(ran, "", `,"sender_tcp_congestion":"bbr"`), nil, `iperf3's sender used congestion control "bbr", asked for "cubic"`},
		{"other number of streams", strings.Replace(fmt.Sprintf(ran, "", ""), `"num_streams":2`, `"num_streams":1`, 1), nil, "iperf3 ran 1 streams, asked for 2"},
		{"iperf error", `{"error":"unable to connect to server"}`, nil, "iperf3: unable to connect to server"},
		{"no result", `{"end":{}}`, nil, "iperf3 reported no received bytes"},
		{"not JSON", `iperf3: error`, nil, "iperf3 -J output is not JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, received, err := parseIperf([]byte(tc.in), 2, "cubic")
			if !maps.Equal(got, tc.want) || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.wantErr)) {
				t.Fatalf("parseIperf = %v, %v; want %v, error %q", got, err, tc.want, tc.wantErr)
			}
			if err == nil && received != 1.875e9 {
				t.Errorf("received %v bytes, want 1.875e9", received)
			}
		})
	}
}

func TestOverlayOptionsValidate(t *testing.T) {
	ok := OverlayOptions{FerryBin: "/bin/ferry", Duration: time.Second, Reps: 1, Size: 64}
	cases := []struct {
		name   string
		mutate func(*OverlayOptions)
		valid  bool
	}{
		{"defaults", func(*OverlayOptions) {}, true},
		{"no binary", func(o *OverlayOptions) { o.FerryBin = "" }, false},
		{"sub-second duration", func(o *OverlayOptions) { o.Duration = 500 * time.Millisecond }, false},
		{"no reps", func(o *OverlayOptions) { o.Reps = 0 }, false},
		{"payload too small for the probe", func(o *OverlayOptions) { o.Size = MinOverlaySize - 1 }, false},
		{"payload over the overlay MTU", func(o *OverlayOptions) { o.Size = 1423 }, false},
		{"largest payload", func(o *OverlayOptions) { o.Size = 1422 }, true},
		{"underlay MTU below IPv6's minimum", func(o *OverlayOptions) { o.UnderlayMTU = 1279 }, false},
		{"underlay MTU over jumbo frames", func(o *OverlayOptions) { o.UnderlayMTU = 9001 }, false},
		{"jumbo frames", func(o *OverlayOptions) { o.UnderlayMTU = 9000 }, true},
		{"largest payload on jumbo frames", func(o *OverlayOptions) { o.UnderlayMTU, o.Size = 9000, 8922 }, true},
		{"payload over the overlay MTU of jumbo frames", func(o *OverlayOptions) { o.UnderlayMTU, o.Size = 9000, 8923 }, false},
		{"payload over the overlay MTU of a small underlay", func(o *OverlayOptions) { o.UnderlayMTU, o.Size = 1280, 1203 }, false},
		{"negative workers", func(o *OverlayOptions) { o.Workers = -1 }, false},
		{"more workers than ferry runs", func(o *OverlayOptions) { o.Workers = 65 }, false},
		{"most workers", func(o *OverlayOptions) { o.Workers = 64 }, true},
		{"negative flows", func(o *OverlayOptions) { o.Flows = -1 }, false},
		{"too many flows", func(o *OverlayOptions) { o.Flows = MaxFlows + 1 }, false},
		{"most flows", func(o *OverlayOptions) { o.Flows = MaxFlows }, true},
		{"some workloads, any order", func(o *OverlayOptions) { o.Workloads = []string{"latency", "tcp"} }, true},
		{"an unknown workload", func(o *OverlayOptions) { o.Workloads = []string{"tcp", "rr"} }, false},
		{"a workload twice", func(o *OverlayOptions) { o.Workloads = []string{"tcp", "tcp"} }, false},
		{"IPv6 containers", func(o *OverlayOptions) { o.IPv6 = true }, true},
		{"IPv6 containers on ferry's l3 path", func(o *OverlayOptions) { o.IPv6, o.Mode, o.Encap = true, ModeL3, EncapUDP }, false},
		{"IPv6 containers beside flannel", func(o *OverlayOptions) { o.IPv6, o.Flanneld = true, "/bin/flanneld" }, false},
		{"largest payload over IPv6", func(o *OverlayOptions) { o.IPv6, o.Size = true, 1402 }, true},
		{"payload over the overlay MTU over IPv6", func(o *OverlayOptions) { o.IPv6, o.Size = true, 1403 }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mutate(&o)
			if err := o.Validate(); (err == nil) != tc.valid {
				t.Fatalf("Validate(%+v) = %v, want valid=%v", o, err, tc.valid)
			}
		})
	}
}

// TestOverlayOptionsErrorsNameTheOption checks that a refused option is
// named first in the error, as its command-line flag spells it, with the
// range it must be in.
func TestOverlayOptionsErrorsNameTheOption(t *testing.T) {
	ok := OverlayOptions{FerryBin: "/bin/ferry", Duration: time.Second, Reps: 1, Size: 64}
	cases := []struct {
		mutate func(*OverlayOptions)
		want   string
	}{
		{func(o *OverlayOptions) { o.UnderlayMTU = 9001 }, "underlay-mtu 9001: must be 1280..9000"},
		{func(o *OverlayOptions) { o.Size = 1423 }, "size 1423: must be 8..1422 bytes of UDP payload on a 1500-byte underlay"},
		{func(o *OverlayOptions) { o.UnderlayMTU, o.Size = 9000, 8923 }, "size 8923: must be 8..8922 bytes of UDP payload on a 9000-byte underlay"},
		{func(o *OverlayOptions) { o.Workloads = []string{"rr"} }, `workloads: "rr" is not a workload: want tcp, udp-rate, latency, loaded-latency`},
		{func(o *OverlayOptions) { o.Streams = 17 }, "streams 17: must be 1..16"},
		{func(o *OverlayOptions) { o.IPv6, o.Size = true, 1403 }, "size 1403: must be 8..1402 bytes of UDP payload over IPv6 on a 1500-byte underlay"},
		{func(o *OverlayOptions) { o.IPv6, o.Mode = true, ModeL3 }, "ipv6: ferry's l3 networks route IPv4 only: use it with mode l2"},
	}
	for _, tc := range cases {
		o := ok
		tc.mutate(&o)
		if err := o.Validate(); err == nil || err.Error() != tc.want {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
	}
}

func TestMissingToolNamesTheInstallCommand(t *testing.T) {
	err := error(&MissingTool{Tool: "iperf3", Install: "apt-get install -y iperf3"})
	if got := err.Error(); got != "iperf3 is not installed; install it with: apt-get install -y iperf3" {
		t.Fatalf("message = %q", got)
	}
}

func TestParseProcStat(t *testing.T) {
	const stat = "cpu  100 5 50 1000 20 3 7 11 9 0\ncpu0 50 2 25 500 10 1 3 5 4 0\nintr 1 2 3\n"
	c, err := parseProcStat([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(100 + 5 + 50 + 3 + 7); c.busy != want {
		t.Errorf("busy = %d, want %d (user+nice+system+irq+softirq; not idle, iowait, steal or guest)", c.busy, want)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) accepted", bad)
		}
	}
}

func TestCPUClockMovesWithWork(t *testing.T) {
	c, err := startCPUClock()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) { // 0.3 s of one CPU's work
		x++
	}
	busy, err := c.busySince()
	if err != nil {
		t.Fatal(err)
	}
	if busy < 100*time.Millisecond {
		t.Errorf("the machine was busy %v during 300ms of spinning (%d loops)", busy, x)
	}
}

// repFigures returns figures for repetitions 0, 1, … from vals; a NaN
// leaves that repetition without a figure, as a failed workload does.
func repFigures(vals ...float64) figures {
	f := figures{}
	for i, v := range vals {
		if !math.IsNaN(v) {
			f[i] = v
		}
	}
	return f
}

// TestOverlayMetricsPairsRepetitions checks the ratios repetition by
// repetition: each pairs the figures of one repetition, a repetition
// missing on either side (a failed workload) or with a zero divisor
// pairs nothing, and the table shows the range and names the figures
// where the repetitions disagree on which path is ahead.
// TestWorkloadsCoverTheMetrics checks that each figure of the report is
// measured by exactly one workload, so --workloads leaves out exactly the
// figures of the workloads not run.
func TestWorkloadsCoverTheMetrics(t *testing.T) {
	seen := map[string]string{}
	for _, w := range workloads {
		for _, m := range w.metrics {
			if other, ok := seen[m]; ok {
				t.Errorf("metric %s measured by %s and %s", m, other, w.name)
			}
			seen[m] = w.name
		}
	}
	for _, d := range metricDefs {
		if seen[d.Name] == "" {
			t.Errorf("metric %s: no workload measures it", d.Name)
		}
		delete(seen, d.Name)
	}
	for m, w := range seen {
		t.Errorf("workload %s lists %s, which the report does not have", w, m)
	}
}

// TestOverlayMetricsOfSomeWorkloads checks that a run of some workloads
// reports their figures only, and its table says so.
func TestOverlayMetricsOfSomeWorkloads(t *testing.T) {
	opts := OverlayOptions{Duration: time.Second, Reps: 1, Size: 64, Workers: 2, Flows: 4, Streams: 1, TCPCC: "bbr", Workloads: []string{"latency"}}
	figs := map[string]map[string]figures{PathFerry: {}, PathKernel: {}}
	for _, m := range []string{MetricLatP50, MetricLatP99} {
		figs[PathFerry][m] = repFigures(80)
		figs[PathKernel][m] = repFigures(40)
	}
	rep := &OverlayReport{Options: opts, Metrics: overlayMetrics(opts, figs)}
	var names []string
	for _, m := range rep.Metrics {
		names = append(names, m.Name)
		if m.Ratio == nil || *m.Ratio != 2 {
			t.Errorf("%s: ratio %v, want 2", m.Name, m.Ratio)
		}
	}
	if want := []string{MetricLatP50, MetricLatP99}; !slices.Equal(names, want) {
		t.Fatalf("metrics %v, want %v", names, want)
	}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "workloads: latency only") || strings.Contains(out, "TCP") || strings.Contains(out, "UDP delivered") {
		t.Errorf("table of a latency-only run:\n%s", out)
	}
	opts.Workloads = WorkloadNames()
	all := &OverlayReport{Options: opts, Metrics: overlayMetrics(opts, figs)}
	b.Reset()
	if err := all.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if len(all.Metrics) != len(metricDefs) || strings.Contains(b.String(), "workloads:") {
		t.Errorf("a run of every workload: %d metrics (want %d), table:\n%s", len(all.Metrics), len(metricDefs), b.String())
	}
}

func TestOverlayMetricsPairsRepetitions(t *testing.T) {
	nan := math.NaN()
	opts := OverlayOptions{Duration: 5 * time.Second, Reps: 3, Size: 64, Workers: 2, Flows: 4, Streams: 1, TCPCC: "bbr", Baseline: "/old/ferry"}
	figs := map[string]map[string]figures{PathFerry: {}, PathKernel: {}, PathBaseline: {}}
	for _, d := range metricDefs {
		figs[PathFerry][d.Name] = repFigures(5, 6, 4)
		figs[PathKernel][d.Name] = repFigures(10, 10, 12)
		figs[PathBaseline][d.Name] = repFigures(5, 6, 4) // agrees: ratio 1 in every repetition
	}
	figs[PathBaseline][MetricTCP] = repFigures(5.5, nan, 3.5)
	figs[PathKernel][MetricLatP50] = repFigures(10, 0, 8)
	ms := overlayMetrics(opts, figs)
	byName := map[string]Metric{}
	for _, m := range ms {
		byName[m.Name] = m
	}
	near := func(a, b []float64) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if math.Abs(a[i]-b[i]) > 1e-9 {
				return false
			}
		}
		return true
	}
	tcp := byName[MetricTCP]
	if tcp.Ratio == nil || *tcp.Ratio != 0.5 {
		t.Errorf("TCP ratio of medians %v, want 0.5 (5 / 10)", tcp.Ratio)
	}
	if tcp.RatioByRep == nil || !near(tcp.RatioByRep.Samples, []float64{0.5, 0.6, 4.0 / 12}) {
		t.Errorf("TCP ratios by repetition %+v, want 0.5, 0.6, 0.333", tcp.RatioByRep)
	}
	if tcp.BaselineRatio == nil || math.Abs(*tcp.BaselineRatio-5.0/4.5) > 1e-9 {
		t.Errorf("TCP ferry/baseline %v, want 5 / 4.5", tcp.BaselineRatio)
	}
	if tcp.BaselineRatioByRep == nil || !near(tcp.BaselineRatioByRep.Samples, []float64{5 / 5.5, 4 / 3.5}) {
		t.Errorf("TCP ferry/baseline by repetition %+v, want 0.909 and 1.143 (repetition 2 failed)", tcp.BaselineRatioByRep)
	}
	if p50 := byName[MetricLatP50]; p50.RatioByRep == nil || !near(p50.RatioByRep.Samples, []float64{0.5, 0.5}) {
		t.Errorf("p50 ratios by repetition %+v, want 0.5 and 0.5 (the kernel's 0 pairs nothing)", p50.RatioByRep)
	}

	rep := &OverlayReport{Options: opts, Machine: Machine{CPUs: 2, Kernel: "6.18"}, FerryPath: "f", KernelPath: "k", BaselinePath: "ferry at /old/ferry", Metrics: ms}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	out := table.String()
	for _, want := range []string{
		"0.50× (0.33–0.60)",
		"1.11× (0.91–1.14)",
		"in parentheses the smallest and largest of the repetitions' own ratios",
		"ferry/baseline: the repetitions disagree on which path is ahead in TCP, one stream (bbr); this run does not resolve that difference\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ferry/kernel: the repetitions disagree") {
		t.Errorf("table says ferry/kernel is undecided, but every repetition has ferry behind:\n%s", out)
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Metrics []struct {
			Name       string   `json:"name"`
			ByRep      *Summary `json:"ratio_by_rep"`
			BaseByRep  *Summary `json:"ferry_per_baseline_by_rep"`
			FlannelRep *Summary `json:"ferry_per_flannel_by_rep"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, m := range got.Metrics {
		if m.ByRep == nil || m.BaseByRep == nil || m.FlannelRep != nil {
			t.Errorf("%s: JSON ratio_by_rep %v, ferry_per_baseline_by_rep %v, ferry_per_flannel_by_rep %v; want the first two only", m.Name, m.ByRep, m.BaseByRep, m.FlannelRep)
		}
	}

	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	svgBars(t, svg.Bytes()) // well-formed
	if !strings.Contains(svg.String(), `ferry/kernel 0.50× <tspan font-weight="normal" font-size="10">(0.33–0.60)</tspan>`) {
		t.Errorf("chart lacks the TCP ratio with its range:\n%s", svg.String())
	}

	// One repetition: nothing to range over, and nothing said about it.
	one := map[string]map[string]figures{PathFerry: {}, PathKernel: {}}
	for _, d := range metricDefs {
		one[PathFerry][d.Name], one[PathKernel][d.Name] = repFigures(5), repFigures(10)
	}
	opts.Reps, opts.Baseline = 1, ""
	rep = &OverlayReport{Options: opts, Metrics: overlayMetrics(opts, one)}
	table.Reset()
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if out := table.String(); strings.Contains(out, "× (") || strings.Contains(out, "ratios:") {
		t.Errorf("a one-repetition table shows ranges of ratios:\n%s", out)
	}
}

// TestThisMachineLoad checks the load average against /proc/loadavg read
// just before and after, and when a load counts as busy.
func TestThisMachineLoad(t *testing.T) {
	read := func() float64 {
		b, err := os.ReadFile("/proc/loadavg")
		if err != nil {
			t.Skip(err)
		}
		v, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := read()
	m := thisMachine()
	after := read()
	if m.Load < min(before, after) || m.Load > max(before, after) {
		t.Errorf("load average %v, /proc/loadavg says %v then %v", m.Load, before, after)
	}
	for _, tc := range []struct {
		m    Machine
		busy bool
	}{{Machine{CPUs: 2, Load: 3.1}, true}, {Machine{CPUs: 2, Load: 2}, false}, {Machine{CPUs: 2, Load: 0.4}, false}, {Machine{Load: 5}, false}} {
		if got := tc.m.Busy(); got != tc.busy {
			t.Errorf("%+v busy = %v, want %v", tc.m, got, tc.busy)
		}
	}
}

// TestOverlayTableNamesTheRun checks the lines that say which build ran
// and on what machine: the binary and version, the start and the load,
// and a warning when the machine was busy.
func TestOverlayTableNamesTheRun(t *testing.T) {
	r := sampleReport()
	r.FerryBinary = "ferry at /x/ferry (d5fb60e, go1.26.8 linux/amd64)"
	r.Started = time.Date(2026, 11, 23, 6, 20, 1, 0, time.UTC)
	r.Machine.Load = 0.52
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  ferry's path run by ferry at /x/ferry (d5fb60e, go1.26.8 linux/amd64)\n",
		"  started 2026-11-23 06:20:01 UTC, load average 0.52 on 2 CPUs\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "busy") {
		t.Errorf("a quiet machine called busy:\n%s", b.String())
	}
	r.Machine.Load = 3.5
	b.Reset()
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if want := "the machine was busy when the run started (load average 3.50 on 2 CPUs)"; !strings.Contains(b.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, b.String())
	}
}
