// Package bridge is ferry's learning bridge: the forwarding database (FDB) of
// one L2 network, mapping MAC addresses to the local port or remote peer they
// were last seen on. It lives in the directory switch/ but is named bridge,
// because switch is a Go keyword.
//
// The dataplane owns one [Table] per network. Its workers call
// [Table.LearnLookup] once per batch of frames: every frame's source MAC is
// learned at the frame's ingress [Location] and its destination MAC is looked
// up. A miss (the zero Location) means "unknown unicast, broadcast or
// multicast: flood". How to flood (split horizon, see [FloodToPeers]) and what
// to do with frames from invalid sources is the dataplane's decision; the
// bridge only counts.
//
// The control plane ages entries out with [Table.Expire], manages static
// entries with [Table.AddStatic] and [Table.Delete], flushes with
// [Table.Flush] and [Table.FlushLocation], and lists the table with
// [Table.Snapshot].
//
// Time is never read by this package: every call that needs it takes now, a
// monotonic clock in nanoseconds supplied by the caller (for example
// int64(time.Since(start)), read once per batch). All calls on one Table must
// use the same clock. Tests drive it with a fake clock.
package bridge
