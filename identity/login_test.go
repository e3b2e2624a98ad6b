package identity

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoginsExpire(t *testing.T) {
	expired := make(chan Login, 1)
	ls := NewLogins(func(l Login) { expired <- l })
	defer ls.Close()
	if err := ls.Bind(Login{Workload: "w", Expires: time.Now().Add(-time.Second)}); err == nil {
		t.Fatal("an expired token was bound")
	}
	if err := ls.Bind(Login{Workload: "w", Identity: Identity{Subject: "old"}, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// A newer login replaces the old one; only the newer one's expiry fires.
	if err := ls.Bind(Login{Workload: "w", Identity: Identity{Subject: "agent", Groups: []string{"g"}}, Expires: time.Now().Add(150 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if l, ok := ls.Lookup("w"); !ok || l.Identity.Subject != "agent" || l.Bound.IsZero() {
		t.Fatalf("Lookup = %+v, %v", l, ok)
	}
	select {
	case l := <-expired:
		if l.Identity.Subject != "agent" {
			t.Errorf("expired %+v", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the login did not expire")
	}
	if _, ok := ls.Lookup("w"); ok {
		t.Error("an expired login is still found")
	}
	reg := NewRegistry([]Workload{{ID: 1, Name: "w", OIDC: "corp"}, {ID: 2, Name: "s", Identity: Identity{Subject: "static"}}})
	reg.UseLogins(ls)
	c, err := reg.Caller(1, 0, 0, 0)
	if err != nil || c.NeedsLogin != "corp" || c.Identity.Subject != "" {
		t.Errorf("caller without login: %+v %v", c, err)
	}
	if err := ls.Bind(Login{Workload: "w", Identity: Identity{Subject: "agent", Issuer: "https://idp"}, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c, _ = reg.Caller(1, 0, 0, 0)
	if c.NeedsLogin != "" || c.Identity.Subject != "agent" || c.IdentityExpires.IsZero() {
		t.Errorf("caller with login: %+v", c)
	}
	if c, _ := reg.Caller(2, 0, 0, 0); c.Identity.Subject != "static" || c.NeedsLogin != "" {
		t.Errorf("static caller: %+v", c)
	}
}

func TestLoginServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "login.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ls := NewLogins(nil)
	defer ls.Close()
	// The server resolves the caller as it accepts, in its own goroutine:
	// the socket orders that before the answer, but not in a way the race
	// detector sees.
	var mu sync.Mutex
	workload := Workload{Name: "support", OIDC: "corp"}
	var gotPID uint32
	srv := &LoginServer{
		Workload: func(pid uint32) (Workload, error) {
			mu.Lock()
			defer mu.Unlock()
			gotPID = pid
			return workload, nil
		},
		Verify: func(_ context.Context, w Workload, raw string) (Identity, time.Time, error) {
			if w.OIDC != "corp" || raw != "good-token" {
				return Identity{}, time.Time{}, errors.New("signature invalid")
			}
			return Identity{Subject: "agent-7", Groups: []string{"agents"}, Issuer: "https://idp.example/"}, time.Now().Add(time.Hour), nil
		},
		Logins: ls,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, ln)

	r, err := LoginAt(ctx, sock, "good-token\n")
	if err != nil || r.Workload != "support" || r.Subject != "agent-7" || r.Expires.IsZero() {
		t.Fatalf("login: %+v %v", r, err)
	}
	mu.Lock()
	pid := gotPID
	mu.Unlock()
	if pid != uint32(os.Getpid()) {
		t.Errorf("SO_PEERCRED gave pid %d, want ours %d", pid, os.Getpid())
	}
	if l, ok := ls.Lookup("support"); !ok || l.Identity.Subject != "agent-7" || l.Via != "login" {
		t.Errorf("bound %+v %v", l, ok)
	}
	for _, tc := range []struct{ token, want string }{
		{"bad-token", "token refused: signature invalid"},
		{"", "no token given"},
		{strings.Repeat("x", MaxTokenSize+10), "longer than"},
	} {
		if _, err := LoginAt(ctx, sock, tc.token); !errors.Is(err, ErrLoginRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("token %.10q: %v, want %q", tc.token, err, tc.want)
		}
	}
	mu.Lock()
	workload = Workload{Name: "static"}
	mu.Unlock()
	if _, err := LoginAt(ctx, sock, "good-token"); err == nil || !strings.Contains(err.Error(), "static identity") {
		t.Errorf("login of a static workload: %v", err)
	}
}

func TestLoginLimiter(t *testing.T) {
	l := NewLoginLimiter(2, time.Minute)
	now := time.Unix(1_800_000_000, 0)
	l.now = func() time.Time { return now }
	for i := range 2 {
		if err := l.Check("w"); err != nil {
			t.Fatalf("attempt %d refused: %v", i, err)
		}
		l.Failed("w")
	}
	if err := l.Check("w"); !errors.Is(err, ErrTooManyLogins) || !strings.Contains(err.Error(), "try again in 1m0s") {
		t.Errorf("third failure in a row: %v", err)
	}
	if err := l.Check("other"); err != nil {
		t.Errorf("another workload was slowed down: %v", err)
	}
	now = now.Add(time.Minute)
	if err := l.Check("w"); err != nil {
		t.Errorf("after a refill period: %v", err)
	}
}
