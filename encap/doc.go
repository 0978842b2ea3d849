// Package encap holds ferry's tunnel encapsulations: the wire formats that
// carry overlay traffic between hosts. VXLAN (RFC 7348) is here now; GRE
// (RFC 2784/2890) and flannel-style UDP join it later.
//
// Each encapsulation follows one shape, built for the dataplane's packet
// buffers, which keep headroom in front of the frame:
//
//   - Put<X>(b, ...) writes the encapsulation header into b, a slice of the
//     buffer's headroom directly in front of the inner frame, so
//     encapsulating never copies the payload;
//   - Decode<X>(payload) checks a received header and returns the fields
//     the decap stage needs plus a small status enum whose String is the
//     kebab-case drop reason ("vxlan-short"), never an allocated error;
//   - <X>HeaderLen and <X>Overhead give the sizes the buffer headroom and the
//     network MTU are planned with.
//
// Nothing here allocates, keeps references to the bytes it is given, or
// holds state: every function is safe for concurrent use on distinct
// buffers.
package encap
