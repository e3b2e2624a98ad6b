package identity

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaxTokenSize bounds a token presented at login.
const MaxTokenSize = 16 << 10

// LoginReply is the gateway's answer to a login, one JSON object.
type LoginReply struct {
	Workload string    `json:"workload,omitempty"`
	Subject  string    `json:"subject,omitempty"`
	Groups   []string  `json:"groups,omitempty"`
	Issuer   string    `json:"issuer,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// LoginServer answers `interlock login` on the gateway's local unix socket:
// the client writes its token and closes its side; the server finds the
// calling process with SO_PEERCRED (held by a pidfd, so a reused pid is
// noticed) and its workload from its cgroup as soon as it accepts, before
// the token arrives, verifies the token against the workload's issuer and,
// if the calling process still exists, binds the identity to the workload
// until the token expires.
type LoginServer struct {
	// Workload finds the configured workload of a process.
	Workload func(pid uint32) (Workload, error)
	// Verify checks a token against the workload's issuer.
	Verify func(ctx context.Context, w Workload, raw string) (Identity, time.Time, error)
	Logins *Logins
	Logger *slog.Logger

	mu       sync.Mutex
	inFlight map[uint32]int // logins under way, by the caller's uid
}

// loginTimeout bounds one login, from accept to answer.
const loginTimeout = 30 * time.Second

// MaxLoginsPerUID is how many logins of one user may be under way at once;
// more are refused at once. Any local user may connect to the socket, and
// each login holds two of the gateway's descriptors (the connection and
// the pidfd) until it ends: unbounded, one user could run the gateway out
// of descriptors, and with them the data path.
const MaxLoginsPerUID = 16

// Serve accepts logins on ln until ctx ends. An accept that fails for a
// passing reason (no descriptor or memory free for now) is retried, with a
// growing pause, rather than ending the login socket for good.
func (s *LoginServer) Serve(ctx context.Context, ln *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var backoff time.Duration
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !acceptRetryable(err) {
				return fmt.Errorf("accepting logins: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger().Warn("accepting a login; retrying", "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		backoff = 0
		go s.handle(ctx, conn)
	}
}

// acceptRetryable reports whether an accept error leaves the listener
// fine: the gateway or the system is short of something for the moment.
func acceptRetryable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *LoginServer) handle(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(loginTimeout))
	var reply LoginReply
	if release, err := s.admit(conn); err != nil {
		s.logger().Warn("login refused", "error", err)
		reply = LoginReply{Error: err.Error()}
	} else {
		defer release()
		reply = s.login(ctx, conn)
	}
	b, _ := json.Marshal(reply)
	conn.Write(append(b, '\n'))
}

// admit counts the login against its caller's uid, refusing it when that
// user has MaxLoginsPerUID under way; release ends it. A caller whose uid
// cannot be read is admitted: login refuses it anyway.
func (s *LoginServer) admit(conn *net.UnixConn) (release func(), err error) {
	_, uid, err := peerCred(conn)
	if err != nil {
		return func() {}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight[uid] >= MaxLoginsPerUID {
		return nil, fmt.Errorf("uid %d has %d logins under way already; try again when they have ended", uid, MaxLoginsPerUID)
	}
	if s.inFlight == nil {
		s.inFlight = map[uint32]int{}
	}
	s.inFlight[uid]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.inFlight[uid]--; s.inFlight[uid] == 0 {
			delete(s.inFlight, uid)
		}
	}, nil
}

func (s *LoginServer) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *LoginServer) login(ctx context.Context, conn *net.UnixConn) LoginReply {
	log := s.logger()
	// Who is calling is settled at accept, before the token (which may
	// take up to the deadline to arrive): pin the process, read its
	// workload, and check it still existed after the read, so the cgroup
	// read was its own and not that of a process that got its pid.
	peer, err := pinLoginPeer(conn)
	if err != nil {
		log.Warn("login: cannot identify the caller", "error", err)
		return LoginReply{Error: "the gateway cannot identify the calling process: " + err.Error()}
	}
	defer peer.close()
	pid, uid := peer.pid, peer.uid
	w, werr := s.Workload(pid)
	if werr == nil {
		werr = peer.alive()
	}

	raw, err := io.ReadAll(io.LimitReader(conn, MaxTokenSize+1))
	if err != nil {
		return LoginReply{Error: "reading the token: " + err.Error()}
	}
	if werr != nil {
		log.Warn("login from a process in no workload", "pid", pid, "uid", uid, "error", werr)
		return LoginReply{Error: fmt.Sprintf("process %d is in no configured workload: %v", pid, werr)}
	}
	token := strings.TrimSpace(string(raw))
	switch {
	case token == "":
		return LoginReply{Error: "no token given"}
	case len(raw) > MaxTokenSize:
		return LoginReply{Error: fmt.Sprintf("the token is longer than %d bytes", MaxTokenSize)}
	}
	if w.OIDC == "" {
		return LoginReply{Workload: w.Name, Error: "workload " + w.Name + " has a static identity in the configuration; it needs no login"}
	}
	id, expires, err := s.Verify(ctx, w, token)
	if err != nil {
		log.Warn("login refused", "workload", w.Name, "pid", pid, "uid", uid, "error", err)
		return LoginReply{Workload: w.Name, Error: "token refused: " + err.Error()}
	}
	// The process that connected must still be there when its login is
	// bound: a login is not handed on by a process that has gone.
	if err := peer.alive(); err != nil {
		log.Warn("login refused: the calling process exited before its login completed", "workload", w.Name, "pid", pid, "uid", uid, "error", err)
		return LoginReply{Workload: w.Name, Error: fmt.Sprintf("the calling process %d exited before its login completed: log in from a process that waits for the answer", pid)}
	}
	l := Login{Workload: w.Name, Identity: id, Expires: expires, Via: "login", PID: pid}
	if err := s.Logins.Bind(l); err != nil {
		return LoginReply{Workload: w.Name, Error: err.Error()}
	}
	log.Info("workload logged in", "workload", w.Name, "subject", id.Subject, "issuer", id.Issuer,
		"groups", id.Groups, "expires", expires, "pid", pid, "uid", uid)
	return LoginReply{Workload: w.Name, Subject: id.Subject, Groups: id.Groups, Issuer: id.Issuer, Expires: expires}
}

// ErrLoginRefused wraps the gateway's reason for refusing a login.
var ErrLoginRefused = errors.New("login refused")

// LoginAt presents token on the gateway's login socket at path.
func LoginAt(ctx context.Context, path, token string) (LoginReply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return LoginReply{}, fmt.Errorf("connecting to the gateway's login socket: %w", err)
	}
	conn := c.(*net.UnixConn)
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, token); err != nil {
		return LoginReply{}, fmt.Errorf("sending the token: %w", err)
	}
	conn.CloseWrite()
	line, err := bufio.NewReader(io.LimitReader(conn, 1<<20)).ReadBytes('\n')
	if err != nil {
		return LoginReply{}, fmt.Errorf("reading the gateway's answer: %w", err)
	}
	var r LoginReply
	if err := json.Unmarshal(line, &r); err != nil {
		return LoginReply{}, fmt.Errorf("reading the gateway's answer: %w", err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("%w: %s", ErrLoginRefused, r.Error)
	}
	return r, nil
}
