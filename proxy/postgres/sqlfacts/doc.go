// Package sqlfacts owns what the PostgreSQL handler tells policy about a SQL
// string: for every statement in it, its command, its kind, the relations it
// references, the functions it calls, whether it has a WHERE, and its own
// text. Policy decides on these facts, so a wrong fact is a policy bypass;
// where the package cannot be sure, it errs towards the stricter answer.
//
// Statements are parsed with PostgreSQL's own parser (libpg_query, through
// pg_query_go), never with a hand-written one, so the gateway reads a
// statement the way the server will.
//
// # Kinds
//
//   - read: SELECT (FOR UPDATE/SHARE included), VALUES, TABLE, SHOW, FETCH,
//     MOVE, EXPLAIN without ANALYZE, COPY ... TO STDOUT.
//   - write: INSERT, UPDATE, DELETE, MERGE, COPY ... FROM STDIN, and any
//     statement of a lower kind that contains one of these (a SELECT with a
//     data-modifying CTE, COPY (DELETE ... RETURNING ...) TO STDOUT).
//   - ddl: CREATE, ALTER, DROP, TRUNCATE (destructive and not row-level),
//     COMMENT, REINDEX, CLUSTER, REFRESH MATERIALIZED VIEW, VACUUM, ANALYZE,
//     SELECT ... INTO (it creates a table), IMPORT FOREIGN SCHEMA.
//   - dcl: GRANT, REVOKE, CREATE/ALTER/DROP ROLE|USER|GROUP (ALTER ...
//     RENAME included, as for POLICY below), ALTER DEFAULT
//     PRIVILEGES, SECURITY LABEL, and what else decides who may see or
//     change data: REASSIGN OWNED, DROP OWNED, ALTER ... OWNER TO,
//     CREATE/ALTER/DROP POLICY, ALTER TABLE ... ENABLE/DISABLE/FORCE/NO
//     FORCE ROW LEVEL SECURITY, and CREATE SCHEMA with a GRANT inside.
//     Changing who the statements run as is dcl too (the command stays
//     SET, RESET or SELECT): SET [LOCAL] ROLE, SET SESSION AUTHORIZATION,
//     SET role = ..., RESET ROLE, RESET SESSION AUTHORIZATION (setting
//     names compared without regard to case, as PostgreSQL does), ALTER
//     DATABASE ... SET role, a set_config() call (set_config or
//     pg_catalog.set_config) whose first argument is the constant 'role'
//     or 'session_authorization' or is not a string constant at all, and
//     UPDATE pg_settings, whose rule calls set_config() (and which lists
//     pg_catalog.set_config among its Functions). RESET ALL and DISCARD
//     ALL stay session.
//   - tcl: BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT,
//     SAVEPOINT, RELEASE, PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK
//     PREPARED, SET TRANSACTION, SET CONSTRAINTS.
//   - procedural: code that runs on the server or reaches outside the
//     database: DO, CALL, LOAD, COPY to or from a server file or a PROGRAM
//     (in either direction: a server file is the server's file system, not
//     the client's data), ALTER SYSTEM (it can set archive_command and
//     preload libraries), CREATE FUNCTION or PROCEDURE in LANGUAGE C (the
//     server loads the shared library when it creates the function), and
//     setting session_preload_libraries or local_preload_libraries (ALTER
//     DATABASE or ROLE ... SET: libraries loaded into later sessions).
//   - session: SET, RESET, DISCARD, LISTEN, UNLISTEN, NOTIFY, PREPARE,
//     EXECUTE, DEALLOCATE, DECLARE, CLOSE, LOCK.
//   - other: CHECKPOINT, and any statement type this package does not know
//     (Command OTHER).
//
// A statement's kind comes from its shape, not from the functions it calls:
// SELECT delete_everything() is a read, and policy sees delete_everything in
// Functions. A statement that contains another statement which runs now
// takes the higher kind of the two, in the order read < tcl < session <
// write < ddl < dcl < procedural < other. So EXPLAIN ANALYZE has the kind
// of the statement it runs (its ANALYZE option is read the way PostgreSQL
// reads it: ANALYZE, ANALYZE true/on/1 run it; false/off/0 do not; anything
// else is taken to run it), while plain EXPLAIN is a read whatever it
// explains.
//
// PREPARE is session, raised to the kind of its body: PREPARE p AS DELETE
// ... is a write. EXECUTE p is session, because the prepared body was
// classified, and decided, when it was prepared. DECLARE is session raised
// by its query the same way.
//
// # Commands
//
// Command is the statement's verb, upper-case: SELECT, VALUES, TABLE,
// INSERT, UPDATE, DELETE, MERGE, COPY, CREATE, ALTER, DROP, TRUNCATE,
// COMMENT, SECURITY LABEL, GRANT, REVOKE, REASSIGN, IMPORT, DO, CALL, LOAD,
// SET, RESET, SHOW, BEGIN (also START TRANSACTION), COMMIT (also END),
// ROLLBACK (also ABORT and ROLLBACK TO SAVEPOINT), SAVEPOINT, RELEASE,
// PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED, PREPARE, EXECUTE,
// DEALLOCATE, EXPLAIN, VACUUM, ANALYZE, LISTEN, NOTIFY, UNLISTEN, LOCK,
// DISCARD, DECLARE, FETCH, MOVE, CLOSE, REFRESH, REINDEX, CLUSTER,
// CHECKPOINT, RETURN, or OTHER. A set operation (UNION, ...) is named by its
// leftmost branch. A data-modifying CTE keeps the outer command (WITH d AS
// (DELETE ...) SELECT ... is a SELECT of kind write), and EXPLAIN ANALYZE
// DELETE is an EXPLAIN of kind write: rules about DELETE without WHERE
// should test Commands and HasWhere, not Command.
//
// Commands lists, without repeats, Command and then the command of every
// statement nested in the statement, in the order of the parse tree: a
// data-modifying CTE's at any depth, the statement EXPLAIN ANALYZE runs,
// COPY's query, DECLARE's, subqueries (SELECT), INSERT's source (SELECT or
// VALUES), and also the statements a statement stores to run later: a
// PREPARE's body, a rule's actions, a BEGIN ATOMIC function body. A
// statement under an EXPLAIN without ANALYZE is planned, not run, and is
// not listed. So "DELETE" in Commands finds EXPLAIN ANALYZE DELETE ...,
// PREPARE p AS DELETE ..., WITH d AS (DELETE ...) SELECT ... and COPY
// (DELETE ... RETURNING ...) TO STDOUT. MERGE lists its actions after it:
// UPDATE, DELETE and INSERT for WHEN ... THEN UPDATE, DELETE and INSERT
// (DO NOTHING lists nothing). INSERT ... ON CONFLICT DO UPDATE lists no
// UPDATE: it updates only the rows its own new rows conflict with.
//
// # WHERE
//
// HasWhere is about every UPDATE and DELETE that runs as part of the
// statement, as Commands lists them: its own, a data-modifying CTE's at any
// depth (in a subquery too), the statement EXPLAIN ANALYZE runs, a
// PREPARE's body, COPY's query, a MERGE's UPDATE and DELETE actions (and
// those a rule or function body stores). When there is at least one,
// HasWhere is true only if every one of them has a WHERE (WHERE CURRENT OF
// counts), so a WHERE on the outer statement cannot vouch for an unbounded
// DELETE in a CTE: WITH d AS (DELETE FROM customers) DELETE FROM t WHERE
// id = 1 has none. A MERGE action's WHERE is its own AND condition (WHEN
// MATCHED AND ... THEN DELETE); the ON condition does not count, since ON
// true matches every row. When there is none, HasWhere reports a WHERE at
// the top level of the statement (or of the SELECT that EXPLAIN or PREPARE
// holds). An UPDATE or DELETE under an EXPLAIN without ANALYZE is planned,
// not run, and does not count. HasWhere says a WHERE is written, not that
// it narrows anything: WHERE true counts.
//
// # Names
//
// Tables lists every relation a statement references: FROM items, joins,
// subqueries, CTE bodies, the targets of INSERT, UPDATE, DELETE, MERGE and
// SELECT INTO, COPY, TRUNCATE, LOCK, and the relations that DDL creates,
// alters, drops or comments on (indexes and sequences included, since they
// are relations too), with the new name of a relation renamed or moved to
// another schema (ALTER TABLE s.t RENAME TO u lists s.t and s.u), the
// table of a sequence's OWNED BY, and the relations ALTER EXTENSION adds
// or drops. A CTE name is not a relation, and is left out exactly
// where PostgreSQL would resolve to the CTE: an unqualified name in a FROM
// clause inside the CTE's scope (without RECURSIVE a CTE's own body and
// earlier siblings cannot see it). DML targets are always relations, even
// when a CTE has the same name. The names in FOR UPDATE OF refer to FROM
// items and are not listed again.
//
// Names are as written and as PostgreSQL reads them: qualified by the
// schema written, if any (public.customers and customers are different
// entries), unquoted identifiers lower-cased (and truncated to 63 bytes)
// and quoted ones kept: Customers → customers, "Customers" → Customers.
// A catalog (database) part is left out: PostgreSQL accepts only the
// current database there, so postgres.public.customers is
// public.customers and postgres.pg_catalog.set_config is
// pg_catalog.set_config. A name is therefore either name or schema.name.
// Parts are joined with dots, so a quoted name containing a dot reads like
// a qualified one. Functions are named the same way; calls written as SQL
// syntax (EXTRACT, SUBSTRING ... FROM, AT TIME ZONE, ...) appear as the
// pg_catalog functions the parser turns them into. Which schema an
// unqualified name resolves to depends on the session's search_path, which
// this package does not know: a rule about one relation or function should
// match both spellings (t == "customers" || t.endsWith(".customers")).
//
// Names inside string literals are not facts: DO and CREATE FUNCTION
// bodies, nextval('seq'), 'customers'::regclass, pg_read_file('...') are
// opaque here. Policy sees the functions involved and the procedural kind.
// That includes functions that run SQL given as text or dump whole
// relations, schemas or databases: query_to_xml('SELECT ssn FROM
// customers', ...) and the other query_, table_, cursor_, schema_ and
// database_to_xml[schema] functions, ts_stat('SELECT ...'), ts_rewrite(q,
// 'SELECT ...'), dblink and its kin. Such a statement is a read whose
// Tables do not name what it reads; a rule that guards tables must also
// deny these by their names in Functions.
//
// # Text
//
// Text is cut from the input at the parser's statement boundaries (which
// are at top-level semicolons, and not at the semicolons inside a BEGIN
// ATOMIC body), then trimmed of the characters PostgreSQL treats as white
// space. A comment between two statements belongs to the second one.
//
// # Cache
//
// A Classifier keeps three LRU caches of bounded entry count (inputs over 64
// KiB are not cached), looked up in this order.
//
// The exact cache maps an input string to its statements.
//
// The fast cache is for statements that differ only in their literals, such
// as pgbench's SELECT abalance FROM pgbench_accounts WHERE aid = 12345, and
// answers them from the input's bytes, without PostgreSQL's scanner. Its key
// is the input verbatim with every plain constant (an integer, digits.digits,
// a '...' string) replaced by a marker of the token type PostgreSQL gives
// it: ICONST for an integer that fits 32 bits, FCONST for a larger one or a
// decimal, SCONST for a string. So two inputs with the same key differ only
// inside such constants; white space and comments must match too. The lexer
// that builds the key refuses anything it does not plainly understand
// (dollar quotes, E'...', B'...', X'...', N'...' and U& forms, backslashes in strings,
// string continuation, exponents and other number forms, unterminated
// strings and comments), and such inputs take the normalized cache. An
// entry holds the statements' facts and where each statement starts and
// ends relative to the constants, so that Text is cut from the new input;
// a hit does not fill the exact cache, since the inputs that reach it are
// the ones whose literals vary. An entry is only stored once the constants
// the lexer found have been checked against PostgreSQL's scanner for that
// input (same spans, same token types); by induction over the constants,
// any input with the same key then has the same normalized key (see
// fastkey.go), so a fast hit gives exactly what a normalized hit would.
// Stats.FastRejected counts inputs where the check failed.
//
// The normalized cache maps a key built from PostgreSQL's own token stream
// (pg_query.Scan) to the statements' facts and the token indices of the
// semicolons around each statement: in the key every literal (SCONST,
// ICONST, FCONST, BCONST, XCONST) is a placeholder of its token type,
// comments and white space are left out, and every other token keeps its
// type and exact text. On a hit, facts are reused and Text is cut from the
// new input, and a fast cache entry is stored for the input if the fast
// cache's lexer takes it (so that an evicted fast entry comes back).
//
// This is sound because the grammar sees token types, not literal values,
// and the facts are computed from the tree's shape. The exceptions are
// handled one by one, in both literal-blind caches:
//   - USCONST (U&'...') keeps its text: the parser decodes its escapes and
//     rejects bad ones, so its value decides between a parse and an error
//     (the fast cache's lexer refuses it);
//   - the string after UESCAPE keeps its text: it is the escape character
//     that decodes a U&"..." identifier, so it changes table names;
//   - the integers in FLOAT(n) and ALTER [COLUMN] n keep their text: the
//     grammar range-checks them;
//   - COPY's target is read from the tokens (STDIN/STDOUT, PROGRAM, or a
//     string), because the tree cannot tell TO STDOUT from a COPY to an
//     empty file name;
//   - an EXPLAIN whose ANALYZE option has a value depends on that value, so
//     its input is never put in either literal-blind cache;
//   - so does a set_config() call whose setting name is a string constant
//     (set_config('role', ...) is dcl, set_config('app.user_id', ...) is
//     not), and a CREATE FUNCTION's LANGUAGE, which may be written as a
//     string ('c'): such input is cached by its exact text only.
//
// FuzzClassify checks the result of every cached path against a fresh
// parse, and FuzzFastKey checks the fast cache's lexer against PostgreSQL's
// scanner and its answers for inputs with mutated literals against a fresh
// parse.
//
// # What the caller must guarantee
//
// The parser reads the input as PostgreSQL does with its defaults. The
// session must match, or the server may read statements the gateway did
// not see:
//   - standard_conforming_strings must be on. With it off, the server reads
//     a backslash before a quote as an escape and this package does not, so
//     text that is one string literal here can end the literal early on the
//     server and carry a statement of its own (see
//     TestStandardConformingStringsMatters). The handler must refuse a
//     session where it is off (from the ParameterStatus messages, those
//     after start-up included) and must not let a client turn it off.
//   - client_encoding must be UTF8. In client encodings such as SJIS, GBK
//     or BIG5 a byte 0x5c (backslash) can be the second byte of a
//     character, which moves the end of an E'...' string. Valid UTF-8 does
//     not help: the UTF-8 for ā ends in 0x81, an SJIS lead byte that
//     swallows a backslash after it (see TestClientEncodingMatters).
//     Classify rejects input that is not valid UTF-8, as a UTF8 server
//     would.
//
// Both settings can be changed at start-up, by ALTER ROLE/DATABASE ... SET,
// and by SET or RESET in the session, and both are reported by the server
// in ParameterStatus messages whenever they change; that is where the
// handler can watch them.
//
// # Errors
//
// Classify returns an error wrapping ErrSyntax (a *SyntaxError, with the
// parser's message and 1-based character position) for input the parser
// rejects; for input with a NUL byte or invalid UTF-8, which the server
// rejects too and the parser, reading a C string, would silently cut short;
// and for a statement nested too deeply to parse safely. libpg_query writes
// its tree out recursively without a stack check, so a left-deep chain of a
// few tens of thousands of levels (SELECT 1+1+1..., a few hundred KiB)
// would overflow the thread's stack and kill the gateway. Before parsing,
// the scanner's tokens give an upper bound on the tree's depth, and a
// statement whose bound is over 2000 (chained operators, joins or set
// operations along one path) is refused. PostgreSQL, at its default
// max_stack_depth, refuses operator chains of a few thousand as well (stack
// depth limit exceeded). Large flat statements (long VALUES, IN, AND and OR
// lists) are not deep and pass.
//
// Any other error means the package could not classify the input (for
// example, the parser's tree was nested beyond what could be decoded); the
// handler must treat the input as unclassified and refuse it. Classify never
// returns statements together with an error, and returns an empty slice for
// input without statements.
package sqlfacts
