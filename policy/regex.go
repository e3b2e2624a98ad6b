package policy

import (
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"sync"

	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// CEL charges `matches` by the pattern's length, but Go's regexp takes time
// in proportion to the string's length times the instructions of the
// compiled program, and a bounded repetition makes many from few
// characters: "[^x]{500}x" is 10 characters and 503 instructions, and runs
// for minutes over a 16 MiB statement, charged a few million. Its cost is
// also counted only after the match has run. So rules' matches are
// charged by the program's size, and a match whose charge is over what is
// left of its rule's limit is refused before it runs.

// regexes are the compiled patterns of one policy's conditions, shared by
// its rules.
type regexes struct {
	constant sync.Map // pattern → *compiledRegex; only the rules' literals, so bounded
}

type compiledRegex struct {
	re    *regexp.Regexp
	insts uint64 // of the compiled program: the work per byte matched
}

func compileRegex(pattern string) (*compiledRegex, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	insts, err := regexInsts(pattern)
	if err != nil {
		return nil, err
	}
	return &compiledRegex{re: re, insts: insts}, nil
}

// regexInsts is the size of the program regexp.Compile makes of pattern.
func regexInsts(pattern string) (uint64, error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return 0, err
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0, err
	}
	return uint64(len(prog.Inst)), nil
}

// lookup returns a pattern's compiled form: a literal's from the cache, a
// computed one (a fact used as a pattern) compiled afresh and not kept.
func (rs *regexes) lookup(pattern string) (*compiledRegex, error) {
	if c, ok := rs.constant.Load(pattern); ok {
		return c.(*compiledRegex), nil
	}
	return compileRegex(pattern)
}

// matchCost is the cost of matching s against a program of insts
// instructions, in the units of CEL's string costs (one per ten bytes).
func matchCost(s string, insts uint64) uint64 {
	perPass := uint64(math.Ceil(float64(len(s)+1) * 0.1))
	if insts != 0 && perPass > math.MaxUint64/insts {
		return math.MaxUint64
	}
	return perPass * insts
}

func isMatchesCall(call interpreter.InterpretableCall) bool {
	switch call.OverloadID() {
	case overloads.Matches, overloads.MatchesString:
		return len(call.Args()) == 2
	}
	return false
}

// guardMatches is a planner decorator that replaces each `matches` call by
// one that refuses a match costing more than its rule has left, before
// running it. A literal pattern is compiled here, once (a bad one fails
// Compile). The replacement keeps the overload ID, which the cost tracker
// (trackMatches) charges by, and takes another function name so that CEL's
// own regex optimisation, which compiles literal patterns into an
// unguarded call, leaves it alone.
func (rs *regexes) guardMatches(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
	call, ok := i.(interpreter.InterpretableCall)
	if !ok || !isMatchesCall(call) {
		return i, nil
	}
	g := &guardedMatch{InterpretableCall: call, rs: rs}
	if c, ok := call.Args()[1].(interpreter.InterpretableConst); ok {
		if pattern, ok := c.Value().(types.String); ok {
			cr, err := compileRegex(string(pattern))
			if err != nil {
				return nil, fmt.Errorf("compiling %q: %w", string(pattern), err)
			}
			actual, _ := rs.constant.LoadOrStore(string(pattern), cr)
			g.fixed = actual.(*compiledRegex)
		}
	}
	return g, nil
}

// regexSpentName resolves, in a rule's activation, to what the rule's
// matches have cost so far (a *uint64). CEL charges a call only after it
// ran, so without it each match is checked against the whole limit and a
// rule with two matches just under it runs both: twice the work, seconds
// of it. '#' keeps the name out of reach of conditions.
const regexSpentName = "#interlock.regex_spent"

// guardedMatch is a `matches` call that checks its cost first. It
// evaluates its own arguments (strictly, as the call it replaces) because
// the check needs the evaluation's activation, which a function never sees.
type guardedMatch struct {
	interpreter.InterpretableCall // the call replaced: ID, overload, arguments
	rs                            *regexes
	fixed                         *compiledRegex // of a literal pattern
}

func (g *guardedMatch) Function() string { return "interlock.matches" }

func (g *guardedMatch) Exec(frame *interpreter.ExecutionFrame) ref.Val {
	args := g.Args()
	s := args[0].Exec(frame)
	if types.IsUnknownOrError(s) {
		return s
	}
	pattern := args[1].Exec(frame)
	if types.IsUnknownOrError(pattern) {
		return pattern
	}
	return types.LabelErrNode(g.ID(), g.match(s, pattern, regexSpent(frame)))
}

func (g *guardedMatch) Eval(a interpreter.Activation) ref.Val {
	args := g.Args()
	s := args[0].Eval(a)
	if types.IsUnknownOrError(s) {
		return s
	}
	pattern := args[1].Eval(a)
	if types.IsUnknownOrError(pattern) {
		return pattern
	}
	return types.LabelErrNode(g.ID(), g.match(s, pattern, regexSpent(a)))
}

// regexSpent is the rule's regex charge so far, or nil when the activation
// keeps none (then each match is checked alone).
func regexSpent(a interpreter.Activation) *uint64 {
	v, ok := a.ResolveName(regexSpentName)
	if !ok {
		return nil
	}
	spent, _ := v.(*uint64)
	return spent
}

func (g *guardedMatch) match(sv, pv ref.Val, spent *uint64) ref.Val {
	s, ok := sv.(types.String)
	pattern, ok2 := pv.(types.String)
	if !ok || !ok2 {
		return types.NoSuchOverloadErr()
	}
	cr := g.fixed
	if cr == nil {
		var err error
		if cr, err = g.rs.lookup(string(pattern)); err != nil {
			return types.WrapErr(err)
		}
	}
	cost := matchCost(string(s), cr.insts)
	var before uint64
	if spent != nil {
		before = *spent
	}
	if cost > maxRuleCost-min(before, maxRuleCost) {
		return types.NewErr("matching %d bytes against %q would cost %d, over what is left of the rule's limit of %d", len(s), string(pattern), cost, maxRuleCost)
	}
	if spent != nil {
		*spent = before + cost
	}
	return types.Bool(cr.re.MatchString(string(s)))
}

// trackMatches charges a match (after it ran) what guardMatches checked; a
// match it refused did not run, and is charged as a call, so that the rule
// fails with the refusal's reason.
func (rs *regexes) trackMatches(args []ref.Val, result ref.Val) *uint64 {
	if _, ran := result.(types.Bool); !ran {
		one := uint64(1)
		return &one
	}
	s, ok := args[0].(types.String)
	pattern, ok2 := args[1].(types.String)
	if !ok || !ok2 {
		return nil
	}
	var insts uint64
	if c, ok := rs.constant.Load(string(pattern)); ok {
		insts = c.(*compiledRegex).insts
	} else if n, err := regexInsts(string(pattern)); err == nil {
		insts = n
	}
	cost := matchCost(string(s), insts)
	return &cost
}

// trackStringSize charges size() of a string for the scan it takes (it
// counts characters), which CEL charges as 1.
func trackStringSize(args []ref.Val, _ ref.Val) *uint64 {
	s, ok := args[0].(types.String)
	if !ok {
		return nil
	}
	cost := uint64(math.Ceil(float64(len(s))*0.1)) + 1
	return &cost
}
