package postgres_test

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/postgres"
	"github.com/interlock-dev/interlock/proxy/postgres/pgtest"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
	"github.com/interlock-dev/interlock/proxy/proxytest"
	"github.com/interlock-dev/interlock/proxy/tlsca"
	"github.com/interlock-dev/interlock/record"
)

// testPolicy is the policy every test runs under, unless it says otherwise.
const testPolicy = `
default: allow
rules:
  - name: truncate-needs-review
    when: sql.command == "TRUNCATE"
    action: review
    review: {approvers: [dba]}
  - name: no-ddl
    when: sql.kind in ["ddl", "dcl", "procedural"]
    action: deny
    message: schema and privilege changes are not allowed for agents
  - name: no-unbounded-delete
    when: sql.command == "DELETE" && !sql.has_where
    action: deny
  - name: orders-read-only
    when: sql.kind == "write" && "orders" in sql.tables
    action: deny
    message: orders are read-only
`

// env is a real PostgreSQL behind a proxy.Server running the handler.
type env struct {
	pg       *pgtest.Server
	handler  *postgres.Handler
	store    *record.Store
	reg      *prometheus.Registry
	caDir    string
	ca       *tlsca.CA
	listener string // host:port clients dial
	server   *proxy.Server
	logs     *lockedBuffer
	// policy is the policy in force: reload replaces it, as the
	// gateway's reload does.
	policy    *policy.Live
	policyEnv policy.Env
}

// reload puts polText in force.
func (e *env) reload(t testing.TB, polText string) {
	t.Helper()
	e.policy.Store(compileTestPolicy(t, polText, e.policyEnv))
}

// compileTestPolicy compiles a policy written in YAML.
func compileTestPolicy(t testing.TB, polText string, env policy.Env) *policy.Policy {
	t.Helper()
	var cfg policy.Config
	if err := yaml.Unmarshal([]byte(polText), &cfg); err != nil {
		t.Fatalf("policy yaml: %v", err)
	}
	pol, err := policy.Compile(cfg, env)
	if err != nil {
		t.Fatalf("compiling policy: %v", err)
	}
	return pol
}

type envOptions struct {
	pg       pgtest.Options
	target   postgres.Target // Name, User and PasswordFile are filled in when empty
	policy   string
	rewriter func(s *proxy.Session, m *policy.Masker, cat postgres.Catalogue) postgres.ResultRewriter
	// recordings replaces the store the env reads back.
	recordings postgres.Recordings
	// recordingsDir, when set, is the store's folder.
	recordingsDir string
	reviewer      proxy.Reviewer
	strict        bool                // strict recording
	classifier    postgres.Classifier // nil: sqlfacts
	metadataIdle  time.Duration       // Options.MetadataIdle
	largeMessages int64               // Options.LargeMessageMemory
	retained      int64               // Options.RetainedStatementMemory
	pendingLimit  int64               // Handler.SetPendingLimit; 0: the default
	// handled is called after each client message a session handled,
	// with what its view holds then (see Handler.OnHandled).
	handled func(msg pgproto3.FrontendMessage, v postgres.RetainedView)
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	pg := pgtest.Start(t, o.pg)
	pg.CreateUser(t, "app", "app-secret")
	pg.Exec(t, `CREATE TABLE public.customers (id int PRIMARY KEY, name text, email text);
		INSERT INTO public.customers VALUES (1, 'Ada', 'ada@example.com'), (2, 'Bob', 'bob@example.org');
		CREATE TABLE public.orders (id int PRIMARY KEY, customer int, total numeric);
		INSERT INTO public.orders VALUES (10, 1, 9.5), (11, 2, 20);
		CREATE TABLE public.notes (id serial PRIMARY KEY, body text);
		GRANT ALL ON public.customers, public.orders, public.notes TO app;
		GRANT USAGE ON SEQUENCE public.notes_id_seq TO app;
		GRANT CREATE ON SCHEMA public TO app`)
	return startProxy(t, pg, o)
}

// startProxy runs the handler in a proxy.Server for pg.
func startProxy(t testing.TB, pg *pgtest.Server, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	tgt := o.target
	if tgt.Name == "" {
		tgt.Name = "shop"
	}
	if tgt.User == "" {
		tgt.User = "app"
		pw := filepath.Join(dir, "password")
		if err := os.WriteFile(pw, []byte("app-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tgt.PasswordFile = pw
	}
	if tgt.TLS == "" {
		tgt.TLS = postgres.TLSDisable
	}
	polText := o.policy
	if polText == "" {
		polText = testPolicy
	}
	polEnv := policy.Env{Targets: map[string]string{tgt.Name: "postgres"}, Workloads: []string{"agent"}}
	live := policy.NewLive(compileTestPolicy(t, polText, polEnv))
	storeDir := o.recordingsDir
	if storeDir == "" {
		storeDir = filepath.Join(dir, "recordings")
	}
	store, err := record.OpenStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	store.Strict = o.strict
	caDir := filepath.Join(dir, "ca")
	ca, err := tlsca.LoadOrCreate(caDir)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	commands, err := proxy.NewCommandMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var recordings postgres.Recordings = store
	if o.recordings != nil {
		recordings = o.recordings
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := postgres.New(postgres.Options{
		Targets:    map[uint32]postgres.Target{1: tgt},
		Policy:     live,
		Classifier: cmp.Or[postgres.Classifier](o.classifier, sqlfacts.NewClassifier(256)),
		Recordings: recordings,
		CA:         ca,
		Commands:   commands,
		Logger:     logger,
		Rewriter:   o.rewriter,
		Reviewer:   o.reviewer,
		// Short by default: a test's sessions end long before 30 s, and
		// the server's clean-up would wait for the connection.
		MetadataIdle:            cmp.Or(o.metadataIdle, -1),
		LargeMessageMemory:      o.largeMessages,
		RetainedStatementMemory: o.retained,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() }) // after the server's shutdown
	if o.handled != nil {
		h.OnHandled(o.handled)
	}
	if o.pendingLimit != 0 {
		h.SetPendingLimit(o.pendingLimit)
	}
	at := proxy.Attribution{
		Target: proxy.Target{ID: 1, Name: tgt.Name, Protocol: "postgres", Address: pg.Addr()},
		Caller: identity.Caller{
			Workload: "agent",
			Identity: identity.Identity{Subject: "agent:demo", Groups: []string{"agents"}},
			PID:      uint32(os.Getpid()),
			UID:      uint32(os.Getuid()),
		},
		Destination: netip.MustParseAddrPort(pg.Addr()),
	}
	t.Cleanup(func() { // after the server's shutdown
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	srv, addr := proxytest.Serve(t, "postgres", h, logger, reg, at)
	e := &env{pg: pg, handler: h, store: store, reg: reg, caDir: caDir, ca: ca,
		listener: addr, server: srv, logs: logs, policy: live, policyEnv: polEnv}
	return e
}

// lockedBuffer is the gateway's log sink.
type lockedBuffer = proxytest.LockedBuffer

func (e *env) port() int {
	_, p, _ := net.SplitHostPort(e.listener)
	n, _ := strconv.Atoi(p)
	return n
}

// psql runs the real psql against the gateway with no password; extra are
// extra environment variables (PGSSLMODE=...). It returns stdout and stderr
// together.
func (e *env) psql(t *testing.T, sql string, extra ...string) (string, error) {
	t.Helper()
	return e.psqlArgs(t, []string{"-c", sql}, "", extra...)
}

func (e *env) psqlArgs(t *testing.T, args []string, stdin string, extra ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", append([]string{"-X", "-At", "-v", "ON_ERROR_STOP=1"}, args...)...)
	cmd.Env = append(cleanEnv(),
		"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", e.port()),
		"PGUSER=agent", "PGDATABASE=postgres", "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cleanEnv is the environment without PG* variables.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return out
}

// connString is a pgx connection string to the gateway (no password).
func (e *env) connString(extra string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=agent dbname=postgres sslmode=disable connect_timeout=10 %s", e.port(), extra)
}

// pgx connects with pgx through the gateway.
func (e *env) pgx(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, e.connString(""))
	if err != nil {
		t.Fatalf("pgx connect through the gateway: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// counter reads a counter of the registry with the given label values.
func (e *env) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return proxytest.Counter(t, e.reg, name, labels)
}

// idle waits until the gateway has no session running: the recordings
// are then complete.
func (e *env) idle(t *testing.T) {
	t.Helper()
	proxytest.Idle(t, e.server)
}

// commands returns the command events of every recorded session.
func (e *env) commands(t *testing.T) []record.Command {
	t.Helper()
	return proxytest.Commands(t, e.store)
}

// tlsConfig trusts the gateway's CA for name.
func (e *env) tlsConfig(name string) *tls.Config {
	return &tls.Config{RootCAs: e.ca.Pool(), ServerName: name}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	proxytest.WaitFor(t, what, cond)
}
