package mintcache

import (
	"errors"

	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGet(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := New[string](3, func() time.Time { return now })
	var mints atomic.Int32
	mint := func(v string, life time.Duration) func() (string, time.Time, error) {
		return func() (string, time.Time, error) { mints.Add(1); return v, now.Add(life), nil }
	}
	if v, err := c.Get("a", mint("a1", time.Hour)); err != nil || v != "a1" {
		t.Fatalf("first Get = %q, %v", v, err)
	}
	if v, _ := c.Get("a", mint("a2", time.Hour)); v != "a1" || mints.Load() != 1 {
		t.Errorf("cached Get = %q after %d mints", v, mints.Load())
	}
	now = now.Add(time.Hour)
	if v, _ := c.Get("a", mint("a3", time.Hour)); v != "a3" {
		t.Errorf("Get after the refresh time = %q, want a new one", v)
	}
	// A failure is not cached.
	boom := errors.New("boom")
	if _, err := c.Get("b", func() (string, time.Time, error) { return "", time.Time{}, boom }); !errors.Is(err, boom) {
		t.Errorf("failed mint: %v", err)
	}
	if v, _ := c.Get("b", mint("b1", time.Hour)); v != "b1" {
		t.Errorf("Get after a failure = %q", v)
	}
	// Over the bound, the entry due soonest goes first.
	c.Get("c", mint("c", time.Minute))
	c.Get("d", mint("d", 2*time.Hour))
	if c.Len() != 3 {
		t.Fatalf("%d entries, want 3", c.Len())
	}
	before := mints.Load()
	c.Get("c", mint("c again", time.Minute))
	if mints.Load() == before {
		t.Error("the entry due soonest was kept over the bound")
	}
}

func TestConcurrentGetsShareOneMinting(t *testing.T) {
	c := New[int](10, time.Now)
	var mints atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			v, err := c.Get("k", func() (int, time.Time, error) {
				mints.Add(1)
				<-release
				return 42, time.Now().Add(time.Hour), nil
			})
			if err != nil || v != 42 {
				t.Errorf("worker %d: %d %v", i, v, err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // let them queue behind the minter
	close(release)
	wg.Wait()
	if n := mints.Load(); n != 1 {
		t.Errorf("%d mintings for one key, want 1", n)
	}
}
