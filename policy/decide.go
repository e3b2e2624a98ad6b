package policy

import (
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
	for i := range p.rules {
		ru := &p.rules[i]
		if !matchName(ru.targets, r.Target.Name) || !matchName(ru.workloads, r.Workload.Name) {
			continue
		}
		if ru.when != nil {
			if act == nil {
				act = p.newActivation(r)
			}
			out, _, err := ru.when.Eval(act)
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

// matchName reports whether name is in names; no names match every name.
func matchName(names []string, name string) bool {
	return names == nil || slices.Contains(names, name)
}

type errNotBool struct{ typ string }

func (e errNotBool) Error() string { return "condition evaluated to a " + e.typ + ", not a bool" }
