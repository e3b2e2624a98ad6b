package postgres

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// The gateway decides what sqlfacts reads; the server runs what it lexes.
// The two agree only while standard_conforming_strings is on (otherwise a
// backslash ends a string for the server but not for the classifier) and
// the client encoding cannot hide a quote or backslash inside a multi-byte
// character (SJIS, BIG5, GBK, GB18030, UHC, JOHAB can). With either broken,
// `SELECT 'a\'' ; DROP TABLE t; --'` is one harmless SELECT to the gateway
// and a DROP to the server. So the gateway pins both at start-up, refuses
// statements that would change them, and ends a session whose upstream
// reports them changed anyway.

// GuardRule is the rule name of the gateway's own denials that no policy
// can lift, in decisions, recordings and metrics.
const GuardRule = "interlock-guard"

// lexingParams are the settings that change how the server lexes SQL, and
// whether a value keeps it in agreement with the classifier.
var lexingParams = map[string]func(string) bool{
	"standard_conforming_strings": func(v string) bool {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "on", "true", "yes", "1":
			return true
		}
		return false
	},
	"client_encoding": safeClientEncoding,
}

// safeClientEncoding: encodings in which every byte of a multi-byte
// character is >= 0x80, so no character can end in a quote or backslash.
func safeClientEncoding(v string) bool {
	e := strings.ToUpper(strings.NewReplacer("-", "", "_", "", " ", "", "'", "").Replace(v))
	switch {
	case e == "UTF8", e == "UNICODE", e == "SQLASCII":
		return true
	case strings.HasPrefix(e, "LATIN"), strings.HasPrefix(e, "ISO8859"), strings.HasPrefix(e, "KOI8"),
		strings.HasPrefix(e, "EUC"), strings.HasPrefix(e, "WIN125"), e == "WIN866", e == "WIN874":
		return true
	}
	return false
}

// pinLexingParams fixes the start-up parameters sent upstream: start-up
// values outrank role and database defaults, so a session always starts
// in agreement. It returns what it changed, for the log.
func pinLexingParams(params map[string]string) []string {
	var changed []string
	if v, ok := params["standard_conforming_strings"]; !ok || !lexingParams["standard_conforming_strings"](v) {
		if ok {
			changed = append(changed, "standard_conforming_strings="+v)
		}
		params["standard_conforming_strings"] = "on"
	}
	if v, ok := params["client_encoding"]; ok && !safeClientEncoding(v) {
		changed = append(changed, "client_encoding="+v)
		params["client_encoding"] = "UTF8"
	}
	return changed
}

// lexingGuard denies a statement that would change how the server lexes
// what follows; ok is false when the statement is fine. It runs before the
// policy: no rule can allow it.
func lexingGuard(st sqlfacts.Statement) (d policy.Decision, denied bool) {
	deny := func(format string, args ...any) (policy.Decision, bool) {
		return policy.Decision{Action: policy.Deny, Rule: GuardRule, Message: fmt.Sprintf(format, args...)}, true
	}
	if slices.ContainsFunc(st.Functions, isSetConfig) {
		if msg := setConfigDenial(st.Text); msg != "" {
			return deny("%s", msg)
		}
	}
	if st.Kind != "read" && slices.ContainsFunc(st.Tables, isPgSettings) {
		return deny("interlock does not let statements change pg_settings (it could change how statements are read); use SET")
	}
	if st.Command != "SET" {
		return policy.Decision{}, false
	}
	// st.Text is one statement sqlfacts already classified (its depth is
	// within sqlfacts' guard), so parsing it again is safe.
	tree, err := pg_query.Parse(st.Text)
	if err != nil || len(tree.Stmts) != 1 {
		return deny("interlock could not read the SET statement")
	}
	vs := tree.Stmts[0].Stmt.GetVariableSetStmt()
	if vs == nil {
		return policy.Decision{}, false
	}
	name := strings.ToLower(vs.Name)
	if name == "names" {
		name = "client_encoding"
	}
	safe, ok := lexingParams[name]
	if !ok || vs.Kind != pg_query.VariableSetKind_VAR_SET_VALUE {
		// Other settings, and RESET / SET DEFAULT, which return to the
		// pinned start-up value.
		return policy.Decision{}, false
	}
	var vals []string
	for _, a := range vs.Args {
		c := a.GetAConst()
		switch {
		case c == nil:
			vals = append(vals, "?")
		case c.GetSval() != nil:
			vals = append(vals, c.GetSval().Sval)
		case c.GetBoolval() != nil:
			vals = append(vals, map[bool]string{true: "on", false: "off"}[c.GetBoolval().Boolval])
		default:
			vals = append(vals, "?")
		}
	}
	if len(vals) != 1 || !safe(vals[0]) || slices.Contains(vals, "?") {
		return deny("%s must stay as interlock set it (%s): the gateway must read statements as the server does", name, pinnedValue(name))
	}
	return policy.Decision{}, false
}

// isSetConfig reports a function name that may be set_config(): the
// built-in however qualified (PostgreSQL accepts the database's own name
// before the schema: db.pg_catalog.set_config), or whatever an unqualified
// name finds. A function of that name in another schema is checked too,
// which costs nothing a real call needs.
func isSetConfig(name string) bool { return lastNamePart(name) == "set_config" }

// isPgSettings reports a relation name that may be the pg_settings view,
// whose UPDATE calls set_config() for every row it changes.
func isPgSettings(name string) bool { return lastNamePart(name) == "pg_settings" }

// lastNamePart is the unqualified part of a dotted name as sqlfacts
// writes names (a quoted part keeps its dots only in odd names, which
// then fail safe: checked as though they were the built-in).
func lastNamePart(name string) string {
	return strings.ToLower(name[strings.LastIndexByte(name, '.')+1:])
}

// setConfigDenial checks every set_config() call of one statement as SET
// is checked: the setting's name must be a constant, so the gateway knows
// which setting changes, and a setting that changes how SQL is lexed must
// keep a value the classifier agrees with. It returns why the statement is
// denied, or "". The name is compared as PostgreSQL compares setting
// names, without regard to case.
func setConfigDenial(text string) string {
	tree, err := pg_query.Parse(text)
	if err != nil {
		return "interlock could not read the set_config() call"
	}
	var msg string
	for _, raw := range tree.Stmts {
		eachFuncCall(raw.Stmt.ProtoReflect(), func(f *pg_query.FuncCall) {
			if msg != "" || !isSetConfig(qualifiedName(f.Funcname)) {
				return
			}
			if len(f.Args) == 0 {
				return // not the built-in, which takes three
			}
			name, ok := stringConstant(f.Args[0])
			if !ok {
				msg = "set_config() must name its setting with a constant through interlock (it could change how statements are read); use SET"
				return
			}
			name = strings.ToLower(name)
			safe, lexing := lexingParams[name]
			if !lexing {
				return
			}
			if len(f.Args) < 2 {
				return
			}
			if v, ok := stringConstant(f.Args[1]); !ok || !safe(v) {
				msg = fmt.Sprintf("%s must stay as interlock set it (%s): the gateway must read statements as the server does", name, pinnedValue(name))
			}
		})
	}
	return msg
}

// eachFuncCall calls fn for every function call in the tree under m.
// Trees come from statements sqlfacts classified, whose depth it bounds.
func eachFuncCall(m protoreflect.Message, fn func(*pg_query.FuncCall)) {
	if f, ok := m.Interface().(*pg_query.FuncCall); ok {
		fn(f)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind || fd.IsMap():
		case fd.IsList():
			for i, l := 0, v.List(); i < l.Len(); i++ {
				eachFuncCall(l.Get(i).Message(), fn)
			}
		default:
			eachFuncCall(v.Message(), fn)
		}
		return true
	})
}

// qualifiedName joins a function's or type's name parts as sqlfacts
// writes function names: "set_config", "pg_catalog.text".
func qualifiedName(parts []*pg_query.Node) string {
	names := make([]string, 0, len(parts))
	for _, n := range parts {
		names = append(names, n.GetString_().GetSval())
	}
	return strings.Join(names, ".")
}

// stringConstant is the value of a string literal, also one cast to text
// ('x'::text); ok is false for anything else. Casts that change the value
// (char(n) pads, varchar(n) and name truncate) are not constants here.
func stringConstant(n *pg_query.Node) (string, bool) {
	if tc := n.GetTypeCast(); tc != nil {
		t := tc.TypeName
		if t == nil || len(t.Typmods) > 0 || len(t.ArrayBounds) > 0 || t.Setof || t.PctType {
			return "", false
		}
		if name := qualifiedName(t.Names); name != "text" && name != "pg_catalog.text" {
			return "", false
		}
		n = tc.Arg
	}
	c := n.GetAConst()
	if c == nil || c.GetSval() == nil {
		return "", false
	}
	return c.GetSval().Sval, true
}

func pinnedValue(name string) string {
	if name == "standard_conforming_strings" {
		return "on"
	}
	return "UTF8 or another encoding without quote or backslash bytes inside characters"
}

// unsafeParameterStatus reports a ParameterStatus from upstream that says
// the server now lexes differently from the classifier.
func unsafeParameterStatus(name, value string) bool {
	safe, ok := lexingParams[strings.ToLower(name)]
	return ok && !safe(value)
}

// unsafeLexing reports the first of a session's parameters (as upstream
// reports them at login) that says the server lexes differently from the
// classifier.
func unsafeLexing(statuses map[string]string) (name, value string, unsafe bool) {
	for _, n := range slices.Sorted(maps.Keys(statuses)) {
		if unsafeParameterStatus(n, statuses[n]) {
			return n, statuses[n], true
		}
	}
	return "", "", false
}

// errUnsafeLexing ends a session whose server reads SQL differently from
// the gateway.
var errUnsafeLexing = errors.New("the server no longer reads SQL as the gateway does")
