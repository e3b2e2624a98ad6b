package oidc

import "time"

// UnlimitedKeyFetches returns o with the key set fetch limit refilled
// within a microsecond: for tests that verify more made-up tokens than the
// limit allows and expect each to be checked against a fresh key set.
func UnlimitedKeyFetches(o Options) Options {
	o.keyFetchInterval = time.Microsecond
	return o
}
