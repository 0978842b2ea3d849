// Package bench holds the scenarios of `ferry bench`: measurements of a
// dataplane that a reader can rerun and compare.
//
//   - [Pipeline] pushes synthetic frames through ferry's real pipeline stages
//     (ethernet-input, bridge, VXLAN encap and decap, port and tunnel tx) on
//     in-memory ports, with no syscalls, on one core, and reports Mpps, ns per
//     frame overall and per stage, and allocations per frame.
//   - [Overlay] builds two simulated hosts with one container each in network
//     namespaces of its own, and runs the same workloads (one TCP stream, a
//     small-packet UDP rate, request/response latency) over ferry's path and
//     over the kernel's Docker-style VXLAN path (and, given a flanneld,
//     over flannel's udp backend), the paths taking turns at going first,
//     and reports each with ferry's ratio to it.
//
// Every figure is repeated and reported as a [Summary]: the median of the
// repetitions and their spread, so one noisy run does not make the number.
package bench

import (
	"fmt"
	"math"
	"slices"
)

// Summary is one figure measured over several repetitions.
type Summary struct {
	// Median is the median of Samples (the mean of the two middle ones
	// for an even count); it is the figure to quote.
	Median float64 `json:"median"`
	// Min and Max are the smallest and largest sample.
	Min float64 `json:"min"`
	Max float64 `json:"max"`
	// Spread is Max - Min, in the figure's unit.
	Spread float64 `json:"spread"`
	// Samples are the repetitions' values, in the order measured.
	Samples []float64 `json:"samples"`
}

// Summarize returns the summary of samples; it does not modify or retain
// the slice. With no samples every field is zero and Samples is empty.
func Summarize(samples []float64) Summary {
	s := Summary{Samples: slices.Clone(samples)}
	if len(samples) == 0 {
		s.Samples = []float64{}
		return s
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	n := len(sorted)
	if n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	s.Min, s.Max = sorted[0], sorted[n-1]
	s.Spread = s.Max - s.Min
	return s
}

// RelSpread returns half the spread as a fraction of the median (0.05 for
// "±5 %"), or 0 when the median is 0.
func (s Summary) RelSpread() float64 {
	if s.Median == 0 {
		return 0
	}
	return s.Spread / 2 / math.Abs(s.Median)
}

// Format prints the median with prec decimals and the relative spread, as
// "12.34 ±3%"; a single sample, or samples that agree, print without the
// spread, and a zero median with the largest sample.
func (s Summary) Format(prec int) string {
	if len(s.Samples) == 0 {
		return "-"
	}
	v := fmt.Sprintf("%.*f", prec, s.Median)
	if len(s.Samples) < 2 || s.Spread == 0 {
		return v
	}
	if s.Median == 0 {
		// A relative spread of a zero median means nothing: show the
		// largest sample instead ("0.00 (max 3e-08)").
		return fmt.Sprintf("%s (max %.2g)", v, s.Max)
	}
	return fmt.Sprintf("%s ±%.0f%%", v, 100*s.RelSpread())
}

// Ratio returns a/b, or NaN when b is 0 (no comparison possible).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}
