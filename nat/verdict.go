package nat

// Dir is the way a packet is travelling relative to the container networks
// behind the uplink.
type Dir uint8

// Packet directions.
const (
	// Outbound: the packet came from a container network whose sources
	// masquerade to this Table's nat_address, and is leaving for the
	// uplink or (hairpin) addressed to the nat_address itself.
	Outbound Dir = iota + 1
	// Inbound: the packet came in from the uplink.
	Inbound
)

// String returns "outbound" or "inbound".
func (d Dir) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	}
	return "unknown"
}

// Verdict is the outcome of Process for one packet: a sentinel rather than
// an error, so the fast path allocates nothing. Drop verdicts carry their
// reason; String is the kebab-case reason label for drop counters.
type Verdict uint8

// Verdicts. Translated and NoMatch are forwarding outcomes; every other
// value is a drop the caller counts under Verdict.String().
const (
	// Translated: the packet belongs to a tracked connection (new or
	// existing) and was rewritten in place; forward it by its new
	// destination address.
	Translated Verdict = iota
	// NoMatch: the packet is not NAT's business and was not touched: an
	// Inbound packet not addressed to the nat_address, or a packet to the
	// nat_address that is neither part of a flow nor published (a ping
	// to ferry's own address, a connection to an unpublished port). The
	// caller delivers it locally or drops it.
	NoMatch
	// DropMalformed: the IPv4 header or the TCP/UDP/ICMP header is cut
	// off or inconsistent ("nat-malformed").
	DropMalformed
	// DropFragment: an IPv4 fragment; reassembly is not implemented
	// ("nat-fragment").
	DropFragment
	// DropUnsupported: a protocol or ICMP type NAT cannot translate,
	// leaving a masqueraded network ("nat-unsupported").
	DropUnsupported
	// DropInvalid: a packet that cannot start a connection (a TCP segment
	// that is neither SYN nor ACK, an echo reply nobody asked for) or that
	// arrives from the wrong side of a known one ("nat-invalid").
	DropInvalid
	// DropBadICMPError: an ICMP error whose quoted packet is cut off or
	// not TCP, UDP or ICMP echo ("nat-bad-icmp-error").
	DropBadICMPError
	// DropNoFlow: an Outbound ICMP error about no tracked connection
	// ("nat-no-flow"); sending it on would leak a container address.
	DropNoFlow
	// DropPortExhausted: masquerade found no free port on the nat_address
	// for the new connection ("nat-port-exhausted").
	DropPortExhausted
	// DropConflict: a published port would map a new connection onto the
	// reply tuple of an existing one ("nat-tuple-conflict").
	DropConflict
	// DropTableFull: the table is at Options.MaxEntries and the bounded
	// early-drop scan found nothing to evict ("nat-table-full").
	DropTableFull
	numVerdicts
	// verdictPending marks, between Process's two passes, a packet that
	// needs the write lock. It never escapes Process.
	verdictPending = numVerdicts
)

var verdictNames = [numVerdicts]string{
	Translated:        "translated",
	NoMatch:           "no-match",
	DropMalformed:     "nat-malformed",
	DropFragment:      "nat-fragment",
	DropUnsupported:   "nat-unsupported",
	DropInvalid:       "nat-invalid",
	DropBadICMPError:  "nat-bad-icmp-error",
	DropNoFlow:        "nat-no-flow",
	DropPortExhausted: "nat-port-exhausted",
	DropConflict:      "nat-tuple-conflict",
	DropTableFull:     "nat-table-full",
}

// String returns the verdict's label, e.g. "nat-port-exhausted".
func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

// IsDrop reports whether v tells the caller to drop the packet.
func (v Verdict) IsDrop() bool { return v >= DropMalformed && v < numVerdicts }
