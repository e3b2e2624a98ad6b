package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/interlock-dev/interlock/redirect/redirecttest"
)

// ErrUnavailable is returned by [Launch] when this machine cannot run a
// server at all (no PostgreSQL installed, root without a postgres OS user),
// as opposed to a server that failed to start. [Start] skips the test on
// it.
var ErrUnavailable = errors.New("cannot start PostgreSQL")

// Launch starts a server outside a test (a benchmark program, a tool). The
// caller owns it and must [Server.Close] it; on error nothing is left
// behind.
func Launch(o Options) (*Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.2"
	}
	if o.Auth == "" {
		o.Auth = AuthSCRAM
	}
	if !slices.Contains([]string{AuthSCRAM, AuthMD5, AuthTrust}, o.Auth) {
		return nil, fmt.Errorf("auth %q is not scram-sha-256, md5 or trust", o.Auth)
	}
	bin, version, err := binDir()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	owner, err := serverOwner()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}

	// Not t.TempDir: its parents are 0700 and root's, out of reach of the
	// postgres user.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Host:          o.Host,
		Port:          o.Port,
		Superuser:     "postgres",
		SuperPassword: "super-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Version:       version,
		dir:           dir,
		log:           filepath.Join(dir, "postgres.log"),
	}
	if err := s.launch(bin, o, owner); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

func (s *Server) launch(bin string, o Options, owner owner) error {
	dir := s.dir
	if err := os.Mkdir(filepath.Join(dir, "sock"), 0o700); err != nil {
		return err
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.SuperPassword+"\n"), 0o600); err != nil {
		return err
	}
	if o.TLS {
		if err := writeCertificates(dir, o.Host); err != nil {
			return fmt.Errorf("making TLS certificates: %w", err)
		}
		s.CAFile = filepath.Join(dir, "ca.crt")
	}
	if err := owner.chown(dir); err != nil {
		return err
	}

	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", s.Superuser,
		"--pwfile", pwfile, "--auth-local=trust", "--auth-host="+o.Auth,
		"-E", "UTF8", "--no-locale", "--no-sync")
	initdb.Dir = dir
	owner.apply(initdb)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	hba := "local all all trust\nhost all all 127.0.0.0/8 " + o.Auth + "\nhost all all ::1/128 " + o.Auth + "\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return err
	}
	if err := owner.chown(filepath.Join(data, "pg_hba.conf")); err != nil {
		return err
	}

	// A free port can be taken between the probe and postgres binding it;
	// try a few times.
	for attempt := 0; ; attempt++ {
		port := o.Port
		if port == 0 {
			var err error
			if port, err = redirecttest.FreePort(o.Host); err != nil {
				return err
			}
		}
		s.Port = port
		err := s.start(bin, data, o, owner)
		if err == nil {
			break
		}
		if o.Port != 0 || attempt == 4 {
			return err
		}
	}
	return s.waitReady(60 * time.Second)
}

// Close stops the server (fast shutdown, killed after 15 seconds) and
// removes its files.
func (s *Server) Close() error {
	s.stop()
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("removing %s: %w", s.dir, err)
	}
	return nil
}

// ExecContext runs sql (one or more statements) as the superuser on
// database postgres: [Server.Exec] for callers without a testing.TB.
func (s *Server) ExecContext(ctx context.Context, sql string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.super == nil || s.super.IsClosed() {
		c, err := pgx.Connect(ctx, s.ConnString(s.Superuser, s.SuperPassword, "postgres"))
		if err != nil {
			return fmt.Errorf("connecting as superuser: %w", err)
		}
		s.super = c
	}
	if err := s.super.PgConn().Exec(ctx, sql).Close(); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}
