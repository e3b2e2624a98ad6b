package postgres

import (
	"errors"
	"time"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
	"github.com/interlock-dev/interlock/record"
)

// Fakes for unit tests of single functions; sessions are tested with the
// real policy, classifier and store.

type nopPolicy struct{}

func (nopPolicy) SQLDecisions(base policy.Request) *policy.SQLDecisions {
	p, err := policy.Compile(policy.Config{Default: "allow"}, policy.Env{})
	if err != nil {
		panic(err)
	}
	return p.SQLDecisions(base)
}

type nopClassifier struct{}

func (nopClassifier) Classify(string) ([]sqlfacts.Statement, error) { return nil, nil }

type nopRecordings struct{}

func (nopRecordings) Create(string, record.Start, time.Time) (*record.Recorder, error) {
	return nil, errors.New("not recording")
}
