package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// FieldError is a problem with one field of a configuration file.
type FieldError struct {
	File   string // as given to Parse; "" when the Config was built in code
	Line   int    // 1-based; 0 when the position is not known
	Column int    // 1-based; 0 when the position is not known
	Field  string // e.g. "targets[0].address"; "" for the file as a whole
	Err    error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if e.File != "" {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%d:%d", e.Line, e.Column)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// position is a 1-based line and column in the source; zero when unknown.
type position struct{ line, column int }

// fieldRef names the field a key or value in the source belongs to.
type fieldRef struct {
	path   string // "targets[0].address"
	parent string // "targets[0]"; "" at the top level
	key    string // "address"; "" for a sequence entry
}

// sourceMap ties field paths to their place in the file Parse read.
type sourceMap struct {
	fields map[string]position // field path → its value, or its key when the value is empty
	at     map[position]fieldRef
}

// newSourceMap walks the document. It also rejects mapping keys that are not
// strings: the decoder silently drops the whole mapping when it meets one.
func newSourceMap(file string, body ast.Node) (*sourceMap, error) {
	m := &sourceMap{fields: map[string]position{}, at: map[position]fieldRef{}}
	if err := m.walk(file, body, ""); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *sourceMap) walk(file string, node ast.Node, path string) error {
	if err := rejectTag(file, node, path); err != nil {
		return err
	}
	switch n := unwrap(node).(type) {
	case *ast.MappingNode:
		for _, mv := range n.Values {
			if err := m.walkEntry(file, mv, path); err != nil {
				return err
			}
		}
	case *ast.MappingValueNode:
		return m.walkEntry(file, n, path)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			ref := fieldRef{path: fmt.Sprintf("%s[%d]", path, i), parent: path}
			m.fields[ref.path] = nodePosition(v)
			m.value(v, ref)
			if err := m.walk(file, v, ref.path); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *sourceMap) walkEntry(file string, mv *ast.MappingValueNode, parent string) error {
	if mv == nil || isNil(mv.Key) {
		return nil
	}
	if mv.Key.IsMergeKey() {
		// Merged fields are located at their parent.
		return nil
	}
	if err := rejectTag(file, mv.Key, parent); err != nil {
		return err
	}
	keyPos := nodePosition(mv.Key)
	key, ok := unwrap(mv.Key).(*ast.StringNode)
	if !ok {
		kind := "an empty value"
		if k := unwrap(mv.Key); k != nil {
			kind = k.Type().YAMLName()
		}
		return &FieldError{File: file, Line: keyPos.line, Column: keyPos.column, Field: parent,
			Err: fmt.Errorf("%s used as a key; keys are field names", kind)}
	}
	ref := fieldRef{path: joinField(parent, key.Value), parent: parent, key: key.Value}
	m.at[keyPos] = ref
	m.fields[ref.path] = keyPos
	if isNil(unwrap(mv.Value)) {
		return nil
	}
	if unwrap(mv.Value).Type() != ast.NullType {
		if pos := nodePosition(mv.Value); pos.line > 0 {
			m.fields[ref.path] = pos
		}
	}
	m.value(mv.Value, ref)
	return m.walk(file, mv.Value, ref.path)
}

// value records where a value is, both where a reader sees it and at its own
// token, which is what the decoder's errors carry; keys, recorded later by
// the walk, take a shared position over their enclosing value.
func (m *sourceMap) value(n ast.Node, ref fieldRef) {
	for _, pos := range []position{nodePosition(n), tokenPos(n)} {
		if _, taken := m.at[pos]; !taken && pos.line > 0 {
			m.at[pos] = ref
		}
	}
}

// find returns where field, or the closest enclosing field the file has, is.
func (m *sourceMap) find(field string) position {
	if m == nil {
		return position{}
	}
	for field != "" {
		if p, ok := m.fields[field]; ok {
			return p
		}
		field = field[:max(strings.LastIndexAny(field, ".["), 0)]
	}
	return position{}
}

func joinField(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// rejectTag refuses YAML tags ("!!str", "!x"): a configuration has no use
// for them, and the decoder has panicked on tagged empty values.
func rejectTag(file string, n ast.Node, field string) error {
	for !isNil(n) {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.MappingKeyNode:
			n = v.Value
		case *ast.TagNode:
			pos := tokenPos(v)
			name := "!"
			if v.Start != nil {
				name = v.Start.Value
			}
			return &FieldError{File: file, Line: pos.line, Column: pos.column, Field: field,
				Err: fmt.Errorf("YAML tags such as %s are not supported; write the plain value", name)}
		default:
			return nil
		}
	}
	return nil
}

// unwrap skips the anchor, tag and explicit-key wrappers around a node.
func unwrap(n ast.Node) ast.Node {
	for !isNil(n) {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.MappingKeyNode:
			n = v.Value
		default:
			return n
		}
	}
	return nil
}

// isNil reports a nil node, including a nil pointer in the interface.
func isNil(n ast.Node) bool {
	if n == nil {
		return true
	}
	v := reflect.ValueOf(n)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// nodePosition is where a reader sees a node start. A block mapping's own
// token is its first ":", so a mapping is placed at its first key.
func nodePosition(n ast.Node) position {
	switch v := n.(type) {
	case *ast.MappingNode:
		if len(v.Values) > 0 && v.Values[0] != nil && !isNil(v.Values[0].Key) {
			return nodePosition(v.Values[0].Key)
		}
	case *ast.MappingValueNode:
		if !isNil(v.Key) {
			return nodePosition(v.Key)
		}
	}
	return tokenPos(n)
}

// tokenPos is the position of a node's own token.
func tokenPos(n ast.Node) position {
	if isNil(n) {
		return position{}
	}
	tok := n.GetToken()
	if tok == nil || tok.Position == nil {
		return position{}
	}
	return position{line: tok.Position.Line, column: tok.Position.Column}
}

// decodeError turns an error from the YAML parser or decoder into a
// FieldError; src is nil for parser errors.
func decodeError(file string, src *sourceMap, err error) error {
	fe := &FieldError{File: file, Err: err}
	var (
		nodeErr    *nodeError
		unknownErr *yaml.UnknownFieldError
		typeErr    *yaml.TypeError
		yamlErr    yaml.Error
	)
	switch {
	case errors.As(err, &nodeErr):
		fe.Err = errors.New(nodeErr.msg)
		fe.setPosition(nodePosition(nodeErr.node), src)
	case errors.As(err, &unknownErr):
		fe.Err = errors.New(unknownErr.GetMessage())
		pos := tokenPosition(unknownErr)
		fe.Line, fe.Column = pos.line, pos.column
		if ref, ok := src.lookup(pos); ok {
			fe.Err = errors.New(unknownFieldMessage(ref))
		}
	case errors.As(err, &typeErr):
		fe.Err = fmt.Errorf("expected %s, found %s", describeType(typeErr.DstType), describeType(typeErr.SrcType))
		fe.setPosition(tokenPosition(typeErr), src)
	case errors.As(err, &yamlErr):
		fe.Err = errors.New(yamlErr.GetMessage())
		fe.setPosition(tokenPosition(yamlErr), src)
	}
	return fe
}

func (e *FieldError) setPosition(pos position, src *sourceMap) {
	e.Line, e.Column = pos.line, pos.column
	if ref, ok := src.lookup(pos); ok {
		e.Field = ref.path
	}
}

func (m *sourceMap) lookup(pos position) (fieldRef, bool) {
	if m == nil || pos.line == 0 {
		return fieldRef{}, false
	}
	ref, ok := m.at[pos]
	return ref, ok
}

func tokenPosition(e yaml.Error) position {
	tok := e.GetToken()
	if tok == nil || tok.Position == nil {
		return position{}
	}
	return position{line: tok.Position.Line, column: tok.Position.Column}
}

func describeType(t reflect.Type) string {
	if t == nil {
		return "nothing"
	}
	if t == reflect.TypeFor[Duration]() {
		return "a duration"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return t.String()
	}
}

func unknownFieldMessage(ref fieldRef) string {
	where := "at the top level"
	if ref.parent != "" {
		where = "in " + ref.parent
	}
	msg := fmt.Sprintf("unknown field %q %s", ref.key, where)
	known := knownFields(ref.parent)
	if s := closest(ref.key, known); s != "" {
		return msg + fmt.Sprintf("; did you mean %q?", s)
	}
	if len(known) > 0 {
		return msg + "; known fields: " + strings.Join(known, ", ")
	}
	return msg
}

// knownFields lists the YAML field names of the struct at a field path such
// as "workloads[0].match".
func knownFields(path string) []string {
	t := reflect.TypeFor[Config]()
	if path != "" {
		for _, seg := range strings.Split(path, ".") {
			if i := strings.IndexByte(seg, '['); i >= 0 {
				seg = seg[:i]
			}
			f, ok := fieldByTag(t, seg)
			if !ok {
				return nil
			}
			t = f.Type
			for t.Kind() == reflect.Slice {
				t = t.Elem()
			}
		}
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		if name := yamlName(f); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for f := range t.Fields() {
		if yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if !f.IsExported() || name == "-" {
		return ""
	}
	return name
}

// closest returns the candidate within two edits of s, for "did you mean".
func closest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist && d < len(s) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between two short strings.
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

// maxFlowDepth bounds bracket nesting: the YAML parser recurses once per
// level, and a deep enough flow collection exhausts the stack, which no
// recover catches.
const maxFlowDepth = 64

// flowDepth is an upper bound of how deep [ ] and { } nest in data; brackets
// inside strings and comments count too, which only matters for absurd input.
func flowDepth(data []byte) int {
	depth, deepest := 0, 0
	for _, b := range data {
		switch b {
		case '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ']', '}':
			depth = max(depth-1, 0)
		}
	}
	return deepest
}
