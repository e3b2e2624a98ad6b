package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// rule is a compiled RuleConfig.
type rule struct {
	name      string
	targets   []string    // nil: all
	workloads []string    // nil: all
	when      cel.Program // nil: always
	decision  Decision
	// readsText: the condition may read sql.text (see readsSQLText).
	readsText bool
	// iterates: the condition has a comprehension (exists, all, map, ...),
	// whose steps the evaluation deadline interrupts.
	iterates bool
}

// Compile validates cfg against env and compiles every rule's condition
// once. It reports every problem it finds, joined (errors.Join); each is a
// *ConfigError and matches ErrInvalidPolicy. At most one Options may be
// given.
func Compile(cfg Config, env Env, opts ...Options) (*Policy, error) {
	if len(opts) > 1 {
		return nil, errors.New("compiling policy: more than one Options")
	}
	var o Options
	if len(opts) == 1 {
		o = opts[0]
	}
	celEnv, ft, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("compiling policy: %w", err)
	}
	p := &Policy{types: ft, log: o.Logger, maxEvalTime: maxEvalTime}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for _, proto := range env.Targets {
		if !slices.Contains(p.protocols, proto) {
			p.protocols = append(p.protocols, proto)
		}
	}
	slices.Sort(p.protocols)

	c := compiler{env: env, regexes: &regexes{}}
	p.def = c.defaultDecision(cfg.Default)
	p.rules = c.rules(celEnv, cfg.Rules)
	for _, r := range p.rules {
		p.readsText = p.readsText || r.readsText
	}
	p.masks = c.masks(cfg.Masks)
	c.tests(cfg.Tests, cfg.Rules)
	p.tests = cfg.Tests
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return p, nil
}

// compiler collects the problems of one Compile.
type compiler struct {
	env     Env
	regexes *regexes
	errs    []error
}

func (c *compiler) fail(path, field string, err error) {
	c.errs = append(c.errs, &ConfigError{Path: path, Field: field, Err: err})
}

func (c *compiler) failf(path, field, format string, args ...any) {
	c.fail(path, field, fmt.Errorf(format, args...))
}

func itemPath(kind string, i int, name string) string {
	if name == "" {
		return fmt.Sprintf("policy.%s[%d]", kind, i)
	}
	return fmt.Sprintf("policy.%s[%d] (%s)", kind, i, name)
}

func (c *compiler) defaultDecision(s string) Decision {
	switch Action(s) {
	case "", Allow:
		return Decision{Action: Allow}
	case Deny:
		return Decision{Action: Deny, Message: "denied by interlock policy default"}
	}
	c.failf("policy.default", "", "unknown action %q (want allow or deny)", s)
	return Decision{Action: Deny}
}

func (c *compiler) rules(celEnv *cel.Env, rcs []RuleConfig) []rule {
	seen := map[string]int{}
	out := make([]rule, 0, len(rcs))
	for i, rc := range rcs {
		path := itemPath("rules", i, rc.Name)
		r := rule{name: rc.Name}
		if rc.Name == "" {
			c.failf(path, "name", "required")
		} else if j, dup := seen[rc.Name]; dup {
			c.failf(path, "name", "duplicate: policy.rules[%d] has the same name", j)
		} else {
			seen[rc.Name] = i
		}
		r.targets = c.targetNames(path, "targets", rc.Targets)
		r.workloads = c.workloadNames(path, "workloads", rc.Workloads)
		r.decision = Decision{Action: Action(rc.Action), Rule: rc.Name, Message: rc.Message, RecordInput: rc.RecordInput}
		if rc.Review != nil && r.decision.Action != Review {
			c.failf(path, "review", "review settings need action: review")
		}
		switch r.decision.Action {
		case Allow:
		case Deny:
			if r.decision.Message == "" {
				r.decision.Message = "denied by interlock policy rule " + rc.Name
			}
		case Review:
			if r.decision.Message == "" {
				r.decision.Message = "interlock policy rule " + rc.Name + " requires review"
			}
			r.decision.Review = c.review(path, rc.Review)
			if r.decision.Review != nil {
				r.decision.Review.Definition = definition(rc)
			}
		case "":
			c.failf(path, "action", "required (allow, deny or review)")
		default:
			c.failf(path, "action", "unknown action %q (want allow, deny or review)", rc.Action)
		}
		if strings.TrimSpace(rc.When) != "" {
			w, err := compileWhen(celEnv, c.regexes, rc.When)
			if err != nil {
				c.fail(path, "when", err)
			}
			r.when, r.readsText, r.iterates = w.prg, w.readsText, w.iterates
		}
		out = append(out, r)
	}
	return out
}

// definition is the SHA-256 of a rule's configuration.
func definition(rc RuleConfig) string {
	b, err := json.Marshal(rc)
	if err != nil {
		panic(err) // strings, slices and structs
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Review bounds.
const (
	defaultReviewTimeout = 5 * time.Minute
	maxReviewTimeout     = 24 * time.Hour
)

// review checks a review rule's settings and fills the defaults.
func (c *compiler) review(path string, rc *ReviewConfig) *ReviewSettings {
	if rc == nil {
		c.failf(path, "review", "action review needs review.approvers: the groups that may decide")
		return nil
	}
	r := &ReviewSettings{Approvers: slices.Clone(rc.Approvers), Timeout: defaultReviewTimeout, Webhook: rc.Notify.Webhook}
	if len(rc.Approvers) == 0 {
		c.failf(path, "review.approvers", "required: the groups whose members may approve")
	}
	for _, g := range rc.Approvers {
		if strings.TrimSpace(g) == "" {
			c.failf(path, "review.approvers", "empty group name")
		}
	}
	parse := func(field, v string, into *time.Duration) {
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			c.failf(path, field, "%q is not a duration; write it like \"5m\" or \"30s\"", v)
		case d <= 0 || d > maxReviewTimeout:
			c.failf(path, field, "%s is out of range (more than 0, at most 24h)", v)
		default:
			*into = d
		}
	}
	parse("review.timeout", rc.Timeout, &r.Timeout)
	parse("review.grant", rc.Grant, &r.Grant)
	if w := rc.Notify.Webhook; w != "" {
		u, err := url.Parse(w)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.failf(path, "review.notify.webhook", "%q is not an http or https URL", w)
		}
	}
	return r
}

// maxRuleCost bounds the work of one rule's evaluation, in CEL's cost
// units (about one per list element visited or per ten bytes of string
// scanned; a regular expression one per ten bytes per instruction of its
// compiled program, see regex.go): a short regular expression (10
// instructions) over the largest statement the gateway reads (16 MiB)
// costs about 17 million. A rule past it fails, and a rule that fails
// denies: facts come from agents. Comprehensions cost more time per unit
// than string scans, so every request also gets a deadline (maxEvalTime),
// checked at every comprehension step (one step can read a 16 MiB
// statement: a coarser check lets a thousand of them run first) and after
// each rule.
const (
	maxRuleCost    = 20_000_000
	interruptEvery = 1
)

// compiledWhen is a planned condition and what Decide needs to know of it.
type compiledWhen struct {
	prg       cel.Program
	readsText bool // it may read sql.text
	iterates  bool // it has a comprehension
}

// compileWhen parses, checks and plans one condition. The checker catches
// undeclared variables and unknown fields; the result must be a bool.
func compileWhen(env *cel.Env, rx *regexes, src string) (compiledWhen, error) {
	checked, iss := env.Compile(src)
	if iss.Err() != nil {
		return compiledWhen{}, iss.Err()
	}
	if !checked.OutputType().IsExactType(types.BoolType) {
		return compiledWhen{}, fmt.Errorf("must be a bool expression, is %s", checked.OutputType())
	}
	root := ast.NavigateAST(checked.NativeRep())
	if lits := ast.MatchDescendants(root, ast.KindMatcher(ast.StructKind)); len(lits) > 0 {
		return compiledWhen{}, errors.New("must not create objects (a rule reads the request's facts)")
	}
	prg, err := env.Program(checked, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(maxRuleCost),
		cel.InterruptCheckFrequency(interruptEvery),
		cel.CustomDecoratorV2(rx.guardMatches),
		cel.CostTrackerOptions(
			interpreter.OverloadCostTracker(overloads.Matches, rx.trackMatches),
			interpreter.OverloadCostTracker(overloads.MatchesString, rx.trackMatches),
			interpreter.OverloadCostTracker(overloads.SizeString, trackStringSize),
			interpreter.OverloadCostTracker(overloads.SizeStringInst, trackStringSize)))
	if err != nil {
		return compiledWhen{}, fmt.Errorf("planning: %w", err)
	}
	return compiledWhen{
		prg:       prg,
		readsText: readsSQLText(root),
		iterates:  len(ast.MatchDescendants(root, ast.KindMatcher(ast.ComprehensionKind))) > 0,
	}, nil
}

// readsSQLText reports whether an expression may read sql.text: it selects
// a field named text (of anything: checking the operand's type would only
// make the answer less conservative), or uses sql other than to select one
// of its fields (as a whole value, where whatever receives it could read
// the text). A wrong false would let SQLDecisions reuse the decision of one
// statement for another whose text differs; a wrong true only costs a cache.
func readsSQLText(root ast.NavigableExpr) bool {
	return len(ast.MatchDescendants(root, func(e ast.NavigableExpr) bool {
		switch e.Kind() {
		case ast.SelectKind:
			return e.AsSelect().FieldName() == "text"
		case ast.IdentKind:
			if e.AsIdent() != "sql" {
				return false
			}
			parent, ok := e.Parent()
			return !ok || parent.Kind() != ast.SelectKind || parent.AsSelect().IsTestOnly()
		}
		return false
	})) > 0
}

func (c *compiler) targetNames(path, field string, names []string) []string {
	for _, n := range names {
		if _, ok := c.env.Targets[n]; !ok {
			c.failf(path, field, "unknown target %q", n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return slices.Clone(names)
}

func (c *compiler) workloadNames(path, field string, names []string) []string {
	for _, n := range names {
		if !slices.Contains(c.env.Workloads, n) {
			c.failf(path, field, "unknown workload %q", n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return slices.Clone(names)
}

func (c *compiler) masks(mcs []MaskConfig) []mask {
	seen := map[string]int{}
	out := make([]mask, 0, len(mcs))
	for i, mc := range mcs {
		path := itemPath("masks", i, mc.Name)
		m := mask{name: mc.Name}
		if mc.Name == "" {
			c.failf(path, "name", "required")
		} else if j, dup := seen[mc.Name]; dup {
			c.failf(path, "name", "duplicate: policy.masks[%d] has the same name", j)
		} else {
			seen[mc.Name] = i
		}
		m.targets = c.targetNames(path, "targets", mc.Targets)
		m.workloads = c.workloadNames(path, "workloads", mc.Workloads)
		if len(mc.Columns) == 0 && len(mc.Detectors) == 0 {
			c.failf(path, "", "needs columns or detectors")
		}
		for j, col := range mc.Columns {
			cm, err := parseColumn(col)
			if err != nil {
				c.fail(path, fmt.Sprintf("columns[%d]", j), err)
				continue
			}
			m.columns = append(m.columns, cm)
		}
		for j, d := range mc.Detectors {
			id, ok := detectorByName(d)
			if !ok {
				c.failf(path, fmt.Sprintf("detectors[%d]", j), "unknown detector %q (want one of %s)", d, strings.Join(detectorNames(), ", "))
				continue
			}
			m.detectors |= 1 << id
		}
		out = append(out, m)
	}
	return out
}

func (c *compiler) tests(tcs []TestConfig, rcs []RuleConfig) {
	for i, tc := range tcs {
		path := itemPath("tests", i, tc.Name)
		switch Action(tc.Expect) {
		case Allow, Deny, Review:
		case "":
			c.failf(path, "expect", "required (allow, deny or review)")
		default:
			c.failf(path, "expect", "unknown decision %q (want allow, deny or review)", tc.Expect)
		}
		if tc.Rule != "" && tc.Rule != guardRule && !slices.ContainsFunc(rcs, func(r RuleConfig) bool { return r.Name == tc.Rule }) {
			c.failf(path, "rule", "no rule named %q", tc.Rule)
		}
		if tc.Request.Target != "" {
			c.targetNames(path, "request.target", []string{tc.Request.Target})
		}
		if tc.Request.Workload != "" {
			c.workloadNames(path, "request.workload", []string{tc.Request.Workload})
		}
	}
}
