// Package router is ferry's IPv4 router: the gateway of each network that
// has one, forwarding between networks and uplinks, and the ICMP errors a
// router owes its senders. Like package header, whose views it uses, it
// works on packet bytes in buffers the caller owns, returns sentinel
// statuses instead of allocated errors, keeps no reference to a packet after
// a call returns, and allocates nothing per packet.
//
// # Where it sits
//
// The dataplane calls these functions, per packet of a batch, in this order
// (pkt is the IPv4 packet, frame[14:] of an untagged Ethernet frame):
//
//	port rx ─► ethernet-input ─► gateway ─► router ─► nat ─► neighbour ─► port-tx | uplink-tx
//	                               │          │
//	                               │          └─► ICMP error ─► back towards the sender
//	                               └─► reply (ARP, echo) ─► port-tx of the ingress port
//
// The stages:
//
//   - gateway: AnswerARP answers an ARP request for the gateway address
//     (the bridge still floods every other ARP frame, and the router learns
//     the sender into its Neighbours), AnswerEcho answers a ping to it. Both
//     rewrite the frame in place, so the reply goes back out of the port the
//     request came in on. The gateway MAC is GatewayMAC(network name).
//   - router, for a frame addressed to the gateway MAC whose destination is
//     not the gateway: Forward checks the header and decrements the TTL
//     (TTLExpired → TimeExceeded), Routes.Lookup picks the egress (no
//     route → NetUnreachable), NeedsFrag compares the packet with the
//     egress MTU (→ FragNeeded) and Fragment splits a packet that may be
//     split. The MTU check runs before nat, so that an error about a
//     masqueraded packet quotes and is sent to the container's own address.
//   - nat (package nat) translates packets leaving through an uplink or
//     coming in from one. ICMP errors this package builds about a packet
//     that came in from an uplink are addressed to the outside sender and
//     quote the packet as NAT rewrote it; they leave through the uplink as
//     Outbound packets, so nat translates their quoted header back.
//   - neighbour, for a packet routed into an L2 network: Neighbours.Resolve
//     finds the destination MAC. A miss is dropped with reason
//     "neighbour-unresolved" and, at most once per RetransmitInterval per
//     address, BuildARPRequest makes the ARP request the worker floods into
//     the network; the reply (or any frame from that container) teaches the
//     table, so the sender's retransmission gets through. There is no
//     queue of packets waiting for resolution: that is the simple, honest
//     choice, and TCP and ping retransmit anyway.
//
// ICMP errors are built into a buffer the caller provides, for example
// another packet of the worker's pool with headroom for the Ethernet
// header, and then routed like any packet from the gateway address. RFC 1812
// §4.3.2.8 asks a router to limit the rate of the errors it sends; that is
// the caller's (per worker) concern.
//
// # Concurrency
//
// The packet functions are pure: they touch only the bytes they are given
// and are safe to call from any number of workers. Routes is immutable once
// built; the control plane builds a new one and swaps it in with an
// atomic.Pointer that workers load once per batch. Neighbours is shared by
// all workers of a network and takes its read lock once per batch call; see
// its comment.
//
// Time is never read here: calls that need it take now, a monotonic clock
// in nanoseconds supplied by the caller, read once per batch.
package router
