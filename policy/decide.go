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
}

// Decide returns the decision for r: the first rule whose targets,
// workloads and condition match decides; when none does, policy.default
// does (Rule ""). A condition that cannot be evaluated fails closed: the
// request is denied in that rule's name.
func (p *Policy) Decide(r Request) Decision {
	start := time.Now()
	d := p.decide(&r)
	if m := p.metrics.Load(); m != nil {
		m.observe(r.Target.Protocol, time.Since(start))
	}
	return d
}

func (p *Policy) decide(r *Request) Decision {
	var act *activation // built on the first condition, shared by the rest
	// A large request (facts come from agents) is evaluated against a
	// deadline as well as the cost limit: a comprehension over a long
	// list can take seconds well within the limit. Small ones cannot, and
	// skip the context's cost.
	ctx := context.Background()
	if largeRequest(r) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxEvalTime)
		defer cancel()
	}
	for i := range p.rules {
		ru := &p.rules[i]
		if !matchName(ru.targets, r.Target.Name) || !matchName(ru.workloads, r.Workload.Name) {
			continue
		}
		if ru.when != nil {
			if act == nil {
				act = p.newActivation(r)
			}
			out, _, err := ru.when.ContextEval(ctx, act)
			if err == nil {
				if _, isBool := out.(types.Bool); !isBool {
					err = errNotBool{out.Type().TypeName()}
				}
			}
			if err != nil {
				p.log.Error("policy rule could not be evaluated; denying",
					"rule", ru.name, "target", r.Target.Name, "workload", r.Workload.Name,
					"subject", r.Identity.Subject, "error", err)
				return Decision{Action: Deny, Rule: ru.name, Message: "policy rule " + ru.name + " could not be evaluated"}
			}
			if out != types.True {
				continue
			}
		}
		return ru.decision
	}
	return p.def
}

// maxEvalTime bounds the evaluation of one large request's rules; past it
// the rule being evaluated fails, and so denies.
const maxEvalTime = time.Second

// largeRequest reports a request whose facts could make a rule slow: a long
// statement or command, or long lists. A rule's own literals come from the
// configuration and are bounded by it.
func largeRequest(r *Request) bool {
	const text, items = 64 << 10, 256
	if s := r.SQL; s != nil && (len(s.Text) > text || len(s.Tables) > items || len(s.Functions) > items || len(s.Commands) > items) {
		return true
	}
	if s := r.SSH; s != nil && (len(s.Command) > text || len(s.Argv) > items || len(s.Programs) > items ||
		len(s.ProgramPaths) > items || len(s.Assignments) > items || len(s.FilePath) > text || len(s.EnvValue) > text) {
		return true
	}
	return false
}

// matchName reports whether name is in names; no names match every name.
func matchName(names []string, name string) bool {
	return names == nil || slices.Contains(names, name)
}

type errNotBool struct{ typ string }

func (e errNotBool) Error() string { return "condition evaluated to a " + e.typ + ", not a bool" }
