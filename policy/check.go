package policy

import (
	"errors"
	"fmt"
)

// TestResult is the outcome of one policy test.
type TestResult struct {
	Name  string
	Index int // in policy.tests
	// Passed: the request was built, Got.Action is Want, and Got.Rule is
	// WantRule when that is set.
	Passed bool
	// Got is the combined decision over the request's steps; empty when
	// Err is set.
	Got      Decision
	Want     string
	WantRule string
	// Err is why the test's request could not be built; the test then
	// fails, whatever it expects.
	Err error
}

// guardRule names the gateway's own denials, taken before the policy
// (proxy/postgres.GuardRule): a test may expect it although no rule of
// the policy has the name.
const guardRule = "interlock-guard"

// TestStep is one decision a test's request stands for (one per SQL
// statement), as the gateway takes it.
type TestStep struct {
	Request Request
	// Gateway, when set, is the gateway's own decision, taken before the
	// policy, which is then not asked (PostgreSQL's lexing guard).
	Gateway *Decision
	// NoReview: the handler cannot hold this request for review, and
	// denies it when a review rule matches (SSH requests other than exec,
	// shell and subsystem).
	NoReview bool
}

// RunTests decides every test of the policy. facts turns a test's request
// into the steps to decide, one per SQL statement; the caller supplies it
// because classifying SQL, and what a handler decides besides the policy,
// is protocol code, which policy does not import. A nil facts builds one
// Request from the names and refuses tests with SQL.
//
// The decision of a test with several statements is the first that is not
// allow, else the first statement's. When facts fails (SQL or a command
// that cannot be read, a request that is both SQL and SSH, ...), the test
// fails with Err set, whatever it expects: the gateway would deny such a
// request without asking the policy, so a test of it says nothing about
// the rules, and one that passed would hide a mistake in the test.
func (p *Policy) RunTests(facts func(TestRequest) ([]TestStep, error)) []TestResult {
	if facts == nil {
		facts = namesOnly
	}
	results := make([]TestResult, 0, len(p.tests))
	for i, tc := range p.tests {
		res := TestResult{Name: tc.Name, Index: i, Want: tc.Expect, WantRule: tc.Rule}
		steps, err := facts(tc.Request)
		if err == nil && len(steps) == 0 {
			err = errors.New("the request stands for no statement")
		}
		if err != nil {
			res.Err = fmt.Errorf("building the test's request: %w", err)
		} else {
			res.Got = combine(p, steps)
			res.Passed = string(res.Got.Action) == tc.Expect && (tc.Rule == "" || res.Got.Rule == tc.Rule)
		}
		results = append(results, res)
	}
	return results
}

// combine decides each step (without observing the metrics: tests are
// not traffic).
func combine(p *Policy, steps []TestStep) Decision {
	var first Decision
	for i := range steps {
		d := decideStep(p, &steps[i])
		if d.Action != Allow {
			return d
		}
		if i == 0 {
			first = d
		}
	}
	return first
}

func decideStep(p *Policy, s *TestStep) Decision {
	if s.Gateway != nil {
		return *s.Gateway
	}
	d, _ := p.decide(&s.Request)
	if d.Action == Review && s.NoReview {
		d = Decision{Action: Deny, Rule: d.Rule, Message: d.Message + " (this request cannot be held for review)"}
	}
	return d
}

func namesOnly(tr TestRequest) ([]TestStep, error) {
	if tr.SQL != "" || tr.SSH != nil {
		return nil, errors.New("sql and ssh need a facts function that reads them")
	}
	return []TestStep{{Request: Request{
		Target:   Target{Name: tr.Target},
		Workload: Workload{Name: tr.Workload},
		Identity: Identity{Subject: tr.Subject, Groups: tr.Groups, Issuer: tr.Issuer},
	}}}, nil
}
