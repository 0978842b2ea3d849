package e2e

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-overlay/ferry/internal/nstest"
)

// linkIn reports whether the namespace has a link named name.
func linkIn(t *testing.T, ns *nstest.NS, name string) bool {
	t.Helper()
	out, err := ns.Exec(t, 5*time.Second, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatalf("ip link: %v %s", err, out)
	}
	return strings.Contains(out, " "+name+":") || strings.Contains(out, " "+name+"@")
}

// TestE2EConfigErrorCreatesNothing: a config with a bad field makes ferry
// exit non-zero with one line that names the field, before it creates any
// device or socket.
func TestE2EConfigErrorCreatesNothing(t *testing.T) {
	nstest.RequireRoot(t)
	host := nstest.NewNS(t, "cfg")
	c := nstest.NewNS(t, "cfgc")
	tap := nstest.Name(t, "tcf")
	dir := t.TempDir()
	sock := filepath.Join(dir, "ferry.sock")
	cfg := `node: {name: h, underlay: 192.168.81.1}
control: {socket: ` + sock + `}
metrics: {listen: "off"}
networks:
  - name: blue
    vni: 42
    subnet: 10.42.0.0/24
    peers: [192.168.81.2]
    ports:
      - {name: ` + tap + `, netns: ` + c.Name + `, ifname: eth0, address: 10.42.0.2/24}
      - {name: ` + nstest.Name(t, "tcg") + `, mac: "zz:zz"}
`
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", host.Name, ferryBin, "run", "--config", path).CombinedOutput()
	if err == nil {
		t.Fatalf("ferry accepted a bad config:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "networks[0].ports[1].mac") {
		t.Errorf("error does not name the field networks[0].ports[1].mac:\n%s", out)
	}
	if linkIn(t, &nstest.NS{Name: host.Name}, tap) || linkIn(t, c, "eth0") {
		t.Errorf("ferry created a device despite the config error")
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("ferry created its control socket despite the config error")
	}
}

// TestE2EShutdownRemovesEverything: on SIGTERM ferry exits 0 and removes
// the TAP devices it moved into containers and its control socket. A second
// ferry pointed at the same socket is refused and leaves the first one's
// ports alone.
func TestE2EShutdownRemovesEverything(t *testing.T) {
	nstest.RequireRoot(t)
	ul := nstest.NewUnderlay(t, netip.MustParsePrefix("192.168.82.0/24"))
	h := ul.AddHost(t, "sd")
	c := nstest.NewNS(t, "sdc")
	tap := nstest.Name(t, "tsd")
	cfg := l2Config(h, 42, nil, []portSpec{{tap, c.Name, "10.42.0.2/24", macC1a}})
	d := startFerry(t, h, cfg)
	if !linkIn(t, c, "eth0") {
		t.Fatal("container has no eth0 after start")
	}

	// A second daemon on the same socket, configured with the same port.
	second := filepath.Join(t.TempDir(), "second.yaml")
	if err := os.WriteFile(second, []byte(strings.ReplaceAll(cfg, "SOCKET", d.socket)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", h.Name, ferryBin, "run", "--config", second).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another ferry is running") {
		t.Fatalf("second ferry on a live socket: err %v, output:\n%s", err, out)
	}
	if !linkIn(t, c, "eth0") {
		t.Fatal("the refused second ferry removed the first one's port")
	}
	if _, err := d.ctl("status"); err != nil {
		t.Fatalf("first ferry stopped answering after the refused start: %v", err)
	}

	d.stop(t)
	if linkIn(t, c, "eth0") {
		t.Error("container's eth0 (ferry's TAP) still exists after SIGTERM")
	}
	if _, err := os.Stat(d.socket); err == nil {
		t.Error("control socket still exists after SIGTERM")
	}
}
