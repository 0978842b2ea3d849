package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteTable prints the pipeline report as a table per scenario: the whole
// path, then each stage.
func (r *PipelineReport) WriteTable(w io.Writer) error {
	o := r.Options
	run := fmt.Sprintf("%v", o.Duration)
	if o.Frames > 0 {
		run = fmt.Sprintf("%d frames", o.Frames)
	}
	fmt.Fprintf(w, "ferry bench pipeline: %d-byte frames, %d flows, %s × %d reps, one worker on one core (%d CPUs, %s, %s)\n",
		o.Size, o.Flows, run, o.Reps, r.Machine.CPUs, r.Machine.Kernel, r.Machine.Go)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nscenario\tMpps\tns/frame\tallocs/frame\tframes in\tframes out\tdrops")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", s.Name, s.Mpps.Format(2), s.NsPerFrame.Format(1),
			s.AllocsPerFrame.Format(2), s.FramesIn, s.FramesOut, s.Drops)
	}
	fmt.Fprintln(tw, "\nscenario\tstage\tpackets/frame\tns/packet")
	for _, s := range r.Scenarios {
		for _, st := range s.Stages {
			fmt.Fprintf(tw, "%s\t%s\t%.2f\t%s\n", s.Name, st.Stage, st.PacketsPerFrame, st.NsPerPacket.Format(1))
		}
	}
	return tw.Flush()
}

// precision returns the decimals to print a metric's values with.
func (m Metric) precision() int {
	switch m.Unit {
	case "Gbit/s":
		return 2
	case "segments":
		return 0
	}
	return 1
}

// RatioString prints the ferry/kernel ratio as "0.52×", or "-".
func (m Metric) RatioString() string { return ratioString(m.Ratio) }

func ratioString(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f×", *r)
}

// repRange prints the smallest and largest of the ratios repetition by
// repetition as "(0.48–0.55)", or "" when fewer than two repetitions
// have both figures or they agree to two decimals.
func repRange(byRep *Summary) string {
	if byRep == nil || len(byRep.Samples) < 2 {
		return ""
	}
	lo, hi := fmt.Sprintf("%.2f", byRep.Min), fmt.Sprintf("%.2f", byRep.Max)
	if lo == hi {
		return ""
	}
	return "(" + lo + "–" + hi + ")"
}

// ratioCell prints a ratio with its range over the repetitions,
// "0.52× (0.48–0.55)", and reports whether it has the range.
func ratioCell(r *float64, byRep *Summary) (string, bool) {
	s := ratioString(r)
	if rr := repRange(byRep); r != nil && rr != "" {
		return s + " " + rr, true
	}
	return s, false
}

// unresolved reports whether the repetitions disagree on which path is
// ahead: some ratios below 1 and some above.
func unresolved(byRep *Summary) bool {
	return byRep != nil && byRep.Min < 1 && byRep.Max > 1
}

// optionalPath is a path a run measures only when asked (flannel's udp
// backend, a baseline ferry, the userspace floor): its name, chart colour and description, and
// where a Metric keeps its figures.
type optionalPath struct {
	name, colour, desc string
	sum                func(Metric) *Summary
	ratio              func(Metric) *float64
	byRep              func(Metric) *Summary
}

// optionalPaths returns the optional paths r measured, in column order.
func (r *OverlayReport) optionalPaths() []optionalPath {
	var ps []optionalPath
	if r.FlannelPath != "" {
		ps = append(ps, optionalPath{PathFlannel, colourFlannel, r.FlannelPath,
			func(m Metric) *Summary { return m.Flannel }, func(m Metric) *float64 { return m.FlannelRatio },
			func(m Metric) *Summary { return m.FlannelRatioByRep }})
	}
	if r.BaselinePath != "" {
		ps = append(ps, optionalPath{PathBaseline, colourBaseline, r.BaselinePath,
			func(m Metric) *Summary { return m.Baseline }, func(m Metric) *float64 { return m.BaselineRatio },
			func(m Metric) *Summary { return m.BaselineRatioByRep }})
	}
	if r.FloorPath != "" {
		ps = append(ps, optionalPath{PathFloor, colourFloor, r.FloorPath,
			func(m Metric) *Summary { return m.Floor }, func(m Metric) *float64 { return m.FloorRatio },
			func(m Metric) *Summary { return m.FloorRatioByRep }})
	}
	return ps
}

// WriteTable prints the overlay report: what each path is, then one row
// per metric with each path's median and spread and ferry's ratio to
// each of the others (of the medians, with the range of the ratios
// repetition by repetition), then which ratios the repetitions leave
// undecided.
func (r *OverlayReport) WriteTable(w io.Writer) error {
	o := r.Options
	fmt.Fprintf(w, "ferry bench overlay: %s, %v per workload × %d reps, UDP payload %d B, underlay MTU %d (%d CPUs, %s)\n",
		r.comparison(), o.Duration, o.Reps, o.Size, o.UnderlayMTU, r.Machine.CPUs, r.Machine.Kernel)
	if len(o.Workloads) > 0 && len(o.Workloads) < len(workloads) {
		fmt.Fprintf(w, "  workloads: %s only\n", strings.Join(o.Workloads, ", "))
	}
	extra := r.optionalPaths()
	names := []string{PathFerry, PathKernel}
	descs := []string{r.FerryPath, r.KernelPath}
	for _, p := range extra {
		names, descs = append(names, p.name), append(descs, p.desc)
	}
	width := 0
	for _, n := range names {
		width = max(width, len(n)+1)
	}
	for i, n := range names {
		fmt.Fprintf(w, "  %-*s %s\n", width, n+":", descs[i])
	}
	if len(r.ContainerMTU) > 0 {
		var mtus []string
		for _, n := range names {
			if m, ok := r.ContainerMTU[n]; ok {
				mtus = append(mtus, fmt.Sprintf("%s %d", n, m))
			}
		}
		fmt.Fprintf(w, "  container MTU: %s\n", strings.Join(mtus, ", "))
	}
	if r.FerryBinary != "" {
		fmt.Fprintf(w, "  ferry's path run by %s\n", r.FerryBinary)
	}
	if !r.Started.IsZero() {
		fmt.Fprintf(w, "  started %s, load average %.2f on %d CPUs\n", r.Started.Format("2006-01-02 15:04:05 MST"), r.Machine.Load, r.Machine.CPUs)
	}
	if r.Machine.Busy() {
		fmt.Fprintf(w, "  the machine was busy when the run started (load average %.2f on %d CPUs): expect noisier figures than on a quiet machine\n", r.Machine.Load, r.Machine.CPUs)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"metric", "unit"}
	head = append(head, names...)
	for _, n := range names[1:] {
		head = append(head, "ferry/"+n)
	}
	fmt.Fprintln(tw, "\n"+strings.Join(head, "\t"))
	ranges := false // a ratio cell shows the repetitions' range
	for _, m := range r.Metrics {
		p := m.precision()
		row := []string{m.Title, m.Unit, m.Ferry.Format(p), m.Kernel.Format(p)}
		var ratios []string
		cell := func(r *float64, byRep *Summary) {
			c, withRange := ratioCell(r, byRep)
			ratios, ranges = append(ratios, c), ranges || withRange
		}
		cell(m.Ratio, m.RatioByRep)
		for _, x := range extra {
			v := "-"
			if sum := x.sum(m); sum != nil {
				v = sum.Format(p)
			}
			row = append(row, v)
			cell(x.ratio(m), x.byRep(m))
		}
		fmt.Fprintln(tw, strings.Join(append(row, ratios...), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if ranges {
		fmt.Fprintln(w, "\nratios: of the medians; in parentheses the smallest and largest of the repetitions' own ratios")
	}
	comparisons := []optionalPath{{name: PathKernel, byRep: func(m Metric) *Summary { return m.RatioByRep }}}
	for _, c := range append(comparisons, extra...) {
		var undecided []string
		for _, m := range r.Metrics {
			if unresolved(c.byRep(m)) {
				undecided = append(undecided, m.Title)
			}
		}
		if len(undecided) > 0 {
			fmt.Fprintf(w, "ferry/%s: the repetitions disagree on which path is ahead in %s; this run does not resolve %s\n",
				c.name, strings.Join(undecided, ", "), plural(len(undecided), "that difference", "those differences"))
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintln(w, "failed:", e)
	}
	return nil
}

// comparison names the paths in a few words: "ferry l3/gre (2 workers,
// offloads on) vs kernel VXLAN (l2)", and " vs flannel udp", " vs baseline
// ferry" when measured.
func (r *OverlayReport) comparison() string {
	o := r.Options
	off := "on"
	if !o.offload() {
		off = "off"
	}
	pinned := ""
	if len(o.CPUs) > 0 {
		pinned = " pinned to CPUs " + strings.Trim(strings.Join(strings.Fields(fmt.Sprint(o.CPUs)), ","), "[]")
	}
	s := fmt.Sprintf("ferry %s/%s (%d %s%s, offloads %s) vs kernel VXLAN (l2)", o.Mode, o.Encap, o.Workers, plural(o.Workers, "worker", "workers"), pinned, off)
	if r.FlannelPath != "" {
		s += " vs flannel udp"
	}
	if r.BaselinePath != "" {
		s += " vs baseline ferry"
	}
	if r.FloorPath != "" {
		s += " vs userspace floor"
	}
	if o.IPv6 {
		s += ", containers over IPv6"
	}
	return s
}

// Colours of the chart's series.
const (
	colourFerry    = "#1f77b4"
	colourKernel   = "#ff7f0e"
	colourFlannel  = "#2ca02c"
	colourBaseline = "#9467bd"
	colourFloor    = "#7f7f7f"
)

// series is one path's bar in a panel of the chart.
type series struct {
	name, colour string
	sum          Summary
}

// series returns the bars of m's panel: ferry, the kernel, and each
// optional path r measured.
func (r *OverlayReport) series(m Metric) []series {
	s := []series{{PathFerry, colourFerry, m.Ferry}, {PathKernel, colourKernel, m.Kernel}}
	for _, p := range r.optionalPaths() {
		sum := Summary{Samples: []float64{}}
		if x := p.sum(m); x != nil {
			sum = *x
		}
		s = append(s, series{p.name, p.colour, sum})
	}
	return s
}

// WriteSVG draws the overlay report as a bar chart: one panel per metric,
// each with its own scale, a bar per path at its median, a whisker from
// the smallest to the largest repetition, and the values and the ratio
// written out. It is plain SVG 1.1 that any browser shows.
func (r *OverlayReport) WriteSVG(w io.Writer) error {
	const (
		panelH      = 314
		top, bottom = 94, 70 // room for titles and labels
		plotH       = panelH - top - bottom
	)
	// A bar per path, centred: two 50 wide 20 apart in a 230-wide panel
	// (its captions, "ferry/kernel 20.96× (17.38–31.24)", need the
	// room), more 36 wide 12 apart, the panel 48 wider for each beyond
	// three.
	paths := 2 + len(r.optionalPaths())
	panelW, barW, gap := 230, 50, 20
	if paths > 2 {
		panelW, barW, gap = 230+48*max(0, paths-3), 36, 12
	}
	width := max(len(r.Metrics), 1)*panelW + 40
	height := panelH + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">
<rect width="100%%" height="100%%" fill="white"/>
<text x="20" y="24" font-size="16" font-weight="bold">%s</text>
<text x="20" y="44" fill="#555">%s per workload × %d reps, UDP payload %d B, underlay MTU %d, %d CPUs, Linux %s; bars: median, whiskers: min–max</text>
`, width, height, width, height, esc(r.comparison()), esc(r.Options.Duration.String()), r.Options.Reps, r.Options.Size, r.Options.UnderlayMTU, r.Machine.CPUs, esc(r.Machine.Kernel))
	legend := r.series(Metric{})
	for k, s := range legend {
		x := width - 80*(len(legend)-k) - 10
		fmt.Fprintf(&b, `<rect x="%d" y="14" width="12" height="12" fill="%s"/><text x="%d" y="25">%s</text>
`, x, s.colour, x+16, s.name)
	}
	for i, m := range r.Metrics {
		x0 := 20 + i*panelW
		base := 20 + top + plotH
		bars := r.series(m)
		scale := 0.0
		for _, s := range bars {
			scale = math.Max(scale, s.sum.Max)
		}
		if scale <= 0 {
			scale = 1
		}
		left := x0 + (panelW-len(bars)*barW-(len(bars)-1)*gap)/2
		y := func(v float64) float64 { return float64(base) - v/scale*plotH }
		fmt.Fprintf(&b, `<g class="metric" id="%s">
`, esc(m.Name))
		title := wrapTitle(m.Title, panelTitleChars)
		for k, line := range title {
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-weight="bold">%s</text>
`, x0+panelW/2, 20+top-34-14*(len(title)-1-k), esc(line))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#555">%s%s</text>
<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>
`, x0+panelW/2, 20+top-18, esc(m.Unit), betterNote(m), x0+20, base, x0+panelW-20, base)
		for j, s := range bars {
			bx := left + j*(barW+gap)
			cx := bx + barW/2
			fmt.Fprintf(&b, `<g class="series %s">`, s.name)
			if len(s.sum.Samples) == 0 {
				fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#900">no data</text>`, cx, base-6)
			} else {
				fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s: %s %s</title></rect>`,
					bx, y(s.sum.Median), barW, float64(base)-y(s.sum.Median), s.colour, s.name, s.sum.Format(m.precision()), esc(m.Unit))
				if s.sum.Spread > 0 {
					fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/><line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/><line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/>`,
						cx, y(s.sum.Min), cx, y(s.sum.Max), cx-6, y(s.sum.Min), cx+6, y(s.sum.Min), cx-6, y(s.sum.Max), cx+6, y(s.sum.Max))
				}
				fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="middle">%.*f</text>`, cx, y(s.sum.Max)-5, m.precision(), s.sum.Median)
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text></g>
`, cx, base+16, s.name)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-weight="bold">ferry/kernel %s%s</text>
`, x0+panelW/2, base+40, esc(m.RatioString()), svgRange(m.Ratio, m.RatioByRep))
		for k, p := range r.optionalPaths() {
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-weight="bold">ferry/%s %s%s</text>
`, x0+panelW/2, base+56+16*k, p.name, esc(ratioString(p.ratio(m))), svgRange(p.ratio(m), p.byRep(m)))
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// svgRange is the range of the ratios repetition by repetition in a
// smaller, normal-weight span after a ratio, or "".
func svgRange(r *float64, byRep *Summary) string {
	rr := repRange(byRep)
	if r == nil || rr == "" {
		return ""
	}
	return ` <tspan font-weight="normal" font-size="10">` + esc(rr) + `</tspan>`
}

// panelTitleChars is about what one line of a panel's bold title holds.
const panelTitleChars = 24

// wrapTitle breaks title into two lines at the last space that leaves the
// first at most n characters (at the first space if none does), or
// returns it whole when it fits.
func wrapTitle(title string, n int) []string {
	if len([]rune(title)) <= n {
		return []string{title}
	}
	cut := -1
	for i, r := range title {
		if r == ' ' && (cut < 0 || len([]rune(title[:i])) <= n) {
			cut = i
		}
	}
	if cut < 0 {
		return []string{title}
	}
	return []string{title[:cut], title[cut+1:]}
}

func betterNote(m Metric) string {
	if m.HigherIsBetter {
		return ", higher is better"
	}
	return ", lower is better"
}

func esc(s string) string { return html.EscapeString(s) }
