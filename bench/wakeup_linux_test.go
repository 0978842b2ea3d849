package bench

import (
	"testing"
	"time"
)

func TestMeasureWakeup(t *testing.T) {
	w, err := MeasureWakeup(50, 50*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	if w.Samples != 50 {
		t.Fatalf("samples = %d, want 50", w.Samples)
	}
	// A wake-up is a positive time, and the 99th percentile of the same
	// samples is at least the median.
	if w.P50Us <= 0 || w.P99Us < w.P50Us {
		t.Fatalf("p50 %v µs, p99 %v µs: want 0 < p50 <= p99", w.P50Us, w.P99Us)
	}
	if _, err := MeasureWakeup(0, 0); err == nil {
		t.Fatal("MeasureWakeup(0) returned no error")
	}
}
