// Package nat is ferry's connection tracker and network address translator:
// masquerade (SNAT) of container networks to an uplink's nat_address, and
// published ports (DNAT) from that address to containers, with hairpin. It
// works on IPv4 packets in place, through the views of package header, and
// keeps no reference to a packet after a call returns.
//
// # Where it sits
//
// One Table serves one uplink (one nat_address). The router stage hands it
// batches of IPv4 packets (the bytes from the IP header on; a frame's
// Ethernet header stays outside the slice) with the direction each one is
// travelling:
//
//	container network ──Outbound──► Table.Process ──► uplink (or back into a network, hairpin)
//	uplink           ──Inbound───► Table.Process ──► container network
//
// Process rewrites addresses, ports and ICMP echo identifiers in place with
// incremental checksum updates (RFC 1624) and returns a Verdict per packet:
// Translated (forward by the new destination), NoMatch (not NAT's business:
// ferry's own address, routed traffic; the packet is untouched) or a drop
// with a reason the caller counts (Verdict.String is the reason label).
//
// # Connection tracking
//
// Every connection has an original tuple (as its first packet arrived) and
// a reply tuple (what the answer looks like after translation); both are in
// one hash index, so either direction finds the entry in one probe. A packet
// matching tuple d is rewritten to the reverse of the other tuple, which is
// how Linux nf_nat expresses every translation (SNAT, DNAT, both at once).
//
// States and default timeouts follow Linux netfilter: TCP runs the state
// table of net/netfilter/nf_conntrack_proto_tcp.c (tcp_conntracks: NONE,
// SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
// TIME_WAIT, CLOSE, SYN_SENT2, with its "ignore" and "invalid" outcomes) and
// its timeouts (tcp_timeouts: 2 min, 60 s, 5 days, 2 min, 60 s, 30 s,
// 2 min, 10 s); UDP has nf_conntrack_proto_udp.c's two timeouts, 30 s until
// a reply is seen and 120 s after; ICMP echo has nf_conntrack_proto_icmp.c's
// 30 s and is keyed by its identifier. Differences from the kernel, on
// purpose: there is no TCP window tracking (the kernel's
// nf_conntrack_tcp_be_liberal=1 behaviour, so a packet of a known flow is
// always translated, never leaked untranslated), no retransmission or
// unacknowledged-data timers, and a UDP flow counts as assured as soon as a
// reply is seen (the kernel waits for a second packet after 2 s).
//
// Fragments are not reassembled: a fragmented packet is dropped with
// DropFragment (the router's fragmentation-needed answers keep paths free of
// fragments).
//
// # Capacity
//
// New allocates all entry storage and the index up front, for Options.
// MaxEntries connections: about 68 bytes a connection (a 48-byte entry,
// 16 bytes of index at load factor <= 1/2, 4 bytes of free list), so 17 MB
// for the default 262144; the fast path then never allocates. When the
// table is full a new connection first reclaims an expired entry, then
// evicts a connection that is not assured (never replied, or TCP not
// through its handshake), as the kernel's early_drop does; if a bounded
// scan finds none, the new packet is dropped (DropTableFull). Expired entries are collected incrementally: Process does
// a bounded amount of collection at most every Options.GCInterval, and
// Expire does the same on demand; a lookup never returns an expired entry.
//
// # Concurrency
//
// A Table is safe for concurrent use by any number of workers. Process
// takes the table's read lock once per batch: lookups of established flows
// run in parallel, and the mutable per-connection fields (state, expiry) are
// updated with atomic operations. Packets that need a new entry are set
// aside and handled in a second pass under the write lock, taken at most
// once per batch and only when the batch has such packets. No lock or
// channel operation is paid per packet. Control-path calls (SetRules,
// Delete, DeleteMatching, Flush, Snapshot, Stats) take the lock themselves.
package nat
