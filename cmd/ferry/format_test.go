package main

import (
	"runtime"
	"testing"
	"time"
)

func goVersion() string { return runtime.Version() }

func platform() string { return runtime.GOOS + "/" + runtime.GOARCH }

func TestBytesSI(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{999, "999 B"},
		{1000, "1.0 kB"},
		{10_100, "10.1 kB"},
		{1_234_567, "1.2 MB"},
		{5_000_000_000, "5.0 GB"},
		{1 << 63, "9.2 EB"},
		{^uint64(0), "18.4 EB"},
	}
	for _, tt := range tests {
		if got := bytesSI(tt.n); got != tt.want {
			t.Errorf("bytesSI(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestAge(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{999 * time.Millisecond, "0s"},
		{12 * time.Second, "12s"},
		{59 * time.Second, "59s"},
		{time.Minute, "1m0s"},
		{4*time.Minute + 5*time.Second, "4m5s"},
		{3*time.Hour + 4*time.Minute + 59*time.Second, "3h4m"},
		{50 * time.Hour, "2d2h"},
	}
	for _, tt := range tests {
		if got := age(tt.d); got != tt.want {
			t.Errorf("age(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestJoinAnd(t *testing.T) {
	tests := []struct {
		words []string
		want  string
	}{
		{nil, ""},
		{[]string{"runtime"}, "runtime"},
		{[]string{"runtime", "errors"}, "runtime and errors"},
		{[]string{"a", "b", "c"}, "a, b and c"},
	}
	for _, tt := range tests {
		if got := joinAnd(tt.words); got != tt.want {
			t.Errorf("joinAnd(%q) = %q, want %q", tt.words, got, tt.want)
		}
	}
}
