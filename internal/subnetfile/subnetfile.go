// Package subnetfile writes and reads flannel's subnet file, the small
// environment file (conventionally /run/flannel/subnet.env) in which
// flanneld tells other tools about this host's share of the overlay:
//
//	FLANNEL_NETWORK=10.244.0.0/16
//	FLANNEL_SUBNET=10.244.1.1/24
//	FLANNEL_MTU=1472
//	FLANNEL_IPMASQ=false
//
// flannel's CNI plugin reads it to configure the bridge plugin, and the
// Docker recipes source it for `--bip=${FLANNEL_SUBNET}
// --mtu=${FLANNEL_MTU}`. ferry writes it for an l3 network that sets
// subnet_file, so those tools work unchanged.
//
// The format follows flannel's writer, WriteSubnetFile in
// pkg/subnet/subnetfile_unix.go of github.com/flannel-io/flannel (main.go
// in older releases): four KEY=VALUE lines in this order, each ending in a
// newline, no quoting. FLANNEL_SUBNET is not the subnet's network address
// but its first usable address (flannel increments the lease's address by
// one) with the subnet's prefix length: the address the container bridge
// takes. flannel writes the file to a temporary file and
// renames it into place, so that readers never see half a file; Write
// does the same. ferry writes only the IPv4 keys; flannel adds
// FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET for IPv6, which ferry does
// not have.
package subnetfile

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The file's keys, in the order flannel writes them.
const (
	KeyNetwork = "FLANNEL_NETWORK"
	KeySubnet  = "FLANNEL_SUBNET"
	KeyMTU     = "FLANNEL_MTU"
	KeyIPMasq  = "FLANNEL_IPMASQ"
)

// Mode is the permission of a written file, flannel's (0644): every local
// tool may read it.
const Mode os.FileMode = 0o644

// File is the content of a subnet file. It is plain data.
type File struct {
	// Network is the whole overlay, masked (FLANNEL_NETWORK), e.g.
	// 10.244.0.0/16.
	Network netip.Prefix
	// Subnet is this host's first usable address in its subnet, with the
	// subnet's prefix length (FLANNEL_SUBNET), e.g. 10.244.1.1/24 for the
	// subnet 10.244.1.0/24: config.Network.BridgeAddress.
	Subnet netip.Prefix
	// MTU is the MTU of the overlay device (FLANNEL_MTU), which the CNI
	// plugin gives the bridge and containers.
	MTU int
	// IPMasq tells readers whether the overlay daemon masquerades traffic
	// leaving the overlay (FLANNEL_IPMASQ). ferry does not, so it writes
	// false, and flannel's CNI plugin then has the bridge plugin
	// masquerade instead.
	IPMasq bool
}

// Validate reports whether f can be written: IPv4 Network in masked form,
// an IPv4 Subnet inside it with a longer prefix, and a positive MTU.
func (f *File) Validate() error {
	n, s := f.Network, f.Subnet
	switch {
	case !n.IsValid() || !n.Addr().Is4():
		return fmt.Errorf("subnetfile: network %s is not an IPv4 prefix", n)
	case n != n.Masked():
		return fmt.Errorf("subnetfile: network %s has host bits set", n)
	case !s.IsValid() || !s.Addr().Is4():
		return fmt.Errorf("subnetfile: subnet %s is not an IPv4 prefix", s)
	case !n.Contains(s.Addr()) || s.Bits() <= n.Bits():
		return fmt.Errorf("subnetfile: subnet %s is not inside network %s", s, n)
	case f.MTU <= 0:
		return fmt.Errorf("subnetfile: MTU %d is not positive", f.MTU)
	}
	return nil
}

// Marshal returns the file's bytes in flannel's format. It does not
// validate f.
func (f *File) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s=%s\n", KeyNetwork, f.Network)
	fmt.Fprintf(&b, "%s=%s\n", KeySubnet, f.Subnet)
	fmt.Fprintf(&b, "%s=%d\n", KeyMTU, f.MTU)
	fmt.Fprintf(&b, "%s=%t\n", KeyIPMasq, f.IPMasq)
	return b.Bytes()
}

// Write validates f and writes it to path atomically: it creates path's
// directory if missing (0755, as flannel does), writes a temporary file
// beside path, syncs it, gives it Mode and renames it over path, then
// syncs the directory. A reader sees the old file or the new one, never
// a mix; on error path is unchanged and the temporary file is removed.
// Concurrent Writes to one path leave one of the files whole.
func Write(path string, f File) error {
	if err := f.Validate(); err != nil {
		return err
	}
	dir, name := filepath.Split(path)
	if name == "" {
		return fmt.Errorf("subnetfile: %q names a directory, not a file", path)
	}
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("subnetfile: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("subnetfile: %w", err)
	}
	if err := writeSync(tmp, f.Marshal()); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("subnetfile: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("subnetfile: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("subnetfile: sync %s: %w", dir, err)
	}
	return nil
}

// writeSync writes data to the new file t, sets its mode, syncs and closes
// it.
func writeSync(t *os.File, data []byte) error {
	_, err := t.Write(data)
	if err == nil {
		err = t.Chmod(Mode)
	}
	if err == nil {
		err = t.Sync()
	}
	return errors.Join(err, t.Close())
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// Parse reads a subnet file as Write (and flannel, for an IPv4 network)
// writes it: the four keys, each once, in any order, one KEY=VALUE per
// line; blank lines are skipped and the last newline may be missing.
// Another key, a repeated or missing key, or a bad value is an error that
// names the line. The values are returned as written, not validated
// against each other (see File.Validate).
func Parse(data []byte) (File, error) {
	var f File
	seen := make(map[string]int, 4)
	for i, line := range strings.Split(string(data), "\n") {
		num := i + 1
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return File{}, fmt.Errorf("subnetfile: line %d: %q is not KEY=VALUE", num, line)
		}
		if first, dup := seen[key]; dup {
			return File{}, fmt.Errorf("subnetfile: line %d: %s set twice (first on line %d)", num, key, first)
		}
		seen[key] = num
		var err error
		switch key {
		case KeyNetwork:
			f.Network, err = netip.ParsePrefix(val)
		case KeySubnet:
			f.Subnet, err = netip.ParsePrefix(val)
		case KeyMTU:
			f.MTU, err = strconv.Atoi(val)
		case KeyIPMasq:
			f.IPMasq, err = strconv.ParseBool(val)
		default:
			return File{}, fmt.Errorf("subnetfile: line %d: unknown key %q", num, key)
		}
		if err != nil {
			return File{}, fmt.Errorf("subnetfile: line %d: %s: %w", num, key, err)
		}
	}
	for _, k := range []string{KeyNetwork, KeySubnet, KeyMTU, KeyIPMasq} {
		if _, ok := seen[k]; !ok {
			return File{}, fmt.Errorf("subnetfile: %s is missing", k)
		}
	}
	return f, nil
}
