package subnetfile

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func file(network, subnet string, mtu int, masq bool) File {
	return File{Network: netip.MustParsePrefix(network), Subnet: netip.MustParsePrefix(subnet), MTU: mtu, IPMasq: masq}
}

// TestGolden compares Marshal with files written by hand in flannel's
// format: the example in the README of flannel's CNI plugin
// (containernetworking/plugins, plugins/meta/flannel), and what ferry
// writes for the l3 udp example on a 1500-byte underlay, and what
// flanneld itself (udp backend, github.com/flannel-io/flannel at cdf76059)
// wrote on a test machine for network 10.5.0.0/16.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		f      File
	}{
		{"flannel-cni-readme.env", file("10.1.0.0/16", "10.1.17.1/24", 1472, true)},
		{"ferry-l3-udp.env", file("10.244.0.0/16", "10.244.1.1/24", 1472, false)},
		{"flanneld-udp.env", file("10.5.0.0/16", "10.5.62.1/24", 1472, false)},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", tc.golden))
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.f.Marshal(); string(got) != string(want) {
				t.Errorf("Marshal:\n%s\nwant:\n%s", got, want)
			}
			back, err := Parse(want)
			if err != nil {
				t.Fatal(err)
			}
			if back != tc.f {
				t.Errorf("Parse(golden) = %+v, want %+v", back, tc.f)
			}
		})
	}
}

func TestWriteRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "flannel", "subnet.env") // Write creates the directories
	for _, f := range []File{
		file("10.244.0.0/16", "10.244.1.1/24", 1472, false),
		file("10.0.0.0/8", "10.3.2.1/30", 8950, true),
	} {
		if err := Write(path, f); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != string(f.Marshal()) {
			t.Errorf("file holds %q, want %q", data, f.Marshal())
		}
		back, err := Parse(data)
		if err != nil || back != f {
			t.Errorf("Parse = %+v, %v; want %+v", back, err, f)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != Mode {
			t.Errorf("mode %v, want %v", fi.Mode().Perm(), Mode)
		}
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("created directory: %v, %v; want mode 0755", di, err)
	}
	assertOnlyFile(t, filepath.Dir(path), "subnet.env")
}

// TestWriteReplacesAtomically checks that Write replaces the file by
// rename, not by rewriting it in place: a reader that opened the old file
// still reads the whole old content, and the path names a new inode.
func TestWriteReplacesAtomically(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	old := file("10.244.0.0/16", "10.244.1.1/24", 1472, false)
	if err := Write(path, old); err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	before, err := reader.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(path, file("10.244.0.0/16", "10.244.1.1/24", 1450, false)); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Error("Write rewrote the file in place; want a new file renamed over it")
	}
	buf := make([]byte, 256)
	n, _ := reader.Read(buf)
	if string(buf[:n]) != string(old.Marshal()) {
		t.Errorf("open reader sees %q, want the old file %q", buf[:n], old.Marshal())
	}
	if got, _ := os.ReadFile(path); !strings.Contains(string(got), "FLANNEL_MTU=1450\n") {
		t.Errorf("new file %q lacks the new MTU", got)
	}
	assertOnlyFile(t, filepath.Dir(path), "subnet.env")
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	good := file("10.244.0.0/16", "10.244.1.1/24", 1472, false)
	blocker := filepath.Join(dir, "blocker")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target.env")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		f    File
		want string
	}{
		{"network IPv6", filepath.Join(dir, "a.env"), file("fd00::/48", "10.244.1.1/24", 1472, false), "subnetfile: network fd00::/48 is not an IPv4 prefix"},
		{"network unset", filepath.Join(dir, "a.env"), File{Subnet: good.Subnet, MTU: 1}, "subnetfile: network invalid Prefix is not an IPv4 prefix"},
		{"network with host bits", filepath.Join(dir, "a.env"), file("10.244.0.1/16", "10.244.1.1/24", 1472, false), "subnetfile: network 10.244.0.1/16 has host bits set"},
		{"subnet unset", filepath.Join(dir, "a.env"), File{Network: good.Network, MTU: 1}, "subnetfile: subnet invalid Prefix is not an IPv4 prefix"},
		{"subnet outside", filepath.Join(dir, "a.env"), file("10.244.0.0/16", "10.245.1.1/24", 1472, false), "subnetfile: subnet 10.245.1.1/24 is not inside network 10.244.0.0/16"},
		{"subnet as wide as network", filepath.Join(dir, "a.env"), file("10.244.0.0/16", "10.244.0.1/16", 1472, false), "subnetfile: subnet 10.244.0.1/16 is not inside network 10.244.0.0/16"},
		{"mtu zero", filepath.Join(dir, "a.env"), file("10.244.0.0/16", "10.244.1.1/24", 0, false), "subnetfile: MTU 0 is not positive"},
		{"path is a directory name", dir + "/", good, "subnetfile: \"" + dir + "/\" names a directory, not a file"},
		{"parent is a file", filepath.Join(blocker, "subnet.env"), good, "subnetfile: mkdir " + blocker},
		{"path is an existing directory", target, good, "subnetfile: rename "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(tc.path, tc.f)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	assertOnlyFile(t, dir, "blocker", "target.env")
}

func TestParseErrors(t *testing.T) {
	const ok = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "subnetfile: FLANNEL_NETWORK is missing"},
		{"ipmasq missing", strings.TrimSuffix(ok, "FLANNEL_IPMASQ=false\n"), "subnetfile: FLANNEL_IPMASQ is missing"},
		{"not key=value", "FLANNEL_NETWORK\n", `subnetfile: line 1: "FLANNEL_NETWORK" is not KEY=VALUE`},
		{"key twice", ok + "FLANNEL_MTU=1400\n", "subnetfile: line 5: FLANNEL_MTU set twice (first on line 3)"},
		{"unknown key", "FLANNEL_IPV6_NETWORK=fd00::/48\n" + ok, `subnetfile: line 1: unknown key "FLANNEL_IPV6_NETWORK"`},
		{"bad network", strings.Replace(ok, "10.244.0.0/16", "10.244.0.0", 1), "subnetfile: line 1: FLANNEL_NETWORK: netip.ParsePrefix(\"10.244.0.0\"): no '/'"},
		{"bad mtu", strings.Replace(ok, "1472", "1472.5", 1), "subnetfile: line 3: FLANNEL_MTU: strconv.Atoi: parsing \"1472.5\": invalid syntax"},
		{"bad ipmasq", strings.Replace(ok, "false", "no", 1), "subnetfile: line 4: FLANNEL_IPMASQ: strconv.ParseBool: parsing \"no\": invalid syntax"},
		{"quoted value", strings.Replace(ok, "1472", `"1472"`, 1), "subnetfile: line 3: FLANNEL_MTU: strconv.Atoi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	// Lenient where flannel's readers are: order, blank lines, no final
	// newline.
	f, err := Parse([]byte("FLANNEL_IPMASQ=true\n\nFLANNEL_MTU=1450\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_NETWORK=10.244.0.0/16"))
	if want := file("10.244.0.0/16", "10.244.1.1/24", 1450, true); err != nil || f != want {
		t.Errorf("Parse = %+v, %v; want %+v", f, err, want)
	}
}

// FuzzParse checks that Parse never panics, and that whatever it accepts
// marshals back to a file that parses to the same File.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"flannel-cni-readme.env", "ferry-l3-udp.env"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("FLANNEL_MTU=+1\nFLANNEL_IPMASQ=1\nFLANNEL_NETWORK=1.2.3.4/8\nFLANNEL_SUBNET=::/0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse(data)
		if err != nil {
			if got != (File{}) {
				t.Fatalf("Parse returned %+v with error %v", got, err)
			}
			return
		}
		back, err := Parse(got.Marshal())
		if err != nil || back != got {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, got)
		}
	})
}

// assertOnlyFile fails unless dir holds exactly the named entries: no
// temporary file is left behind.
func assertOnlyFile(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}
