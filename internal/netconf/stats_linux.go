package netconf

import (
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// LinkStats reads one link's kernel counters, in whatever namespace the
// link lives: it keeps a netlink socket open in that namespace, so a read
// is one netlink request, made when an operator or a scraper asks (never
// per packet). Safe for concurrent use.
type LinkStats struct {
	mu     sync.Mutex
	h      *netlink.Handle
	index  int
	ns     string
	ifname string
}

// KernelDrops are the kernel's drop counters of a TAP/TUN device, in the
// device's own terms: TxDropped counts packets the container sent that the
// kernel dropped before ferry could read them (the device's queue was
// full, or the device was not ready), RxDropped packets ferry wrote that
// the kernel dropped after taking them.
type KernelDrops struct {
	TxDropped uint64
	RxDropped uint64
}

// OpenLinkStats opens the counters of link ifname in namespace ns (a name
// under NetnsDir or an absolute path; "" for the caller's namespace).
func OpenLinkStats(ns, ifname string) (*LinkStats, error) {
	var h *netlink.Handle
	var err error
	if ns == "" {
		h, err = netlink.NewHandle()
	} else {
		var target netns.NsHandle
		target, err = netns.GetFromPath(NetnsPath(ns))
		if err != nil {
			return nil, fmt.Errorf("netconf: stats of %s in %s: open namespace: %w", ifname, ns, err)
		}
		defer target.Close()
		h, err = netlink.NewHandleAt(target)
	}
	if err != nil {
		return nil, fmt.Errorf("netconf: stats of %s in %q: netlink: %w", ifname, ns, err)
	}
	l, err := h.LinkByName(ifname)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netconf: stats of %s in %q: %w", ifname, ns, err)
	}
	return &LinkStats{h: h, index: l.Attrs().Index, ns: ns, ifname: ifname}, nil
}

// Drops reads the link's drop counters now.
func (s *LinkStats) Drops() (KernelDrops, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return KernelDrops{}, fmt.Errorf("netconf: stats of %s in %q: closed", s.ifname, s.ns)
	}
	l, err := s.h.LinkByIndex(s.index)
	if err != nil {
		return KernelDrops{}, fmt.Errorf("netconf: stats of %s in %q: %w", s.ifname, s.ns, err)
	}
	st := l.Attrs().Statistics
	if st == nil {
		return KernelDrops{}, fmt.Errorf("netconf: stats of %s in %q: the kernel sent none", s.ifname, s.ns)
	}
	return KernelDrops{TxDropped: st.TxDropped, RxDropped: st.RxDropped}, nil
}

// Close releases the netlink socket.
func (s *LinkStats) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		s.h.Close()
		s.h = nil
	}
	return nil
}
