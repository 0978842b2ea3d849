package header

import (
	"encoding/json"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestParseMAC(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    MAC
		wantErr bool
	}{
		{name: "lowercase colons", in: "02:42:ac:11:00:02", want: MAC{2, 0x42, 0xac, 0x11, 0, 2}},
		{name: "uppercase colons", in: "02:42:AC:11:00:02", want: MAC{2, 0x42, 0xac, 0x11, 0, 2}},
		{name: "dashes", in: "ff-ff-ff-ff-ff-ff", want: BroadcastMAC},
		{name: "empty", in: "", wantErr: true},
		{name: "too short", in: "02:42:ac:11:00", wantErr: true},
		{name: "mixed separators", in: "02:42-ac:11:00:02", wantErr: true},
		{name: "dotted form", in: "0242.ac11.0002", wantErr: true},
		{name: "non-hex digit", in: "02:42:ag:11:00:02", wantErr: true},
		{name: "eui-64", in: "02:42:ac:11:00:02:03:04", wantErr: true},
		{name: "wrong separator", in: "02.42.ac.11.00.02", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMAC(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseMAC(%q) = %v, want error", tc.in, got)
				}
				if !strings.Contains(err.Error(), tc.in) {
					t.Errorf("error %q does not name the input", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseMAC(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestMACString(t *testing.T) {
	m := MAC{0x02, 0x42, 0xAC, 0x11, 0x00, 0x0f}
	if got, want := m.String(), "02:42:ac:11:00:0f"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	back, err := ParseMAC(m.String())
	if err != nil || back != m {
		t.Errorf("round trip: %v, %v", back, err)
	}
}

func TestMACClasses(t *testing.T) {
	tests := []struct {
		name                       string
		mac                        MAC
		multicast, broadcast, zero bool
	}{
		{name: "unicast", mac: macA},
		{name: "zero", mac: MAC{}, zero: true},
		{name: "broadcast", mac: BroadcastMAC, multicast: true, broadcast: true},
		{name: "ipv4 multicast", mac: MAC{0x01, 0x00, 0x5e, 0, 0, 1}, multicast: true},
		{name: "ipv6 multicast", mac: MAC{0x33, 0x33, 0, 0, 0, 1}, multicast: true},
		{name: "locally administered unicast", mac: MAC{0x06, 0, 0, 0, 0, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.mac.IsMulticast(); got != tc.multicast {
				t.Errorf("IsMulticast() = %v", got)
			}
			if got := tc.mac.IsBroadcast(); got != tc.broadcast {
				t.Errorf("IsBroadcast() = %v", got)
			}
			if got := tc.mac.IsZero(); got != tc.zero {
				t.Errorf("IsZero() = %v", got)
			}
		})
	}
}

func TestMACJSONAndYAML(t *testing.T) {
	type doc struct {
		Router MAC `json:"router" yaml:"router"`
	}
	in := doc{Router: macA}

	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"router":"02:42:ac:11:00:02"}`; string(js) != want {
		t.Errorf("json = %s, want %s", js, want)
	}
	var outJ doc
	if err := json.Unmarshal(js, &outJ); err != nil || outJ != in {
		t.Errorf("json round trip = %v, %v", outJ, err)
	}
	if err := json.Unmarshal([]byte(`{"router":"nope"}`), &outJ); err == nil {
		t.Error("json accepted a bad MAC")
	}

	ym, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := "router: 02:42:ac:11:00:02\n"; string(ym) != want {
		t.Errorf("yaml = %q, want %q", ym, want)
	}
	var outY doc
	if err := yaml.Unmarshal([]byte("router: 02-42-AC-11-00-02\n"), &outY); err != nil || outY != in {
		t.Errorf("yaml decode = %v, %v", outY, err)
	}
	if err := yaml.Unmarshal([]byte("router: 1:2:3\n"), &outY); err == nil {
		t.Error("yaml accepted a bad MAC")
	}
}
