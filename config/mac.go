package config

import (
	"fmt"
	"net"
)

// MAC is a 48-bit Ethernet address. The zero MAC means "not set". It is a
// value type (an array), so copies are independent; the daemon converts it
// with [6]byte(m).
type MAC [6]byte

// macError is a MAC parsing error, phrased for the person who wrote the
// value.
type macError struct{ msg string }

func (e *macError) Error() string { return e.msg }

// UnmarshalText parses any form net.ParseMAC accepts for a 6-byte address
// (02:42:0a:2a:00:02, 02-42-0a-2a-00-02, 0242.0a2a.0002). Empty text gives
// the zero MAC; the text 00:00:00:00:00:00 is refused, since it would read
// as "not set".
func (m *MAC) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*m = MAC{}
		return nil
	}
	hw, err := net.ParseMAC(string(text))
	if err != nil || len(hw) != len(m) {
		return &macError{fmt.Sprintf("%q is not a MAC address", text)}
	}
	v := MAC(hw)
	if v == (MAC{}) {
		return &macError{fmt.Sprintf("%q is the zero MAC address; leave the key out instead", text)}
	}
	*m = v
	return nil
}

// MarshalText returns String's form, or empty text for the zero MAC, so
// that a marshalled Config parses back to the same value.
func (m MAC) MarshalText() ([]byte, error) {
	if m == (MAC{}) {
		return nil, nil
	}
	return []byte(m.String()), nil
}

// String returns the address as six lower-case hex bytes separated by
// colons.
func (m MAC) String() string {
	return net.HardwareAddr(m[:]).String()
}

// IsZero reports whether m is the zero MAC ("not set"); it also lets
// yaml's omitempty leave an unset MAC out.
func (m MAC) IsZero() bool {
	return m == MAC{}
}

// IsUnicast reports whether m is an individual (not group) address: the
// least significant bit of its first byte is clear.
func (m MAC) IsUnicast() bool {
	return m[0]&1 == 0
}
