//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock-dev/interlock/bench/benchenv"
	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/proxy/postgres/pgtest"
)

const (
	// database is the database pgbench -i fills and every path uses.
	database = "bench"
	// appUser is the upstream role: the gateway and PgBouncer log in as
	// it, and so does pgbench on the direct path.
	appUser = "app"
	// workloadCgroup is the bench workload's cgroup: this program moves
	// itself into it once the gateway runs, so that the gateway attributes
	// its own check connections and every pgbench it starts to the
	// workload (the gateway itself stays outside, as it must).
	workloadCgroup = "/interlock-bench"
	// bouncerSessionDB is PgBouncer's session-pooled alias of database,
	// for -M prepared.
	bouncerSessionDB = database + "_session"
	// relayHost is PostgreSQL's second address, the relay target's: two
	// targets may not share an address.
	relayHost = "127.0.0.3"
)

// bench is one run of the benchmark: what it started and how to reach it.
type bench struct {
	opts     options
	dir      string // everything this run writes; removed at the end
	password string // appUser's

	pg         *pgtest.Server
	pgbenchBin string

	gateway      *proc
	gatewayAdmin string
	gatewayPort  int
	relayPort    int // the gateway's tcp target: the same process forwarding bytes only
	gatewayCfg   string

	bouncer     *proc
	bouncerPort int

	benchenv.Cleanups // stops what the run started, newest first
}

// startPostgres starts the server, loads pgbench's tables into database
// and creates appUser, who may read them.
func (b *bench) startPostgres(ctx context.Context) error {
	s, err := pgtest.Launch(pgtest.Options{Host: "127.0.0.2", AlsoListen: []string{relayHost}, Auth: pgtest.AuthSCRAM})
	if err != nil {
		return fmt.Errorf("starting PostgreSQL: %w", err)
	}
	b.pg = s
	b.OnClose(s.Close)
	b.pgbenchBin = filepath.Join("/usr/lib/postgresql", strconv.Itoa(s.Version), "bin", "pgbench")
	if _, err := os.Stat(b.pgbenchBin); err != nil {
		if b.pgbenchBin, err = exec.LookPath("pgbench"); err != nil {
			return fmt.Errorf("finding pgbench (postgresql-client or postgresql-contrib): %w", err)
		}
	}

	for _, sql := range []string{
		"CREATE DATABASE " + database,
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", appUser, b.password),
	} {
		if err := s.ExecContext(ctx, sql); err != nil {
			return fmt.Errorf("preparing PostgreSQL: %w", err)
		}
	}
	init := exec.CommandContext(ctx, b.pgbenchBin, "-i", "-q", "-s", strconv.Itoa(b.opts.scale),
		"-h", s.Host, "-p", strconv.Itoa(s.Port), "-U", s.Superuser, database)
	init.Env = append(os.Environ(), "PGPASSWORD="+s.SuperPassword, "PGSSLMODE=disable")
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	c, err := pgx.Connect(ctx, s.ConnString(s.Superuser, s.SuperPassword, database))
	if err != nil {
		return fmt.Errorf("connecting to %s as superuser: %w", database, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+appUser); err != nil {
		return fmt.Errorf("granting %s the pgbench tables: %w", appUser, err)
	}
	return nil
}

// gatewayConfig is the configuration the gateway runs with: one postgres
// target with an explicit listener, the bench workload, and a policy whose
// rules and mask are evaluated for every statement pgbench sends; and a tcp
// target to the same server, the relay path.
const gatewayConfig = `gateway:
  listen: 127.0.0.1:%[1]d
  admin: %[2]s
  state_dir: %[3]s
  bpffs: /sys/fs/bpf/interlock-pgbench   # explicit mode pins nothing
  shutdown_timeout: 5s
targets:
  - name: pgbench
    protocol: postgres
    address: %[4]s
    listen: 127.0.0.1:%[5]d
    agent_tls: false                     # pgbench talks plain TCP to all three paths
    upstream:
      user: ` + appUser + `
      password_file: %[6]s
      tls: disable
      database: ` + database + `
  # The same gateway forwarding bytes only: what the relay itself costs,
  # without the PostgreSQL handler (pgbench logs in to PostgreSQL through it).
  - name: pgbench-relay
    protocol: tcp
    address: %[8]s
    listen: 127.0.0.1:%[7]d
workloads:
  - name: bench
    match: {cgroup: ` + workloadCgroup + `}
    identity: {subject: "agent:pgbench", groups: [agents]}
policy:
  default: allow
  rules:
    - name: no-ddl
      targets: [pgbench]
      when: sql.kind in ["ddl", "dcl", "procedural"]
      action: deny
      message: schema and privilege changes are not allowed for agents
    - name: history-is-append-only
      when: '"pgbench_history" in sql.tables && sql.command in ["UPDATE", "DELETE", "TRUNCATE"]'
      action: deny
      message: pgbench_history is append-only
  masks:
    - name: pii
      targets: [pgbench]
      columns: [pgbench_accounts.filler]
      detectors: [email]
  tests:
    - request: {target: pgbench, sql: "DROP TABLE pgbench_accounts"}
      expect: deny
    - request: {target: pgbench, sql: "DELETE FROM pgbench_history"}
      expect: deny
    - request: {target: pgbench, sql: "SELECT abalance FROM pgbench_accounts WHERE aid = 1"}
      expect: allow
`

// startGateway runs `interlock gateway --explicit` and checks that the
// path it serves denies and masks: a benchmark of a gateway that decides
// nothing would measure the wrong thing.
func (b *bench) startGateway(ctx context.Context) error {
	dir := filepath.Join(b.dir, "gateway")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	var err error
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	b.gatewayAdmin = fmt.Sprintf("127.0.0.1:%d", ports[1])
	b.gatewayPort = ports[2]
	b.relayPort = ports[3]
	pwFile := filepath.Join(dir, "app.password")
	if err := os.WriteFile(pwFile, []byte(b.password+"\n"), 0o600); err != nil {
		return err
	}
	b.gatewayCfg = filepath.Join(dir, "interlock.yaml")
	cfg := fmt.Sprintf(gatewayConfig, ports[0], b.gatewayAdmin, filepath.Join(dir, "state"), b.pg.Addr(), b.gatewayPort, pwFile, b.relayPort,
		net.JoinHostPort(relayHost, strconv.Itoa(b.pg.Port)))
	if err := os.WriteFile(b.gatewayCfg, []byte(cfg), 0o600); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, b.opts.interlock, "check", "--config", b.gatewayCfg).CombinedOutput(); err != nil {
		return fmt.Errorf("interlock check: %w\n%s", err, out)
	}

	// The gateway does not create the workload's cgroup in explicit mode:
	// this program does, before the gateway starts, and removes it at the
	// end if it made it.
	root, err := identity.CgroupV2Root()
	if err != nil {
		return fmt.Errorf("the bench workload's cgroup: %w", err)
	}
	cgroupDir, made := filepath.Join(root, workloadCgroup), false
	if err := os.Mkdir(cgroupDir, 0o755); err == nil {
		made = true
	} else if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("the bench workload's cgroup: %w", err)
	}

	p, err := startProc("gateway", filepath.Join(b.dir, "gateway.log"), nil,
		b.opts.interlock, "gateway", "--explicit", "--config", b.gatewayCfg)
	if err != nil {
		if made {
			os.Remove(cgroupDir)
		}
		return err
	}
	b.gateway = p
	b.OnClose(func() error {
		err := p.stop(syscall.SIGTERM, 20*time.Second)
		if made {
			if rerr := os.Remove(cgroupDir); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		return err
	})
	if err := b.joinWorkload(root, cgroupDir); err != nil {
		return err
	}
	if err := waitFor(ctx, p, 30*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.gatewayAdmin+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	}); err != nil {
		return err
	}
	return b.checkGateway(ctx)
}

// checkGateway makes sure the benchmarked path enforces the policy: DDL is
// denied (and the table is still there), the masked column comes back
// masked.
// joinWorkload moves this program (and so every pgbench it starts from
// now on) into the bench workload's cgroup, and back out at the end (first:
// clean-ups run newest first, and the cgroup is removed after).
func (b *bench) joinWorkload(root, cgroupDir string) error {
	pid := os.Getpid()
	from, err := identity.ProcessCgroup(uint32(pid))
	if err != nil {
		return fmt.Errorf("this program's cgroup: %w", err)
	}
	move := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
	}
	if err := move(cgroupDir); err != nil {
		return fmt.Errorf("joining the bench workload's cgroup: %w", err)
	}
	b.OnClose(func() error {
		if err := move(filepath.Join(root, from)); err != nil {
			return fmt.Errorf("leaving the bench workload's cgroup: %w", err)
		}
		return nil
	})
	return nil
}

func (b *bench) checkGateway(ctx context.Context) error {
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", b.gatewayPort, appUser, database))
	if err != nil {
		return fmt.Errorf("connecting through the gateway: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(ctx, "DROP TABLE pgbench_history")
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != "42501" {
		return fmt.Errorf("DROP TABLE through the gateway: want a 42501 denial, got %v", err)
	}
	var filler string
	if err := c.QueryRow(ctx, "SELECT filler FROM pgbench_accounts WHERE aid = 1").Scan(&filler); err != nil {
		return fmt.Errorf("reading pgbench_accounts through the gateway: %w", err)
	}
	if filler != "[masked]" {
		return fmt.Errorf("pgbench_accounts.filler through the gateway is %q, want [masked]", filler)
	}
	return nil
}

// startBouncer runs PgBouncer as the postgres OS user (it refuses root)
// with a transaction-pooled database and a session-pooled alias of it.
func (b *bench) startBouncer(ctx context.Context) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("PgBouncer refuses root and there is no postgres OS user to run it as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("postgres OS user: %w", err)
	}
	dir := filepath.Join(b.dir, "pgbouncer")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if b.bouncerPort, err = freePort(); err != nil {
		return err
	}
	userlist := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(userlist, fmt.Appendf(nil, "%q %q\n", appUser, b.password), 0o600); err != nil {
		return err
	}
	pool := max(8, maxClients(b.opts.clients))
	ini := fmt.Sprintf(`[databases]
%[1]s = host=%[2]s port=%[3]d dbname=%[1]s
%[4]s = host=%[2]s port=%[3]d dbname=%[1]s pool_mode=session

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[5]d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %[6]s
pool_mode = transaction
default_pool_size = %[7]d
max_client_conn = 200
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
logfile =
pidfile =
`, database, b.pg.Host, b.pg.Port, bouncerSessionDB, b.bouncerPort, userlist, pool)
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(ini), 0o600); err != nil {
		return err
	}
	for _, p := range []string{dir, userlist, iniPath} {
		if err := os.Chown(p, int(uid), int(gid)); err != nil {
			return err
		}
	}
	logPath := filepath.Join(b.dir, "pgbouncer.log")
	p, err := startProc("pgbouncer", logPath, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, b.opts.pgbouncer, iniPath)
	if err != nil {
		return err
	}
	b.bouncer = p
	b.OnClose(func() error { return p.stop(syscall.SIGTERM, 10*time.Second) })
	return waitFor(ctx, p, 30*time.Second, func(ctx context.Context) error {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable",
			b.bouncerPort, appUser, b.password, database))
		if err != nil {
			return err
		}
		defer c.Close(context.WithoutCancel(ctx))
		return c.Exec(ctx, "SELECT 1").Close()
	})
}

// waitFor polls ready until it succeeds, p exits, or limit passes.
func waitFor(ctx context.Context, p *proc, limit time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(limit)
	var last error
	for {
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited at start: %v\n%s", p.name, err, p.logTail())
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w\n%s", p.name, limit, last, p.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric sums the samples of the Prometheus counter name on the gateway's
// /metrics whose labels contain every one of labels.
func (b *bench) metric(ctx context.Context, name string, labels ...string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.gatewayAdmin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading gateway metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("reading gateway metrics: %w", err)
	}
	var sum float64
	for line := range strings.Lines(string(body)) {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if f := strings.Fields(line); ok && len(f) >= 2 {
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return 0, fmt.Errorf("gateway metric line %q: %w", line, err)
			}
			sum += v
		}
	}
	return sum, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomPassword() (string, error) {
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	return "app-" + hex.EncodeToString(buf), nil
}

// gatewayCounts are the gateway's counters for the bench workload.
type gatewayCounts struct {
	sessions, decided float64
}

func (b *bench) gatewayCounts(ctx context.Context) (gatewayCounts, error) {
	s, err1 := b.metric(ctx, "interlock_sessions_total", `target="pgbench"`, `workload="bench"`)
	d, err2 := b.metric(ctx, "interlock_commands_total", `target="pgbench"`, `workload="bench"`, `decision="allow"`)
	return gatewayCounts{sessions: s, decided: d}, errors.Join(err1, err2)
}

// checkGatewayRun makes sure a run through the gateway went through its
// policy: one session per client attributed to the bench workload, and one
// counted command per transaction (a prepared statement is decided once,
// when it is prepared, and counted at every execution). It returns the
// statements counted during the run.
func (b *bench) checkGatewayRun(ctx context.Context, before gatewayCounts, c configuration, r result) (float64, error) {
	after, err := b.gatewayCounts(ctx)
	if err != nil {
		return 0, err
	}
	sessions, decided := after.sessions-before.sessions, after.decided-before.decided
	if sessions < float64(c.clients) {
		return 0, fmt.Errorf("gateway run (%s): %v sessions of workload bench for %d clients", c, sessions, c.clients)
	}
	if decided < float64(r.txns) {
		return 0, fmt.Errorf("gateway run (%s): %v statements decided for %d transactions", c, decided, r.txns)
	}
	return decided, nil
}
