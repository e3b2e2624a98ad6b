package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/identity"
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/postgres"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
	"github.com/interlock-dev/interlock/record"
)

// standIn is the handler's always-failing stand-in for a denied statement.
const standIn = "/* interlock: statement denied by policy */ interlock denied"

// fakeUpstream answers like a PostgreSQL server closely enough for the
// relay: every query returns one row of one text column of a table,
// COPY works both ways, the handler's stand-in for a denied statement
// fails, and an extended-protocol error skips to Sync. Every SQL text it
// receives goes to check.
func fakeUpstream(conn net.Conn, check func(sql string)) {
	defer conn.Close()
	be := pgproto3.NewBackend(conn, conn)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("email"), TableOID: 16400, TableAttributeNumber: 1, DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1},
	}}
	row := &pgproto3.DataRow{Values: [][]byte{[]byte("someone@example.com")}}
	fail := &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42601", Message: "syntax error"}
	skipping := false
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			check(m.String)
			switch {
			case strings.Contains(m.String, "interlock"):
				be.Send(fail)
			case strings.Contains(m.String, "FROM STDIN"):
				be.Send(&pgproto3.CopyInResponse{})
				if be.Flush() != nil {
					return
				}
			copying:
				for {
					msg, err := be.Receive()
					if err != nil {
						return
					}
					switch msg.(type) {
					case *pgproto3.CopyDone:
						be.Send(&pgproto3.CommandComplete{CommandTag: []byte("COPY 1")})
						break copying
					case *pgproto3.CopyFail:
						be.Send(fail)
						break copying
					case *pgproto3.CopyData:
					default:
						be.Send(fail)
						break copying
					}
				}
			case strings.Contains(m.String, "TO STDOUT"):
				be.Send(&pgproto3.CopyOutResponse{ColumnFormatCodes: []uint16{0}})
				be.Send(&pgproto3.CopyData{Data: []byte("a@b.example\n")})
				be.Send(&pgproto3.CopyDone{})
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("COPY 1")})
			default:
				be.Send(rd)
				be.Send(row)
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Parse:
			check(m.Query)
			if skipping {
				continue
			}
			if strings.Contains(m.Query, "interlock") {
				be.Send(fail)
				skipping = true
				continue
			}
			be.Send(&pgproto3.ParseComplete{})
		case *pgproto3.Bind:
			if !skipping {
				be.Send(&pgproto3.BindComplete{})
			}
		case *pgproto3.Describe:
			if !skipping {
				if m.ObjectType == 'S' {
					be.Send(&pgproto3.ParameterDescription{})
				}
				be.Send(rd)
			}
		case *pgproto3.Execute:
			if !skipping {
				be.Send(row)
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			}
		case *pgproto3.Close:
			if !skipping {
				be.Send(&pgproto3.CloseComplete{})
			}
		case *pgproto3.Sync:
			skipping = false
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Terminate:
			return
		}
		if be.Flush() != nil {
			return
		}
	}
}

// fuzzSeeds are message sequences worth starting from.
func fuzzSeeds() [][]byte {
	enc := func(msgs ...pgproto3.FrontendMessage) []byte {
		var b []byte
		for _, m := range msgs {
			var err error
			if b, err = m.Encode(b); err != nil {
				panic(err)
			}
		}
		return b
	}
	return [][]byte{
		enc(&pgproto3.Query{String: "SELECT email FROM customers"}),
		enc(&pgproto3.Query{String: "DROP TABLE customers"}, &pgproto3.Query{String: "SELECT 1"}),
		enc(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Query{String: "DROP TABLE x"}, &pgproto3.Query{String: "COMMIT"}),
		enc(&pgproto3.Query{String: "SELEC 1"}, &pgproto3.Query{String: ""}),
		enc(&pgproto3.Parse{Name: "s", Query: "SELECT $1"}, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{}, &pgproto3.Sync{}),
		enc(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Name: "d", Query: "DELETE FROM orders"}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{},
			&pgproto3.Sync{}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		// A result in binary format with column masks: its batch's Sync
		// waits until the rewriter has seen it.
		enc(&pgproto3.Parse{Query: "SELECT email FROM customers"}, &pgproto3.Bind{ResultFormatCodes: []int16{1}}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: "SELECT 2"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 3"}),
		enc(&pgproto3.Query{String: "COPY notes FROM STDIN"}, &pgproto3.CopyData{Data: []byte("x\n")}, &pgproto3.CopyDone{}),
		enc(&pgproto3.Query{String: "COPY customers TO STDOUT"}),
		enc(&pgproto3.FunctionCall{Function: 1299}, &pgproto3.Flush{}, &pgproto3.Close{ObjectType: 'S', Name: "s"}),
		enc(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Terminate{}, &pgproto3.Query{String: "SELECT 2"}),
		{'Q', 0, 0, 0, 3},
		{'Z', 0, 0, 0, 4},
		{'Q', 0x7f, 0xff, 0xff, 0xff, 'S', 'E'},
	}
}

// FuzzClientMessages feeds arbitrary bytes as a client's messages after a
// regular start-up, against a handler whose upstream is fakeUpstream. The
// handler must neither panic nor hang, and upstream must never receive SQL
// the policy does not allow.
func FuzzClientMessages(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	var cfg policy.Config
	if err := yaml.Unmarshal([]byte(maskPolicy), &cfg); err != nil {
		f.Fatal(err)
	}
	pol, err := policy.Compile(cfg, policy.Env{Targets: map[string]string{"shop": "postgres"}, Workloads: []string{"agent"}})
	if err != nil {
		f.Fatal(err)
	}
	h := fakeTargetHandler(f, pol, postgres.NewMaskRewriter)
	startup, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "agent", "database": "shop"}}).Encode(nil)
	if err != nil {
		f.Fatal(err)
	}
	classifier := sqlfacts.NewClassifier(64)
	req := policy.Request{
		Target:   policy.Target{Name: "shop", Protocol: "postgres"},
		Workload: policy.Workload{Name: "agent"},
		Identity: policy.Identity{Subject: "fuzz"},
	}
	// allowed reports why sql should not have reached upstream, or "".
	allowed := func(sql string) string {
		if sql == standIn {
			return ""
		}
		stmts, err := classifier.Classify(sql)
		if err != nil {
			return "unclassifiable: " + err.Error()
		}
		for _, st := range stmts {
			facts := postgres.SQLFacts(st, "shop", "agent")
			r := req
			r.SQL = &facts
			if d := pol.Decide(r); d.Action != policy.Allow {
				return fmt.Sprintf("statement %q is %s by %q", st.Text, d.Action, d.Rule)
			}
		}
		return ""
	}
	var n atomic.Int64

	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		defer client.Close()
		violations := make(chan string, 100)
		var upstreams sync.WaitGroup
		s := pipedSession(fmt.Sprintf("fuzz-%d", n.Add(1)), server, func() net.Conn {
			a, b := net.Pipe()
			upstreams.Add(1)
			go func() {
				defer upstreams.Done()
				fakeUpstream(b, func(sql string) {
					if why := allowed(sql); why != "" {
						select {
						case violations <- fmt.Sprintf("upstream received %q: %s", sql, why):
						default:
						}
					}
				})
			}()
			return a
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- h.Serve(ctx, s)
			server.Close()
		}()
		go io.Copy(io.Discard, client)
		go func() {
			// A handler that stops reading blocks these writes: the
			// timeout below covers them.
			client.Write(startup)
			client.Write(data)
			client.Close()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("Serve did not end within 10s of the client's last byte\n%s", buf[:runtime.Stack(buf, true)])
		}
		upstreams.Wait() // Serve closed them
		for {
			select {
			case v := <-violations:
				t.Error(v)
			default:
				return
			}
		}
	})
}

// fakeTargetHandler is a handler for target shop (ID 1; user app, no TLS)
// with pol, the real classifier, a recording store of its own and
// rewriter (nil: none), for a session whose upstream is a fake: its
// catalogue connection, a fake too, ends with the session.
func fakeTargetHandler(tb testing.TB, pol *policy.Policy, rewriter func(*proxy.Session, *policy.Masker, postgres.Catalogue) postgres.ResultRewriter) *postgres.Handler {
	tb.Helper()
	store, err := record.OpenStore(filepath.Join(tb.TempDir(), "recordings"))
	if err != nil {
		tb.Fatal(err)
	}
	h, err := postgres.New(postgres.Options{
		Targets:      map[uint32]postgres.Target{1: {Name: "shop", User: "app", TLS: postgres.TLSDisable}},
		Policy:       pol,
		Classifier:   sqlfacts.NewClassifier(64),
		Recordings:   store,
		Rewriter:     rewriter,
		MetadataIdle: -1,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// pipedSession is a session of workload agent on target shop whose client
// is client and whose every upstream dial gets upstream().
func pipedSession(id string, client net.Conn, upstream func() net.Conn) *proxy.Session {
	return &proxy.Session{
		ID:          id,
		Started:     time.Now(),
		Target:      proxy.Target{ID: 1, Name: "shop", Protocol: "postgres"},
		Caller:      identity.Caller{Workload: "agent", Identity: identity.Identity{Subject: id}},
		Destination: netip.MustParseAddrPort("127.0.0.2:5432"),
		Client:      client,
		Logger:      slog.New(slog.DiscardHandler),
		Dial:        func(context.Context, string, string) (net.Conn, error) { return upstream(), nil },
	}
}
