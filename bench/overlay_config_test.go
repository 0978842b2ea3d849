package bench

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/config"
)

// TestOverlayOptionsEncapMode checks --encap and --mode: every combination
// ferry has is valid, empty values stand for vxlan and l2, and a bad value
// is refused with an error that names the option.
func TestOverlayOptionsEncapMode(t *testing.T) {
	cases := []struct {
		name, encap, mode string
		wantErr           string // "" for valid
	}{
		{"defaults when empty", "", "", ""},
		{"l2 vxlan", EncapVXLAN, ModeL2, ""},
		{"l2 gre", EncapGRE, ModeL2, ""},
		{"l3 udp", EncapUDP, ModeL3, ""},
		{"l3 gre", EncapGRE, ModeL3, ""},
		{"l3 vxlan", EncapVXLAN, ModeL3, ""},
		{"udp with an empty mode is l2", EncapUDP, "", "encap udp: flannel-UDP carries IP packets"},
		{"udp in l2", EncapUDP, ModeL2, "encap udp: flannel-UDP carries IP packets, not Ethernet frames: use it with mode l3"},
		{"unknown encap", "ipip", ModeL3, `encap "ipip": must be vxlan, udp or gre`},
		{"encap in capitals", "VXLAN", ModeL2, `encap "VXLAN": must be vxlan, udp or gre`},
		{"unknown mode", EncapVXLAN, "l4", `mode "l4": must be l2 or l3`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkValidate(t, OverlayOptions{FerryBin: "/bin/ferry", Duration: time.Second, Reps: 1, Size: 64, Encap: tc.encap, Mode: tc.mode}, tc.wantErr)
		})
	}
	if d := (OverlayOptions{}).withDefaults(); d.Encap != EncapVXLAN || d.Mode != ModeL2 {
		t.Errorf("defaults = encap %q mode %q, want vxlan l2", d.Encap, d.Mode)
	}
}

// checkValidate fails t unless o.Validate accepts o (wantErr "") or
// refuses it with an error that starts with wantErr.
func checkValidate(t *testing.T, o OverlayOptions, wantErr string) {
	t.Helper()
	err := o.Validate()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("Validate = %v, want valid", err)
	case wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), wantErr)):
		t.Fatalf("Validate = %v, want an error starting %q", err, wantErr)
	}
}

// TestFerryConfig renders host 1's and host 2's config for every
// combination, has package config parse it as `ferry run` would, and
// checks the network it describes: mode, encapsulation, the port and VNI
// the encapsulation defaults to, addresses, peers, and the MTU on a
// 1500-byte underlay.
func TestFerryConfig(t *testing.T) {
	cases := []struct {
		name, encap, mode string
		port              uint16
		vni               uint32
		mtu               int
	}{
		{"l2 vxlan", EncapVXLAN, ModeL2, config.DefaultVXLANPort, overlayVNI, 1450},
		{"l2 gre", EncapGRE, ModeL2, 0, overlayVNI, 1458},
		{"l3 udp", EncapUDP, ModeL3, config.DefaultUDPPort, 0, 1472},
		{"l3 gre", EncapGRE, ModeL3, 0, 0, 1476},
		{"l3 vxlan", EncapVXLAN, ModeL3, config.DefaultL3VXLANPort, config.DefaultL3VXLANVNI, 1450},
	}
	for _, tc := range cases {
		for _, i := range []int{1, 2} {
			t.Run(tc.name+" host "+string(rune('0'+i)), func(t *testing.T) {
				opts := OverlayOptions{Encap: tc.encap, Mode: tc.mode}
				h := ferryHost{index: i, name: "fh", local: hostAddr(i), peer: hostAddr(3 - i), socket: "/tmp/fh.sock", container: "fc"}
				text := ferryConfig(opts, h)
				cfg, err := config.Parse([]byte(text))
				if err != nil {
					t.Fatalf("config does not parse: %v\n%s", err, text)
				}
				if len(cfg.Networks) != 1 {
					t.Fatalf("%d networks, want 1:\n%s", len(cfg.Networks), text)
				}
				n := cfg.Networks[0]
				if cfg.Node.Underlay != hostAddr(i) || cfg.Control.Socket != "/tmp/fh.sock" || cfg.Metrics.Listen != "" {
					t.Errorf("node %+v control %+v metrics %+v", cfg.Node, cfg.Control, cfg.Metrics)
				}
				if string(n.Mode) != tc.mode || string(n.Encap) != tc.encap || n.Port != tc.port || n.VNI != tc.vni {
					t.Errorf("mode %s encap %s port %d vni %d, want %s %s %d %d", n.Mode, n.Encap, n.Port, n.VNI, tc.mode, tc.encap, tc.port, tc.vni)
				}
				if got := n.EffectiveMTU(DefaultUnderlayMTU); got != tc.mtu {
					t.Errorf("MTU on a %d-byte underlay = %d, want %d", DefaultUnderlayMTU, got, tc.mtu)
				}
				if got := n.PeerAddrs(); len(got) != 1 || got[0] != hostAddr(3-i) {
					t.Errorf("peers = %v, want [%s]", got, hostAddr(3-i))
				}
				addr := containerAddr(tc.mode, i)
				if tc.mode == ModeL3 {
					wantSubnet := netip.MustParsePrefix([]string{"", "10.42.1.0/24", "10.42.2.0/24"}[i])
					wantPeer := netip.MustParsePrefix([]string{"", "10.42.2.0/24", "10.42.1.0/24"}[i])
					if n.Network != l3Network || n.Subnet != wantSubnet || n.Device != l3Device || n.Peers[0].Subnet != wantPeer || len(n.Ports) != 0 {
						t.Errorf("l3 network %s subnet %s device %q peer subnet %s ports %d; want %s %s %q %s 0",
							n.Network, n.Subnet, n.Device, n.Peers[0].Subnet, len(n.Ports), l3Network, wantSubnet, l3Device, wantPeer)
					}
					wantBridge := netip.PrefixFrom(wantSubnet.Addr().Next(), 24)
					if got := n.BridgeAddress(); got != wantBridge || !wantSubnet.Contains(addr) || addr == wantBridge.Addr() {
						t.Errorf("bridge %s, container %s: want bridge %s and the container elsewhere in %s", got, addr, wantBridge, wantSubnet)
					}
					return
				}
				want := config.Port{Name: "tap0", Netns: "fc", Ifname: containerDev, Address: netip.PrefixFrom(addr, 24)}
				if len(n.Ports) != 1 {
					t.Fatalf("%d ports, want 1", len(n.Ports))
				}
				p := n.Ports[0]
				if p.Name != want.Name || p.Netns != want.Netns || p.Ifname != want.Ifname || p.Address != want.Address || p.MAC.String() != "02:42:0a:2a:00:0"+string(rune('0'+i)) {
					t.Errorf("port %+v (MAC %s), want %+v with MAC 02:42:0a:2a:00:0%d", p, p.MAC, want, i)
				}
				if n.Subnet != netip.MustParsePrefix("10.42.0.0/24") {
					t.Errorf("subnet %s, want 10.42.0.0/24", n.Subnet)
				}
			})
		}
	}
}

// TestContainerAddr pins the container addresses: both l2 paths (ferry's
// and the kernel's) on one subnet, l3 containers in their host's subnet.
func TestContainerAddr(t *testing.T) {
	cases := []struct {
		mode string
		i    int
		want string
	}{
		{ModeL2, 1, "10.42.0.1"},
		{ModeL2, 2, "10.42.0.2"},
		{ModeL3, 1, "10.42.1.2"},
		{ModeL3, 2, "10.42.2.2"},
	}
	for _, tc := range cases {
		if got := containerAddr(tc.mode, tc.i); got.String() != tc.want {
			t.Errorf("containerAddr(%s, %d) = %s, want %s", tc.mode, tc.i, got, tc.want)
		}
	}
}

// TestOverlayReportRecordsEncapMode checks that the table, the JSON and the
// chart say which network type ferry's path had and what the kernel's path
// is.
func TestOverlayReportRecordsEncapMode(t *testing.T) {
	rep := sampleReport()
	rep.Options.Encap, rep.Options.Mode = EncapGRE, ModeL3
	rep.FerryPath, rep.KernelPath = ferryPathDesc(ModeL3, EncapGRE), kernelPathDesc

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ferry bench overlay: ferry l3/gre (2 workers, offloads on) vs kernel VXLAN (l2), 10s per workload",
		"  ferry:  ferry l3 over gre: container veth → Linux bridge → host routing → TUN ferry0 → ferry (GRE, IP protocol 47) → veth underlay\n",
		"  kernel: kernel VXLAN, l2, Docker-style: container veth → Linux bridge → vxlan device (VNI 42, UDP 4789) → veth underlay\n",
	} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Options struct {
			Encap   string `json:"encap"`
			Mode    string `json:"mode"`
			Workers int    `json:"workers"`
			Offload *bool  `json:"offload"`
		} `json:"options"`
		FerryPath  string `json:"ferry_path"`
		KernelPath string `json:"kernel_path"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Options.Encap != "gre" || got.Options.Mode != "l3" || got.FerryPath != rep.FerryPath || got.KernelPath != kernelPathDesc {
		t.Errorf("JSON options %+v ferry_path %q kernel_path %q", got.Options, got.FerryPath, got.KernelPath)
	}
	if got.Options.Workers != 2 {
		t.Errorf("JSON options.workers = %d, want 2", got.Options.Workers)
	}

	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if want := `font-weight="bold">ferry l3/gre (2 workers, offloads on) vs kernel VXLAN (l2)</text>`; !strings.Contains(svg.String(), want) {
		t.Errorf("SVG title lacks %q", want)
	}
}

// TestOverlayReportRecordsWorkersOffload checks that a run with one worker
// and offloads off says so in the table and the JSON.
func TestOverlayReportRecordsWorkersOffload(t *testing.T) {
	rep := sampleReport()
	off := false
	rep.Options.Mode, rep.Options.Encap = ModeL2, EncapVXLAN
	rep.Options.Workers, rep.Options.Offload = 1, &off
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if want := "ferry l2/vxlan (1 worker, offloads off) vs kernel VXLAN (l2)"; !strings.Contains(table.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, table.String())
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"workers": 1,`) || !strings.Contains(js.String(), `"offload": false,`) {
		t.Errorf("JSON options lack workers 1 and offload false:\n%s", js.String())
	}
}

// TestFerryConfigWorkersOffload: the daemons' config carries --workers and
// --offload, and leaves the worker count to ferry when none is asked for.
func TestFerryConfigWorkersOffload(t *testing.T) {
	off, on := false, true
	cases := []struct {
		name        string
		workers     int
		offload     *bool
		wantWorkers int // 0: ferry's default, whatever this machine has
		wantOffload bool
	}{
		{"defaults", 0, nil, 0, config.DefaultOffload},
		{"three workers, offloads off", 3, &off, 3, false},
		{"one worker, offloads on", 1, &on, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := OverlayOptions{Encap: EncapVXLAN, Mode: ModeL2, Workers: tc.workers, Offload: tc.offload}
			h := ferryHost{index: 1, name: "fh", local: hostAddr(1), peer: hostAddr(2), socket: "/tmp/fh.sock", container: "fc"}
			text := ferryConfig(opts, h)
			cfg, err := config.Parse([]byte(text))
			if err != nil {
				t.Fatalf("config does not parse: %v\n%s", err, text)
			}
			if cfg.Node.Offload != tc.wantOffload {
				t.Errorf("node.offload = %v, want %v:\n%s", cfg.Node.Offload, tc.wantOffload, text)
			}
			if tc.wantWorkers == 0 {
				if strings.Contains(text, "workers:") {
					t.Errorf("config sets workers though none was asked for:\n%s", text)
				}
			} else if cfg.Node.Workers != tc.wantWorkers {
				t.Errorf("node.workers = %d, want %d:\n%s", cfg.Node.Workers, tc.wantWorkers, text)
			}
		})
	}
}

// TestFerryConfigCPUs: --cpus becomes each daemon's node.cpus, and the
// title line says the workers are pinned; out-of-range or repeated CPUs
// are refused by Validate.
func TestFerryConfigCPUs(t *testing.T) {
	opts := OverlayOptions{Encap: EncapVXLAN, Mode: ModeL2, Workers: 2, CPUs: []int{1, 0}}
	h := ferryHost{index: 1, name: "fh", local: hostAddr(1), peer: hostAddr(2), socket: "/tmp/fh.sock", container: "fc"}
	text := ferryConfig(opts, h)
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatalf("config does not parse: %v\n%s", err, text)
	}
	if !slices.Equal(cfg.Node.CPUs, []int{1, 0}) {
		t.Errorf("node.cpus = %v, want [1 0]:\n%s", cfg.Node.CPUs, text)
	}
	if text := ferryConfig(OverlayOptions{Encap: EncapVXLAN, Mode: ModeL2}, h); strings.Contains(text, "cpus") {
		t.Errorf("config pins workers though no CPUs were asked for:\n%s", text)
	}
	rep := &OverlayReport{Options: opts.withDefaults()}
	if got := rep.comparison(); !strings.Contains(got, "(2 workers pinned to CPUs 1,0, offloads on)") {
		t.Errorf("title %q does not say the workers are pinned", got)
	}
	base := OverlayOptions{FerryBin: "ferry", Duration: time.Second, Reps: 1, Size: 64}
	for _, cpus := range [][]int{{-1}, {0, 0}, {config.MaxCPU + 1}} {
		o := base
		o.CPUs = cpus
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "cpus") {
			t.Errorf("cpus %v: error %v, want one naming cpus", cpus, err)
		}
	}
}

// TestFerryPathDesc names every combination's wire format.
func TestFerryPathDesc(t *testing.T) {
	cases := []struct{ mode, encap, want string }{
		{ModeL2, EncapVXLAN, "ferry l2 over vxlan: container TAP → ferry (learning bridge, VXLAN, UDP 4789) → veth underlay"},
		{ModeL2, EncapGRE, "ferry l2 over gre: container TAP → ferry (learning bridge, GRE with the VNI as key, IP protocol 47) → veth underlay"},
		{ModeL3, EncapUDP, "ferry l3 over udp: container veth → Linux bridge → host routing → TUN ferry0 → ferry (flannel-UDP, UDP 8285) → veth underlay"},
		{ModeL3, EncapGRE, "ferry l3 over gre: container veth → Linux bridge → host routing → TUN ferry0 → ferry (GRE, IP protocol 47) → veth underlay"},
		{ModeL3, EncapVXLAN, "ferry l3 over vxlan: container veth → Linux bridge → host routing → TUN ferry0 → ferry (flannel-vxlan, UDP 8472) → veth underlay"},
	}
	for _, tc := range cases {
		if got := ferryPathDesc(tc.mode, tc.encap); got != tc.want {
			t.Errorf("ferryPathDesc(%s, %s) =\n%s\nwant\n%s", tc.mode, tc.encap, got, tc.want)
		}
	}
}

// TestOverlayOptionsTCP checks --streams and --tcp-cc: their ranges, an
// error that names the option, and the iperf3 command line they make.
func TestOverlayOptionsTCP(t *testing.T) {
	cases := []struct {
		name    string
		streams int
		cc      string
		wantErr string // "" for valid
	}{
		{"defaults", 0, "", ""},
		{"four cubic streams", 4, "cubic", ""},
		{"most streams", MaxStreams, "bbr", ""},
		{"negative streams", -1, "", "streams -1: must be 1..16"},
		{"too many streams", MaxStreams + 1, "", "streams 17: must be 1..16"},
		{"cc in capitals", 1, "BBR", `tcp-cc "BBR": not a congestion control name`},
		{"cc with a dash", 1, "bbr-2", `tcp-cc "bbr-2": not a congestion control name`},
		{"cc too long", 1, "abcdefghijklmnop", `tcp-cc "abcdefghijklmnop": not a congestion control name`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkValidate(t, OverlayOptions{FerryBin: "/bin/ferry", Duration: time.Second, Reps: 1, Size: 64, Streams: tc.streams, TCPCC: tc.cc}, tc.wantErr)
		})
	}
	if d := (OverlayOptions{}).withDefaults(); d.Streams != 1 {
		t.Errorf("default streams = %d, want 1", d.Streams)
	}

	server := netip.MustParseAddr("10.42.0.2")
	one := strings.Join(iperfArgs(server, 5, OverlayOptions{Streams: 1, TCPCC: "bbr"}), " ")
	if want := "-c 10.42.0.2 -p 5201 -t 5 -J -C bbr"; one != want {
		t.Errorf("iperf3 args of one bbr stream = %q, want %q", one, want)
	}
	four := strings.Join(iperfArgs(server, 3, OverlayOptions{Streams: 4, TCPCC: "cubic"}), " ")
	if want := "-c 10.42.0.2 -p 5201 -t 3 -J -C cubic -P 4"; four != want {
		t.Errorf("iperf3 args of four cubic streams = %q, want %q", four, want)
	}
	for _, tc := range []struct {
		streams int
		cc      string
		want    string
	}{{1, "bbr", "TCP, one stream (bbr)"}, {4, "cubic", "TCP, 4 streams (cubic)"}} {
		if got := tcpTitle(tc.streams, tc.cc); got != tc.want {
			t.Errorf("tcpTitle(%d, %q) = %q, want %q", tc.streams, tc.cc, got, tc.want)
		}
	}
}

// TestResolveCC checks how the congestion control of the TCP workload is
// chosen from the kernel's lists: the default when none is asked for, the
// one asked for when the kernel has it, and otherwise an error that names
// the option, lists what the kernel has and says how to load a module.
func TestResolveCC(t *testing.T) {
	const avail = "reno cubic bbr\n"
	if cc, err := resolveCC("", "bbr\n", avail); cc != "bbr" || err != nil {
		t.Errorf(`resolveCC("") = %q, %v; want the default bbr`, cc, err)
	}
	if cc, err := resolveCC("cubic", "bbr\n", avail); cc != "cubic" || err != nil {
		t.Errorf(`resolveCC("cubic") = %q, %v; want cubic`, cc, err)
	}
	_, err := resolveCC("vegas", "bbr\n", avail)
	want := `tcp-cc "vegas": not available in this kernel (it has: reno cubic bbr); if a module provides it, load it first: modprobe tcp_vegas`
	if err == nil || err.Error() != want {
		t.Errorf(`resolveCC("vegas") = %v, want %q`, err, want)
	}
	if _, err := resolveCC("", "\n", avail); err == nil || !strings.HasPrefix(err.Error(), "tcp-cc: ") {
		t.Errorf("resolveCC with no default = %v, want a tcp-cc error", err)
	}
}
