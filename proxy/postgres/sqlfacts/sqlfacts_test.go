package sqlfacts

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// want is the expected classification of a single statement.
type want struct {
	command   string
	kind      string
	tables    []string
	functions []string
	hasWhere  bool
}

func classifyOne(t *testing.T, c *Classifier, sql string) Statement {
	t.Helper()
	stmts, err := c.Classify(sql)
	if err != nil {
		t.Fatalf("Classify(%q): %v", sql, err)
	}
	if len(stmts) != 1 {
		t.Fatalf("Classify(%q) = %d statements, want 1: %+v", sql, len(stmts), stmts)
	}
	return stmts[0]
}

func checkStatement(t *testing.T, sql string, got Statement, w want) {
	t.Helper()
	if w.tables == nil {
		w.tables = []string{}
	}
	if w.functions == nil {
		w.functions = []string{}
	}
	if got.Command != w.command || got.Kind != w.kind || got.HasWhere != w.hasWhere ||
		!reflect.DeepEqual(got.Tables, w.tables) || !reflect.DeepEqual(got.Functions, w.functions) {
		t.Errorf("Classify(%q)\n got command=%s kind=%s tables=%q functions=%q hasWhere=%v\nwant command=%s kind=%s tables=%q functions=%q hasWhere=%v",
			sql, got.Command, got.Kind, got.Tables, got.Functions, got.HasWhere,
			w.command, w.kind, w.tables, w.functions, w.hasWhere)
	}
}

func TestClassifyKinds(t *testing.T) {
	tests := []struct {
		sql  string
		want want
	}{
		// read
		{"SELECT 1", want{command: "SELECT", kind: KindRead}},
		{"select * from customers where id = 1", want{command: "SELECT", kind: KindRead, tables: []string{"customers"}, hasWhere: true}},
		{"SELECT * FROM t FOR UPDATE", want{command: "SELECT", kind: KindRead, tables: []string{"t"}}},
		{"SELECT * FROM customers c FOR SHARE OF c", want{command: "SELECT", kind: KindRead, tables: []string{"customers"}}},
		{"VALUES (1), (2)", want{command: "VALUES", kind: KindRead}},
		{"TABLE customers", want{command: "TABLE", kind: KindRead, tables: []string{"customers"}}},
		{"SELECT * FROM customers", want{command: "SELECT", kind: KindRead, tables: []string{"customers"}}},
		{"SELECT 1 UNION SELECT a FROM t", want{command: "SELECT", kind: KindRead, tables: []string{"t"}}},
		{"VALUES (1) UNION ALL SELECT 2", want{command: "VALUES", kind: KindRead}},
		{"SHOW search_path", want{command: "SHOW", kind: KindRead}},
		{"FETCH 10 FROM cur", want{command: "FETCH", kind: KindRead}},
		{"MOVE NEXT IN cur", want{command: "MOVE", kind: KindRead}},
		{"EXPLAIN SELECT * FROM t", want{command: "EXPLAIN", kind: KindRead, tables: []string{"t"}}},
		{"EXPLAIN DELETE FROM t", want{command: "EXPLAIN", kind: KindRead, tables: []string{"t"}}},
		{"EXPLAIN (ANALYZE false) DELETE FROM t", want{command: "EXPLAIN", kind: KindRead, tables: []string{"t"}}},
		{"EXPLAIN (ANALYZE off, FORMAT json) DELETE FROM t", want{command: "EXPLAIN", kind: KindRead, tables: []string{"t"}}},
		{"EXPLAIN (ANALYZE 'OFF') DELETE FROM t", want{command: "EXPLAIN", kind: KindRead, tables: []string{"t"}}},
		{"EXPLAIN (ANALYZE 0) DELETE FROM t", want{command: "EXPLAIN", kind: KindRead, tables: []string{"t"}}},
		{"EXPLAIN SELECT * INTO x FROM t", want{command: "EXPLAIN", kind: KindRead, tables: []string{"x", "t"}}},
		{"EXPLAIN ANALYZE SELECT * FROM t WHERE a = 1", want{command: "EXPLAIN", kind: KindRead, tables: []string{"t"}, hasWhere: true}},
		{"COPY t TO STDOUT", want{command: "COPY", kind: KindRead, tables: []string{"t"}}},
		{"COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)", want{command: "COPY", kind: KindRead, tables: []string{"t"}}},
		{"COPY stdin TO STDOUT", want{command: "COPY", kind: KindRead, tables: []string{"stdin"}}},

		// write
		{"INSERT INTO t (a) VALUES (1)", want{command: "INSERT", kind: KindWrite, tables: []string{"t"}}},
		{"INSERT INTO t SELECT * FROM s", want{command: "INSERT", kind: KindWrite, tables: []string{"t", "s"}}},
		{"INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b", want{command: "INSERT", kind: KindWrite, tables: []string{"t"}}},
		{"UPDATE t SET a = 1", want{command: "UPDATE", kind: KindWrite, tables: []string{"t"}}},
		{"UPDATE t SET a = 1 WHERE id = 2", want{command: "UPDATE", kind: KindWrite, tables: []string{"t"}, hasWhere: true}},
		{"UPDATE t SET a = s.a FROM s WHERE s.id = t.id", want{command: "UPDATE", kind: KindWrite, tables: []string{"t", "s"}, hasWhere: true}},
		{"UPDATE t SET a = 1 WHERE CURRENT OF cur", want{command: "UPDATE", kind: KindWrite, tables: []string{"t"}, hasWhere: true}},
		{"DELETE FROM t", want{command: "DELETE", kind: KindWrite, tables: []string{"t"}}},
		{"DELETE FROM t WHERE id = 1", want{command: "DELETE", kind: KindWrite, tables: []string{"t"}, hasWhere: true}},
		{"DELETE FROM t USING s WHERE s.id = t.id", want{command: "DELETE", kind: KindWrite, tables: []string{"t", "s"}, hasWhere: true}},
		{"DELETE FROM t WHERE CURRENT OF cur", want{command: "DELETE", kind: KindWrite, tables: []string{"t"}, hasWhere: true}},
		{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", want{command: "MERGE", kind: KindWrite, tables: []string{"t", "s"}}},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", want{command: "SELECT", kind: KindWrite, tables: []string{"t"}}},
		{"WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM u", want{command: "SELECT", kind: KindWrite, tables: []string{"t"}, functions: []string{"count"}}},
		{"WITH d AS (DELETE FROM t RETURNING *) INSERT INTO archive SELECT * FROM d", want{command: "INSERT", kind: KindWrite, tables: []string{"t", "archive"}}},
		{"SELECT * FROM x WHERE id IN (WITH d AS (DELETE FROM t RETURNING id) SELECT id FROM d)", want{command: "SELECT", kind: KindWrite, tables: []string{"x", "t"}}},
		{"COPY t FROM STDIN", want{command: "COPY", kind: KindWrite, tables: []string{"t"}}},
		{"COPY t (a, b) FROM STDIN WITH (FORMAT csv) WHERE a > 1", want{command: "COPY", kind: KindWrite, tables: []string{"t"}}},
		{"COPY (DELETE FROM t RETURNING *) TO STDOUT", want{command: "COPY", kind: KindWrite, tables: []string{"t"}}},
		{"EXPLAIN ANALYZE DELETE FROM t WHERE id = 1", want{command: "EXPLAIN", kind: KindWrite, tables: []string{"t"}, hasWhere: true}},
		{"EXPLAIN ANALYSE UPDATE t SET a = 1", want{command: "EXPLAIN", kind: KindWrite, tables: []string{"t"}}},
		{"EXPLAIN (ANALYZE) INSERT INTO t VALUES (1)", want{command: "EXPLAIN", kind: KindWrite, tables: []string{"t"}}},
		{"EXPLAIN (ANALYZE true, BUFFERS) DELETE FROM t", want{command: "EXPLAIN", kind: KindWrite, tables: []string{"t"}}},
		{"EXPLAIN (ANALYZE 'on') DELETE FROM t", want{command: "EXPLAIN", kind: KindWrite, tables: []string{"t"}}},
		{"EXPLAIN (ANALYZE 1) DELETE FROM t", want{command: "EXPLAIN", kind: KindWrite, tables: []string{"t"}}},
		{"EXPLAIN (ANALYZE 2) DELETE FROM t", want{command: "EXPLAIN", kind: KindWrite, tables: []string{"t"}}},
		{"EXPLAIN (\"analyze\") DELETE FROM t", want{command: "EXPLAIN", kind: KindWrite, tables: []string{"t"}}},
		{"PREPARE p AS UPDATE t SET a = $1", want{command: "PREPARE", kind: KindWrite, tables: []string{"t"}}},
		{"PREPARE p (int) AS DELETE FROM t WHERE id = $1", want{command: "PREPARE", kind: KindWrite, tables: []string{"t"}, hasWhere: true}},

		// ddl
		{"CREATE TABLE t (id int)", want{command: "CREATE", kind: KindDDL, tables: []string{"t"}}},
		{"CREATE TABLE s.t (id int REFERENCES u (id), LIKE v)", want{command: "CREATE", kind: KindDDL, tables: []string{"s.t", "u", "v"}}},
		{"CREATE TABLE t (id int DEFAULT nextval('seq'))", want{command: "CREATE", kind: KindDDL, tables: []string{"t"}, functions: []string{"nextval"}}},
		{"CREATE TABLE t AS SELECT * FROM s", want{command: "CREATE", kind: KindDDL, tables: []string{"s", "t"}}},
		{"CREATE MATERIALIZED VIEW mv AS SELECT * FROM s", want{command: "CREATE", kind: KindDDL, tables: []string{"s", "mv"}}},
		{"SELECT * INTO new_t FROM old_t", want{command: "SELECT", kind: KindDDL, tables: []string{"new_t", "old_t"}}},
		{"SELECT * INTO TEMP x FROM t WHERE a = 1", want{command: "SELECT", kind: KindDDL, tables: []string{"x", "t"}, hasWhere: true}},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * INTO x FROM d", want{command: "SELECT", kind: KindDDL, tables: []string{"t", "x"}}},
		{"EXPLAIN ANALYZE SELECT * INTO x FROM t", want{command: "EXPLAIN", kind: KindDDL, tables: []string{"x", "t"}}},
		{"EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", want{command: "EXPLAIN", kind: KindDDL, tables: []string{"x"}}},
		{"CREATE VIEW v AS SELECT * FROM t", want{command: "CREATE", kind: KindDDL, tables: []string{"v", "t"}}},
		{"CREATE INDEX idx ON t (lower(a))", want{command: "CREATE", kind: KindDDL, tables: []string{"t"}, functions: []string{"lower"}}},
		{"CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql", want{command: "CREATE", kind: KindDDL}},
		{"CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE 'sql'", want{command: "CREATE", kind: KindDDL}},
		{"CREATE FUNCTION f() RETURNS int AS 'x' LANGUAGE \"C\"", want{command: "CREATE", kind: KindProcedural}},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); SELECT 1; END", want{command: "CREATE", kind: KindDDL, tables: []string{"t"}}},
		{"CREATE PROCEDURE p() LANGUAGE plpgsql AS $$BEGIN DELETE FROM t; END$$", want{command: "CREATE", kind: KindDDL}},
		{"CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", want{command: "CREATE", kind: KindDDL, tables: []string{"t"}}},
		{"CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u", want{command: "CREATE", kind: KindDDL, tables: []string{"t", "u"}}},
		{"CREATE EXTENSION pgcrypto", want{command: "CREATE", kind: KindDDL}},
		{"CREATE DATABASE d", want{command: "CREATE", kind: KindDDL}},
		{"CREATE SEQUENCE s.seq", want{command: "CREATE", kind: KindDDL, tables: []string{"s.seq"}}},
		{"ALTER TABLE t ADD COLUMN c int", want{command: "ALTER", kind: KindDDL, tables: []string{"t"}}},
		{"ALTER TABLE t RENAME TO u", want{command: "ALTER", kind: KindDDL, tables: []string{"t", "u"}}},
		{"ALTER TABLE t RENAME TO customers", want{command: "ALTER", kind: KindDDL, tables: []string{"t", "customers"}}},
		{"ALTER TABLE s.t RENAME TO customers", want{command: "ALTER", kind: KindDDL, tables: []string{"s.t", "s.customers"}}},
		{"ALTER VIEW v RENAME TO customers", want{command: "ALTER", kind: KindDDL, tables: []string{"v", "customers"}}},
		{"ALTER INDEX db.s.i RENAME TO j", want{command: "ALTER", kind: KindDDL, tables: []string{"s.i", "s.j"}}},
		{"ALTER TABLE t RENAME COLUMN a TO customers", want{command: "ALTER", kind: KindDDL, tables: []string{"t"}}},
		{"ALTER SCHEMA s RENAME TO customers", want{command: "ALTER", kind: KindDDL}},
		{"ALTER TABLE t SET SCHEMA s", want{command: "ALTER", kind: KindDDL, tables: []string{"t", "s.t"}}},
		{"ALTER SEQUENCE s OWNED BY customers.id", want{command: "ALTER", kind: KindDDL, tables: []string{"s", "customers"}}},
		{"ALTER SEQUENCE s OWNED BY public.customers.id", want{command: "ALTER", kind: KindDDL, tables: []string{"s", "public.customers"}}},
		{"ALTER SEQUENCE s OWNED BY NONE", want{command: "ALTER", kind: KindDDL, tables: []string{"s"}}},
		{"CREATE SEQUENCE s OWNED BY customers.id", want{command: "CREATE", kind: KindDDL, tables: []string{"s", "customers"}}},
		{"ALTER EXTENSION e ADD TABLE customers", want{command: "ALTER", kind: KindDDL, tables: []string{"customers"}}},
		{"ALTER EXTENSION e DROP SEQUENCE s.seq", want{command: "ALTER", kind: KindDDL, tables: []string{"s.seq"}}},
		{"ALTER SEQUENCE seq RESTART", want{command: "ALTER", kind: KindDDL, tables: []string{"seq"}}},
		{"ALTER DATABASE d SET work_mem = '1GB'", want{command: "ALTER", kind: KindDDL}},
		{"DROP TABLE t", want{command: "DROP", kind: KindDDL, tables: []string{"t"}}},
		{"DROP TABLE IF EXISTS a, s.b CASCADE", want{command: "DROP", kind: KindDDL, tables: []string{"a", "s.b"}}},
		{"DROP VIEW v", want{command: "DROP", kind: KindDDL, tables: []string{"v"}}},
		{"DROP MATERIALIZED VIEW mv", want{command: "DROP", kind: KindDDL, tables: []string{"mv"}}},
		{"DROP INDEX s.idx", want{command: "DROP", kind: KindDDL, tables: []string{"s.idx"}}},
		{"DROP TRIGGER trg ON s.t", want{command: "DROP", kind: KindDDL, tables: []string{"s.t"}}},
		{"DROP FUNCTION f(int)", want{command: "DROP", kind: KindDDL}},
		{"DROP SCHEMA s CASCADE", want{command: "DROP", kind: KindDDL}},
		{"DROP DATABASE d", want{command: "DROP", kind: KindDDL}},
		{"TRUNCATE t, u", want{command: "TRUNCATE", kind: KindDDL, tables: []string{"t", "u"}}},
		{"TRUNCATE TABLE ONLY s.t RESTART IDENTITY", want{command: "TRUNCATE", kind: KindDDL, tables: []string{"s.t"}}},
		{"COMMENT ON TABLE t IS 'x'", want{command: "COMMENT", kind: KindDDL, tables: []string{"t"}}},
		{"COMMENT ON COLUMN s.t.c IS 'x'", want{command: "COMMENT", kind: KindDDL, tables: []string{"s.t"}}},
		{"REINDEX TABLE t", want{command: "REINDEX", kind: KindDDL, tables: []string{"t"}}},
		{"CLUSTER t USING idx", want{command: "CLUSTER", kind: KindDDL, tables: []string{"t"}}},
		{"REFRESH MATERIALIZED VIEW CONCURRENTLY mv", want{command: "REFRESH", kind: KindDDL, tables: []string{"mv"}}},
		{"VACUUM t", want{command: "VACUUM", kind: KindDDL, tables: []string{"t"}}},
		{"VACUUM (FULL, ANALYZE) t", want{command: "VACUUM", kind: KindDDL, tables: []string{"t"}}},
		{"ANALYZE t", want{command: "ANALYZE", kind: KindDDL, tables: []string{"t"}}},
		{"IMPORT FOREIGN SCHEMA remote FROM SERVER srv INTO local", want{command: "IMPORT", kind: KindDDL}},

		// dcl
		{"GRANT SELECT ON customers TO bob", want{command: "GRANT", kind: KindDCL, tables: []string{"customers"}}},
		{"REVOKE ALL ON TABLE s.t FROM bob", want{command: "REVOKE", kind: KindDCL, tables: []string{"s.t"}}},
		{"GRANT SELECT ON ALL TABLES IN SCHEMA s TO bob", want{command: "GRANT", kind: KindDCL}},
		{"GRANT admin TO bob", want{command: "GRANT", kind: KindDCL}},
		{"REVOKE admin FROM bob", want{command: "REVOKE", kind: KindDCL}},
		{"CREATE ROLE bob LOGIN PASSWORD 'x'", want{command: "CREATE", kind: KindDCL}},
		{"CREATE USER bob", want{command: "CREATE", kind: KindDCL}},
		{"ALTER ROLE bob SUPERUSER", want{command: "ALTER", kind: KindDCL}},
		{"ALTER ROLE bob RENAME TO alice", want{command: "ALTER", kind: KindDCL}},
		{"ALTER USER bob RENAME TO alice", want{command: "ALTER", kind: KindDCL}},
		{"ALTER GROUP g RENAME TO h", want{command: "ALTER", kind: KindDCL}},
		{"ALTER POLICY p ON customers RENAME TO q", want{command: "ALTER", kind: KindDCL, tables: []string{"customers"}}},
		{"ALTER USER bob SET search_path = x", want{command: "ALTER", kind: KindDCL}},
		{"DROP ROLE bob", want{command: "DROP", kind: KindDCL}},
		{"DROP USER IF EXISTS bob", want{command: "DROP", kind: KindDCL}},
		{"ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO bob", want{command: "ALTER", kind: KindDCL}},
		{"SECURITY LABEL ON TABLE t IS 'secret'", want{command: "SECURITY LABEL", kind: KindDCL, tables: []string{"t"}}},
		{"REASSIGN OWNED BY a TO b", want{command: "REASSIGN", kind: KindDCL}},
		{"DROP OWNED BY a", want{command: "DROP", kind: KindDCL}},
		{"ALTER TABLE t OWNER TO bob", want{command: "ALTER", kind: KindDCL, tables: []string{"t"}}},
		{"ALTER SCHEMA s OWNER TO bob", want{command: "ALTER", kind: KindDCL}},
		{"ALTER TABLE t DISABLE ROW LEVEL SECURITY", want{command: "ALTER", kind: KindDCL, tables: []string{"t"}}},
		{"ALTER TABLE t NO FORCE ROW LEVEL SECURITY", want{command: "ALTER", kind: KindDCL, tables: []string{"t"}}},
		{"CREATE POLICY p ON t USING (owner = current_user)", want{command: "CREATE", kind: KindDCL, tables: []string{"t"}}},
		{"ALTER POLICY p ON t USING (true)", want{command: "ALTER", kind: KindDCL, tables: []string{"t"}}},
		{"DROP POLICY p ON s.t", want{command: "DROP", kind: KindDCL, tables: []string{"s.t"}}},
		{"CREATE SCHEMA s CREATE TABLE t (a int) GRANT SELECT ON t TO bob", want{command: "CREATE", kind: KindDCL, tables: []string{"t"}}},
		// Who the session's statements run as.
		{"SET ROLE admin", want{command: "SET", kind: KindDCL}},
		{"SET LOCAL ROLE admin", want{command: "SET", kind: KindDCL}},
		{"SET ROLE NONE", want{command: "SET", kind: KindDCL}},
		{"SET SESSION AUTHORIZATION bob", want{command: "SET", kind: KindDCL}},
		{"SET SESSION AUTHORIZATION DEFAULT", want{command: "SET", kind: KindDCL}},
		{"SET role = 'admin'", want{command: "SET", kind: KindDCL}},
		{"SET \"ROLE\" TO admin", want{command: "SET", kind: KindDCL}},
		{"SET session_authorization = bob", want{command: "SET", kind: KindDCL}},
		{"SET role FROM CURRENT", want{command: "SET", kind: KindDCL}},
		{"RESET ROLE", want{command: "RESET", kind: KindDCL}},
		{"RESET SESSION AUTHORIZATION", want{command: "RESET", kind: KindDCL}},
		{"SELECT set_config('role', 'admin', false)", want{command: "SELECT", kind: KindDCL, functions: []string{"set_config"}}},
		{"SELECT pg_catalog.set_config('Session_Authorization', 'bob', true)", want{command: "SELECT", kind: KindDCL, functions: []string{"pg_catalog.set_config"}}},
		{"SELECT postgres.pg_catalog.set_config('role', 'admin', false)", want{command: "SELECT", kind: KindDCL, functions: []string{"pg_catalog.set_config"}}},
		{"SELECT 1 FROM t WHERE set_config(name, 'x', false) IS NOT NULL", want{command: "SELECT", kind: KindDCL, tables: []string{"t"}, functions: []string{"set_config"}, hasWhere: true}},
		{"SELECT set_config('ro' || 'le', 'admin', false)", want{command: "SELECT", kind: KindDCL, functions: []string{"set_config"}}},
		{"UPDATE pg_settings SET setting = 'admin' WHERE name = 'role'", want{command: "UPDATE", kind: KindDCL, tables: []string{"pg_settings"}, functions: []string{"pg_catalog.set_config"}, hasWhere: true}},
		{"UPDATE pg_catalog.pg_settings SET setting = 'x' WHERE name = 'y'", want{command: "UPDATE", kind: KindDCL, tables: []string{"pg_catalog.pg_settings"}, functions: []string{"pg_catalog.set_config"}, hasWhere: true}},
		{"ALTER DATABASE d SET role = 'admin'", want{command: "ALTER", kind: KindDCL}},

		// tcl
		{"BEGIN", want{command: "BEGIN", kind: KindTCL}},
		{"BEGIN ISOLATION LEVEL SERIALIZABLE", want{command: "BEGIN", kind: KindTCL}},
		{"START TRANSACTION READ ONLY", want{command: "BEGIN", kind: KindTCL}},
		{"COMMIT", want{command: "COMMIT", kind: KindTCL}},
		{"END", want{command: "COMMIT", kind: KindTCL}},
		{"COMMIT AND CHAIN", want{command: "COMMIT", kind: KindTCL}},
		{"ROLLBACK", want{command: "ROLLBACK", kind: KindTCL}},
		{"ABORT", want{command: "ROLLBACK", kind: KindTCL}},
		{"SAVEPOINT s1", want{command: "SAVEPOINT", kind: KindTCL}},
		{"RELEASE SAVEPOINT s1", want{command: "RELEASE", kind: KindTCL}},
		{"ROLLBACK TO SAVEPOINT s1", want{command: "ROLLBACK", kind: KindTCL}},
		{"PREPARE TRANSACTION 'gid'", want{command: "PREPARE TRANSACTION", kind: KindTCL}},
		{"COMMIT PREPARED 'gid'", want{command: "COMMIT PREPARED", kind: KindTCL}},
		{"ROLLBACK PREPARED 'gid'", want{command: "ROLLBACK PREPARED", kind: KindTCL}},
		{"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", want{command: "SET", kind: KindTCL}},
		{"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", want{command: "SET", kind: KindTCL}},
		{"SET CONSTRAINTS ALL DEFERRED", want{command: "SET", kind: KindTCL}},

		// procedural
		{"DO $$BEGIN PERFORM 1; END$$", want{command: "DO", kind: KindProcedural}},
		{"DO LANGUAGE plpgsql 'BEGIN DELETE FROM t; END'", want{command: "DO", kind: KindProcedural}},
		{"CALL p(1)", want{command: "CALL", kind: KindProcedural, functions: []string{"p"}}},
		{"CALL s.\"Proc\"(now())", want{command: "CALL", kind: KindProcedural, functions: []string{"s.Proc", "now"}}},
		{"LOAD 'auto_explain'", want{command: "LOAD", kind: KindProcedural}},
		{"COPY t TO '/tmp/t.csv'", want{command: "COPY", kind: KindProcedural, tables: []string{"t"}}},
		{"COPY t FROM '/etc/passwd'", want{command: "COPY", kind: KindProcedural, tables: []string{"t"}}},
		{"COPY t TO ''", want{command: "COPY", kind: KindProcedural, tables: []string{"t"}}},
		{"COPY t TO PROGRAM 'gzip > /tmp/t.gz'", want{command: "COPY", kind: KindProcedural, tables: []string{"t"}}},
		{"COPY t FROM PROGRAM 'curl http://x'", want{command: "COPY", kind: KindProcedural, tables: []string{"t"}}},
		{"COPY (SELECT * FROM t) TO '/tmp/x'", want{command: "COPY", kind: KindProcedural, tables: []string{"t"}}},
		{"COPY t TO '/tmp/x' CSV FORCE QUOTE stdout", want{command: "COPY", kind: KindProcedural, tables: []string{"t"}}},
		{"COPY /* to stdout */ t TO '/tmp/x'", want{command: "COPY", kind: KindProcedural, tables: []string{"t"}}},
		{"ALTER SYSTEM SET archive_command = 'rm -rf /'", want{command: "ALTER", kind: KindProcedural}},
		{"CREATE FUNCTION f() RETURNS int AS '/tmp/evil.so', 'f' LANGUAGE C", want{command: "CREATE", kind: KindProcedural}},
		{"CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE 'c' AS '$libdir/x', 'f'", want{command: "CREATE", kind: KindProcedural}},
		{"CREATE PROCEDURE p() LANGUAGE c AS 'x', 'p'", want{command: "CREATE", kind: KindProcedural}},
		{"ALTER DATABASE postgres SET session_preload_libraries = 'evil'", want{command: "ALTER", kind: KindProcedural}},
		{"ALTER ROLE bob SET local_preload_libraries = 'evil'", want{command: "ALTER", kind: KindProcedural}},

		// session
		{"SET search_path = public", want{command: "SET", kind: KindSession}},
		{"SELECT set_config('app.user_id', '42', false)", want{command: "SELECT", kind: KindRead, functions: []string{"set_config"}}},
		{"EXPLAIN SELECT set_config('role', 'admin', false)", want{command: "EXPLAIN", kind: KindRead, functions: []string{"set_config"}}},
		{"SELECT s.set_config('role', 'admin', false)", want{command: "SELECT", kind: KindRead, functions: []string{"s.set_config"}}},
		{"SELECT * FROM pg_settings WHERE name = 'role'", want{command: "SELECT", kind: KindRead, tables: []string{"pg_settings"}, hasWhere: true}},
		{"RESET ALL", want{command: "RESET", kind: KindSession}},
		{"SET LOCAL statement_timeout = 0", want{command: "SET", kind: KindSession}},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", want{command: "SET", kind: KindSession}},
		{"SET \"transaction\" = 'x'", want{command: "SET", kind: KindSession}},
		{"RESET search_path", want{command: "RESET", kind: KindSession}},
		{"DISCARD ALL", want{command: "DISCARD", kind: KindSession}},
		{"LISTEN ch", want{command: "LISTEN", kind: KindSession}},
		{"UNLISTEN *", want{command: "UNLISTEN", kind: KindSession}},
		{"NOTIFY ch, 'payload'", want{command: "NOTIFY", kind: KindSession}},
		{"PREPARE p AS SELECT * FROM t WHERE id = $1", want{command: "PREPARE", kind: KindSession, tables: []string{"t"}, hasWhere: true}},
		{"EXECUTE p(1)", want{command: "EXECUTE", kind: KindSession}},
		{"DEALLOCATE p", want{command: "DEALLOCATE", kind: KindSession}},
		{"DEALLOCATE ALL", want{command: "DEALLOCATE", kind: KindSession}},
		{"DECLARE c CURSOR FOR SELECT * FROM t", want{command: "DECLARE", kind: KindSession, tables: []string{"t"}}},
		{"CLOSE c", want{command: "CLOSE", kind: KindSession}},
		{"LOCK TABLE t IN ACCESS EXCLUSIVE MODE", want{command: "LOCK", kind: KindSession, tables: []string{"t"}}},
		{"EXPLAIN ANALYZE EXECUTE p(1)", want{command: "EXPLAIN", kind: KindSession}},

		// other
		{"CHECKPOINT", want{command: "CHECKPOINT", kind: KindOther}},
	}
	c := NewClassifier(0)
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			checkStatement(t, tt.sql, classifyOne(t, c, tt.sql), tt.want)
		})
	}
}

// TestHasWhereCoversEveryModification: when a statement runs UPDATEs or
// DELETEs, has_where says whether every one of them is bounded, wherever
// it sits; a WHERE elsewhere (on the outer SELECT, on another DELETE)
// does not bound them.
func TestHasWhereCoversEveryModification(t *testing.T) {
	tests := []struct {
		sql      string
		hasWhere bool
	}{
		// An unbounded DELETE or UPDATE anywhere that runs.
		{"WITH d AS (DELETE FROM customers) DELETE FROM t WHERE id = 1", false},
		{"WITH d AS (DELETE FROM customers RETURNING 1) SELECT 1 WHERE true", false},
		{"WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d WHERE id > 0", false},
		{"WITH u AS (UPDATE customers SET ssn = NULL RETURNING 1) UPDATE t SET a = 1 WHERE id = 1", false},
		{"WITH a AS (WITH b AS (DELETE FROM customers RETURNING 1) SELECT 1) SELECT * FROM a WHERE true", false},
		{"SELECT * FROM x WHERE id IN (WITH d AS (DELETE FROM t RETURNING id) SELECT id FROM d)", false},
		{"EXPLAIN ANALYZE WITH d AS (DELETE FROM customers RETURNING 1) SELECT 1 WHERE true", false},
		{"EXPLAIN ANALYZE DELETE FROM customers", false},
		{"PREPARE p AS WITH d AS (DELETE FROM customers RETURNING 1) SELECT 1 WHERE true", false},
		{"PREPARE p AS UPDATE customers SET a = 1", false},
		{"COPY (DELETE FROM customers RETURNING *) TO STDOUT", false},
		{"COPY (WITH d AS (UPDATE customers SET a = 1 RETURNING *) SELECT * FROM d WHERE a = 1) TO STDOUT", false},
		{"INSERT INTO archive SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s WHERE true", false},

		// Every one bounded.
		{"WITH d AS (DELETE FROM customers WHERE id = 1 RETURNING *) SELECT * FROM d", true},
		{"WITH d AS (DELETE FROM a WHERE id = 1) UPDATE b SET x = 1 WHERE CURRENT OF c", true},
		{"EXPLAIN ANALYZE WITH d AS (DELETE FROM a WHERE id = 1 RETURNING 1) SELECT 1", true},
		{"COPY (DELETE FROM customers WHERE id = 1 RETURNING *) TO STDOUT", true},

		// Planned, not run: the outer statement's WHERE, as before.
		{"EXPLAIN WITH d AS (DELETE FROM customers RETURNING 1) SELECT 1 WHERE true", true},
		{"EXPLAIN (ANALYZE false) DELETE FROM customers", false},

		// No UPDATE or DELETE: the outer statement's WHERE, as before.
		{"SELECT * FROM t WHERE a = 1", true},
		{"WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i WHERE true", true},
		{"INSERT INTO t SELECT * FROM s WHERE a = 1", false},
	}
	for _, tt := range tests {
		for _, c := range []*Classifier{NewClassifier(0), NewClassifier(16)} {
			if st := classifyOne(t, c, tt.sql); st.HasWhere != tt.hasWhere {
				t.Errorf("Classify(%q).HasWhere = %v, want %v", tt.sql, st.HasWhere, tt.hasWhere)
			}
		}
	}
}

// TestClassifyCommands: Commands lists the command of every statement that
// runs as part of one, so that a rule on "DELETE" in sql.commands sees a
// DELETE wherever it hides, and HasWhere with it.
func TestClassifyCommands(t *testing.T) {
	tests := []struct {
		sql      string
		commands []string
		hasWhere bool
	}{
		{"DELETE FROM customers", []string{"DELETE"}, false},
		{"DELETE FROM customers WHERE id = 1", []string{"DELETE"}, true},
		{"SELECT 1", []string{"SELECT"}, false},
		{"SELECT * FROM t WHERE a IN (SELECT a FROM u)", []string{"SELECT"}, true},
		{"DELETE FROM t WHERE a IN (SELECT a FROM u)", []string{"DELETE", "SELECT"}, true},
		{"INSERT INTO t VALUES (1)", []string{"INSERT", "VALUES"}, false},
		{"INSERT INTO t SELECT * FROM s", []string{"INSERT", "SELECT"}, false},
		// INSERT ... ON CONFLICT DO UPDATE updates only the rows its own
		// new rows conflict with: it stays an INSERT.
		{"INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2", []string{"INSERT", "VALUES"}, false},

		// The shapes.
		{"EXPLAIN ANALYZE DELETE FROM customers", []string{"EXPLAIN", "DELETE"}, false},
		{"EXPLAIN (ANALYZE, FORMAT json) UPDATE t SET a = 1 WHERE id = 1", []string{"EXPLAIN", "UPDATE"}, true},
		{"PREPARE p AS DELETE FROM customers", []string{"PREPARE", "DELETE"}, false},
		{"WITH d AS (DELETE FROM customers RETURNING 1) SELECT 1", []string{"SELECT", "DELETE"}, false},
		{"WITH d AS (DELETE FROM customers) DELETE FROM t WHERE id = 1", []string{"DELETE"}, false},
		{"WITH u AS (UPDATE a SET x = 1 RETURNING *) INSERT INTO b SELECT * FROM u", []string{"INSERT", "UPDATE", "SELECT"}, false},
		{"COPY (DELETE FROM customers RETURNING *) TO STDOUT", []string{"COPY", "DELETE"}, false},
		{"COPY (SELECT * FROM t) TO STDOUT", []string{"COPY", "SELECT"}, false},
		{"DECLARE c CURSOR FOR SELECT * FROM t", []string{"DECLARE", "SELECT"}, false},

		// MERGE lists its actions; a DELETE or UPDATE action has a WHERE
		// only with its own AND condition, whatever the ON condition.
		{"MERGE INTO customers USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE", []string{"MERGE", "SELECT", "DELETE"}, false},
		{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", []string{"MERGE", "DELETE"}, false},
		{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.gone THEN DELETE", []string{"MERGE", "DELETE"}, true},
		{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.gone THEN DELETE WHEN MATCHED THEN UPDATE SET a = s.a",
			[]string{"MERGE", "DELETE", "UPDATE"}, false},
		{"MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id) WHEN MATCHED THEN DO NOTHING",
			[]string{"MERGE", "INSERT"}, false},
		{"MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE", []string{"MERGE", "DELETE"}, false},

		// Stored to run later: listed too.
		{"CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u", []string{"CREATE", "DELETE"}, false},
		{"CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC UPDATE t SET a = 1; END", []string{"CREATE", "UPDATE"}, false},

		// Planned, not run: not listed.
		{"EXPLAIN DELETE FROM customers", []string{"EXPLAIN"}, false},
		{"EXPLAIN (ANALYZE off) DELETE FROM customers", []string{"EXPLAIN"}, false},
		{"EXPLAIN MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", []string{"EXPLAIN"}, false},
	}
	for _, tt := range tests {
		for _, c := range []*Classifier{NewClassifier(0), NewClassifier(16)} {
			st := classifyOne(t, c, tt.sql)
			if !reflect.DeepEqual(st.Commands, tt.commands) || st.HasWhere != tt.hasWhere {
				t.Errorf("Classify(%q): commands %q, has_where %v; want %q, %v", tt.sql, st.Commands, st.HasWhere, tt.commands, tt.hasWhere)
			}
		}
	}
}

func TestClassifyNames(t *testing.T) {
	tests := []struct {
		name      string
		sql       string
		tables    []string
		functions []string
	}{
		{"unquoted is lower-cased", "SELECT * FROM Customers", []string{"customers"}, nil},
		{"quoted keeps case", `SELECT * FROM "Customers"`, []string{"Customers"}, nil},
		{"quoted lower is the same name", `SELECT * FROM "customers"`, []string{"customers"}, nil},
		{"schema as written", "SELECT * FROM public.customers", []string{"public.customers"}, nil},
		{"unqualified and qualified differ", "SELECT * FROM customers, public.customers", []string{"customers", "public.customers"}, nil},
		{"quoted schema", `SELECT * FROM "Sales"."Orders" JOIN Sales.Orders USING (id)`, []string{"Sales.Orders", "sales.orders"}, nil},
		// The catalog part can only be the current database: left out.
		{"catalog", "SELECT * FROM db.s.t", []string{"s.t"}, nil},
		{"catalog and schema as written", `SELECT * FROM postgres.public.customers, "Db"."S"."T", public.customers`, []string{"public.customers", "S.T"}, nil},
		{"catalog of a dml target", "UPDATE db.public.t SET a = 1 FROM db.s.u", []string{"public.t", "s.u"}, nil},
		{"catalog of a function", "SELECT postgres.pg_catalog.set_config('a', 'b', false), db.s.f()", nil, []string{"pg_catalog.set_config", "s.f"}},
		{"catalog in a drop", "DROP TABLE db.s.t, db.s.u", []string{"s.t", "s.u"}, nil},
		{"catalog in a comment on a column", "COMMENT ON COLUMN db.s.t.c IS 'x'", []string{"s.t"}, nil},
		{"catalog in a call", "CALL db.s.p()", nil, []string{"s.p"}},
		{"unicode escape identifier", `SELECT * FROM U&"d\0061t"`, []string{"dat"}, nil},
		{"uescape identifier", `SELECT * FROM U&"d!0061t" UESCAPE '!'`, []string{"dat"}, nil},
		{"long identifier truncated like PostgreSQL", "SELECT * FROM " + strings.Repeat("a", 70), []string{strings.Repeat("a", 63)}, nil},
		{"deduplicated", "SELECT * FROM t JOIN t t2 ON true WHERE x IN (SELECT x FROM t)", []string{"t"}, nil},
		{"joins", "SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN c USING (id) CROSS JOIN d", []string{"a", "b", "c", "d"}, nil},
		{"subqueries everywhere", "SELECT (SELECT max(x) FROM a) FROM b WHERE EXISTS (SELECT 1 FROM c) AND y IN (SELECT y FROM (SELECT y FROM d) s)", []string{"a", "b", "c", "d"}, []string{"max"}},
		{"lateral", "SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.id = a.id) s", []string{"a", "b"}, nil},
		{"functions", `SELECT count(*), lower(name), pg_catalog.now(), "MyFunc"(1), S.F() FROM t`, []string{"t"}, []string{"count", "lower", "pg_catalog.now", "MyFunc", "s.f"}},
		{"function in FROM", "SELECT * FROM generate_series(1, 10) g", nil, []string{"generate_series"}},
		{"sql syntax functions", "SELECT extract(year FROM now())", nil, []string{"pg_catalog.extract", "now"}},
		{"function in where and order", "SELECT a FROM t WHERE f(a) ORDER BY g(a)", []string{"t"}, []string{"f", "g"}},
		{"dblink", "SELECT * FROM dblink('host=x', 'select 1') AS r(a int)", nil, []string{"dblink"}},

		// CTE scoping
		{"cte body table listed, cte name not", "WITH c AS (SELECT * FROM customers) SELECT * FROM c", []string{"customers"}, nil},
		{"cte shadows a table", "WITH customers AS (SELECT 1) SELECT * FROM customers", nil, nil},
		{"qualified name is never a cte", "WITH c AS (SELECT 1) SELECT * FROM public.c", []string{"public.c"}, nil},
		{"cte name case", `WITH "C" AS (SELECT 1) SELECT * FROM c`, []string{"c"}, nil},
		{"non-recursive self reference is the table", "WITH t AS (SELECT * FROM t) SELECT * FROM t", []string{"t"}, nil},
		{"recursive self reference is the cte", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", nil, nil},
		{"later sibling is not visible", "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", []string{"b"}, nil},
		{"earlier sibling is visible", "WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b", nil, nil},
		{"recursive sees later sibling", "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", nil, nil},
		{"cte visible in subqueries", "WITH c AS (SELECT 1 AS x) SELECT * FROM (SELECT * FROM c) s WHERE x IN (SELECT x FROM c)", nil, nil},
		{"inner cte not visible outside", "SELECT * FROM (WITH c AS (SELECT 1) SELECT * FROM c) s, c", []string{"c"}, nil},
		{"cte in union branches", "WITH c AS (SELECT 1) SELECT * FROM c UNION SELECT * FROM c", nil, nil},
		{"dml target is never a cte", "WITH t AS (SELECT 1) DELETE FROM t", []string{"t"}, nil},
		{"dml from uses cte", "WITH s AS (SELECT 1 AS id) UPDATE t SET a = 1 FROM s WHERE s.id = t.id", []string{"t"}, nil},
		{"insert source uses cte", "WITH s AS (SELECT 1) INSERT INTO t SELECT * FROM s", []string{"t"}, nil},
		{"merge source uses cte", "WITH s AS (SELECT 1 AS id) MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", []string{"t"}, nil},
		{"select into target is never a cte", "WITH x AS (SELECT 1) SELECT * INTO x FROM x", []string{"x"}, nil},
		{"data-modifying cte target", "WITH d AS (DELETE FROM d RETURNING *) SELECT * FROM d", []string{"d"}, nil},
	}
	c := NewClassifier(0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classifyOne(t, c, tt.sql)
			wantTables, wantFuncs := tt.tables, tt.functions
			if wantTables == nil {
				wantTables = []string{}
			}
			if wantFuncs == nil {
				wantFuncs = []string{}
			}
			if !reflect.DeepEqual(got.Tables, wantTables) {
				t.Errorf("Classify(%q).Tables = %q, want %q", tt.sql, got.Tables, wantTables)
			}
			if !reflect.DeepEqual(got.Functions, wantFuncs) {
				t.Errorf("Classify(%q).Functions = %q, want %q", tt.sql, got.Functions, wantFuncs)
			}
		})
	}
}

func TestClassifyMultiStatement(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		want []Statement
	}{
		{
			name: "three statements",
			sql:  "SELECT 1; INSERT INTO t VALUES (1);DELETE FROM t",
			want: []Statement{
				{Command: "SELECT", Kind: KindRead, Text: "SELECT 1"},
				{Command: "INSERT", Kind: KindWrite, Commands: []string{"INSERT", "VALUES"}, Tables: []string{"t"}, Text: "INSERT INTO t VALUES (1)"},
				{Command: "DELETE", Kind: KindWrite, Tables: []string{"t"}, Text: "DELETE FROM t"},
			},
		},
		{
			name: "transaction",
			sql:  "BEGIN;\n  UPDATE t SET a = 1 WHERE id = 1;\nCOMMIT;\n",
			want: []Statement{
				{Command: "BEGIN", Kind: KindTCL, Text: "BEGIN"},
				{Command: "UPDATE", Kind: KindWrite, Tables: []string{"t"}, HasWhere: true, Text: "UPDATE t SET a = 1 WHERE id = 1"},
				{Command: "COMMIT", Kind: KindTCL, Text: "COMMIT"},
			},
		},
		{
			name: "empty statements between",
			sql:  "  SELECT 1 ;; ; SELECT 2  ;  ",
			want: []Statement{
				{Command: "SELECT", Kind: KindRead, Text: "SELECT 1"},
				{Command: "SELECT", Kind: KindRead, Text: "SELECT 2"},
			},
		},
		{
			name: "comments stay with the following statement",
			sql:  "/* c */ SELECT 1; -- trailing\nSELECT 2 -- end",
			want: []Statement{
				{Command: "SELECT", Kind: KindRead, Text: "/* c */ SELECT 1"},
				{Command: "SELECT", Kind: KindRead, Text: "-- trailing\nSELECT 2 -- end"},
			},
		},
		{
			name: "semicolons inside literals and identifiers",
			sql:  `SELECT 'a;b'; SELECT $$;$$; SELECT 1 AS ";"; SELECT E'\';'`,
			want: []Statement{
				{Command: "SELECT", Kind: KindRead, Text: "SELECT 'a;b'"},
				{Command: "SELECT", Kind: KindRead, Text: "SELECT $$;$$"},
				{Command: "SELECT", Kind: KindRead, Text: `SELECT 1 AS ";"`},
				{Command: "SELECT", Kind: KindRead, Text: `SELECT E'\';'`},
			},
		},
		{
			name: "begin atomic body keeps its semicolons",
			sql:  "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; DROP TABLE t",
			want: []Statement{
				{Command: "CREATE", Kind: KindDDL, Commands: []string{"CREATE", "SELECT"}, Text: "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END"},
				{Command: "DROP", Kind: KindDDL, Tables: []string{"t"}, Text: "DROP TABLE t"},
			},
		},
		{
			name: "multibyte text",
			sql:  "SELECT 'ünïcödé' FROM \"tâble\";\tSELECT '日本'",
			want: []Statement{
				{Command: "SELECT", Kind: KindRead, Tables: []string{"tâble"}, Text: "SELECT 'ünïcödé' FROM \"tâble\""},
				{Command: "SELECT", Kind: KindRead, Text: "SELECT '日本'"},
			},
		},
		{
			name: "non-breaking space is not trimmed",
			sql:  "SELECT 1 \u00a0",
			want: []Statement{
				{Command: "SELECT", Kind: KindRead, Text: "SELECT 1 \u00a0"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []*Classifier{NewClassifier(0), NewClassifier(16)} {
				got, err := c.Classify(tt.sql)
				if err != nil {
					t.Fatalf("Classify(%q): %v", tt.sql, err)
				}
				want := normalizeWant(tt.want)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Classify(%q)\n got %+v\nwant %+v", tt.sql, got, want)
				}
			}
		})
	}
}

// normalizeWant fills what a want leaves out: empty lists, and Commands
// that are the statement's Command alone.
func normalizeWant(in []Statement) []Statement {
	out := make([]Statement, len(in))
	for i, s := range in {
		if s.Commands == nil {
			s.Commands = []string{s.Command}
		}
		if s.Tables == nil {
			s.Tables = []string{}
		}
		if s.Functions == nil {
			s.Functions = []string{}
		}
		out[i] = s
	}
	return out
}

func TestClassifyEmpty(t *testing.T) {
	for _, sql := range []string{"", "   ", "\n\t", ";", " ; ; ", "-- only a comment", "/* c */", "/* a */ ; -- b\n ;"} {
		for _, c := range []*Classifier{NewClassifier(0), NewClassifier(4)} {
			got, err := c.Classify(sql)
			if err != nil {
				t.Errorf("Classify(%q): %v", sql, err)
			}
			if got == nil || len(got) != 0 {
				t.Errorf("Classify(%q) = %#v, want an empty, non-nil slice", sql, got)
			}
		}
	}
}

func TestClassifySyntaxError(t *testing.T) {
	tests := []struct {
		sql     string
		message string
	}{
		{"SELEC 1", `syntax error at or near "SELEC"`},
		{"SELECT FROM WHERE", `syntax error at or near "WHERE"`},
		{"SELECT 'unterminated", "unterminated quoted string"},
		{"SELECT 1; SELEC 2", `syntax error at or near "SELEC"`},
		{"SELECT 1::float(0)", "precision for type float must be at least 1 bit"},
		{"SELECT 1::float(54)", "precision for type float must be less than 54 bits"},
		{"ALTER INDEX i ALTER COLUMN 0 SET STATISTICS 100", "column number must be in range"},
		{`SELECT U&'\zzzz'`, "invalid Unicode escape"},
		{`SELECT * FROM U&"x" UESCAPE 'ab'`, "invalid Unicode escape character"},
		{"SELECT 1\x00; DROP TABLE t", "NUL byte"},
		{"SELECT '\xff'", "invalid byte sequence for encoding UTF8"},
		{"SELECT 1abc", "trailing junk"},
	}
	for _, tt := range tests {
		for _, c := range []*Classifier{NewClassifier(0), NewClassifier(4)} {
			got, err := c.Classify(tt.sql)
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("Classify(%q) = %v, %v; want an error wrapping ErrSyntax", tt.sql, got, err)
				continue
			}
			if got != nil {
				t.Errorf("Classify(%q) returned statements with an error", tt.sql)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Position <= 0 {
				t.Errorf("Classify(%q) error %v: want a *SyntaxError with a position", tt.sql, err)
			}
			if !strings.Contains(err.Error(), tt.message) || !strings.Contains(err.Error(), "position") {
				t.Errorf("Classify(%q) error %q: want it to contain %q and the position", tt.sql, err, tt.message)
			}
		}
	}
}

func TestSyntaxErrorPosition(t *testing.T) {
	_, err := NewClassifier(0).Classify("SELECT 'é' FROM WHERE")
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *SyntaxError", err)
	}
	// PostgreSQL counts characters from 1: WHERE starts at the 17th.
	if se.Position != 17 {
		t.Errorf("Position = %d, want 17", se.Position)
	}
}

func TestNormalizedCacheHit(t *testing.T) {
	c := NewClassifier(16)
	first := classifyOne(t, c, "SELECT * FROM t WHERE id = 1 AND name = 'a' AND f > 1.5")
	if s := c.Stats(); s != (Stats{Parses: 1}) {
		t.Fatalf("after first: %+v", s)
	}
	second := classifyOne(t, c, "SELECT * FROM t WHERE id = 42 AND name = E'bob''s' AND f > 2e10")
	if s := c.Stats(); s != (Stats{NormalizedHits: 1, Parses: 1}) {
		t.Fatalf("after a literal-only difference: %+v, want one normalized hit and still one parse", s)
	}
	if second.Text != "SELECT * FROM t WHERE id = 42 AND name = E'bob''s' AND f > 2e10" {
		t.Errorf("Text = %q, want the second input's own text", second.Text)
	}
	first.Text, second.Text = "", ""
	if !reflect.DeepEqual(first, second) {
		t.Errorf("facts differ: %+v vs %+v", first, second)
	}
	classifyOne(t, c, "SELECT * FROM t WHERE id = 42 AND name = E'bob''s' AND f > 2e10")
	if s := c.Stats(); s != (Stats{ExactHits: 1, NormalizedHits: 1, Parses: 1}) {
		t.Fatalf("after a repeat: %+v, want one exact hit", s)
	}
	// White space and comments are not part of the key either.
	third := classifyOne(t, c, "/* trace=abc */ SELECT  *\nFROM t WHERE id = 7 AND name = $$x$$ AND f > 0.1 -- end")
	if s := c.Stats(); s.NormalizedHits != 2 || s.Parses != 1 {
		t.Fatalf("after a comment and white space difference: %+v", s)
	}
	if third.Text != "/* trace=abc */ SELECT  *\nFROM t WHERE id = 7 AND name = $$x$$ AND f > 0.1 -- end" {
		t.Errorf("Text = %q", third.Text)
	}
}

func TestNormalizedCacheMultiStatementText(t *testing.T) {
	c := NewClassifier(16)
	if _, err := c.Classify("SELECT 1; DELETE FROM t WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	got, err := c.Classify("  SELECT 5 ;\n\n DELETE FROM t WHERE id = 9  ")
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.NormalizedHits != 1 || s.Parses != 1 {
		t.Fatalf("stats %+v: want a normalized hit", s)
	}
	want := normalizeWant([]Statement{
		{Command: "SELECT", Kind: KindRead, Text: "SELECT 5"},
		{Command: "DELETE", Kind: KindWrite, Tables: []string{"t"}, HasWhere: true, Text: "DELETE FROM t WHERE id = 9"},
	})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// TestNormalizedCacheNotConfused checks that inputs differing in anything but
// a literal's value get their own facts, and that the few literals whose
// value matters never share a cache entry.
func TestNormalizedCacheNotConfused(t *testing.T) {
	pairs := []struct{ a, b string }{
		// identifiers and keywords
		{"SELECT * FROM customers WHERE id = 1", "SELECT * FROM orders WHERE id = 1"},
		{"SELECT * FROM t WHERE id = 1", "DELETE FROM t WHERE id = 1"},
		{"SELECT * FROM Customers", `SELECT * FROM "Customers"`},
		{"SELECT * FROM public.t", "SELECT * FROM private.t"},
		{"SELECT f(1)", "SELECT g(1)"},
		{"SELECT 1 FROM t", "SELECT 1 INTO t"},
		{"EXPLAIN DELETE FROM t", "EXPLAIN ANALYZE DELETE FROM t"},
		{"COPY t TO STDOUT", "COPY t TO '/tmp/x'"},
		{"COPY t FROM STDIN", "COPY t FROM PROGRAM 'x'"},
		{"UPDATE t SET a = 1", "UPDATE t SET a = 1 WHERE true"},
		{"EXPLAIN ANALYZE DELETE FROM t WHERE a = 1", "EXPLAIN ANALYZE UPDATE t SET a = 1 WHERE a = 1"},
		{"WITH d AS (DELETE FROM t WHERE a = 1) DELETE FROM u WHERE a = 1", "WITH d AS (DELETE FROM t) DELETE FROM u WHERE a = 1"},
		{"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", "MERGE INTO t USING s ON true WHEN MATCHED THEN UPDATE SET a = 1"},
		{"MERGE INTO t USING s ON true WHEN MATCHED AND a = 1 THEN DELETE", "MERGE INTO t USING s ON a = 1 WHEN MATCHED THEN DELETE"},
		{"WITH c AS (SELECT 1) SELECT * FROM c", "WITH d AS (SELECT 1) SELECT * FROM c"},
		{"SELECT $1", "SELECT $2"},
		{"SELECT set_config('app.user_id', '1', false)", "SELECT set_config('role', '1', false)"},
		{"SELECT set_config('app.user_id', '1', false)", "SELECT set_config(E'role', '1', false)"},
		{"CREATE FUNCTION f() RETURNS int AS 'x' LANGUAGE 'sql'", "CREATE FUNCTION f() RETURNS int AS 'x' LANGUAGE 'c'"},
		{"SELECT 1", "SELECT -1"},
		// literals whose value matters
		{`SELECT * FROM U&"d!0061t" UESCAPE '#'`, `SELECT * FROM U&"d!0061t" UESCAPE '!'`},
		{"COPY t TO ''", "COPY t TO STDOUT"},
		{"EXPLAIN (ANALYZE 'off') DELETE FROM t", "EXPLAIN (ANALYZE 'on') DELETE FROM t"},
		{"EXPLAIN (ANALYZE 0) DELETE FROM t", "EXPLAIN (ANALYZE 1) DELETE FROM t"},
		{"SELECT 1::float(1)", "SELECT 1::float(0)"},
		{"SELECT 1::float(25)", "SELECT 1::float(54)"},
		{"ALTER INDEX i ALTER COLUMN 1 SET STATISTICS 100", "ALTER INDEX i ALTER COLUMN 0 SET STATISTICS 100"},
		{"ALTER INDEX i ALTER 1 SET STATISTICS 100", "ALTER INDEX i ALTER 0 SET STATISTICS 100"},
		{`SELECT U&'\0041'`, `SELECT U&'\zzzz'`},
		{`SELECT U&'!0041' UESCAPE '!'`, `SELECT U&'!0041' UESCAPE '+'`},
	}
	for _, p := range pairs {
		for _, order := range [][2]string{{p.a, p.b}, {p.b, p.a}} {
			c := NewClassifier(16)
			c.Classify(order[0])
			got, gotErr := c.Classify(order[1])
			want, wantErr := NewClassifier(0).Classify(order[1])
			if !sameResult(got, gotErr, want, wantErr) {
				t.Errorf("after %q, Classify(%q) = %+v, %v; a fresh parse gives %+v, %v",
					order[0], order[1], got, gotErr, want, wantErr)
			}
		}
	}

	// The pairs that differ only in a literal the grammar or the facts
	// depend on must not have shared an entry.
	c := NewClassifier(16)
	c.Classify(`SELECT * FROM U&"d!0061t" UESCAPE '#'`)
	st := classifyOne(t, c, `SELECT * FROM U&"d!0061t" UESCAPE '!'`)
	if !reflect.DeepEqual(st.Tables, []string{"dat"}) {
		t.Errorf("UESCAPE: Tables = %q, want [dat]", st.Tables)
	}
	c = NewClassifier(16)
	c.Classify("SELECT set_config('app.user_id', '1', false)")
	if st := classifyOne(t, c, "SELECT set_config('role', 'admin', false)"); st.Kind != KindDCL {
		t.Errorf("set_config('role', ...) after set_config('app.user_id', ...): Kind = %s, want dcl", st.Kind)
	}
	if s := c.Stats(); s.NormalizedHits != 0 {
		t.Errorf("set_config with a constant setting name was served from the normalized cache: %+v", s)
	}
	c = NewClassifier(16)
	c.Classify("EXPLAIN (ANALYZE 'off') DELETE FROM t")
	if st := classifyOne(t, c, "EXPLAIN (ANALYZE 'on') DELETE FROM t"); st.Kind != KindWrite {
		t.Errorf("EXPLAIN (ANALYZE 'on'): Kind = %s, want write", st.Kind)
	}
	if s := c.Stats(); s.NormalizedHits != 0 {
		t.Errorf("EXPLAIN with an ANALYZE value was served from the normalized cache: %+v", s)
	}
}

func sameResult(a []Statement, aErr error, b []Statement, bErr error) bool {
	if (aErr == nil) != (bErr == nil) {
		return false
	}
	if aErr != nil {
		return aErr.Error() == bErr.Error() && errors.Is(aErr, ErrSyntax) == errors.Is(bErr, ErrSyntax)
	}
	return reflect.DeepEqual(a, b)
}

func TestCacheResultsAreCopies(t *testing.T) {
	c := NewClassifier(16)
	sql := "SELECT f(1) FROM t"
	st := classifyOne(t, c, sql)
	st.Tables[0] = "tampered"
	st.Functions[0] = "tampered"
	again := classifyOne(t, c, sql)
	if again.Tables[0] != "t" || again.Functions[0] != "f" {
		t.Errorf("a caller's change reached the cache: %+v", again)
	}
	// The same through the normalized path.
	st = classifyOne(t, c, "SELECT f(2) FROM t")
	st.Tables[0] = "tampered"
	if again := classifyOne(t, c, "SELECT f(3) FROM t"); again.Tables[0] != "t" {
		t.Errorf("a caller's change reached the normalized cache: %+v", again)
	}
}

func TestCacheDisabled(t *testing.T) {
	c := NewClassifier(0)
	for i := 0; i < 3; i++ {
		classifyOne(t, c, "SELECT 1")
	}
	if s := c.Stats(); s != (Stats{Parses: 3}) {
		t.Errorf("stats %+v, want three parses and no hits", s)
	}
}

func TestCacheEviction(t *testing.T) {
	c := NewClassifier(2)
	for _, sql := range []string{"SELECT * FROM a", "SELECT * FROM b", "SELECT * FROM c", "SELECT * FROM a"} {
		classifyOne(t, c, sql)
	}
	if s := c.Stats(); s != (Stats{Parses: 4}) {
		t.Errorf("stats %+v: the first entry should have been evicted", s)
	}
	if n := c.exact.len(); n != 2 {
		t.Errorf("exact cache holds %d entries, want 2", n)
	}
	if n := c.normalized.len(); n != 2 {
		t.Errorf("normalized cache holds %d entries, want 2", n)
	}
	if n := c.fast.len(); n != 2 {
		t.Errorf("fast cache holds %d entries, want 2", n)
	}
}

func TestLargeInputNotCached(t *testing.T) {
	c := NewClassifier(16)
	sql := "SELECT '" + strings.Repeat("x", maxCachedInput) + "'"
	for i := 0; i < 2; i++ {
		classifyOne(t, c, sql)
	}
	if s := c.Stats(); s != (Stats{Parses: 2}) {
		t.Errorf("stats %+v: inputs over the limit must not be cached", s)
	}
}

func TestClassifyConcurrent(t *testing.T) {
	c := NewClassifier(8)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				sql := fmt.Sprintf("SELECT * FROM t%d WHERE id = %d", i%12, i)
				st, err := c.Classify(sql)
				if err != nil || len(st) != 1 || st[0].Tables[0] != fmt.Sprintf("t%d", i%12) || st[0].Text != sql {
					t.Errorf("Classify(%q) = %+v, %v", sql, st, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestEveryStatementTypeHasACommand makes sure that no statement node type
// of pg_query falls through to OTHER by omission.
func TestEveryStatementTypeHasACommand(t *testing.T) {
	fields := (&pg_query.Node{}).ProtoReflect().Descriptor().Oneofs().Get(0).Fields()
	seen := 0
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Kind() != protoreflect.MessageKind {
			continue
		}
		name := string(fd.Message().Name())
		if !strings.HasSuffix(name, "Stmt") || name == "RawStmt" {
			continue
		}
		seen++
		msg := (&pg_query.Node{}).ProtoReflect().NewField(fd).Message().Interface()
		command, kind, ok := commandOf(msg, copyUnknown)
		if !ok || command == "" {
			t.Errorf("%s has no command", name)
		}
		if _, known := kindRank[kind]; !known {
			t.Errorf("%s has kind %q", name, kind)
		}
		// TransactionStmt's zero value has an undefined kind of
		// transaction statement, which the parser never produces.
		if command == CommandOther && name != "PLAssignStmt" && name != "SetOperationStmt" && name != "TransactionStmt" {
			t.Errorf("%s is OTHER", name)
		}
	}
	if seen < 100 {
		t.Errorf("saw only %d statement types", seen)
	}
}

// TestStandardConformingStringsMatters documents why the handler must keep
// standard_conforming_strings on. To this package, as to a server with the
// setting on, the input is one SELECT of one string literal. A server with
// it off reads \' as an escaped quote, ends the literal at the next quote
// and runs the DROP TABLE.
func TestStandardConformingStringsMatters(t *testing.T) {
	sql := `SELECT 'a\'' ; DROP TABLE t; --'`
	st := classifyOne(t, NewClassifier(0), sql)
	if st.Command != "SELECT" || st.Kind != KindRead || st.Text != sql {
		t.Errorf("Classify(%q) = %+v, want the whole input as one SELECT", sql, st)
	}
}

// TestClientEncodingMatters documents why the handler must keep
// client_encoding UTF8. The input is valid UTF-8 and, read as UTF-8, one
// SELECT of one string literal (ā, then an escaped quote). A server with
// client_encoding SJIS reads 0x81 0x5c as one character, so the backslash
// escapes nothing, the literal ends early and the DROP TABLE runs.
func TestClientEncodingMatters(t *testing.T) {
	sql := "SELECT E'\xc4\x81\\' ; DROP TABLE t; --'"
	st := classifyOne(t, NewClassifier(0), sql)
	if st.Command != "SELECT" || st.Kind != KindRead || st.Text != sql {
		t.Errorf("Classify(%q) = %+v, want the whole input as one SELECT", sql, st)
	}
}
