package postgres

import (
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// GuardDecision is the gateway's own decision on a statement, taken
// before the policy and one no rule can lift (rule GuardRule): denied is
// false when the gateway leaves the statement to the policy. It gives
// `interlock check` the handler's guard, so a policy test decides as the
// gateway would.
func GuardDecision(st sqlfacts.Statement) (d policy.Decision, denied bool) {
	return lexingGuard(st)
}

// StartupDatabase is the database a session is in (sql.database) when the
// client asked for database as user at start-up: PostgreSQL's default,
// the user's name, when it named none.
func StartupDatabase(database, user string) string {
	if database == "" {
		return user
	}
	return database
}
