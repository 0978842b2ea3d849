package tuntap

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Offload flags for [Device.SetOffload] (the TUN_F_* bits of
// TUNSETOFFLOAD). They say which kinds of packet the kernel may hand the
// device unfinished, and so which the reader must finish itself.
const (
	// OffloadCsum (TUN_F_CSUM): the kernel may send packets whose L4
	// checksum is partial (VIRTIO_NET_HDR_F_NEEDS_CSUM). Every other flag
	// requires it.
	OffloadCsum = unix.TUN_F_CSUM
	// OffloadTSO4 (TUN_F_TSO4): IPv4 TCP superpackets (GSO_TCPV4).
	OffloadTSO4 = unix.TUN_F_TSO4
	// OffloadTSO6 (TUN_F_TSO6): IPv6 TCP superpackets (GSO_TCPV6).
	OffloadTSO6 = unix.TUN_F_TSO6
	// OffloadUSO4 (TUN_F_USO4): IPv4 UDP superpackets (GSO_UDP_L4); Linux
	// 6.2 and later.
	OffloadUSO4 = unix.TUN_F_USO4
	// OffloadUSO6 (TUN_F_USO6): IPv6 UDP superpackets; Linux 6.2 and later.
	OffloadUSO6 = unix.TUN_F_USO6
)

// SetOffload tells the kernel, with TUNSETOFFLOAD, which offloads the
// reader of this device handles (a set of Offload* flags; 0 turns them all
// off). The device must have been created with Options.VnetHdr, since the
// virtio-net header is how the kernel describes an unfinished packet. The
// setting belongs to the device, so it covers every queue. The error names
// the device; the kernel refuses flags it does not know (EINVAL), so a
// caller may retry with fewer.
func (d *Device) SetOffload(flags int) error {
	if len(d.queues) == 0 || d.queues[0].fd < 0 {
		return fmt.Errorf("tuntap: set offload on %s: device is closed", d.name)
	}
	if err := unix.IoctlSetInt(d.queues[0].fd, unix.TUNSETOFFLOAD, flags); err != nil {
		return fmt.Errorf("tuntap: set offload %#x on %s: TUNSETOFFLOAD: %w", flags, d.name, err)
	}
	for _, q := range d.queues {
		q.offload = flags
	}
	return nil
}

// Offload returns the offload flags last set on the queue's device with
// SetOffload (0 before): what the device may be given, such as UDP
// superpackets with OffloadUSO4 and OffloadUSO6.
func (q *Queue) Offload() int { return q.offload }
