package redirect

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

func TestTargetResolver(t *testing.T) {
	answers := map[string][]netip.Addr{"db.test": {netip.MustParseAddr("127.0.0.9"), netip.MustParseAddr("::1")}}
	var lookupErr error
	var calls int
	var got []Target
	r := &TargetResolver{
		Specs: []TargetSpec{
			{ID: 1, Name: "fixed", Prefix: netip.MustParsePrefix("127.0.0.2/32"), Port: 7000},
			{ID: 2, Name: "named", Host: "db.test", Port: 5432},
		},
		Lookup: func(_ context.Context, h string) ([]netip.Addr, error) { return answers[h], lookupErr },
		OnChange: func(ts []Target) error {
			calls++
			got = ts
			return nil
		},
	}
	ctx := context.Background()
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || len(got) != 3 {
		t.Fatalf("first sync: %d calls, targets %v", calls, got)
	}
	// Same answer: nothing to reprogram.
	if err := r.Sync(ctx); err != nil || calls != 1 {
		t.Fatalf("unchanged sync: %d calls, %v", calls, err)
	}
	// The name moves: the map follows.
	answers["db.test"] = []netip.Addr{netip.MustParseAddr("127.0.0.10")}
	if err := r.Sync(ctx); err != nil || calls != 2 {
		t.Fatalf("changed sync: %d calls, %v", calls, err)
	}
	if got[1].Prefix != netip.MustParsePrefix("127.0.0.10/32") || got[1].Port != 5432 {
		t.Errorf("named target now %v", got[1])
	}
	// DNS fails: the last addresses stay enforced.
	lookupErr = errors.New("no such host")
	answers["db.test"] = nil
	if err := r.Sync(ctx); err != nil || calls != 2 {
		t.Fatalf("failing sync: %d calls, %v", calls, err)
	}
	res, failing := r.Resolved()
	if len(res[2]) != 1 || failing[2] == "" {
		t.Errorf("resolved %v failing %v", res, failing)
	}
}
