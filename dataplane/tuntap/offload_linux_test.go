package tuntap_test

import (
	"strings"
	"testing"

	"github.com/ferry-overlay/ferry/dataplane/tuntap"
	"github.com/ferry-overlay/ferry/internal/nstest"
)

func TestSetOffload(t *testing.T) {
	ns := nstest.NewNS(t, "nto")
	dev := createIn(t, ns.Name, tuntap.Options{Name: "off0", Kind: tuntap.TAP, Queues: 2, VnetHdr: true})
	all := tuntap.OffloadCsum | tuntap.OffloadTSO4 | tuntap.OffloadTSO6 | tuntap.OffloadUSO4 | tuntap.OffloadUSO6
	for _, tc := range []struct {
		name  string
		flags int
	}{
		{"checksum, TSO and USO", all},
		{"checksum only", tuntap.OffloadCsum},
		{"everything off", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := dev.SetOffload(tc.flags); err != nil {
				t.Fatal(err)
			}
		})
	}
	if err := dev.SetOffload(1 << 30); err == nil || !strings.Contains(err.Error(), "off0") {
		t.Fatalf("unknown flag: err = %v, want a TUNSETOFFLOAD error naming off0", err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dev.SetOffload(all); err == nil {
		t.Fatal("SetOffload on a closed device succeeded")
	}
}
