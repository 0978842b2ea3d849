package bridge

import "strconv"

// Location is where a MAC address was seen: a local port or a remote peer
// (tunnel endpoint) of the network, each identified by a uint16 index whose
// meaning belongs to the dataplane. The bridge only tells ports from peers.
//
// The zero Location, [NoLocation], is "nowhere": it is what a lookup miss
// returns, and frames that arrive from it are not learned.
type Location uint32

// NoLocation is the zero Location: a lookup miss, or a frame with no ingress
// to learn (for example one the router originated).
const NoLocation Location = 0

// The kind of a Location lives above its 16-bit index.
const (
	kindShift          = 16
	kindPort  Location = 1 << kindShift
	kindPeer  Location = 2 << kindShift
	kindMask  Location = 0xffff << kindShift
	indexMask Location = 0xffff
)

// PortLocation returns the Location of local port i.
func PortLocation(i uint16) Location { return kindPort | Location(i) }

// PeerLocation returns the Location of remote peer i.
func PeerLocation(i uint16) Location { return kindPeer | Location(i) }

// IsValid reports whether l is a port or a peer, that is, not [NoLocation]
// nor a value that PortLocation and PeerLocation cannot return.
func (l Location) IsValid() bool {
	k := l & kindMask
	return k == kindPort || k == kindPeer
}

// IsPort reports whether l is a local port.
func (l Location) IsPort() bool { return l&kindMask == kindPort }

// IsPeer reports whether l is a remote peer.
func (l Location) IsPeer() bool { return l&kindMask == kindPeer }

// Index returns the port or peer index that l was made from. It is 0 for
// NoLocation; check IsValid first when that matters.
func (l Location) Index() uint16 { return uint16(l & indexMask) }

// String returns "port 3", "peer 1", "none" for NoLocation, or
// "invalid 0x…" for any other value.
func (l Location) String() string {
	switch l & kindMask {
	case kindPort:
		return "port " + strconv.Itoa(int(l.Index()))
	case kindPeer:
		return "peer " + strconv.Itoa(int(l.Index()))
	}
	if l == NoLocation {
		return "none"
	}
	return "invalid 0x" + strconv.FormatUint(uint64(l), 16)
}

// FloodToPeers reports whether a frame that entered the network at from and
// must be flooded (a lookup miss) may be sent to the remote peers.
//
// ferry's peers form a full mesh, so it applies split horizon: a frame that
// came out of a tunnel was already flooded by its sender to every peer, and
// sending it back into the tunnels would loop and duplicate it. It therefore
// returns false when from is a peer, and true for local ports and for
// NoLocation (frames the host itself originates). Flooding to the local ports
// other than the ingress one is always allowed.
func FloodToPeers(from Location) bool { return !from.IsPeer() }
