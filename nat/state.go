package nat

import "github.com/ferry-overlay/ferry/header"

// TCPState is the tracked state of a TCP connection, with the names and
// meanings of Linux's nf_conntrack_proto_tcp.c.
type TCPState uint8

// TCP states. The numbering is ferry's own.
const (
	TCPNone        TCPState = iota // no packet seen (never stored)
	TCPSynSent                     // SYN seen from the originator
	TCPSynRecv                     // SYN-ACK seen
	TCPEstablished                 // ACK of the handshake seen
	TCPFinWait                     // FIN seen
	TCPCloseWait                   // ACK of the first FIN seen
	TCPLastAck                     // FIN seen in both directions
	TCPTimeWait                    // last ACK seen
	TCPClose                       // RST seen
	TCPSynSent2                    // SYN from the reply side too: simultaneous open
	numTCPStates
)

// Outcomes of the transition table that are not states: the kernel's sIV
// (the packet does not fit the state; the state is kept) and sIG (the
// packet may be valid but says nothing; the state is kept).
const (
	tcpInvalid TCPState = numTCPStates + iota
	tcpIgnore
)

var tcpStateNames = [numTCPStates]string{
	"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
	"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2",
}

// String returns the state's conntrack name, e.g. "ESTABLISHED".
func (s TCPState) String() string {
	if s < numTCPStates {
		return tcpStateNames[s]
	}
	return "INVALID"
}

// MarshalText makes a TCPState print as its name in JSON.
func (s TCPState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// tcpEvent classifies a segment the way the kernel's get_conntrack_index
// does: RST wins, then SYN (with or without ACK), then FIN, then ACK.
type tcpEvent uint8

const (
	evSYN tcpEvent = iota
	evSYNACK
	evFIN
	evACK
	evRST
	evNone
	numTCPEvents
)

func classify(flags uint8) tcpEvent {
	switch {
	case flags&header.TCPFlagRST != 0:
		return evRST
	case flags&header.TCPFlagSYN != 0:
		if flags&header.TCPFlagACK != 0 {
			return evSYNACK
		}
		return evSYN
	case flags&header.TCPFlagFIN != 0:
		return evFIN
	case flags&header.TCPFlagACK != 0:
		return evACK
	}
	return evNone
}

// tcpTransitions[dir][event][state] is the next state, following the
// kernel's tcp_conntracks table (dir 0 = original, 1 = reply). Columns are
// in TCPState order: NONE SYN_SENT SYN_RECV ESTABLISHED FIN_WAIT CLOSE_WAIT
// LAST_ACK TIME_WAIT CLOSE SYN_SENT2.
var tcpTransitions = func() (t [2][numTCPEvents][numTCPStates]TCPState) {
	const (
		no = TCPNone
		ss = TCPSynSent
		sr = TCPSynRecv
		es = TCPEstablished
		fw = TCPFinWait
		cw = TCPCloseWait
		la = TCPLastAck
		tw = TCPTimeWait
		cl = TCPClose
		s2 = TCPSynSent2
		iv = tcpInvalid
		ig = tcpIgnore
	)
	_ = no
	t[dirOrig][evSYN] = [...]TCPState{ss, ss, ig, ig, ig, ig, ig, ss, ss, s2}
	t[dirOrig][evSYNACK] = [...]TCPState{iv, iv, sr, iv, iv, iv, iv, iv, iv, sr}
	t[dirOrig][evFIN] = [...]TCPState{iv, iv, fw, fw, la, la, la, tw, cl, iv}
	t[dirOrig][evACK] = [...]TCPState{es, iv, es, es, cw, cw, tw, tw, cl, iv}
	t[dirOrig][evRST] = [...]TCPState{iv, cl, cl, cl, cl, cl, cl, cl, cl, cl}
	t[dirReply][evSYN] = [...]TCPState{iv, s2, iv, iv, iv, iv, iv, ss, iv, s2}
	t[dirReply][evSYNACK] = [...]TCPState{iv, sr, ig, ig, ig, ig, ig, ig, ig, sr}
	t[dirReply][evFIN] = [...]TCPState{iv, iv, fw, fw, la, la, la, tw, cl, iv}
	t[dirReply][evACK] = [...]TCPState{iv, ig, sr, es, cw, cw, tw, tw, cl, ig}
	t[dirReply][evRST] = [...]TCPState{iv, cl, cl, cl, cl, cl, cl, cl, cl, cl}
	for d := range t {
		for s := range t[d][evNone] {
			t[d][evNone][s] = iv
		}
	}
	return t
}()

// Tuple indexes of an entry.
const (
	dirOrig  = 0
	dirReply = 1
)
