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
}

// Serve accepts logins on ln until ctx ends.
func (s *LoginServer) Serve(ctx context.Context, ln *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting logins: %w", err)
		}
		go s.handle(ctx, conn)
	}
}

func (s *LoginServer) handle(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	reply := s.login(ctx, conn)
	b, _ := json.Marshal(reply)
	conn.Write(append(b, '\n'))
}

func (s *LoginServer) login(ctx context.Context, conn *net.UnixConn) LoginReply {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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
