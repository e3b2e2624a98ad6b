package postgres_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestLexingAgreement: the gateway reads SQL as the server does. The
// statement below is one harmless SELECT with standard_conforming_strings
// on, and a SELECT followed by DROP TABLE with it off; a client must not be
// able to switch it off (or pick an encoding that hides quotes) to smuggle
// the DROP past the policy.
func TestLexingAgreement(t *testing.T) {
	e := newEnv(t, envOptions{policy: `
default: allow
rules:
  - name: no-ddl
    when: sql.kind == "ddl"
    action: deny
`})
	const smuggle = `SELECT 'a\'' ; DROP TABLE customers; --'`

	for _, sql := range []string{
		"SET standard_conforming_strings = off",
		"SET standard_conforming_strings TO false",
		"SET LOCAL standard_conforming_strings = 'off'",
		"SELECT set_config('standard_conforming_strings', 'off', false)",
		"SELECT pg_catalog.set_config('client_encoding', 'SJIS', false)",
		"SET client_encoding TO 'SJIS'",
		"SET NAMES 'BIG5'",
	} {
		out, err := e.psql(t, sql)
		if err == nil || !strings.Contains(out, "interlock") {
			t.Errorf("%s: allowed (%v)\n%s", sql, err, out)
		}
	}
	for _, sql := range []string{"SET client_encoding TO 'UTF8'", "RESET standard_conforming_strings", "SET statement_timeout = 1000",
		"SELECT set_config('standard_conforming_strings', 'on', false)"} {
		if out, err := e.psql(t, sql); err != nil {
			t.Errorf("%s: %v\n%s", sql, err, out)
		}
	}
	// set_config() of any other setting runs, as an application that keeps
	// its user in a setting for row-level security uses it.
	out, err := e.psql(t, "SELECT set_config('app.user_id', '42', false); SELECT 'now ' || current_setting('app.user_id')")
	if err != nil || !strings.Contains(out, "now 42") {
		t.Errorf("set_config of app.user_id: %v\n%s", err, out)
	}

	// A client asking for the dangerous settings at start-up gets the
	// pinned ones upstream.
	cfg, err := pgx.ParseConfig(e.connString(""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["standard_conforming_strings"] = "off"
	c, err := pgx.ConnectConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctxT(t))
	var scs string
	if err := c.QueryRow(ctxT(t), "SHOW standard_conforming_strings").Scan(&scs); err != nil || scs != "on" {
		t.Errorf("standard_conforming_strings upstream = %q (%v), want on", scs, err)
	}
	// The smuggling statement, read as the server reads it, is one SELECT.
	if _, err := c.Exec(ctxT(t), smuggle, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Logf("smuggle attempt: %v", err)
	}
	if got := e.pg.Query(t, "SELECT count(*) FROM public.customers"); got != "2" {
		t.Fatalf("customers after the smuggling attempt: %q rows — the DROP ran", got)
	}
}
