package header

import (
	"slices"
	"testing"
)

func TestEthernetHeaderLen(t *testing.T) {
	mac := make([]byte, 12)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  int
	}{
		{"untagged", slices.Concat(mac, []byte{0x08, 0x00}, make([]byte, 20)), 14},
		{"802.1Q", slices.Concat(mac, []byte{0x81, 0x00, 0, 100, 0x08, 0x00}, make([]byte, 20)), 18},
		{"QinQ", slices.Concat(mac, []byte{0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 100, 0x86, 0xdd}, make([]byte, 40)), 22},
		{"a third tag is payload", slices.Concat(mac, []byte{0x81, 0x00, 0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00, 0, 3, 0x08, 0x00}), 22},
		{"a tag cut short", slices.Concat(mac, []byte{0x81, 0x00, 0}), 18},
	} {
		if got := EthernetHeaderLen(tc.frame); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
