package pgxsuite_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
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

const (
	enableEnv   = "INTERLOCK_PGX_SUITE"
	outEnv      = "INTERLOCK_PGX_SUITE_OUT"
	packagesEnv = "INTERLOCK_PGX_SUITE_PACKAGES"
	runEnv      = "INTERLOCK_PGX_SUITE_RUN"
	policyEnv   = "INTERLOCK_PGX_SUITE_POLICY"

	pgxModule = "github.com/jackc/pgx/v5"
	database  = "pgx_test"
	// upstreamUser is the gateway's own login: a superuser role that
	// pgx's testsetup/postgresql_setup.sql creates, as every pgx test role
	// is a superuser.
	upstreamUser     = "pgx_scram"
	upstreamPassword = "secret"

	// packageTimeout bounds one package's `go test`; the slowest takes
	// about a minute.
	packageTimeout = 10 * time.Minute
	// concurrentPackages and testsPerPackage (go test -parallel) bound
	// the load: the server allows 60 connections (pgtest); two packages
	// but those in runsAlone hold at most about 25 together.
	concurrentPackages = 2
	testsPerPackage    = 2
)

// packages are the pgx packages whose tests read PGX_TEST_DATABASE, all of
// their tests run. The rest (pgproto3 aside, which has one) test parsing
// and internals without a server.
var packages = []string{
	pgxModule,
	pgxModule + "/pgconn",
	pgxModule + "/pgproto3",
	pgxModule + "/pgtype",
	pgxModule + "/pgtype/zeronull",
	pgxModule + "/pgxpool",
	pgxModule + "/stdlib",
	pgxModule + "/tracelog",
}

// runsAlone are packages run with no other: stdlib's TestConnConcurrency
// opens 50 connections at once, and the server allows 60 (pgtest).
var runsAlone = map[string]bool{pgxModule + "/stdlib": true}

// suitePolicy allows everything: the suite tests the relay, not rules.
const suitePolicy = "default: allow\n"

func TestPgxSuite(t *testing.T) {
	if os.Getenv(enableEnv) != "1" {
		t.Skipf("runs the pgx v5 test suite through the gateway (minutes): set %s=1, or run make test-pgx", enableEnv)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the suite runs `go test` of pgx's packages: %v", err)
	}
	excluded, err := loadExclusions("excluded.txt")
	if err != nil {
		t.Fatal(err)
	}
	checkExclusions(t, goBin, excluded)
	if os.Getenv(runEnv) != "" {
		excluded = nil // reproducing: the pattern decides what runs
	}
	pkgs := packages
	if v := os.Getenv(packagesEnv); v != "" {
		pkgs = strings.Split(v, ",")
	}
	out := os.Getenv(outEnv)
	if out == "" {
		out = t.TempDir()
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	pg := startDatabase(t, moduleDir(t, goBin))
	gw := startGateway(t, pg, out)
	env := append(cleanEnv(),
		fmt.Sprintf("PGX_TEST_DATABASE=postgres://agent@%s/%s?sslmode=disable", gw.addr, database),
		fmt.Sprintf("PGX_TEST_TCP_CONN_STRING=host=127.0.0.1 port=%s user=agent dbname=%s sslmode=disable", gw.port(), database),
		fmt.Sprintf("PGX_TEST_TLS_CONN_STRING=host=127.0.0.1 port=%s user=agent dbname=%s sslmode=verify-ca sslrootcert='%s' channel_binding=disable",
			gw.port(), database, gw.caFile),
	)
	start := time.Now()
	results := runPackages(t, goBin, pkgs, env, excluded, out)
	report(t, pkgs, results, excluded, time.Since(start))

	gw.stop(t)
	t.Logf("gateway: at most %d sessions at once", gw.peak.Load())
	checkRecordings(t, gw.store)
}

// runPackages runs pkgs through the gateway. pgx's own CI runs its
// packages concurrently against one database (go test ./...); so does the
// suite, a few at a time, after the ones that need the server's
// connections to themselves.
func runPackages(t *testing.T, goBin string, pkgs, env []string, excluded map[string][]exclusion, out string) []packageResult {
	t.Helper()
	results := make([]packageResult, len(pkgs))
	for i, pkg := range pkgs {
		if runsAlone[pkg] {
			results[i] = runPackage(t.Context(), goBin, pkg, env, excluded[pkg], out)
		}
	}
	sem := make(chan struct{}, concurrentPackages)
	var wg sync.WaitGroup
	for i, pkg := range pkgs {
		if runsAlone[pkg] {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = runPackage(t.Context(), goBin, pkg, env, excluded[pkg], out)
		})
	}
	wg.Wait()
	return results
}

// report logs the counts per package and in total, and fails t for every
// failed test and broken package.
func report(t *testing.T, pkgs []string, results []packageResult, excluded map[string][]exclusion, took time.Duration) {
	t.Helper()
	var total packageResult
	nExcluded := 0
	for i, res := range results {
		pkg := pkgs[i]
		t.Logf("%-40s %4d passed %3d failed %3d skipped %3d excluded (subtests: %d passed, %d failed, %d skipped) in %s",
			pkg, res.passed, res.failedTop, res.skipped, len(excluded[pkg]),
			res.subPassed, len(res.failed)-res.failedTop, res.subSkipped, res.elapsed.Round(time.Second))
		total.passed += res.passed
		total.failedTop += res.failedTop
		total.skipped += res.skipped
		total.subPassed += res.subPassed
		total.subSkipped += res.subSkipped
		nExcluded += len(excluded[pkg])
	}
	for i, res := range results {
		if res.broken != "" {
			t.Errorf("%s: the package failed outside its tests:\n%s", pkgs[i], res.broken)
		}
		for _, f := range res.failed {
			t.Errorf("%s %s failed through the gateway:\n%s", pkgs[i], f.name, f.output)
		}
	}
	for _, pkg := range slices.Sorted(maps.Keys(excluded)) {
		for _, e := range excluded[pkg] {
			t.Logf("excluded: %s %s: %s", pkg, e.name, e.reason)
		}
	}
	t.Logf("pgx v5 test suite through the gateway: %d passed, %d failed, %d excluded (excluded.txt), %d skipped by pgx itself; subtests: %d passed, %d skipped; %s",
		total.passed, total.failedTop, nExcluded, total.skipped, total.subPassed, total.subSkipped, took.Round(time.Second))
}

// cleanEnv is the environment without PG* variables (PGX_TEST_*
// included), so only what this test sets reaches pgx's tests.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return out
}

// moduleDir is where the go command keeps pgx's sources.
func moduleDir(t *testing.T, goBin string) string {
	t.Helper()
	out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", pgxModule).Output()
	if err != nil {
		t.Fatalf("locating %s: %v", pgxModule, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatalf("%s is not in the module cache: run go mod download", pgxModule)
	}
	return dir
}

// exclusion is one line of excluded.txt.
type exclusion struct {
	name   string // TestName, or TestName/subtest as -run spells it
	reason string
	line   int
}

// loadExclusions reads "IMPORT/PATH TestName  # reason" lines by package;
// blank lines and lines starting with # are comments.
func loadExclusions(path string) (map[string][]exclusion, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading exclusions: %w", err)
	}
	byPkg := map[string][]exclusion{}
	seen := map[string]int{}
	for i, raw := range strings.Split(string(b), "\n") {
		n := i + 1
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		spec, reason, ok := strings.Cut(line, "#")
		reason = strings.TrimSpace(reason)
		fields := strings.Fields(spec)
		if !ok || reason == "" || len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"IMPORT/PATH TestName  # reason\", got %q", path, n, line)
		}
		pkg, name := fields[0], fields[1]
		if !slices.Contains(packages, pkg) {
			return nil, fmt.Errorf("%s:%d: %s is not one of the packages the suite runs", path, n, pkg)
		}
		if !strings.HasPrefix(name, "Test") {
			return nil, fmt.Errorf("%s:%d: %q is not a test name", path, n, name)
		}
		if prev, dup := seen[pkg+" "+name]; dup {
			return nil, fmt.Errorf("%s:%d: %s %s is excluded already on line %d", path, n, pkg, name, prev)
		}
		seen[pkg+" "+name] = n
		byPkg[pkg] = append(byPkg[pkg], exclusion{name: name, reason: reason, line: n})
	}
	return byPkg, nil
}

// checkExclusions fails on an excluded test a package does not have
// (renamed or removed upstream): a stale line would hide nothing and
// mislead the reader.
func checkExclusions(t *testing.T, goBin string, excluded map[string][]exclusion) {
	t.Helper()
	for _, pkg := range slices.Sorted(maps.Keys(excluded)) {
		out, err := exec.Command(goBin, "test", "-list", ".", pkg).Output()
		if err != nil {
			t.Fatalf("listing the tests of %s: %v", pkg, err)
		}
		have := map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			have[strings.TrimSpace(l)] = true
		}
		for _, e := range excluded[pkg] {
			top, _, _ := strings.Cut(e.name, "/")
			if !have[top] {
				t.Errorf("excluded.txt:%d: %s has no test %s", e.line, pkg, top)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// skipPattern is the -skip pattern for exclusions: alternatives, each
// anchored at every level of its name.
func skipPattern(excl []exclusion) string {
	var alts []string
	for _, e := range excl {
		var levels []string
		for _, part := range strings.Split(e.name, "/") {
			levels = append(levels, "^"+regexp.QuoteMeta(part)+"$")
		}
		alts = append(alts, strings.Join(levels, "/"))
	}
	return strings.Join(alts, "|")
}

// startDatabase starts PostgreSQL and prepares database pgx_test as pgx's
// CI does: createdb, then testsetup/postgresql_setup.sql through psql.
func startDatabase(t *testing.T, pgxDir string) *pgtest.Server {
	t.Helper()
	pg := pgtest.Start(t, pgtest.Options{TLS: true})
	pg.Exec(t, "CREATE DATABASE "+database)
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatalf("pgx's test setup is a psql script: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1",
		"-f", filepath.Join(pgxDir, "testsetup", "postgresql_setup.sql"))
	cmd.Env = append(cleanEnv(), "PGHOST="+pg.Host, fmt.Sprintf("PGPORT=%d", pg.Port),
		"PGUSER="+pg.Superuser, "PGPASSWORD="+pg.SuperPassword, "PGDATABASE="+database,
		"PGSSLMODE=require")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgx's testsetup/postgresql_setup.sql: %v\n%s", err, out)
	}
	return pg
}

// gateway is the in-process gateway the suite dials.
type gateway struct {
	addr    string // 127.0.0.1:port
	caFile  string // the agent-facing CA
	store   *record.Store
	srv     *proxy.Server
	handler *postgres.Handler
	cancel  context.CancelFunc
	served  chan struct{}
	stopped bool
	// peak is the most sessions seen running at once (sampled).
	peak atomic.Int64
}

func (g *gateway) port() string {
	_, p, _ := net.SplitHostPort(g.addr)
	return p
}

// startGateway runs the postgres handler in a proxy.Server for pg, as
// explicit mode does: a listener on 127.0.0.1 for the one target, every
// caller attributed to one workload. It logs to gateway.log in out and
// records into out/recordings.
func startGateway(t *testing.T, pg *pgtest.Server, out string) *gateway {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(upstreamPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tgt := postgres.Target{
		Name:         "pgx",
		User:         upstreamUser,
		PasswordFile: pw,
		TLS:          postgres.TLSVerifyFull,
		CAFile:       pg.CAFile,
		AgentTLS:     true,
	}
	polText := []byte(suitePolicy)
	if f := os.Getenv(policyEnv); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		polText = b
	}
	var cfg policy.Config
	if err := yaml.Unmarshal(polText, &cfg); err != nil {
		t.Fatalf("policy: %v", err)
	}
	pol, err := policy.Compile(cfg, policy.Env{Targets: map[string]string{tgt.Name: "postgres"}, Workloads: []string{"agent"}})
	if err != nil {
		t.Fatal(err)
	}
	recordings := filepath.Join(out, "recordings")
	store, err := record.OpenStore(recordings)
	if err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(dir, "ca")
	ca, err := tlsca.LoadOrCreate(caDir)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(out, "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	logger := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	commands, err := proxy.NewCommandMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := postgres.New(postgres.Options{
		Targets:    map[uint32]postgres.Target{1: tgt},
		Policy:     pol,
		Classifier: sqlfacts.NewClassifier(8192),
		Recordings: store,
		CA:         ca,
		Commands:   commands,
		Logger:     logger,
		Rewriter:   postgres.NewMaskRewriter, // as the gateway runs it
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(proxy.Options{
		Handlers:   map[string]proxy.Handler{"postgres": h},
		Logger:     logger,
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	at := proxy.Attribution{
		Target: proxy.Target{ID: 1, Name: tgt.Name, Protocol: "postgres", Address: pg.Addr()},
		Caller: identity.Caller{
			Workload: "agent",
			Identity: identity.Identity{Subject: "agent:pgx", Groups: []string{"agents"}},
			PID:      uint32(os.Getpid()),
			UID:      uint32(os.Getuid()),
		},
		Destination: netip.MustParseAddrPort(pg.Addr()),
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gateway{addr: ln.Addr().String(), caFile: filepath.Join(caDir, tlsca.CertFile),
		store: store, srv: srv, handler: h, cancel: cancel, served: make(chan struct{})}
	go func() {
		defer close(g.served)
		srv.Serve(ctx, ln, proxytest.Fixed(at))
	}()
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if n := int64(len(srv.Active())); n > g.peak.Load() {
					g.peak.Store(n)
				}
			}
		}
	}()
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop waits for the sessions to end (the suite's processes are gone, so
// every client connection is closed) and shuts the server down.
func (g *gateway) stop(t *testing.T) {
	t.Helper()
	if g.stopped {
		return
	}
	g.stopped = true
	deadline := time.Now().Add(30 * time.Second)
	for len(g.srv.Active()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(g.srv.Active()); n > 0 {
		t.Errorf("%d gateway sessions still running 30s after the suite ended", n)
	}
	g.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if cut, err := g.srv.Shutdown(ctx); err != nil {
		t.Errorf("gateway shutdown cut %d sessions: %v", cut, err)
	}
	<-g.served
	g.handler.Close() // a catalogue connection kept for the next session
}

// testEvent is one line of `go test -json` (test2json).
type testEvent struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type failure struct {
	name   string
	output string
}

type packageResult struct {
	passed, failedTop, skipped int // top-level tests
	subPassed, subSkipped      int
	failed                     []failure // top-level and subtests
	broken                     string    // output of a package that failed outside its tests
	elapsed                    time.Duration
}

// runPackage runs one package's tests through the gateway and sorts the
// outcome. It runs on its own goroutine, so it reports trouble in the
// result rather than through t.
func runPackage(ctx context.Context, goBin, pkg string, env []string, excl []exclusion, out string) (res packageResult) {
	start := time.Now()
	defer func() { res.elapsed = time.Since(start) }()
	args := []string{"test", "-count=1", "-json", "-timeout", packageTimeout.String(),
		"-parallel", fmt.Sprint(testsPerPackage)}
	if p := os.Getenv(runEnv); p != "" {
		args = append(args, "-run", p)
	}
	if len(excl) > 0 {
		args = append(args, "-skip", skipPattern(excl))
	}
	args = append(args, pkg)
	ctx, cancel := context.WithTimeout(ctx, packageTimeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		res.broken = err.Error()
		return res
	}
	stream, err := os.Create(filepath.Join(out, strings.ReplaceAll(strings.TrimPrefix(pkg, "github.com/jackc/"), "/", "_")+".json"))
	if err != nil {
		res.broken = err.Error()
		return res
	}
	defer stream.Close()
	if err := cmd.Start(); err != nil {
		res.broken = fmt.Sprintf("starting go test: %v", err)
		return res
	}
	res, perr := parseEvents(io.TeeReader(stdout, stream))
	io.Copy(io.Discard, stdout) // whatever is left after a read error
	werr := cmd.Wait()
	if perr != nil {
		res.broken = fmt.Sprintf("reading go test -json: %v\n%s", perr, stderr.String())
	}
	var exit *exec.ExitError
	if werr != nil && (!errors.As(werr, &exit) || len(res.failed) == 0) && res.broken == "" {
		// go test exits 1 for failed tests; anything else, or a failure
		// without a failed test, is the package itself failing.
		res.broken = fmt.Sprintf("%v\n%s", werr, stderr.String())
	}
	return res
}

// parseEvents reads a test2json stream. A test's output is kept only to
// report it when the test fails.
func parseEvents(r io.Reader) (packageResult, error) {
	var res packageResult
	outputs := map[string]*strings.Builder{}
	var pkgOutput strings.Builder
	pkgFailed := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev testEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			// go test prints build errors as plain text.
			pkgOutput.WriteString(sc.Text() + "\n")
			continue
		}
		top := !strings.Contains(ev.Test, "/")
		switch ev.Action {
		case "output":
			if ev.Test == "" {
				pkgOutput.WriteString(ev.Output)
				continue
			}
			b := outputs[ev.Test]
			if b == nil {
				b = &strings.Builder{}
				outputs[ev.Test] = b
			}
			b.WriteString(ev.Output)
		case "pass":
			switch {
			case ev.Test == "":
			case top:
				res.passed++
			default:
				res.subPassed++
			}
			delete(outputs, ev.Test)
		case "skip":
			switch {
			case ev.Test == "":
			case top:
				res.skipped++
			default:
				res.subSkipped++
			}
			delete(outputs, ev.Test)
		case "fail":
			if ev.Test == "" {
				pkgFailed = true
				continue
			}
			out := ""
			if b := outputs[ev.Test]; b != nil {
				out = b.String()
			}
			res.failed = append(res.failed, failure{name: ev.Test, output: out})
			if top {
				res.failedTop++
			}
		}
	}
	if pkgFailed && len(res.failed) == 0 {
		res.broken = pkgOutput.String()
	}
	return res, sc.Err()
}

// checkRecordings verifies every session's event log, and logs the
// denials, which should all be by design (SQL the gateway cannot parse,
// the function call protocol). The logs hold every statement of the suite
// (about 100 MB), so they are verified on every CPU.
func checkRecordings(t *testing.T, store *record.Store) {
	t.Helper()
	sums, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	var commands, denied int64
	for _, s := range sums {
		commands += s.Commands
		denied += s.Denied
	}
	var (
		mu       sync.Mutex
		problems []string
		denials  = map[string]int{}
		wg       sync.WaitGroup
	)
	ids := make(chan record.Summary)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for s := range ids {
				problem, msgs := checkRecording(store, s)
				mu.Lock()
				if problem != "" {
					problems = append(problems, problem)
				}
				for _, m := range msgs {
					denials[m]++
				}
				mu.Unlock()
			}
		})
	}
	for _, s := range sums {
		ids <- s
	}
	close(ids)
	wg.Wait()
	slices.Sort(problems)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("recordings: %d sessions, %d commands, %d denied; %d of %d verify as complete chains",
		len(sums), commands, denied, len(sums)-len(problems), len(sums))
	for _, msg := range slices.Sorted(maps.Keys(denials)) {
		t.Logf("  denied %4d× %s", denials[msg], msg)
	}
}

// checkRecording verifies one session's log and returns what is wrong
// with it ("" when nothing) and the messages of its denials.
func checkRecording(store *record.Store, s record.Summary) (string, []string) {
	v, err := store.Verify(s.ID)
	if err != nil {
		return err.Error(), nil
	}
	if !v.OK || !v.Complete {
		return fmt.Sprintf("recording %s does not verify: ok=%v complete=%v: %s", s.ID, v.OK, v.Complete, v.Problem), nil
	}
	if s.Denied == 0 {
		return "", nil
	}
	evs, err := store.Events(s.ID)
	if err != nil {
		return err.Error(), nil
	}
	var msgs []string
	for _, ev := range evs {
		if c := ev.Command; c != nil && c.Decision == string(policy.Deny) {
			msgs = append(msgs, c.Message)
		}
	}
	return "", msgs
}
