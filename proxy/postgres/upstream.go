package postgres

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy"
)

// loginTimeout bounds an upstream login (dial, TLS, authentication).
const loginTimeout = 30 * time.Second

// upstreamConfig is the pgconn configuration of a login to the target with
// the gateway's credentials. Everything the environment could have put in
// it (PGHOST, PGAPPNAME, PGTARGETSESSIONATTRS, ...) is overwritten: the
// gateway's process environment must not change how it reaches targets.
func (c *session) upstreamConfig(params map[string]string) (*pgconn.Config, error) {
	password, err := proxy.ReadPasswordFile(c.t.PasswordFile)
	if err != nil {
		return nil, err
	}
	host := c.s.Destination.Addr().Unmap().String()
	port := c.s.Destination.Port()
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d sslmode=disable", host, port))
	if err != nil {
		return nil, fmt.Errorf("building the upstream configuration: %w", err)
	}
	cfg.Host, cfg.Port = host, port
	cfg.User = c.t.User
	cfg.Password = password
	cfg.Database = cmp.Or(c.t.Database, c.database)
	if cfg.TLSConfig, err = c.upstreamTLS(host); err != nil {
		return nil, err
	}
	cfg.Fallbacks = nil
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := c.s.Dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return proxy.QuietConn(conn), nil
	}
	cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	cfg.ConnectTimeout = loginTimeout
	cfg.RuntimeParams = maps.Clone(params)
	if changed := pinLexingParams(cfg.RuntimeParams); len(changed) > 0 {
		c.log.Warn("start-up parameters overridden so the gateway reads SQL as the server does", "asked", changed)
	}
	cfg.ValidateConnect = nil
	cfg.AfterConnect = nil
	cfg.AfterNetConnect = nil
	cfg.OnNotice = nil
	cfg.OnNotification = nil
	cfg.KerberosSrvName, cfg.KerberosSpn = "", ""
	cfg.OAuthTokenProvider = nil
	cfg.SSLNegotiation = ""
	cfg.MinProtocolVersion, cfg.MaxProtocolVersion = "3.0", "3.0"
	return cfg, nil
}

// upstreamTLS is the TLS configuration toward the target; nil disables TLS.
func (c *session) upstreamTLS(host string) (*tls.Config, error) {
	switch c.t.TLS {
	case TLSDisable:
		return nil, nil
	case TLSRequire:
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil
	}
	cfg := &tls.Config{ServerName: cmp.Or(c.t.ServerName, host), MinVersion: tls.VersionTLS12}
	if c.t.CAFile != "" {
		pem, err := os.ReadFile(c.t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the upstream CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reading the upstream CA: no PEM certificate in %s", c.t.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// login connects to the target as the target's user and takes the
// connection over from pgconn once it is ready for queries.
func (c *session) login(params map[string]string) (*pgconn.HijackedConn, error) {
	cfg, err := c.upstreamConfig(params)
	if err != nil {
		return nil, err
	}
	// The relay reads what pgconn's frontend reads from: its background
	// reader, which pgconn starts during a slow write at login, may still
	// be reading the connection after the takeover.
	var reader io.Reader
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		reader = r
		return pgproto3.NewFrontend(r, w)
	}
	ctx, cancel := context.WithTimeout(c.ctx, loginTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c.upReader = reader
	hc, err := conn.Hijack()
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("taking over the upstream connection: %w", err)
	}
	hc.Conn.SetDeadline(time.Time{})
	if err := c.setUpstream(hc.Conn); err != nil {
		return nil, err
	}
	return hc, nil
}

// loginFailure is what the client is told when the upstream login failed.
// The upstream's own message names the gateway's login (user, and for
// some failures more), so it is passed on only for failures that concern
// what the client asked for; the gateway's log has the whole error.
func loginFailure(target string, err error) *pgproto3.ErrorResponse {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return errorResponse("FATAL", codeConnectionFailure, fmt.Sprintf("interlock could not connect to target %q", target), "")
	}
	code := pgErr.Code
	var msg string
	switch {
	case code == "3D000", // database does not exist
		code == "53300", // too many connections
		code == "57P03": // cannot connect now (starting, shutting down)
		msg = pgErr.Message
	case strings.HasPrefix(code, "28"):
		msg = fmt.Sprintf("interlock could not log in to target %q: the target refused the gateway's credentials", target)
	default:
		msg = fmt.Sprintf("interlock could not log in to target %q (SQLSTATE %s)", target, code)
	}
	return errorResponse("FATAL", code, msg, "")
}

// The rewriter's catalogue look-ups (a table's name, columns and
// ancestors by OID; a COPY's table) go over a second upstream connection, logged in with the
// target's credentials. The concurrent sessions of one target, destination
// and database share it — their look-ups are schema-qualified and the same
// for every session, and a pool of agent connections would otherwise hold
// twice as many server connections — and it stays open for a while after
// the last of them ended (Options.MetadataIdle), so that an agent that runs
// one short session per command does not pay a second login for each.
// Look-ups are rare (a table's description is kept for every session of
// the connection: tableNames) and take turns on the connection.

// defaultMetadataIdle is Options.MetadataIdle's default.
const defaultMetadataIdle = 30 * time.Second

// metaKey is what sessions must have in common to share a connection.
type metaKey struct {
	target      uint32
	destination netip.AddrPort
	database    string
}

// metaPool holds the shared catalogue connections of a Handler.
type metaPool struct {
	idle time.Duration // how long a connection outlives its last user; <= 0: not at all

	mu     sync.Mutex
	conns  map[metaKey]*sharedMeta
	closed bool // Handler.Close: nothing lingers any more
}

// sharedMeta is one shared connection and how many sessions use it.
type sharedMeta struct {
	users  int         // under metaPool.mu
	expiry *time.Timer // under metaPool.mu: set while nobody uses it

	mu     sync.Mutex // one look-up at a time
	conn   *pgconn.PgConn
	closed bool // out of the pool: nothing opens it again

	names tableNames // the answers of Table, for every session of the connection
}

// tableNameTTL bounds how long a looked-up table is trusted: a table or
// column renamed meanwhile (by any session) keeps its OID and attribute
// number, and a mask by its new name applies within this time.
const tableNameTTL = time.Minute

// maxTableNames bounds a connection's table cache: every temporary table
// has an OID of its own.
const maxTableNames = 4096

// tableNames caches table OID → Table.
type tableNames struct {
	mu sync.Mutex
	m  map[uint32]lookedUpTable
}

// lookedUpTable is a table as of a look-up.
type lookedUpTable struct {
	table Table
	at    time.Time
}

func (n *tableNames) get(oid uint32, now time.Time) (Table, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.m[oid]
	if !ok || now.Sub(t.at) >= tableNameTTL {
		return Table{}, false
	}
	return t.table, true
}

func (n *tableNames) put(oid uint32, t Table, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[uint32]lookedUpTable{}
	}
	if len(n.m) >= maxTableNames {
		maps.DeleteFunc(n.m, func(_ uint32, t lookedUpTable) bool { return now.Sub(t.at) >= tableNameTTL })
		if len(n.m) >= maxTableNames {
			clear(n.m)
		}
	}
	n.m[oid] = lookedUpTable{table: t, at: now}
}

// acquire returns the shared connection of k, counting one more user.
func (p *metaPool) acquire(k metaKey) *sharedMeta {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		p.conns = map[metaKey]*sharedMeta{}
	}
	m := p.conns[k]
	if m == nil {
		m = &sharedMeta{}
		p.conns[k] = m
	}
	if m.expiry != nil {
		m.expiry.Stop() // if it fired already, expire sees the new user
		m.expiry = nil
	}
	m.users++
	return m
}

// release counts one user less. The last leaves the connection open for
// the pool's idle time, or closes it.
func (p *metaPool) release(k metaKey, m *sharedMeta) {
	p.mu.Lock()
	m.users--
	if m.users > 0 {
		p.mu.Unlock()
		return
	}
	if p.idle > 0 && !p.closed {
		m.expiry = time.AfterFunc(p.idle, func() { p.expire(k, m) })
		p.mu.Unlock()
		return
	}
	delete(p.conns, k)
	p.mu.Unlock()
	m.close()
}

// expire closes m when it is still unused at the end of its idle time.
func (p *metaPool) expire(k metaKey, m *sharedMeta) {
	p.mu.Lock()
	if m.users > 0 || p.conns[k] != m {
		p.mu.Unlock()
		return
	}
	delete(p.conns, k)
	p.mu.Unlock()
	m.close()
}

// close closes every connection nobody uses, and makes the last user of
// each other one close it.
func (p *metaPool) close() {
	p.mu.Lock()
	p.closed = true
	var idle []*sharedMeta
	for k, m := range p.conns {
		if m.users == 0 {
			if m.expiry != nil {
				m.expiry.Stop()
			}
			delete(p.conns, k)
			idle = append(idle, m)
		}
	}
	p.mu.Unlock()
	for _, m := range idle {
		m.close()
	}
}

func (m *sharedMeta) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		m.conn.Close(ctx)
		cancel()
		m.conn = nil
	}
}

// metadataConn is one session's use of the shared connection: it opens
// the connection with the session's own dialer when nobody has yet (or it
// broke), and gives it up when the session ends.
type metadataConn struct {
	ctx  context.Context // the session's
	open func(ctx context.Context) (*pgconn.PgConn, error)
	pool *metaPool
	key  metaKey

	mu     sync.Mutex
	shared *sharedMeta // nil until the first look-up, and after close
	closed bool
}

func (c *session) newMetadataConn(params map[string]string) *metadataConn {
	params = maps.Clone(params)
	params["application_name"] = "interlock metadata"
	return &metadataConn{
		ctx: c.ctx,
		open: func(ctx context.Context) (*pgconn.PgConn, error) {
			cfg, err := c.upstreamConfig(params)
			if err != nil {
				return nil, err
			}
			return pgconn.ConnectConfig(ctx, cfg)
		},
		pool: &c.h.meta,
		key:  metaKey{target: c.s.Target.ID, destination: c.s.Destination, database: cmp.Or(c.t.Database, c.database)},
	}
}

// errMetadataEnded: the session ended before or during a catalogue query.
var errMetadataEnded = errors.New("metadata query: session ended")

// use is the shared connection, counting this session as its user from
// the first call on.
func (m *metadataConn) use() (*sharedMeta, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errMetadataEnded
	}
	if m.shared == nil {
		m.shared = m.pool.acquire(m.key)
	}
	return m.shared, nil
}

// Table answers from the connection's cache, or looks the table up. A
// table the catalogue does not have is not cached: it may be one that an
// open transaction created, which is about to appear.
func (m *metadataConn) Table(ctx context.Context, oid uint32) (Table, error) {
	if oid == 0 {
		return Table{}, nil
	}
	shared, err := m.use()
	if err != nil {
		return Table{}, err
	}
	now := time.Now()
	if t, ok := shared.names.get(oid, now); ok {
		return t, nil
	}
	t, err := lookUpTable(ctx, m.Query, oid)
	if err != nil {
		return Table{}, err
	}
	if t.Name != "" {
		shared.names.put(oid, t, now)
	}
	return t, nil
}

// tableQuery reads, in one round trip, a table's name (kind "table"), its
// ancestors' names through pg_inherits, which records both inheritance and
// partitions ("ancestor"), and its columns ("column": attribute number,
// name, type with domains resolved to their base type, generated or not).
const tableQuery = `WITH RECURSIVE up(oid) AS (
	SELECT $1::pg_catalog.oid
	UNION
	SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid = up.oid
)
SELECT CASE WHEN c.oid = $1::pg_catalog.oid THEN 'table' ELSE 'ancestor' END, n.nspname::text, c.relname::text, '', ''
	FROM up JOIN pg_catalog.pg_class c ON c.oid = up.oid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
UNION ALL
SELECT 'column', a.attnum::text, a.attname::text,
	(WITH RECURSIVE d(oid, base) AS (
		SELECT t.oid, t.typbasetype FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid
		UNION ALL
		SELECT t.oid, t.typbasetype FROM pg_catalog.pg_type t JOIN d ON t.oid = d.base
	) SELECT d.oid::text FROM d WHERE d.base = 0 LIMIT 1),
	CASE WHEN a.attgenerated <> '' THEN 'generated' ELSE '' END
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped`

// maxColumns is PostgreSQL's limit of a table's columns (MaxHeapAttributeNumber).
const maxColumns = 1600

// lookUpTable asks the catalogue about a table (a zero Table when there is
// no such table).
func lookUpTable(ctx context.Context, query func(context.Context, string, ...any) ([][]string, error), oid uint32) (Table, error) {
	rows, err := query(ctx, tableQuery, oid)
	if err != nil {
		return Table{}, err
	}
	var t Table
	for _, r := range rows {
		if len(r) != 5 {
			return Table{}, fmt.Errorf("reading table %d: %d columns in the catalogue's answer", oid, len(r))
		}
		switch r[0] {
		case "table":
			t.Name = r[1] + "." + r[2]
		case "ancestor":
			t.Ancestors = append(t.Ancestors, r[1]+"."+r[2])
		case "column":
			num, err := strconv.Atoi(r[1])
			if err != nil || num < 1 || num > maxColumns {
				return Table{}, fmt.Errorf("reading table %d: attribute number %q", oid, r[1])
			}
			typ, _ := strconv.ParseUint(r[3], 10, 32)
			if num > len(t.Columns) {
				t.Columns = append(t.Columns, make([]TableColumn, num-len(t.Columns))...)
			}
			t.Columns[num-1] = TableColumn{Name: r[2], Type: uint32(typ), Generated: r[4] != ""}
		}
	}
	if t.Name == "" {
		return Table{}, nil
	}
	return t, nil
}

// Query runs sql on the shared connection, opening it when nobody has yet
// (or it broke).
func (m *metadataConn) Query(ctx context.Context, sql string, args ...any) ([][]string, error) {
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	defer context.AfterFunc(m.ctx, cancel)()
	shared, err := m.use()
	if err != nil {
		return nil, err
	}

	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.closed {
		// This session ended while the look-up waited.
		return nil, errMetadataEnded
	}
	if shared.conn == nil || shared.conn.IsClosed() {
		conn, err := m.open(ctx)
		if err != nil {
			return nil, fmt.Errorf("metadata connection: %w", err)
		}
		shared.conn = conn
	}
	params := make([][]byte, len(args))
	for i, a := range args {
		if a != nil {
			params[i] = []byte(textArg(a))
		}
	}
	res := shared.conn.ExecParams(ctx, sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("metadata query: %w", res.Err)
	}
	rows := make([][]string, len(res.Rows))
	for i, r := range res.Rows {
		rows[i] = make([]string, len(r))
		for j, v := range r {
			rows[i][j] = string(v)
		}
	}
	return rows, nil
}

func textArg(a any) string {
	switch v := a.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(a)
}

// close gives the session's use up (see metaPool.release).
func (m *metadataConn) close() {
	m.mu.Lock()
	m.closed = true
	shared := m.shared
	m.shared = nil
	m.mu.Unlock()
	if shared != nil {
		m.pool.release(m.key, shared)
	}
}
