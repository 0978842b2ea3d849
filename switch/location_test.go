package bridge

import "testing"

func TestLocation(t *testing.T) {
	tests := []struct {
		name                  string
		loc                   Location
		valid, isPort, isPeer bool
		index                 uint16
		str                   string
	}{
		{"port 0", PortLocation(0), true, true, false, 0, "port 0"},
		{"port 3", PortLocation(3), true, true, false, 3, "port 3"},
		{"highest port", PortLocation(65535), true, true, false, 65535, "port 65535"},
		{"peer 0", PeerLocation(0), true, false, true, 0, "peer 0"},
		{"peer 1", PeerLocation(1), true, false, true, 1, "peer 1"},
		{"highest peer", PeerLocation(65535), true, false, true, 65535, "peer 65535"},
		{"no location", NoLocation, false, false, false, 0, "none"},
		{"index without kind", Location(7), false, false, false, 7, "invalid 0x7"},
		{"unknown kind", Location(3<<16 | 2), false, false, false, 2, "invalid 0x30002"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.loc
			if l.IsValid() != tt.valid || l.IsPort() != tt.isPort || l.IsPeer() != tt.isPeer {
				t.Errorf("IsValid, IsPort, IsPeer = %v, %v, %v; want %v, %v, %v",
					l.IsValid(), l.IsPort(), l.IsPeer(), tt.valid, tt.isPort, tt.isPeer)
			}
			if got := l.Index(); got != tt.index {
				t.Errorf("Index() = %d, want %d", got, tt.index)
			}
			if got := l.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
		})
	}
	if PortLocation(1) == PeerLocation(1) {
		t.Error("port 1 and peer 1 are the same Location")
	}
}

func TestFloodToPeers(t *testing.T) {
	tests := []struct {
		name string
		from Location
		want bool
	}{
		{"from a local port floods to peers", PortLocation(2), true},
		{"from a peer never floods back into tunnels", PeerLocation(2), false},
		{"from the host itself floods to peers", NoLocation, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FloodToPeers(tt.from); got != tt.want {
				t.Errorf("FloodToPeers(%v) = %v, want %v", tt.from, got, tt.want)
			}
		})
	}
}
