package postgres

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

func TestRowsOf(t *testing.T) {
	for _, c := range []struct {
		tag     string
		counted int64
		want    int64
	}{
		{"SELECT 3", 0, 3},
		{"INSERT 0 2", 0, 2},
		{"COPY 5", 0, 5},
		{"CREATE TABLE", 0, 0},
		{"BEGIN", 0, 0},
		{"", 7, 7},
	} {
		if got := rowsOf(c.tag, c.counted); got != c.want {
			t.Errorf("rowsOf(%q, %d) = %d, want %d", c.tag, c.counted, got, c.want)
		}
	}
}

func TestParseStartupParams(t *testing.T) {
	for _, c := range []struct {
		in   string
		want map[string]string
		bad  bool
	}{
		{in: "user\x00agent\x00database\x00shop\x00\x00", want: map[string]string{"user": "agent", "database": "shop"}},
		{in: "\x00", want: map[string]string{}},
		{in: "user\x00agent\x00", bad: true},      // no terminator
		{in: "user\x00agent", bad: true},          // value not terminated
		{in: "user\x00a\x00\x00extra", bad: true}, // bytes after the terminator
		{in: "", bad: true},
	} {
		got, err := parseStartupParams([]byte(c.in))
		if c.bad {
			if !errors.Is(err, errProtocol) {
				t.Errorf("%q: err %v, want a protocol error", c.in, err)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Errorf("%q: %v %v", c.in, got, err)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%q: %s=%q, want %q", c.in, k, got[k], v)
			}
		}
	}
}

// serverReader hands out each upstream message decoded and as the exact
// bytes it arrived in, large ones too, and refuses what is not a backend
// message.
func TestServerReader(t *testing.T) {
	big := bytes.Repeat([]byte("v"), directAllocLimit*2)
	msgs := []pgproto3.BackendMessage{
		&pgproto3.ParameterStatus{Name: "TimeZone", Value: "UTC"},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("email"), TableOID: 16384, DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("a@example.com"), nil}},
		&pgproto3.DataRow{Values: [][]byte{big}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")},
		&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "hello"},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P01", Message: "no such table"},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	}
	var stream []byte
	var frames [][]byte
	for _, m := range msgs {
		start := len(stream)
		var err error
		if stream, err = m.Encode(stream); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, stream[start:])
	}
	r := newServerReader(bytes.NewReader(stream))
	for i, want := range msgs {
		got, frame, err := r.message()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", want) {
			t.Fatalf("message %d: %T, want %T", i, got, want)
		}
		if !bytes.Equal(frame, frames[i]) {
			t.Errorf("message %d (%T): frame of %d bytes is not the %d bytes sent", i, got, len(frame), len(frames[i]))
		}
		if again, _ := got.Encode(nil); !bytes.Equal(again, frames[i]) {
			t.Errorf("message %d (%T) decoded differently: %q", i, got, again)
		}
	}
	if _, _, err := r.message(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last message: %v", err)
	}

	for name, in := range map[string][]byte{
		"unknown type":     {'x', 0, 0, 0, 4},
		"a client's type":  {'Q', 0, 0, 0, 5, 0},
		"length under 4":   {'Z', 0, 0, 0, 3},
		"length over 1 GB": {'D', 0x7f, 0xff, 0xff, 0xff},
		"undecodable":      {'Z', 0, 0, 0, 4}, // ReadyForQuery without its status byte
	} {
		if _, _, err := newServerReader(bytes.NewReader(in)).message(); !errors.Is(err, errUpstreamProtocol) {
			t.Errorf("%s: %v, want an upstream protocol error", name, err)
		}
	}
	if _, _, err := newServerReader(bytes.NewReader([]byte{'D', 0x3f, 0xff, 0xff, 0xff, 0, 1})).message(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("announced but missing body: %v", err)
	}
}

func TestClientReaderLimits(t *testing.T) {
	t.Run("startup packet length", func(t *testing.T) {
		for _, n := range []uint32{0, 7, maxStartupPacket + 5, 1 << 31} {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], n)
			_, err := newClientReader(bytes.NewReader(b[:])).startupPacket()
			if !errors.Is(err, errProtocol) {
				t.Errorf("length %d: %v", n, err)
			}
		}
	})
	t.Run("message length", func(t *testing.T) {
		for _, n := range []uint32{0, 3, 1 << 31, maxMessage + 5} {
			b := []byte{'Q', 0, 0, 0, 0}
			binary.BigEndian.PutUint32(b[1:], n)
			_, err := newClientReader(bytes.NewReader(b)).message()
			if !errors.Is(err, errProtocol) {
				t.Errorf("length %d: %v", n, err)
			}
		}
	})
	t.Run("announced but missing body", func(t *testing.T) {
		// A gigabyte announced, a few bytes sent: no gigabyte allocated,
		// and the end of input is unexpected.
		b := []byte{'B', 0x3f, 0xff, 0xff, 0xff, 'x', 'y'}
		_, err := newClientReader(bytes.NewReader(b)).message()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("got %v", err)
		}
		// A CopyData that long is the relay's to stream: reported before
		// its body is read.
		b[0] = 'd'
		_, err = newClientReader(bytes.NewReader(b)).message()
		if cd, ok := err.(*copyDataStream); !ok || cd.size != 0x3fffffff-4 {
			t.Errorf("long CopyData: got %v", err)
		}
	})
	t.Run("large message", func(t *testing.T) {
		data := bytes.Repeat([]byte("x"), directAllocLimit*3)
		enc, _ := (&pgproto3.CopyData{Data: data}).Encode(nil)
		m, err := newClientReader(bytes.NewReader(enc)).message()
		if err != nil {
			t.Fatal(err)
		}
		if cd, ok := m.(*pgproto3.CopyData); !ok || !bytes.Equal(cd.Data, data) {
			t.Errorf("got %T", m)
		}
	})
	t.Run("unknown type", func(t *testing.T) {
		_, err := newClientReader(bytes.NewReader([]byte{'p', 0, 0, 0, 4})).message()
		if !errors.Is(err, errProtocol) || !strings.Contains(err.Error(), "invalid frontend message type") {
			t.Errorf("got %v", err)
		}
	})
}

func TestLoginFailure(t *testing.T) {
	for _, c := range []struct {
		err      error
		code     string
		contains string
	}{
		{&pgconn.PgError{Code: "28P01", Message: `password authentication failed for user "app"`}, "28P01", "refused the gateway's credentials"},
		{&pgconn.PgError{Code: "3D000", Message: `database "x" does not exist`}, "3D000", `database "x" does not exist`},
		{&pgconn.PgError{Code: "42501", Message: `permission denied for database "x"`, Detail: `User "app" lacks CONNECT`}, "42501", "(SQLSTATE 42501)"},
		{errors.New("dial tcp 10.0.0.1:5432: connection refused"), "08006", `could not connect to target "shop"`},
	} {
		resp := loginFailure("shop", c.err)
		if resp.Severity != "FATAL" || resp.Code != c.code || !strings.Contains(resp.Message, c.contains) {
			t.Errorf("%v: %+v", c.err, resp)
		}
		if strings.Contains(resp.Message, `"app"`) || resp.Detail != "" {
			t.Errorf("%v: leaks the upstream login: %+v", c.err, resp)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	base := func() Options {
		return Options{
			Targets:    map[uint32]Target{1: {Name: "shop", User: "app"}},
			Policy:     nil,
			Classifier: nil,
		}
	}
	if _, err := New(base()); err == nil {
		t.Error("New without a policy succeeded")
	}
	o := base()
	o.Policy, o.Classifier, o.Recordings = nopPolicy{}, nopClassifier{}, nopRecordings{}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.targets[1].TLS; got != TLSVerifyFull {
		t.Errorf("default upstream TLS %q", got)
	}
	for name, tgt := range map[string]Target{
		"no user":           {Name: "shop"},
		"bad tls":           {Name: "shop", User: "app", TLS: "prefer"},
		"ca without verify": {Name: "shop", User: "app", TLS: TLSRequire, CAFile: "/ca.pem"},
		"agent tls, no CA":  {Name: "shop", User: "app", AgentTLS: true},
	} {
		o.Targets = map[uint32]Target{1: tgt}
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestCancelRegistry(t *testing.T) {
	var r cancelRegistry
	r.byKey = map[cancelKey]cancelTarget{}
	k1 := r.add(cancelTarget{pid: 1})
	k2 := r.add(cancelTarget{pid: 2})
	if k1.pid != 1 || k2.pid != 2 {
		t.Errorf("keys %v %v: want upstream's process ids", k1, k2)
	}
	// Sessions to two servers whose backends have the same pid: two keys.
	k3 := r.add(cancelTarget{pid: 2, address: "127.0.0.3:5432"})
	if k3 == k2 || k3.pid != 2 {
		t.Errorf("same upstream pid: keys %v %v", k2, k3)
	}
	if ct, ok := r.lookup(k3.pid, k3.secret[:]); !ok || ct.address != "127.0.0.3:5432" {
		t.Errorf("lookup of the second: %v %v", ct, ok)
	}
	if k0 := r.add(cancelTarget{}); k0.pid == 0 || k0.pid&(1<<31) != 0 {
		t.Errorf("no upstream pid: key %v, want a positive pid", k0)
	}
	if ct, ok := r.lookup(k2.pid, k2.secret[:]); !ok || ct.pid != 2 {
		t.Errorf("lookup: %v %v", ct, ok)
	}
	if _, ok := r.lookup(k2.pid, []byte{0, 0, 0, 0}); ok && k2.secret != [4]byte{} {
		t.Error("lookup with the wrong secret succeeded")
	}
	if _, ok := r.lookup(k2.pid, append(k2.secret[:], 0)); ok {
		t.Error("lookup with a longer secret succeeded")
	}
	r.remove(k2)
	if _, ok := r.lookup(k2.pid, k2.secret[:]); ok {
		t.Error("removed key still found")
	}
}

// A msgWriter holds a buffer only while something is queued: after its
// flush a session waiting for its next statement pins nothing, whatever
// size its last result was.
func TestMsgWriterHoldsNoBufferWhenIdle(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	received := make(chan int)
	go func() {
		n, _ := io.Copy(io.Discard, server)
		received <- int(n)
	}()
	w := newMsgWriter(client, errClientWrite)
	var want int
	for _, size := range []int{10, 200 << 10, maxPooledBuffer + 1, 10} {
		m := &pgproto3.CopyData{Data: bytes.Repeat([]byte("x"), size)}
		if err := w.queue(m); err != nil {
			t.Fatal(err)
		}
		if w.pending() != 5+size {
			t.Fatalf("%d bytes queued, want %d", w.pending(), 5+size)
		}
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
		want += 5 + size
		if w.buf != nil || w.bufp != nil {
			t.Errorf("after flushing %d bytes the writer still holds a buffer of %d", 5+size, cap(w.buf))
		}
	}
	client.Close()
	if got := <-received; got != want {
		t.Errorf("%d bytes written, want %d", got, want)
	}
}

func TestParameterDescriptionEncoding(t *testing.T) {
	for _, n := range []int{0, 3, 65535, 65536, 70000} {
		oids := make([]uint32, n)
		for i := range oids {
			oids[i] = uint32(i + 1)
		}
		b, err := parameterDescription(oids).Encode(nil)
		if err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		if b[0] != 't' || int(binary.BigEndian.Uint32(b[1:])) != len(b)-1 || binary.BigEndian.Uint16(b[5:]) != uint16(n) {
			t.Errorf("%d: header % x", n, b[:7])
		}
		var pd pgproto3.ParameterDescription
		if err := pd.Decode(b[5:]); err != nil || len(pd.ParameterOIDs) != n || (n > 0 && pd.ParameterOIDs[n-1] != uint32(n)) {
			t.Errorf("%d: decoded %d oids, %v", n, len(pd.ParameterOIDs), err)
		}
		if n <= 65535 {
			want, _ := (&pgproto3.ParameterDescription{ParameterOIDs: oids}).Encode(nil)
			if !bytes.Equal(b, want) {
				t.Errorf("%d: differs from pgproto3's encoding", n)
			}
		}
	}
}

// TestKeepRowDescription: an equal description is shared, any difference
// gets a copy of its own, and what is kept does not change when pgproto3
// reuses its message.
func TestKeepRowDescription(t *testing.T) {
	c := &session{}
	msg := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("email"), TableOID: 16384, TableAttributeNumber: 2, DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1},
	}}
	first := c.keepRowDescription(msg)
	if first == msg || &first.Fields[0].Name[0] == &msg.Fields[0].Name[0] {
		t.Fatal("kept the message itself, not a copy")
	}
	if again := c.keepRowDescription(msg); again != first {
		t.Error("an equal description was copied again")
	}
	for _, change := range []func(f *pgproto3.FieldDescription){
		func(f *pgproto3.FieldDescription) { f.Name = []byte("phone") },
		func(f *pgproto3.FieldDescription) { f.TableOID++ },
		func(f *pgproto3.FieldDescription) { f.TableAttributeNumber++ },
		func(f *pgproto3.FieldDescription) { f.DataTypeOID++ },
		func(f *pgproto3.FieldDescription) { f.DataTypeSize++ },
		func(f *pgproto3.FieldDescription) { f.TypeModifier++ },
		func(f *pgproto3.FieldDescription) { f.Format = 1 },
	} {
		other := cloneRowDescription(first)
		change(&other.Fields[0])
		if got := c.keepRowDescription(other); got == first || !reflect.DeepEqual(got.Fields, other.Fields) {
			t.Errorf("a different description %+v was given %+v", other.Fields[0], got.Fields[0])
		}
		c.keepRowDescription(first) // back to the first
	}
	wider := cloneRowDescription(first)
	wider.Fields = append(wider.Fields, wider.Fields[0])
	if got := c.keepRowDescription(wider); len(got.Fields) != 2 {
		t.Errorf("a description with another column count was given %d columns", len(got.Fields))
	}
	kept := c.keepRowDescription(msg)
	msg.Fields[0].Name[0] = 'X' // pgproto3 decodes the next message into the same buffer
	if string(kept.Fields[0].Name) != "email" {
		t.Errorf("the kept description changed with the message: %q", kept.Fields[0].Name)
	}
}

func TestUpstreamConfig(t *testing.T) {
	t.Setenv("PGAPPNAME", "from-the-environment")
	t.Setenv("PGTARGETSESSIONATTRS", "read-write")
	t.Setenv("PGPASSWORD", "from-the-environment")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{"127.0.0.2:5432", "[::1]:6543", "[::ffff:10.0.0.1]:5432"} {
		c := &session{
			s:        &proxy.Session{Destination: netip.MustParseAddrPort(dest)},
			t:        Target{Name: "shop", User: "app", PasswordFile: pw, TLS: TLSVerifyFull},
			database: "asked",
		}
		cfg, err := c.upstreamConfig(map[string]string{"application_name": "psql"})
		if err != nil {
			t.Fatalf("%s: %v", dest, err)
		}
		ap := netip.MustParseAddrPort(dest)
		if cfg.Host != ap.Addr().Unmap().String() || cfg.Port != ap.Port() || cfg.User != "app" || cfg.Password != "s3cret" ||
			cfg.Database != "asked" || cfg.RuntimeParams["application_name"] != "psql" || cfg.ValidateConnect != nil ||
			len(cfg.Fallbacks) != 0 {
			t.Errorf("%s: %+v", dest, cfg)
		}
		if cfg.TLSConfig == nil || cfg.TLSConfig.ServerName != ap.Addr().Unmap().String() || cfg.TLSConfig.InsecureSkipVerify {
			t.Errorf("%s: TLS %+v", dest, cfg.TLSConfig)
		}
	}
}

// A looked-up table name is trusted for tableNameTTL, by every session of
// the catalogue connection, then looked up again; the cache stays within
// maxTableNames, dropping expired names first.
func TestTableNameCache(t *testing.T) {
	var n tableNames
	now := time.Unix(1000, 0)
	if _, ok := n.get(16400, now); ok {
		t.Fatal("an empty cache answered")
	}
	n.put(16400, Table{Name: "public.customers"}, now)
	for _, step := range []struct {
		advance time.Duration
		want    string
		ok      bool
	}{
		{0, "public.customers", true},
		{tableNameTTL - time.Second, "public.customers", true},
		{time.Second, "", false},
	} {
		now = now.Add(step.advance)
		if got, ok := n.get(16400, now); got.Name != step.want || ok != step.ok {
			t.Errorf("after %v: %q %v, want %q %v", step.advance, got.Name, ok, step.want, step.ok)
		}
	}
	n.put(16400, Table{Name: "public.clients"}, now) // renamed meanwhile
	if got, _ := n.get(16400, now); got.Name != "public.clients" {
		t.Errorf("after a new look-up: %q", got.Name)
	}

	// Full: the expired names go first, then everything.
	for oid := range uint32(maxTableNames - 1) {
		n.put(20000+oid, Table{Name: "public.t"}, now.Add(-tableNameTTL))
	}
	n.put(1, Table{Name: "public.fresh"}, now)
	if len(n.m) != 2 {
		t.Errorf("after a put into a full cache of expired names: %d names, want 2", len(n.m))
	}
	if got, ok := n.get(1, now); !ok || got.Name != "public.fresh" {
		t.Errorf("the new name: %q %v", got.Name, ok)
	}
	for oid := range uint32(maxTableNames) {
		n.put(30000+oid, Table{Name: "public.t"}, now)
	}
	if len(n.m) > maxTableNames {
		t.Errorf("%d names, more than %d", len(n.m), maxTableNames)
	}
}

// TestLexingGuard: SET and set_config() may change any setting except the
// two that decide how the server lexes SQL, and those only to values the
// classifier agrees with; a set_config() whose setting the gateway cannot
// name for certain is denied.
func TestLexingGuard(t *testing.T) {
	classifier := sqlfacts.NewClassifier(0)
	for _, tc := range []struct {
		sql    string
		denied bool
	}{
		{"SET statement_timeout = 1000", false},
		{"SET standard_conforming_strings = off", true},
		{"SET standard_conforming_strings = on", false},
		{"SET NAMES 'BIG5'", true},
		{"SET client_encoding TO 'LATIN1'", false},
		{"RESET standard_conforming_strings", false},

		{"SELECT set_config('app.user_id', '42', false)", false},
		{"SELECT set_config('search_path', 'shop, public', true)", false},
		{"SELECT set_config('TimeZone', $1, false)", false},
		{"SELECT pg_catalog.set_config('statement_timeout'::text, '5s', false)", false},
		{"SELECT set_config('standard_conforming_strings', 'on', false)", false},
		{"SELECT set_config('client_encoding', 'UTF8', false)", false},
		{"SELECT set_config('standard_conforming_strings', 'off', false)", true},
		{"SELECT set_config('Standard_Conforming_Strings', 'off', false)", true},
		{"SELECT pg_catalog.set_config('client_encoding', 'SJIS', false)", true},
		{"SELECT set_config('standard_conforming_strings', $1, false)", true},
		{"SELECT set_config('client_encoding', enc, false) FROM (VALUES ('SJIS')) v(enc)", true},
		{"SELECT set_config($1, 'off', false)", true},
		{"SELECT set_config(name, 'off', false) FROM (VALUES ('standard_conforming_strings')) v(name)", true},
		{"SELECT set_config('standard_conforming_strings' || '', 'off', false)", true},
		// Casts that change the value are not constants: char(n) pads,
		// varchar(n) truncates.
		{"SELECT set_config('standard_conforming_stringsXYZ'::varchar(27), 'off', false)", true},
		{"SELECT set_config('standard_conforming_strings   '::char(30), 'off', false)", true},
		// Every call of the statement counts, wherever it is.
		{"SELECT 1 WHERE EXISTS (SELECT set_config('app.a', '1', false), set_config('client_encoding', 'SJIS', false))", true},
		{"WITH x AS (SELECT set_config('app.a', '1', false)) SELECT * FROM x", false},
		// The built-in however qualified: PostgreSQL accepts the
		// database's name before the schema.
		{"SELECT postgres.pg_catalog.set_config('standard_conforming_strings', 'off', false)", true},
		{"SELECT \"PG_CATALOG\".set_config('client_encoding', 'SJIS', false)", true},
		// A function of that name in a schema of one's own is checked as
		// the built-in is (it could be any function; checking costs a
		// real call nothing).
		{"SELECT app.set_config('standard_conforming_strings', 'off', false)", true},
		{"SELECT app.set_config('app.user_id', '42', false)", false},
		// pg_settings: an UPDATE calls set_config() for every row.
		{"UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'", true},
		{"UPDATE postgres.pg_catalog.pg_settings SET setting = 'SJIS' WHERE name = 'client_encoding'", true},
		{"WITH u AS (UPDATE pg_settings SET setting = '1s' WHERE name = 'statement_timeout' RETURNING 1) SELECT * FROM u", true},
		{"SELECT name, setting FROM pg_settings WHERE name = 'standard_conforming_strings'", false},
	} {
		stmts, err := classifier.Classify(tc.sql)
		if err != nil || len(stmts) != 1 {
			t.Fatalf("%s: %d statements, %v", tc.sql, len(stmts), err)
		}
		d, denied := lexingGuard(stmts[0])
		if denied != tc.denied {
			t.Errorf("%s: denied = %v (%q), want %v", tc.sql, denied, d.Message, tc.denied)
			continue
		}
		if denied && (d.Rule != GuardRule || !strings.Contains(d.Message, "interlock") && !strings.Contains(d.Message, "set_config")) {
			t.Errorf("%s: denial %+v: want rule %s and a message that says why", tc.sql, d, GuardRule)
		}
	}
}

// TestReadsDifferently: the text settleLexing holds back is the text the
// pinned settings could make the server read differently.
func TestReadsDifferently(t *testing.T) {
	for text, want := range map[string]bool{
		`SELECT 1`:                         false,
		`SELECT E'line\n'`:                 false,
		`SELECT 'x' LIKE 'a\_%'`:           false,
		`SELECT $$\$$`:                     false,
		`SELECT 'a\'' ; DROP TABLE t; --'`: true,
		`SELECT E'it\'s'`:                  true,
		"SELECT E'\xe3\x81\x81\\'":         true,
		"SELECT 'caf\xc3\xa9\\n'":          true,
		`\`:                                false,
		`'\`:                               false,
		`\'`:                               true,
	} {
		if got := readsDifferently(text); got != want {
			t.Errorf("readsDifferently(%q) = %v, want %v", text, got, want)
		}
	}
}

func TestExecutedName(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want string
		ok   bool
	}{
		{"EXECUTE s", "s", true},
		{`execute "S"(1, 2)`, "S", true},
		{"EXPLAIN ANALYZE EXECUTE s", "s", true},
		{"EXPLAIN (COSTS OFF) EXECUTE s", "s", true},
		{"CREATE TEMP TABLE t AS EXECUTE s", "s", true},
		{"EXPLAIN CREATE TABLE t AS EXECUTE s", "s", true},
		{"SELECT 'execute s'", "", false},
		{"PREPARE s AS SELECT 1", "", false},
		{"EXPLAIN SELECT 1", "", false},
		{"EXECUTE s; EXECUTE t", "", false},
		{"not sql", "", false},
	} {
		if got, ok := executedName(c.sql); got != c.want || ok != c.ok {
			t.Errorf("executedName(%q) = %q, %v; want %q, %v", c.sql, got, ok, c.want, c.ok)
		}
	}
}

func TestLongSQLName(t *testing.T) {
	long := strings.Repeat("é", 32) // 64 bytes
	classify := sqlfacts.NewClassifier(16)
	for _, c := range []struct {
		sql  string
		want bool
	}{
		{"PREPARE " + long + " AS SELECT 1", true},
		{`PREPARE "` + long + `" AS SELECT 1`, true},
		{"EXECUTE " + long, true},
		{"EXPLAIN ANALYZE EXECUTE " + long, true},
		{"DEALLOCATE " + long, true},
		{"DECLARE " + long + " CURSOR FOR SELECT 1", true},
		{"FETCH 1 FROM " + long, true},
		{"PREPARE " + strings.Repeat("a", 63) + " AS SELECT 1", false},
		{`PREPARE "` + strings.Repeat("a", 63) + `" AS SELECT 1`, false},
		{`PREPARE "` + strings.Repeat("a", 61) + `""b" AS SELECT 1`, false}, // 63 bytes: a doubled quote is one
		{"EXPLAIN EXECUTE " + long, true},
		{"PREPARE s AS SELECT '" + long + "'", false}, // a literal, not a name
		{"SELECT 1 AS " + long, false},                // not a statement that names one
	} {
		sts, err := classify.Classify(c.sql)
		if err != nil || len(sts) != 1 {
			t.Fatalf("%q: %v", c.sql, err)
		}
		if _, got := longSQLName(sts[0]); got != c.want {
			t.Errorf("longSQLName(%q) = %v, want %v", c.sql, got, c.want)
		}
	}
}
