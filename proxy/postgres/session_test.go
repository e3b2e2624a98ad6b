package postgres_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/postgres"
	"github.com/interlock-dev/interlock/proxy/postgres/pgtest"
	"github.com/interlock-dev/interlock/record"
)

func TestCopy(t *testing.T) {
	e := newEnv(t, envOptions{})

	t.Run("psql COPY FROM STDIN", func(t *testing.T) {
		out, err := e.psqlArgs(t, []string{"-c", "COPY notes (body) FROM STDIN"}, "alpha\nbeta\ngamma\n")
		if err != nil || !strings.Contains(out, "COPY 3") {
			t.Errorf("psql copy in: %v\n%s", err, out)
		}
		if got := e.pg.Query(t, "SELECT string_agg(body, ',' ORDER BY id) FROM public.notes"); got != "alpha,beta,gamma" {
			t.Errorf("notes: %q", got)
		}
	})

	t.Run("pgx CopyFrom", func(t *testing.T) {
		c := e.pgx(t)
		n, err := c.CopyFrom(ctxT(t), pgx.Identifier{"notes"}, []string{"body"},
			pgx.CopyFromRows([][]any{{"delta"}, {"epsilon"}}))
		if err != nil || n != 2 {
			t.Errorf("CopyFrom: %d %v", n, err)
		}
	})

	t.Run("COPY FROM STDIN denied", func(t *testing.T) {
		out, err := e.psqlArgs(t, []string{"-c", "COPY orders FROM STDIN"}, "12\t1\t3\n")
		if err == nil || !strings.Contains(out, "orders are read-only") {
			t.Errorf("denied copy in: %v\n%s", err, out)
		}
		if got := e.pg.Query(t, "SELECT count(*) FROM public.orders"); got != "2" {
			t.Errorf("orders has %q rows", got)
		}
	})

	t.Run("psql COPY TO STDOUT", func(t *testing.T) {
		out, err := e.psql(t, "COPY (SELECT id, name FROM customers ORDER BY id) TO STDOUT")
		if err != nil || out != "1\tAda\n2\tBob\n" {
			t.Errorf("psql copy out: %v %q", err, out)
		}
	})

	t.Run("pgx CopyTo", func(t *testing.T) {
		c := e.pgx(t)
		var buf bytes.Buffer
		tag, err := c.PgConn().CopyTo(ctxT(t), &buf, "COPY customers (id, email) TO STDOUT (FORMAT csv)")
		if err != nil || tag.RowsAffected() != 2 || buf.String() != "1,ada@example.com\n2,bob@example.org\n" {
			t.Errorf("CopyTo: %v %v %q", tag, err, buf.String())
		}
	})

	t.Run("COPY FROM STDIN aborted by the client", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		r.send(&pgproto3.Query{String: "COPY notes (body) FROM STDIN"})
		untilMsg[*pgproto3.CopyInResponse](r)
		r.send(&pgproto3.CopyData{Data: []byte("never\n")}, &pgproto3.CopyFail{Message: "changed my mind"})
		got := r.ready()
		if len(got) != 2 || !strings.Contains(got[0], "changed my mind") {
			t.Errorf("copy fail: %v", got)
		}
	})

	t.Run("recorded with row counts", func(t *testing.T) {
		var in, out bool
		for _, c := range e.commands(t) {
			if c.Command == "COPY" && c.Tag == "COPY 3" && c.Rows == 3 {
				in = true
			}
			if c.Command == "COPY" && c.Tag == "COPY 2" && strings.Contains(c.Text, "TO STDOUT") {
				out = true
			}
		}
		if !in || !out {
			t.Errorf("copy in recorded %v, copy out recorded %v", in, out)
		}
	})
}

func TestNoticesAndNotifications(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.pg.Exec(t, `CREATE FUNCTION public.say(msg text) RETURNS int LANGUAGE plpgsql AS $$
		BEGIN RAISE NOTICE 'said: %', msg; RETURN 1; END $$`)

	t.Run("notice", func(t *testing.T) {
		cfg, err := pgx.ParseConfig(e.connString(""))
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var notices []string
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			mu.Lock()
			notices = append(notices, n.Message)
			mu.Unlock()
		}
		c, err := pgx.ConnectConfig(ctxT(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var one int
		if err := c.QueryRow(ctxT(t), "SELECT say('hello')").Scan(&one); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(notices) != 1 || notices[0] != "said: hello" {
			t.Errorf("notices %q", notices)
		}
	})

	t.Run("psql shows notices", func(t *testing.T) {
		out, err := e.psql(t, "SELECT say('from psql')")
		if err != nil || !strings.Contains(out, "NOTICE:  said: from psql") {
			t.Errorf("%v\n%s", err, out)
		}
	})

	t.Run("LISTEN and NOTIFY", func(t *testing.T) {
		listener := e.pgx(t)
		ctx := ctxT(t)
		if _, err := listener.Exec(ctx, "LISTEN jobs"); err != nil {
			t.Fatal(err)
		}
		// Once from another gateway session, once from outside.
		notifier := e.pgx(t)
		if _, err := notifier.Exec(ctx, "SELECT pg_notify('jobs', 'through the gateway')"); err != nil {
			t.Fatal(err)
		}
		n, err := listener.WaitForNotification(ctx)
		if err != nil || n.Channel != "jobs" || n.Payload != "through the gateway" {
			t.Fatalf("notification: %+v %v", n, err)
		}
		e.pg.Exec(t, "NOTIFY jobs, 'direct'")
		n, err = listener.WaitForNotification(ctx)
		if err != nil || n.Payload != "direct" {
			t.Errorf("notification while idle: %+v %v", n, err)
		}
	})
}

func TestCancel(t *testing.T) {
	e := newEnv(t, envOptions{})

	t.Run("pgx", func(t *testing.T) {
		c := cancellingPgx(t, e, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Exec(ctx, "SELECT pg_sleep(21)")
		if pe := pgError(t, err); pe.Code != "57014" {
			t.Errorf("cancelled query: %+v", pe)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("cancel took %s", d)
		}
	})

	t.Run("psql SIGINT", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-c", "SELECT pg_sleep(20)")
		cmd.Env = append(cleanEnv(), "PGHOST=127.0.0.1", "PGPORT="+strings.Split(e.listener, ":")[1],
			"PGUSER=agent", "PGDATABASE=postgres", "PGSSLMODE=disable")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Interrupt once the query runs upstream.
		waitFor(t, "pg_sleep to run", func() bool {
			return e.pg.Query(t, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' AND state = 'active'") == "1"
		})
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		if err == nil || !strings.Contains(out.String(), "canceling statement due to user request") {
			t.Errorf("psql: %v\n%s", err, out.String())
		}
	})

	t.Run("the key names the backend", func(t *testing.T) {
		// PgConn.PID() is the upstream backend's, as tools that find or
		// end their own backend expect; the secret is the gateway's.
		c := cancellingPgx(t, e, nil)
		var backend uint32
		if err := c.QueryRow(ctxT(t), "SELECT pg_backend_pid()").Scan(&backend); err != nil {
			t.Fatal(err)
		}
		if pid := c.PgConn().PID(); pid != backend {
			t.Errorf("PgConn.PID() = %d, pg_backend_pid() = %d", pid, backend)
		}
		var rows string
		if err := c.QueryRow(ctxT(t), "SELECT count(*)::text FROM pg_stat_activity WHERE pid = $1", backend).Scan(&rows); err != nil || rows != "1" {
			t.Errorf("backend %d in pg_stat_activity: %q %v", backend, rows, err)
		}
	})

	t.Run("unknown key is dropped", func(t *testing.T) {
		r := e.rawConn(t, nil)
		r.ready()
		c := cancellingPgx(t, e, nil)
		pid := c.PgConn().PID()
		go func() {
			time.Sleep(300 * time.Millisecond)
			// A forged cancel for the running session: its backend's
			// pid, which anyone can read, with a guessed secret.
			conn, err := net.DialTimeout("tcp", e.listener, 5*time.Second)
			if err == nil {
				b, _ := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
				conn.Write(b)
				conn.Close()
			}
		}()
		var n int
		if err := c.QueryRow(ctxT(t), "SELECT 1 FROM pg_sleep(1)").Scan(&n); err != nil {
			t.Errorf("a forged cancel cancelled the query: %v", err)
		}
	})
}

// cancellingPgx connects with pgx configured to send a CancelRequest when
// a query's context ends (pgx's default only sets a deadline).
func cancellingPgx(t *testing.T, e *env, tc *tls.Config) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(e.connString(""))
	if err != nil {
		t.Fatal(err)
	}
	if tc != nil {
		cfg.TLSConfig = tc
		cfg.Fallbacks = nil
	}
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 10 * time.Second}
	}
	c, err := pgx.ConnectConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestAgentTLS(t *testing.T) {
	e := newEnv(t, envOptions{target: postgres.Target{AgentTLS: true}})
	caFile := filepath.Join(e.caDir, "ca.crt")
	if _, err := os.Stat(caFile); err != nil {
		t.Fatalf("CA file: %v", err)
	}
	dialled := e.pg.Host // what the agent dialled, as the kernel would report it

	t.Run("psql verify-full", func(t *testing.T) {
		out, err := e.psqlArgs(t, []string{"-c", "SELECT 'over tls'", "-c", `\conninfo`}, "",
			"PGSSLMODE=verify-full", "PGSSLROOTCERT="+caFile, "PGHOST="+dialled, "PGHOSTADDR=127.0.0.1")
		if err != nil || !strings.Contains(out, "over tls") || !strings.Contains(out, "SSL connection") {
			t.Errorf("psql: %v\n%s", err, out)
		}
	})

	t.Run("psql verify-full fails for another name", func(t *testing.T) {
		out, err := e.psqlArgs(t, []string{"-c", "SELECT 1"}, "",
			"PGSSLMODE=verify-full", "PGSSLROOTCERT="+caFile, "PGHOST=127.0.0.1")
		if err == nil {
			t.Errorf("psql verified a certificate for %s against 127.0.0.1:\n%s", dialled, out)
		}
	})

	t.Run("pgx tls", func(t *testing.T) {
		cfg, err := pgx.ParseConfig(e.connString(""))
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLSConfig = e.tlsConfig(dialled)
		cfg.Fallbacks = nil
		c, err := pgx.ConnectConfig(ctxT(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
			t.Errorf("connection is %T, not TLS", c.PgConn().Conn())
		}
		var s string
		if err := c.QueryRow(ctxT(t), "SELECT 'hi'").Scan(&s); err != nil || s != "hi" {
			t.Errorf("%q %v", s, err)
		}
		_, err = c.Exec(ctxT(t), "DROP TABLE customers")
		if pe := pgError(t, err); pe.Code != "42501" {
			t.Errorf("denial over TLS: %+v", pe)
		}
	})

	t.Run("pgx direct TLS", func(t *testing.T) {
		cfg, err := pgx.ParseConfig(e.connString("sslnegotiation=direct sslmode=require"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLSConfig = e.tlsConfig(dialled)
		cfg.TLSConfig.NextProtos = []string{"postgresql"}
		cfg.Fallbacks = nil
		c, err := pgx.ConnectConfig(ctxT(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var s string
		if err := c.QueryRow(ctxT(t), "SELECT 'direct'").Scan(&s); err != nil || s != "direct" {
			t.Errorf("%q %v", s, err)
		}
	})

	t.Run("cancel over TLS session", func(t *testing.T) {
		c := cancellingPgx(t, e, e.tlsConfig(dialled))
		if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
			t.Errorf("connection is %T, not TLS", c.PgConn().Conn())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := c.Exec(ctx, "SELECT pg_sleep(22)")
		if pe := pgError(t, err); pe.Code != "57014" {
			t.Errorf("cancel: %+v", pe)
		}
	})
}

func TestAgentTLSOff(t *testing.T) {
	e := newEnv(t, envOptions{})
	out, err := e.psql(t, "SELECT 1", "PGSSLMODE=require")
	if err == nil {
		t.Errorf("psql sslmode=require succeeded against a target without agent TLS:\n%s", out)
	}
	out, err = e.psql(t, "SELECT 1", "PGSSLMODE=prefer")
	if err != nil || out != "1\n" {
		t.Errorf("psql sslmode=prefer: %v\n%s", err, out)
	}
}

func TestUpstreamLogin(t *testing.T) {
	t.Run("md5", func(t *testing.T) {
		e := newEnv(t, envOptions{pg: pgtest.Options{Auth: pgtest.AuthMD5}})
		if got := e.pg.Query(t, "SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'app'"); got != "md5" {
			t.Fatalf("app's password is stored as %q", got)
		}
		out, err := e.psql(t, "SELECT current_user")
		if err != nil || out != "app\n" {
			t.Errorf("md5 login: %v\n%s", err, out)
		}
	})

	t.Run("verify-full", func(t *testing.T) {
		pg := pgtest.Start(t, pgtest.Options{TLS: true})
		pg.CreateUser(t, "app", "app-secret")
		e := startProxy(t, pg, envOptions{target: postgres.Target{TLS: postgres.TLSVerifyFull, CAFile: pg.CAFile}})
		out, err := e.psql(t, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
		if err != nil || out != "t\n" {
			t.Errorf("verify-full: %v\n%s", err, out)
		}

		bad := startProxy(t, pg, envOptions{target: postgres.Target{TLS: postgres.TLSVerifyFull, CAFile: pg.CAFile, ServerName: "db.example"}})
		out, err = bad.psql(t, "SELECT 1")
		if err == nil || !strings.Contains(out, `interlock could not connect to target "shop"`) {
			t.Errorf("verify-full against the wrong name: %v\n%s", err, out)
		}

		// A cancel goes to upstream encrypted, like the session.
		c := cancellingPgx(t, e, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err = c.Exec(ctx, "SELECT pg_sleep(24)")
		if pe := pgError(t, err); pe.Code != "57014" {
			t.Errorf("cancel over upstream TLS: %+v", pe)
		}

		req := startProxy(t, pg, envOptions{target: postgres.Target{TLS: postgres.TLSRequire}})
		out, err = req.psql(t, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
		if err != nil || out != "t\n" {
			t.Errorf("require: %v\n%s", err, out)
		}
	})

	t.Run("failure does not leak credentials", func(t *testing.T) {
		pg := pgtest.Start(t, pgtest.Options{})
		pg.CreateUser(t, "app", "the-real-secret")
		e := startProxy(t, pg, envOptions{}) // logs in with app-secret: wrong
		out, err := e.psql(t, "SELECT 1")
		if err == nil {
			t.Fatal("login with the wrong upstream password succeeded")
		}
		if !strings.Contains(out, `interlock could not log in to target "shop": the target refused the gateway's credentials`) {
			t.Errorf("psql output:\n%s", out)
		}
		for _, secret := range []string{"app-secret", "the-real-secret", `"app"`} {
			if strings.Contains(out, secret) {
				t.Errorf("the client was told %q:\n%s", secret, out)
			}
		}
		c, err := pgconn.Connect(ctxT(t), e.connString(""))
		if err == nil {
			c.Close(context.Background())
			t.Fatal("pgconn connected")
		}
		if pe := pgError(t, err); pe.Code != "28P01" || pe.Severity != "FATAL" {
			t.Errorf("pgconn error: %+v", pe)
		}
		e.idle(t)
		sums, err := e.store.List()
		if err != nil || len(sums) == 0 {
			t.Fatalf("no recorded session: %v", err)
		}
		evs, err := e.store.Events(sums[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		last := evs[len(evs)-1]
		if last.End == nil || !strings.Contains(last.End.Reason, "upstream login failed") {
			t.Errorf("recorded end: %+v", last.End)
		}
	})

	t.Run("password file read for each session", func(t *testing.T) {
		pg := pgtest.Start(t, pgtest.Options{})
		pg.CreateUser(t, "app", "app-secret")
		pw := filepath.Join(t.TempDir(), "pw")
		os.WriteFile(pw, []byte("app-secret\n"), 0o600)
		e := startProxy(t, pg, envOptions{target: postgres.Target{User: "app", PasswordFile: pw}})
		if out, err := e.psql(t, "SELECT 1"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		pg.Exec(t, "ALTER ROLE app PASSWORD 'rotated'")
		os.WriteFile(pw, []byte("rotated"), 0o600)
		if out, err := e.psql(t, "SELECT 1"); err != nil {
			t.Errorf("after rotation: %v\n%s", err, out)
		}
	})

	t.Run("forced database", func(t *testing.T) {
		pg := pgtest.Start(t, pgtest.Options{})
		pg.CreateUser(t, "app", "app-secret")
		pg.Exec(t, "CREATE DATABASE shopdb OWNER app")
		e := startProxy(t, pg, envOptions{target: postgres.Target{Database: "shopdb"}})
		out, err := e.psql(t, "SELECT current_database()")
		if err != nil || out != "shopdb\n" {
			t.Errorf("%v\n%s", err, out)
		}
		// Without it, the client's choice; a missing one is named.
		e2 := startProxy(t, pg, envOptions{})
		out, err = e2.psql(t, "SELECT 1", "PGDATABASE=nope")
		if err == nil || !strings.Contains(out, `database "nope" does not exist`) {
			t.Errorf("%v\n%s", err, out)
		}
	})
}

func TestStartup(t *testing.T) {
	e := newEnv(t, envOptions{})

	t.Run("replication refused", func(t *testing.T) {
		_, err := pgconn.Connect(ctxT(t), e.connString("replication=database"))
		pe := pgError(t, err)
		if pe.Code != "42501" || pe.Severity != "FATAL" || pe.Message != "replication connections are not allowed" {
			t.Errorf("replication: %+v", pe)
		}
		out, err := e.psqlArgs(t, []string{"-c", "SELECT 1"}, "", "PGDATABASE=replication=true dbname=postgres")
		if err == nil {
			t.Errorf("psql replication connection: %s", out)
		}
	})

	t.Run("parameters", func(t *testing.T) {
		c, err := pgconn.Connect(ctxT(t), e.connString("application_name=agent-app search_path=public options='-c role=postgres'"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		res, err := c.Exec(ctxT(t), "SELECT current_setting('application_name'), current_user, current_setting('search_path')").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		row := res[0].Rows[0]
		if string(row[0]) != "agent-app" || string(row[1]) != "app" || string(row[2]) != "public" {
			t.Errorf("application_name %q, user %q, search_path %q", row[0], row[1], row[2])
		}
		if c.ParameterStatus("server_version") == "" {
			t.Error("no server_version parameter status")
		}
	})

	t.Run("protocol 3.2 and extensions negotiated down", func(t *testing.T) {
		r := e.rawConnVersion(t, pgproto3.ProtocolVersion32, map[string]string{"_pq_.test_extension": "on"})
		m, err := r.fe.Receive()
		nv, ok := m.(*pgproto3.NegotiateProtocolVersion)
		if err != nil || !ok || nv.NewestMinorProtocol != 0 || strings.Join(nv.UnrecognizedOptions, ",") != "_pq_.test_extension" {
			t.Fatalf("first message %#v %v", m, err)
		}
		got := filter(r.ready())
		if !eq(got, []string{"Ready I"}) {
			t.Errorf("start-up: %v", got)
		}
		c, err := pgconn.Connect(ctxT(t), e.connString("max_protocol_version=3.2"))
		if err != nil {
			t.Fatalf("pgx asking for 3.2: %v", err)
		}
		c.Close(context.Background())
	})

	t.Run("garbage start-up", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", e.listener, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write([]byte{0, 0, 0, 8, 0, 9, 0, 0}) // protocol 9.0
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		fe := pgproto3.NewFrontend(conn, conn)
		m, err := fe.Receive()
		if er, ok := m.(*pgproto3.ErrorResponse); !ok || er.Code != "0A000" {
			t.Errorf("got %#v %v", m, err)
		}
	})
}

func TestRecording(t *testing.T) {
	e := newEnv(t, envOptions{})
	out, err := e.psql(t, "SELECT name FROM customers WHERE id = 1", "PGAPPNAME=recorder-test")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e.psql(t, "DROP TABLE orders")
	e.idle(t)
	sums, err := e.store.List()
	if err != nil || len(sums) != 2 {
		t.Fatalf("sessions %+v %v", sums, err)
	}
	var all []record.Event
	for _, s := range sums {
		evs, err := e.store.Events(s.ID)
		if err != nil {
			t.Fatal(err)
		}
		v, err := e.store.Verify(s.ID)
		if err != nil || !v.OK || !v.Complete {
			t.Errorf("verify %s: %+v %v", s.ID, v, err)
		}
		all = append(all, evs...)
	}
	var start *record.Start
	for _, ev := range all {
		if ev.Start != nil && ev.Start.Attributes["application_name"] == "recorder-test" {
			start = ev.Start
		}
	}
	if start == nil || start.Protocol != "postgres" || start.Target != "shop" || start.Workload != "agent" ||
		start.Subject != "agent:demo" || start.Attributes["database"] != "postgres" || start.Attributes["user"] != "agent" ||
		start.Attributes["application_name"] != "recorder-test" || start.PID == 0 || start.Destination != e.pg.Addr() {
		t.Errorf("start: %+v", start)
	}
	var sel, drop *record.Command
	var end *record.End
	for _, ev := range all {
		switch {
		case ev.Command != nil && ev.Command.Command == "SELECT":
			sel = ev.Command
		case ev.Command != nil && ev.Command.Command == "DROP":
			drop = ev.Command
		case ev.End != nil && end == nil:
			end = ev.End
		}
	}
	if sel == nil || sel.Decision != "allow" || sel.Rows != 1 || sel.Tag != "SELECT 1" || sel.Kind != "read" {
		t.Errorf("select: %+v", sel)
	}
	if drop == nil || drop.Decision != "deny" || drop.Rule != "no-ddl" || drop.Message == "" || drop.Text != "DROP TABLE orders" {
		t.Errorf("drop: %+v", drop)
	}
	if end == nil || end.Reason != "client terminated the session" || end.Commands != 1 {
		t.Errorf("end: %+v", end)
	}
}

// failingRecordings cannot create a recording.
type failingRecordings struct{}

func (failingRecordings) Create(string, record.Start, time.Time) (*record.Recorder, error) {
	return nil, errors.New("disk full")
}

func TestRecordingFailureRefusesTheSession(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{})
	pg.CreateUser(t, "app", "app-secret")
	e := startProxy(t, pg, envOptions{recordings: failingRecordings{}})
	_, err := pgconn.Connect(ctxT(t), e.connString(""))
	if pe := pgError(t, err); pe.Severity != "FATAL" || !strings.Contains(pe.Message, "cannot record") {
		t.Errorf("%+v", pe)
	}
	if got := pg.Query(t, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'"); got != "0" {
		t.Errorf("the unrecorded session reached upstream: %s connections", got)
	}
}

func TestShutdownTellsTheClient(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.rawConn(t, nil)
	r.ready()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	cut, _ := e.server.Shutdown(ctx)
	if cut != 1 {
		t.Errorf("cut %d sessions", cut)
	}
	got := filter(r.until(func(pgproto3.BackendMessage) bool { return true }))
	if len(got) != 1 || got[0] != "Error FATAL 57P01 : interlock ended the session: "+proxy.ErrShuttingDown.Error() {
		t.Errorf("client got %v", got)
	}
	e.idle(t)
	sums, _ := e.store.List()
	evs, _ := e.store.Events(sums[0].ID)
	if end := evs[len(evs)-1].End; end == nil || end.Reason != proxy.ErrShuttingDown.Error() {
		t.Errorf("recorded end %+v", evs[len(evs)-1])
	}
}
