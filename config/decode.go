package config

// Decoding runs in three passes over the (small) file:
//
//  1. parseTree parses the YAML into a node tree, reporting syntax errors and
//     a second document.
//  2. check walks the tree against the Config struct types, in document
//     order, and reports the first unknown or repeated key, or value of the
//     wrong shape or type, with its path and line. It is stricter than yaml
//     where yaml is lax (it truncates 1.5 into an int).
//  3. decodeStrict decodes the file into a Config with yaml's KnownFields
//     decoder. After check, this fails only on what check does not model
//     (excessive aliasing, a self-referencing anchor); its error is passed
//     on, cut to one line.
//
// The tree is kept for setDefaults (a default applies only to an absent
// key) and for lineOf, which finds the line of a field that Validate
// rejects.

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	durationType  = reflect.TypeFor[time.Duration]()
	addrType      = reflect.TypeFor[netip.Addr]()
	prefixType    = reflect.TypeFor[netip.Prefix]()
	addrPortType  = reflect.TypeFor[netip.AddrPort]()
	peerType      = reflect.TypeFor[Peer]()
	unmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// YAML's short tags, as yaml.Node.ShortTag reports them.
const (
	tagNull  = "!!null"
	tagStr   = "!!str"
	tagInt   = "!!int"
	tagFloat = "!!float"
	tagBool  = "!!bool"
	tagMerge = "!!merge"
)

// parseTree parses data into a document node. It returns nil, nil for a
// file with no document (empty, or only comments).
func parseTree(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, &Error{Line: next.Line, Msg: "a second YAML document starts here; a config file holds one"}
	case !errors.Is(err, io.EOF):
		return nil, yamlError(err)
	}
	return &doc, nil
}

// decodeStrict decodes the first document of data into c, rejecting
// unknown keys.
func decodeStrict(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return yamlError(err)
	}
	return nil
}

// yamlError turns an error from the yaml package into a one-line *Error,
// moving its "line N:" into Line.
func yamlError(err error) *Error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	e := &Error{}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				e.Line, msg = line, after
			}
		}
	}
	if i := strings.IndexAny(msg, "\r\n"); i >= 0 {
		msg = msg[:i]
	}
	e.Msg = msg
	return e
}

// check reports the first problem in the document doc that decoding into a
// Config would hit, or a lax decoding would hide.
func check(doc *yaml.Node) error {
	if len(doc.Content) == 0 {
		return nil
	}
	c := checker{done: make(map[checked]bool)}
	if e := c.node(doc.Content[0], reflect.TypeFor[Config](), ""); e != nil {
		return e
	}
	return nil
}

// checker walks a node tree. done remembers the alias targets it has
// checked as a type, so that a file that uses one anchor many times is
// still checked in time linear in its size.
type checker struct {
	done map[checked]bool
}

type checked struct {
	n *yaml.Node
	t reflect.Type
}

// node checks that n can be decoded into a value of type t, which sits at
// path.
func (c *checker) node(n *yaml.Node, t reflect.Type, path string) *Error {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || c.done[checked{n.Alias, t}] {
			return nil
		}
		c.done[checked{n.Alias, t}] = true
		return c.node(n.Alias, t, path)
	}
	if isNull(n) {
		return nil // decodes as the zero value
	}
	switch {
	case t == durationType:
		return checkDuration(n, path)
	case t == peerType:
		return c.peer(n, path)
	case reflect.PointerTo(t).Implements(unmarshalType):
		return checkText(n, t, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		return c.mapping(n, t, path)
	case reflect.Slice:
		return c.sequence(n, t, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return mismatch(n, path, "a string")
		}
	case reflect.Int, reflect.Int64, reflect.Uint16, reflect.Uint32:
		return checkInteger(n, t, path)
	}
	// Any other type is left to decodeStrict.
	return nil
}

// mapping checks a mapping decoded into the struct type t.
func (c *checker) mapping(n *yaml.Node, t reflect.Type, path string) *Error {
	if n.Kind != yaml.MappingNode {
		return mismatch(n, path, "a mapping")
	}
	names, fields := fieldsOf(t)
	first := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return &Error{Line: k.Line, Path: path, Msg: fmt.Sprintf("a key must be a name, not %s", describe(k))}
		}
		kp := join(path, k.Value)
		if line, dup := first[k.Value]; dup {
			return &Error{Line: k.Line, Path: kp, Msg: fmt.Sprintf("set twice (first on line %d)", line)}
		}
		first[k.Value] = k.Line
		if k.ShortTag() == tagMerge {
			if e := c.merge(v, t, path); e != nil {
				return e
			}
			continue
		}
		ft, ok := fields[k.Value]
		if !ok {
			return &Error{Line: k.Line, Path: kp, Msg: unknownKey(k.Value, names)}
		}
		if e := c.node(v, ft, kp); e != nil {
			return e
		}
	}
	return nil
}

// merge checks the value of a YAML merge key ("<<: *base"): a mapping, or
// a list of mappings, each merged into the struct type t at path.
func (c *checker) merge(v *yaml.Node, t reflect.Type, path string) *Error {
	m := resolve(v)
	switch m.Kind {
	case yaml.MappingNode:
		return c.node(v, t, path)
	case yaml.SequenceNode:
		for _, e := range m.Content {
			if resolve(e).Kind != yaml.MappingNode {
				return &Error{Line: e.Line, Path: path, Msg: "a merge (<<) takes a mapping or a list of mappings"}
			}
			if err := c.node(e, t, path); err != nil {
				return err
			}
		}
		return nil
	}
	return &Error{Line: m.Line, Path: path, Msg: "a merge (<<) takes a mapping or a list of mappings"}
}

// peer checks a peer, which is written either as its underlay address (l2)
// or as a mapping of underlay, subnet and vtep_mac (l3).
func (c *checker) peer(n *yaml.Node, path string) *Error {
	switch n.Kind {
	case yaml.ScalarNode:
		return checkText(n, addrType, path)
	case yaml.MappingNode:
		return c.mapping(n, peerType, path)
	}
	return mismatch(n, path, "an IP address or a mapping {underlay: ADDRESS, subnet: PREFIX}")
}

// sequence checks a list decoded into the slice type t.
func (c *checker) sequence(n *yaml.Node, t reflect.Type, path string) *Error {
	if n.Kind != yaml.SequenceNode {
		return mismatch(n, path, "a list")
	}
	for i, e := range n.Content {
		if err := c.node(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}

// checkInteger checks an integer of type t. Unlike yaml, it refuses
// floats, which yaml would truncate.
func checkInteger(n *yaml.Node, t reflect.Type, path string) *Error {
	if n.Kind != yaml.ScalarNode {
		return mismatch(n, path, "an integer")
	}
	if tag := n.ShortTag(); tag != tagInt {
		msg := fmt.Sprintf("%s is not an integer", display(n))
		if _, err := strconv.Atoi(n.Value); err == nil && tag == tagStr {
			msg = fmt.Sprintf("%s is a string, not an integer (write it without quotes)", display(n))
		}
		return &Error{Line: n.Line, Path: path, Msg: msg}
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		msg := fmt.Sprintf("%s is too large", n.Value)
		if strings.HasPrefix(n.Value, "-") {
			msg = fmt.Sprintf("%s is out of range", n.Value)
		}
		return &Error{Line: n.Line, Path: path, Msg: msg}
	}
	return nil
}

// checkDuration checks a time.Duration, which yaml reads with
// time.ParseDuration from a string only.
func checkDuration(n *yaml.Node, path string) *Error {
	if n.Kind != yaml.ScalarNode {
		return mismatch(n, path, "a duration")
	}
	switch tag := n.ShortTag(); tag {
	case tagInt, tagFloat:
		return &Error{Line: n.Line, Path: path, Msg: fmt.Sprintf("%s has no unit; write a duration such as 300s, 5m or 1h", n.Value)}
	case tagStr:
		if _, err := time.ParseDuration(n.Value); err == nil {
			return nil
		}
	}
	return &Error{Line: n.Line, Path: path, Msg: fmt.Sprintf("%s is not a duration (write e.g. 300s, 5m or 1h)", display(n))}
}

// checkText checks a value that yaml decodes with UnmarshalText (addresses,
// prefixes, MACs).
func checkText(n *yaml.Node, t reflect.Type, path string) *Error {
	noun := "a MAC address"
	switch t {
	case addrType:
		noun = "an IP address"
	case prefixType:
		noun = "an IP prefix (address/length, e.g. 10.42.0.0/24)"
	case addrPortType:
		noun = "an ADDRESS:PORT (e.g. 10.42.0.2:80)"
	}
	if n.Kind != yaml.ScalarNode {
		return mismatch(n, path, noun)
	}
	u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
	if err := u.UnmarshalText([]byte(n.Value)); err != nil {
		msg := fmt.Sprintf("%s is not %s", display(n), noun)
		var me *macError
		if errors.As(err, &me) {
			msg = me.msg // MAC's own errors are written for users
		}
		return &Error{Line: n.Line, Path: path, Msg: msg}
	}
	return nil
}

// mismatch reports a value of the wrong shape.
func mismatch(n *yaml.Node, path, want string) *Error {
	if path == "" {
		return &Error{Line: n.Line, Msg: fmt.Sprintf("the file must be a mapping of sections (node, control, metrics, networks), not %s", describe(n))}
	}
	return &Error{Line: n.Line, Path: path, Msg: fmt.Sprintf("must be %s, not %s", want, describe(n))}
}

// describe names a node's shape, or shows a scalar's value.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return display(n)
}

// display shows a scalar as a user wrote it: numbers and booleans plain,
// everything else quoted (so that the message stays on one line), and long
// values cut short.
func display(n *yaml.Node) string {
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	switch n.ShortTag() {
	case tagInt, tagFloat, tagBool:
		if !strings.ContainsAny(v, "\r\n") {
			return v
		}
	}
	return strconv.Quote(v)
}

// fieldsOf returns the yaml keys of struct type t, in order, and the type
// of each.
func fieldsOf(t reflect.Type) ([]string, map[string]reflect.Type) {
	names := make([]string, 0, t.NumField())
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		names = append(names, name)
		fields[name] = f.Type
	}
	return names, fields
}

// unknownKey explains an unknown key: the likely intended key if one is
// close, else the keys that exist.
func unknownKey(key string, names []string) string {
	if s := suggest(key, names); s != "" {
		return fmt.Sprintf("unknown key (did you mean %q?)", s)
	}
	return fmt.Sprintf("unknown key (known keys: %s)", strings.Join(names, ", "))
}

// suggest returns the name closest to key: one that differs only in case,
// '-' and '_', or else one within a small edit distance; "" if none is close.
func suggest(key string, names []string) string {
	fold := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
	}
	best, bestDist := "", min(2, max(1, len(key)/3))+1
	for _, name := range names {
		if fold(name) == fold(key) {
			return name
		}
		if d := editDistance(key, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// join appends key to path, quoting a key that is not a plain name so that
// the path stays readable and on one line.
func join(path, key string) string {
	if key == "" || strings.IndexFunc(key, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) >= 0 {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// isNull reports whether n is YAML null (absent value, "~" or "null").
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// pathStep is one step of a field path: a mapping key, or a list index when
// key is empty.
type pathStep struct {
	key   string
	index int
}

// splitPath splits a path built by this package ("networks[0].ports[1].mac")
// into steps.
func splitPath(path string) []pathStep {
	var steps []pathStep
	for part := range strings.SplitSeq(path, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key != "" {
			steps = append(steps, pathStep{key: key})
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if err != nil {
				return steps
			}
			steps = append(steps, pathStep{index: i})
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return steps
}

// lookup returns the value node at path in doc, following aliases and
// merges, or nil if the file does not set it. doc may be nil.
func lookup(doc *yaml.Node, path string) *yaml.Node {
	if doc == nil || len(doc.Content) == 0 {
		return nil
	}
	n := doc.Content[0]
	for _, s := range splitPath(path) {
		if n = child(n, s); n == nil {
			return nil
		}
	}
	return n
}

// lineOf returns the line of the value at path in doc or, when the file
// leaves it out, of its nearest enclosing value; 0 if only the document
// encloses it.
func lineOf(doc *yaml.Node, path string) int {
	if len(doc.Content) == 0 {
		return 0
	}
	n, line := doc.Content[0], 0
	for _, s := range splitPath(path) {
		if n = child(n, s); n == nil {
			break
		}
		line = n.Line
	}
	return line
}

// child returns the value of step s in node n, or nil.
func child(n *yaml.Node, s pathStep) *yaml.Node {
	n = resolve(n)
	if s.key == "" {
		if n.Kind == yaml.SequenceNode && s.index >= 0 && s.index < len(n.Content) {
			return n.Content[s.index]
		}
		return nil
	}
	return mapValue(n, s.key, 0)
}

// mapValue returns the value of key in mapping n, looking into merged
// mappings (the first one that has it wins, as in yaml) up to a small depth.
func mapValue(n *yaml.Node, key string, depth int) *yaml.Node {
	if n.Kind != yaml.MappingNode || depth > 8 {
		return nil
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			continue
		}
		if k.ShortTag() == tagMerge {
			merges = append(merges, n.Content[i+1])
			continue
		}
		if k.Value == key {
			return n.Content[i+1]
		}
	}
	for _, m := range merges {
		m = resolve(m)
		list := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			list = m.Content
		}
		for _, e := range list {
			if v := mapValue(resolve(e), key, depth+1); v != nil {
				return v
			}
		}
	}
	return nil
}
