// Package header provides typed byte-slice views of the packet headers that
// ferry's dataplane reads and writes on its fast path: Ethernet, ARP, IPv4,
// IPv6, UDP, TCP and ICMPv4, in the style of gVisor's tcpip/header.
//
// A view such as IPv4 is just a []byte whose methods read and write fields at
// fixed offsets, so parsing costs no copies and no allocations. The views do
// no bounds checking of their own beyond what Go's slice indexing does: each
// type's comment states what the caller must check first (usually a length,
// or IsValid), and an accessor called on a slice that is too short panics.
// Code that handles untrusted bytes either checks those preconditions or
// uses Parsed.Decode, which checks everything and reports problems with a
// DecodeStatus instead of panicking or allocating an error.
//
// The package also holds the Internet checksum (RFC 1071) with incremental
// updates (RFC 1624), and FlowHash, the flow hash used to pick a VXLAN outer
// source port (RFC 7348 §5) and to spread flows across workers.
//
// Views alias the memory they wrap: they are valid only as long as the
// underlying buffer is, and like the buffer they are not safe for concurrent
// mutation. Reading a view from several goroutines is safe while no one
// writes to it.
package header
