// Package encap holds ferry's tunnel encapsulations, the wire formats that
// carry overlay traffic between hosts: VXLAN (RFC 7348, vxlan.go), GRE
// (RFC 2784 with RFC 2890 keys, gre.go) and flannel's udp backend format
// (flannel.go); overhead.go gives the MTU each one costs.
//
// Each encapsulation follows one shape, built for the dataplane's packet
// buffers, which keep headroom in front of the frame:
//
//   - Put<X>(b, ...) writes the encapsulation header into b, a slice of the
//     buffer's headroom directly in front of the inner frame, so
//     encapsulating never copies the payload (flannel-UDP has no header of
//     its own: the UDP payload is the inner packet);
//   - Decode<X>(payload) checks a received header and returns the fields
//     the decap stage needs plus a small status enum whose String is the
//     kebab-case drop reason ("vxlan-short"), never an allocated error;
//   - <X>HeaderLen and <X>Overhead give the sizes the buffer headroom and the
//     network MTU are planned with; Overhead(encap, l2) picks one by name.
//
// Nothing here allocates, keeps references to the bytes it is given, or
// holds state: every function is safe for concurrent use on distinct
// buffers.
package encap
