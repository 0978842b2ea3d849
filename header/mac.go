package header

import (
	"errors"
	"fmt"
)

// MAC is an IEEE 802 48-bit MAC address, held by value so it can be compared
// with == and used as a map key (the bridge's FDB keys on it).
//
// Its text form, used by String, MarshalText and so by JSON and YAML, is six
// lowercase hex pairs separated by colons, e.g. "02:42:ac:11:00:02".
type MAC [6]byte

// BroadcastMAC is the all-ones Ethernet broadcast address ff:ff:ff:ff:ff:ff.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// errBadMAC is wrapped by every ParseMAC error.
var errBadMAC = errors.New("want six hex pairs separated by ':' or '-'")

const hexDigits = "0123456789abcdef"

// String returns the lowercase colon-separated form, "aa:bb:cc:dd:ee:ff".
func (m MAC) String() string {
	var buf [17]byte
	m.appendTo(buf[:0])
	return string(buf[:])
}

func (m MAC) appendTo(b []byte) []byte {
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0x0f])
	}
	return b
}

// IsMulticast reports whether the I/G (individual/group) bit, the least
// significant bit of the first octet, is set. The broadcast address is a
// group address, so it is multicast too.
func (m MAC) IsMulticast() bool { return m[0]&0x01 != 0 }

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == BroadcastMAC }

// IsZero reports whether m is 00:00:00:00:00:00, the value of an unset MAC.
func (m MAC) IsZero() bool { return m == MAC{} }

// MarshalText implements encoding.TextMarshaler with the String form.
func (m MAC) MarshalText() ([]byte, error) {
	return m.appendTo(make([]byte, 0, 17)), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it accepts what ParseMAC
// accepts.
func (m *MAC) UnmarshalText(text []byte) error {
	v, err := ParseMAC(string(text))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseMAC parses a 48-bit MAC address written as six two-digit hex pairs
// separated by ':' or '-' (one separator throughout), in either case:
// "02:42:AC:11:00:02" or "02-42-ac-11-00-02". Other forms that net.ParseMAC
// accepts (dotted, EUI-64, InfiniBand) are rejected.
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if len(s) != 17 {
		return MAC{}, fmt.Errorf("parse MAC %q: %w", s, errBadMAC)
	}
	sep := s[2]
	if sep != ':' && sep != '-' {
		return MAC{}, fmt.Errorf("parse MAC %q: %w", s, errBadMAC)
	}
	for i := range m {
		off := i * 3
		if i > 0 && s[off-1] != sep {
			return MAC{}, fmt.Errorf("parse MAC %q: %w", s, errBadMAC)
		}
		hi, ok1 := unhex(s[off])
		lo, ok2 := unhex(s[off+1])
		if !ok1 || !ok2 {
			return MAC{}, fmt.Errorf("parse MAC %q: %w", s, errBadMAC)
		}
		m[i] = hi<<4 | lo
	}
	return m, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
