package policy

import (
	"errors"
	"fmt"
)

// TestResult is the outcome of one policy test.
type TestResult struct {
	Name  string
	Index int // in policy.tests
	// Passed: Got.Action is Want, and Got.Rule is WantRule when that is set.
	Passed bool
	// Got is the combined decision over the request's statements.
	Got      Decision
	Want     string
	WantRule string
	// Err is why the test's request could not be turned into facts (the
	// request is then denied, as the gateway would deny it).
	Err error
}

// RunTests decides every test of the policy. facts turns a test's request
// into the Requests to decide, one per SQL statement; the caller supplies
// it because classifying SQL is protocol code, which policy does not import.
// A nil facts builds one Request from the names and refuses tests with SQL.
//
// The decision of a test with several statements is the first that is not
// allow, else the first statement's. When facts fails (unparsable SQL),
// the decision is deny with Err set, because the gateway denies what it
// cannot classify: such a test passes only if it expects deny.
func (p *Policy) RunTests(facts func(TestRequest) ([]Request, error)) []TestResult {
	if facts == nil {
		facts = namesOnly
	}
	results := make([]TestResult, 0, len(p.tests))
	for i, tc := range p.tests {
		res := TestResult{Name: tc.Name, Index: i, Want: tc.Expect, WantRule: tc.Rule}
		reqs, err := facts(tc.Request)
		if err == nil && len(reqs) == 0 {
			err = errors.New("the request stands for no statement")
		}
		if err != nil {
			res.Err = fmt.Errorf("building the test's request: %w", err)
			res.Got = Decision{Action: Deny, Message: "denied: " + err.Error()}
		} else {
			res.Got = combine(p, reqs)
		}
		res.Passed = string(res.Got.Action) == tc.Expect && (tc.Rule == "" || res.Got.Rule == tc.Rule)
		results = append(results, res)
	}
	return results
}

// combine decides each request (without observing the metrics: tests are
// not traffic).
func combine(p *Policy, reqs []Request) Decision {
	var first Decision
	for i := range reqs {
		d := p.decide(&reqs[i])
		if d.Action != Allow {
			return d
		}
		if i == 0 {
			first = d
		}
	}
	return first
}

func namesOnly(tr TestRequest) ([]Request, error) {
	if tr.SQL != "" {
		return nil, errors.New("sql needs a facts function that classifies it")
	}
	return []Request{{
		Target:   Target{Name: tr.Target},
		Workload: Workload{Name: tr.Workload},
		Identity: Identity{Subject: tr.Subject, Groups: tr.Groups},
	}}, nil
}
