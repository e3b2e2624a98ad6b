package adminauth

// The tokens file parser. It walks the YAML syntax tree itself instead of
// decoding into a struct, so every problem names its line and column, and
// so no error message ever repeats a token.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Bounds that keep the YAML library's recursion shallow: it descends once
// per nesting level, and a stack overflow cannot be recovered. Brackets nest
// at most maxFlowDepth; indentation, the other way to nest, is bounded by
// the line length.
const (
	maxFlowDepth  = 64
	maxLineLength = 2*maxTokenLength + 256
)

// parsedEntry is one entry of a tokens file.
type parsedEntry struct {
	sum     [sha256.Size]byte
	subject string
	groups  []string
	line    int
}

// entryFields are the fields an entry may have, for "unknown field" errors.
var entryFields = []string{"token", "subject", "groups"}

// parseTokens parses a tokens file's content; file names it in errors.
func parseTokens(file string, data []byte) ([]parsedEntry, error) {
	if len(data) > maxTokensFile {
		return nil, fileError(file, position{}, "file is %d bytes; a tokens file is at most %d", len(data), maxTokensFile)
	}
	if line, n := longestLine(data); n > maxLineLength {
		return nil, fileError(file, position{line: line}, "line is %d bytes; lines are at most %d", n, maxLineLength)
	}
	if d := flowDepth(data); d > maxFlowDepth {
		return nil, fileError(file, position{}, "brackets nest %d deep; at most %d are allowed", d, maxFlowDepth)
	}
	var f *ast.File
	err := guard(func() (err error) {
		f, err = parser.ParseBytes(data, 0)
		return err
	})
	if err != nil {
		return nil, syntaxError(file, err)
	}
	body, err := documentBody(file, f)
	if err != nil {
		return nil, err
	}
	body, err = plain(file, body)
	if err != nil {
		return nil, err
	}
	var items []ast.Node
	switch n := body.(type) {
	case nil, *ast.NullNode:
		// No entries: nobody can use a static token.
	case *ast.SequenceNode:
		items = n.Values
	default:
		return nil, fileError(file, nodePos(body), `the file is a list of entries such as "- token: ...", not %s`, describe(body))
	}

	entries := make([]parsedEntry, 0, len(items))
	seen := map[[sha256.Size]byte]int{}
	for _, item := range items {
		e, tokenPos, err := parseEntry(file, item)
		if err != nil {
			return nil, err
		}
		if line, dup := seen[e.sum]; dup {
			return nil, fileError(file, tokenPos, "this token is also the token of the entry at line %d; every token must be different", line)
		}
		seen[e.sum] = e.line
		entries = append(entries, e)
	}
	return entries, nil
}

// parseEntry parses one "- token: ..." entry; tokenPos is where its token is.
func parseEntry(file string, item ast.Node) (e parsedEntry, tokenPos position, err error) {
	n, err := plain(file, item)
	if err != nil {
		return e, tokenPos, err
	}
	var fields []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		fields = m.Values
	case *ast.MappingValueNode:
		fields = []*ast.MappingValueNode{m}
	default:
		return e, tokenPos, fileError(file, nodePos(n), "an entry is a mapping with token, subject and groups, not %s", describe(n))
	}
	entryPos := nodePos(n)
	e.line = entryPos.line
	var hasToken, hasSubject bool
	set := map[string]bool{}
	for _, mv := range fields {
		if mv == nil {
			continue
		}
		key, keyPos, err := fieldName(file, mv)
		if err != nil {
			return e, tokenPos, err
		}
		if set[key] {
			return e, tokenPos, fileError(file, keyPos, "%s is set twice in this entry", key)
		}
		set[key] = true
		value, err := plain(file, mv.Value)
		if err != nil {
			return e, tokenPos, err
		}
		pos := nodePos(value)
		if pos.line == 0 {
			pos = keyPos
		}
		switch key {
		case "token":
			tokenPos = pos
			s, err := tokenValue(value)
			if err != nil {
				return e, tokenPos, fileError(file, pos, "token: %w", err)
			}
			e.sum = sha256.Sum256([]byte(s))
			hasToken = true
		case "subject":
			s, err := nameValue(value, maxSubjectLen)
			if err != nil {
				return e, tokenPos, fileError(file, pos, "subject: %w", err)
			}
			e.subject = s
			hasSubject = true
		case "groups":
			g, err := groupsValue(file, value)
			if err != nil {
				return e, tokenPos, err
			}
			e.groups = g
		}
	}
	switch {
	case !hasToken:
		return e, tokenPos, fileError(file, entryPos, "entry has no token")
	case !hasSubject:
		return e, tokenPos, fileError(file, entryPos, "entry has no subject; name who uses this token")
	}
	return e, tokenPos, nil
}

// fieldName returns the name of an entry's field, refusing unknown ones.
func fieldName(file string, mv *ast.MappingValueNode) (string, position, error) {
	keyNode, err := plain(file, mv.Key)
	if err != nil {
		return "", position{}, err
	}
	pos := nodePos(keyNode)
	if pos.line == 0 {
		pos = tokenPosition(mv.Start)
	}
	key, ok := keyNode.(*ast.StringNode)
	if !ok {
		return "", pos, fileError(file, pos, "%s used as a field name; fields are %s", describe(keyNode), strings.Join(entryFields, ", "))
	}
	if slices.Contains(entryFields, key.Value) {
		return key.Value, pos, nil
	}
	// A key as long as a token may be a token written in the wrong place.
	if len(key.Value) >= MinTokenLength {
		return "", pos, fileError(file, pos, "unknown field; fields are %s", strings.Join(entryFields, ", "))
	}
	return "", pos, fileError(file, pos, "unknown field %q; fields are %s", key.Value, strings.Join(entryFields, ", "))
}

// tokenValue checks a token; its errors never repeat the token.
func tokenValue(n ast.Node) (string, error) {
	s, err := scalarString(n)
	if err != nil {
		return "", err
	}
	switch v := s; {
	case v == "":
		return "", errors.New("is empty")
	case len(v) < MinTokenLength:
		return "", fmt.Errorf("is %d bytes; a token is at least %d (make one with: openssl rand -hex 32)", len(v), MinTokenLength)
	case len(v) > maxTokenLength:
		return "", fmt.Errorf("is %d bytes; a token is at most %d", len(v), maxTokenLength)
	case strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r > '~' }):
		return "", errors.New("has a space, control or non-ASCII character; a token is printable ASCII")
	default:
		return v, nil
	}
}

// nameValue checks a subject or group name: text that lands in logs and
// events, so no control characters and no stray spaces.
func nameValue(n ast.Node, maxLen int) (string, error) {
	s, err := scalarString(n)
	if err != nil {
		return "", err
	}
	switch v := s; {
	case v == "":
		return "", errors.New("is empty")
	case len(v) > maxLen:
		return "", fmt.Errorf("is %d bytes; at most %d", len(v), maxLen)
	case strings.TrimSpace(v) != v:
		return "", errors.New("starts or ends with a space")
	case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) }):
		return "", errors.New("has a control character")
	default:
		return v, nil
	}
}

// scalarString returns the value of a one-line string node.
func scalarString(n ast.Node) (string, error) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, nil
	case nil, *ast.NullNode:
		return "", errors.New("is empty")
	case *ast.LiteralNode:
		return "", errors.New("is a block of lines; write it on one line, in quotes")
	default:
		return "", fmt.Errorf("is %s; write it as a string in quotes", describe(n))
	}
}

func groupsValue(file string, n ast.Node) ([]string, error) {
	switch seq := n.(type) {
	case nil, *ast.NullNode:
		return nil, nil
	case *ast.SequenceNode:
		groups := make([]string, 0, len(seq.Values))
		for _, item := range seq.Values {
			v, err := plain(file, item)
			if err != nil {
				return nil, err
			}
			g, err := nameValue(v, maxSubjectLen)
			if err != nil {
				return nil, fileError(file, nodePos(v), "group: %w", err)
			}
			if slices.Contains(groups, g) {
				return nil, fileError(file, nodePos(v), "group %q is listed twice", g)
			}
			groups = append(groups, g)
		}
		return groups, nil
	default:
		return nil, fileError(file, nodePos(n), "groups is a list such as [dba, oncall], not %s", describe(n))
	}
}

// documentBody returns the one document's content, nil for an empty file.
func documentBody(file string, f *ast.File) (ast.Node, error) {
	var body ast.Node
	for _, doc := range f.Docs {
		if doc == nil || isNil(doc.Body) {
			continue
		}
		if _, comment := doc.Body.(*ast.CommentGroupNode); comment {
			continue
		}
		if body != nil {
			return nil, fileError(file, nodePos(doc.Body), "more than one YAML document; a tokens file holds one list")
		}
		body = doc.Body
	}
	return body, nil
}

// plain strips an anchor and refuses what a tokens file has no use for:
// tags, aliases (which would repeat a token) and merge keys.
func plain(file string, n ast.Node) (ast.Node, error) {
	for !isNil(n) {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.MappingKeyNode:
			n = v.Value
		case *ast.TagNode:
			return nil, fileError(file, nodePos(v), "YAML tags are not supported; write the plain value")
		case *ast.AliasNode:
			return nil, fileError(file, nodePos(v), "YAML aliases are not supported; write each value out")
		case *ast.MergeKeyNode:
			return nil, fileError(file, nodePos(v), "YAML merge keys are not supported; write each field out")
		default:
			return n, nil
		}
	}
	return nil, nil
}

// describe names a node's kind for errors, never its value.
func describe(n ast.Node) string {
	switch n.(type) {
	case nil, *ast.NullNode:
		return "empty"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	default:
		return "a " + n.Type().YAMLName()
	}
}

// position is a 1-based line and column; zero when unknown.
type position struct{ line, column int }

// nodePos is where a reader sees n start: a block mapping's own token is its
// first ":", so a mapping is placed at its first key.
func nodePos(n ast.Node) position {
	if isNil(n) {
		return position{}
	}
	switch v := n.(type) {
	case *ast.MappingNode:
		if len(v.Values) > 0 && v.Values[0] != nil && !isNil(v.Values[0].Key) {
			return nodePos(v.Values[0].Key)
		}
	case *ast.MappingValueNode:
		if !isNil(v.Key) {
			return nodePos(v.Key)
		}
	}
	return tokenPosition(n.GetToken())
}

func tokenPosition(tok *token.Token) position {
	if tok == nil || tok.Position == nil {
		return position{}
	}
	return position{line: tok.Position.Line, column: tok.Position.Column}
}

func fileError(file string, pos position, format string, args ...any) error {
	return &FileError{File: file, Line: pos.line, Column: pos.column, Err: fmt.Errorf(format, args...)}
}

// quoted matches the quoted parts of the YAML library's messages, which can
// be pieces of the file: a token in the wrong place.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'[^']*'`)

// syntaxError reports a YAML syntax error at its place, without the quoted
// source the library would put in its message.
func syntaxError(file string, err error) error {
	var yerr yaml.Error
	if !errors.As(err, &yerr) {
		return &FileError{File: file, Err: errors.New("not valid YAML")}
	}
	msg := quoted.ReplaceAllStringFunc(yerr.GetMessage(), func(q string) string {
		if slices.Contains(entryFields, q[1:len(q)-1]) {
			return q
		}
		return `"…"`
	})
	return fileError(file, tokenPosition(yerr.GetToken()), "not valid YAML: %s", msg)
}

// guard turns a panic of the YAML library into an error: the tokens file is
// written by hand, and the library has panicked on malformed input.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("the YAML library failed on this file")
		}
	}()
	return f()
}

// isNil reports a nil node, including a nil pointer inside the interface.
func isNil(n ast.Node) bool {
	if n == nil {
		return true
	}
	v := reflect.ValueOf(n)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// longestLine returns the 1-based number and length of the longest line.
func longestLine(data []byte) (line, length int) {
	for i := 1; len(data) > 0; i++ {
		l, rest, _ := bytes.Cut(data, []byte{'\n'})
		if len(l) > length {
			line, length = i, len(l)
		}
		data = rest
	}
	return line, length
}

// flowDepth is an upper bound of how deep [ ] and { } nest: brackets inside
// strings and comments count too, which only matters for absurd files.
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
