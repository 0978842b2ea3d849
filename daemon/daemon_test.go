package daemon

import (
	"slices"
	"testing"
)

func TestCPUList(t *testing.T) {
	for _, tc := range []struct {
		cpus []int
		want string
	}{
		{nil, ""},
		{[]int{0}, "0"},
		{[]int{0, 1}, "0-1"},
		{[]int{0, 1, 2, 3, 6}, "0-3,6"},
		{[]int{1, 3, 5, 6, 7}, "1,3,5-7"},
	} {
		if got := cpuList(tc.cpus); got != tc.want {
			t.Errorf("cpuList(%v) = %q, want %q", tc.cpus, got, tc.want)
		}
	}
}

func TestWorkerCPUs(t *testing.T) {
	if got := workerCPUs(nil, 4); got != nil {
		t.Errorf("no node.cpus: %v, want nil (not pinned)", got)
	}
	if got := workerCPUs([]int{3, 1}, 5); !slices.Equal(got, []int{3, 1, 3, 1, 3}) {
		t.Errorf("5 workers on [3 1]: %v, want [3 1 3 1 3]", got)
	}
	if got := workerCPUs([]int{0, 1, 2}, 2); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("2 workers on [0 1 2]: %v, want [0 1]", got)
	}
}
