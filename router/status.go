package router

// Status is the outcome of Forward, Fragment and BuildICMPError: a sentinel
// rather than an allocated error, so the fast path can drop a packet and
// count the reason without allocating. String is the kebab-case reason,
// fit for a drop-counter label.
type Status uint8

// Statuses. OK means the call did its job; every other value says why not.
const (
	// OK: the packet was forwarded, fragmented or the error was built.
	OK Status = iota
	// Malformed: the IPv4 header is short, not version 4, has IHL < 5 or
	// lengths that do not fit the buffer; or (Fragment) its options are
	// cut off ("malformed").
	Malformed
	// BadChecksum: the IPv4 header checksum does not verify; RFC 1812
	// §5.2.2 has a router discard such packets ("bad-checksum").
	BadChecksum
	// TTLExpired: the TTL is 0 or 1, so the packet must not be forwarded;
	// the sender is owed ICMP time exceeded ("ttl-expired").
	TTLExpired
	// MartianSource: the source is not a single host that may appear on a
	// network: 0/8, 127/8, 169.254/16, multicast or 240/4 including the
	// broadcast address (RFC 1812 §5.3.7, RFC 3927 §7) ("martian-source").
	MartianSource
	// MartianDestination: the destination is 0/8, 127/8, 169.254/16,
	// multicast or 240/4, none of which ferry routes
	// ("martian-destination").
	MartianDestination
	// DontFragment: Fragment was asked to split a packet with DF set
	// ("dont-fragment"); the sender is owed FragNeeded instead.
	DontFragment
	// MTUTooSmall: Fragment was given an MTU below 68 bytes, the least
	// every IPv4 link must carry (RFC 791), or too small for the header
	// and 8 bytes of data ("mtu-too-small").
	MTUTooSmall
	// ShortBuffer: the caller's output buffers are too few or too small
	// ("short-buffer").
	ShortBuffer
	// NoErrorAboutICMPError: the offending packet is itself an ICMP error
	// (or an ICMP message too short to tell); RFC 1812 §4.3.2.7 forbids an
	// error about it ("icmp-error-about-icmp-error").
	NoErrorAboutICMPError
	// NoErrorAboutFragment: the offending packet is a fragment other than
	// the first (RFC 1812 §4.3.2.7) ("icmp-error-about-fragment").
	NoErrorAboutFragment
	// NoErrorToGroup: the offending packet was sent to a broadcast or
	// multicast address (RFC 1812 §4.3.2.7) ("icmp-error-to-group").
	NoErrorToGroup
	// NoErrorToSource: the offending packet's source is not a single host
	// (zero, loopback, broadcast, multicast, class E; RFC 1812 §4.3.2.7),
	// or the router's own source address is not IPv4
	// ("icmp-error-bad-source").
	NoErrorToSource
	numStatuses
)

var statusNames = [numStatuses]string{
	OK:                    "ok",
	Malformed:             "malformed",
	BadChecksum:           "bad-checksum",
	TTLExpired:            "ttl-expired",
	MartianSource:         "martian-source",
	MartianDestination:    "martian-destination",
	DontFragment:          "dont-fragment",
	MTUTooSmall:           "mtu-too-small",
	ShortBuffer:           "short-buffer",
	NoErrorAboutICMPError: "icmp-error-about-icmp-error",
	NoErrorAboutFragment:  "icmp-error-about-fragment",
	NoErrorToGroup:        "icmp-error-to-group",
	NoErrorToSource:       "icmp-error-bad-source",
}

// String returns the kebab-case name of s, e.g. "ttl-expired", or
// "unknown".
func (s Status) String() string {
	if s < numStatuses {
		return statusNames[s]
	}
	return "unknown"
}
