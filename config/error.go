package config

import (
	"strconv"
	"strings"
)

// Error is a configuration error: what is wrong, and where. Its message is
// always a single line:
//
//	config: [FILE:LINE: | FILE: | line LINE: ][PATH: ]MSG
//
// The control API and editors can use the fields; people read Error().
type Error struct {
	// File is the file's path; Load sets it, Parse leaves it empty.
	File string
	// Line is the 1-based line in the file, 0 when unknown (always 0 from
	// Validate, which sees no file).
	Line int
	// Path names the field, e.g. "networks[0].ports[1].mac"; empty when
	// the error is about the file as a whole (a YAML syntax error).
	Path string
	// Msg says what is wrong, without the location.
	Msg string
}

// Error formats the error as one line.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	file := e.File
	if strings.ContainsAny(file, "\r\n") {
		file = strconv.Quote(file) // keep the message on one line
	}
	switch {
	case file != "" && e.Line > 0:
		b.WriteString(file)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	case file != "":
		b.WriteString(file)
		b.WriteString(": ")
	case e.Line > 0:
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}
