package policy

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/cel-go/common/types"
)

// Policy is a compiled policy: ordered rules, masks and tests. It is
// immutable once compiled and safe for concurrent use.
type Policy struct {
	def       Decision
	rules     []rule
	masks     []mask
	tests     []TestConfig
	types     *factTypes
	log       *slog.Logger
	protocols []string // of the Env's targets, so their series exist from the start
	metrics   atomic.Pointer[metrics]
	readsText bool // some rule's condition may read sql.text
	// maxEvalTime is the constant of the same name; tests shorten it.
	maxEvalTime time.Duration
}

// Decide returns the decision for r: the first rule whose targets,
// workloads and condition match decides; when none does, policy.default
// does (Rule ""). A condition that cannot be evaluated fails closed: the
// request is denied in that rule's name.
func (p *Policy) Decide(r Request) Decision {
	d, _ := p.observedDecide(&r)
	return d
}

// observedDecide is Decide, reporting also whether a condition failed.
func (p *Policy) observedDecide(r *Request) (d Decision, failed bool) {
	start := time.Now()
	d, failed = p.decide(r)
	if m := p.metrics.Load(); m != nil {
		m.observe(r.Target.Protocol, time.Since(start))
	}
	return d, failed
}

// decide decides r; failed reports a denial because a condition could not
// be evaluated (which can depend on more than the facts: the deadline).
func (p *Policy) decide(r *Request) (d Decision, failed bool) {
	var act *activation // built on the first condition, shared by the rest
	// Every request is evaluated against a deadline as well as the cost
	// limit: facts come from agents, and within the limit a comprehension
	// can take seconds even over lists well under a few hundred names
	// (cel-go's cost tracking itself slows with the steps taken). The
	// deadline interrupts comprehensions, and is checked after each rule
	// for the work that cannot be interrupted; the context is made only
	// for a rule that iterates, since it costs more than the rest of most
	// decisions.
	var start time.Time
	ctx := context.Background()
	for i := range p.rules {
		ru := &p.rules[i]
		if !matchName(ru.targets, r.Target.Name) || !matchName(ru.workloads, r.Workload.Name) {
			continue
		}
		if ru.when != nil {
			if act == nil {
				act = p.newActivation(r)
				start = time.Now()
			}
			if ru.iterates && ctx == context.Background() {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, start.Add(p.maxEvalTime))
				defer cancel()
			}
			act.regexSpent = 0 // the limit is each rule's
			out, _, err := ru.when.ContextEval(ctx, act)
			if err == nil {
				if _, isBool := out.(types.Bool); !isBool {
					err = errNotBool{out.Type().TypeName()}
				}
			}
			if err == nil && time.Since(start) > p.maxEvalTime {
				err = errTooSlow{p.maxEvalTime}
			}
			if err != nil {
				p.log.Error("policy rule could not be evaluated; denying",
					"rule", ru.name, "target", r.Target.Name, "workload", r.Workload.Name,
					"subject", r.Identity.Subject, "error", err)
				return Decision{Action: Deny, Rule: ru.name, Message: "policy rule " + ru.name + " could not be evaluated"}, true
			}
			if out != types.True {
				continue
			}
		}
		return ru.decision, false
	}
	return p.def, false
}

// maxEvalTime bounds the evaluation of one request's rules; past it the
// rule being evaluated fails, and so denies.
const maxEvalTime = time.Second

type errTooSlow struct{ limit time.Duration }

func (e errTooSlow) Error() string {
	return "the policy's conditions took longer than " + e.limit.String() + " to evaluate"
}

// matchName reports whether name is in names; no names match every name.
func matchName(names []string, name string) bool {
	return names == nil || slices.Contains(names, name)
}

type errNotBool struct{ typ string }

func (e errNotBool) Error() string { return "condition evaluated to a " + e.typ + ", not a bool" }
