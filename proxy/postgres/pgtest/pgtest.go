// Package pgtest starts a real PostgreSQL server, from the distribution's
// packages, for a test: initdb into a temporary folder, a postgres process
// listening on a loopback address, stopped and removed when the test ends.
//
// The server is the one in /usr/lib/postgresql/<version>/bin with the
// highest version. PostgreSQL refuses to run as root, so as root the data
// folder belongs to the "postgres" OS user and initdb and postgres run as
// that user. A test that cannot start a server (no PostgreSQL installed,
// root without a postgres user) is skipped with the reason, or fails when
// INTERLOCK_REQUIRE_PRIVILEGED=1 says the environment must run it (CI).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Auth methods for [Options.Auth].
const (
	AuthSCRAM = "scram-sha-256"
	AuthMD5   = "md5"
	AuthTrust = "trust"
)

// Options say how to start a server; the zero value is a SCRAM server on
// 127.0.0.2 at a free port, without TLS.
type Options struct {
	// Host is the loopback address to listen on; default 127.0.0.2.
	Host string
	// AlsoListen are more loopback addresses the server listens on (same
	// port), for a second way to the same server.
	AlsoListen []string
	// Port 0 picks a free port.
	Port int
	// Auth is the pg_hba method for TCP connections: scram-sha-256
	// (default), md5 (passwords are then stored as md5) or trust.
	Auth string
	// TLS turns on ssl with a server certificate for Host (and localhost)
	// from a CA made for this server; Server.CAFile is that CA.
	TLS bool
}

// Server is a running PostgreSQL.
type Server struct {
	Host          string
	Port          int
	Superuser     string
	SuperPassword string
	// CAFile is the PEM CA that signed the server certificate; "" without
	// TLS.
	CAFile string
	// Version is the server's major version, e.g. 15.
	Version int

	dir    string // base folder: data/, sock/, certificates, log
	log    string
	daemon *redirecttest.Daemon // nil until postgres started

	mu    sync.Mutex
	super *pgx.Conn
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// ConnString is a key=value connection string for user on database db
// (sslmode=require when the server has TLS, else disable).
func (s *Server) ConnString(user, password, db string) string {
	mode := "disable"
	if s.CAFile != "" {
		mode = "require"
	}
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=%s",
		s.Host, s.Port, quoteConnValue(user), quoteConnValue(password), quoteConnValue(db), mode)
}

func quoteConnValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// binDir is the bin folder of the newest installed PostgreSQL.
func binDir() (string, int, error) {
	dirs, err := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if err != nil || len(dirs) == 0 {
		return "", 0, errors.New("no /usr/lib/postgresql/<version>/bin/postgres (install the postgresql package)")
	}
	best, bestVer := "", -1
	for _, p := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		if err == nil && v > bestVer {
			best, bestVer = filepath.Dir(p), v
		}
	}
	if best == "" {
		return "", 0, fmt.Errorf("no numbered version among %v", dirs)
	}
	return best, bestVer, nil
}

// Start starts a server for tb and stops it, removing its files, when tb
// ends.
func Start(tb testing.TB, o Options) *Server {
	tb.Helper()
	return redirecttest.Launched(tb, "pgtest", ErrUnavailable, func() (*Server, error) { return Launch(o) })
}

func (s *Server) start(bin, data string, o Options, owner owner) error {
	args := []string{"-D", data, "-k", filepath.Join(s.dir, "sock"),
		"-c", "listen_addresses=" + strings.Join(append([]string{o.Host}, o.AlsoListen...), ","), "-p", strconv.Itoa(s.Port),
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
		"-c", "shared_buffers=16MB", "-c", "dynamic_shared_memory_type=mmap",
		"-c", "max_connections=60", "-c", "log_min_messages=warning"}
	if o.Auth == AuthMD5 {
		args = append(args, "-c", "password_encryption=md5")
	}
	if o.TLS {
		args = append(args, "-c", "ssl=on",
			"-c", "ssl_cert_file="+filepath.Join(s.dir, "server.crt"),
			"-c", "ssl_key_file="+filepath.Join(s.dir, "server.key"))
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Dir = s.dir
	owner.apply(cmd)
	d, err := redirecttest.StartDaemon("postgres", cmd, s.log)
	if err != nil {
		return err
	}
	s.daemon = d
	// A bind failure shows within moments; anything else shows in
	// waitReady.
	err = d.WaitReady(30*time.Second, 20*time.Millisecond, func() error {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		s.stop()
		return fmt.Errorf("postgres on %s: %w", s.Addr(), err)
	}
	return nil
}

func (s *Server) waitReady(limit time.Duration) error {
	err := s.daemon.WaitReady(limit, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, s.ConnString(s.Superuser, s.SuperPassword, "postgres"))
		if err == nil {
			s.super = c
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres on %s: %w", s.Addr(), err)
	}
	return nil
}

// stop shuts the server down (SIGINT: fast shutdown), killing it if it
// takes more than 15 seconds.
func (s *Server) stop() {
	s.mu.Lock()
	if s.super != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.super.Close(ctx)
		cancel()
		s.super = nil
	}
	s.mu.Unlock()
	if s.daemon != nil {
		s.daemon.Stop(syscall.SIGINT, 15*time.Second)
	}
}

// conn is the superuser connection, reopened if a test broke it.
func (s *Server) conn(tb testing.TB) *pgx.Conn {
	tb.Helper()
	if s.super != nil && !s.super.IsClosed() {
		return s.super
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.ConnString(s.Superuser, s.SuperPassword, "postgres"))
	if err != nil {
		tb.Fatalf("pgtest: connecting as superuser: %v", err)
	}
	s.super = c
	return c
}

// Exec runs sql (one or more statements) as the superuser on database
// postgres.
func (s *Server) Exec(tb testing.TB, sql string) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.conn(tb).PgConn().Exec(ctx, sql).Close(); err != nil {
		tb.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// Query runs sql as the superuser on database postgres and returns its
// rows as psql -At prints them: columns joined by "|", rows by "\n", NULL
// as "".
func (s *Server) Query(tb testing.TB, sql string) string {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.conn(tb).PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		tb.Fatalf("pgtest: %s: %v", sql, err)
	}
	var lines []string
	for _, r := range res {
		for _, row := range r.Rows {
			cols := make([]string, len(row))
			for i, v := range row {
				cols[i] = string(v)
			}
			lines = append(lines, strings.Join(cols, "|"))
		}
	}
	return strings.Join(lines, "\n")
}

// CreateUser creates a login role with password (stored as the server's
// password_encryption says: md5 for an md5 server, else SCRAM).
func (s *Server) CreateUser(tb testing.TB, name, password string) {
	tb.Helper()
	s.Exec(tb, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s",
		pgx.Identifier{name}.Sanitize(), quoteLiteral(password)))
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
