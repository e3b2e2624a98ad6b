package postgres

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

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
	for _, f := range st.Functions {
		if f == "set_config" || f == "pg_catalog.set_config" {
			return deny("set_config() is not allowed through interlock (it can change how statements are read); use SET")
		}
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

// errUnsafeLexing ends a session whose server reads SQL differently from
// the gateway.
var errUnsafeLexing = errors.New("the server no longer reads SQL as the gateway does")
