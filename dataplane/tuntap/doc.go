// Package tuntap opens Linux TAP (layer 2) and TUN (layer 3) devices through
// /dev/net/tun and moves whole batches of frames through them.
//
// It is the Linux fast path of ferry's local ports. The portable path
// (github.com/songgao/water) cannot ask for IFF_MULTI_QUEUE or IFF_VNET_HDR,
// so this package issues TUNSETIFF itself with golang.org/x/sys/unix.
//
// The package works at the []byte level, like wireguard-go's tun.Device:
// a [Queue] reads frames into caller-owned buffers at a caller-chosen offset
// (headroom for outer headers) and writes frames from them. It knows nothing
// of ferry's packet buffers, so package dataplane adapts it, not the reverse.
//
// Every queue's file descriptor is non-blocking and is meant to be polled by
// the caller's own epoll loop (one per worker), not by Go's netpoller; reads
// and writes are plain read(2) and write(2) on the raw descriptor, and a
// steady-state call allocates nothing.
//
// Lifetime: a device created here is not persistent. The kernel removes it
// when the last queue's descriptor is closed, so [Device.Close] also deletes
// the interface, wherever it is, including after the link was moved into
// another network namespace.
package tuntap
