package postgres

import (
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/postgres/sqlfacts"
)

// SQLFacts are the policy facts of one classified statement; database and
// user are what the client asked for at start-up. The handler and
// `interlock check` build requests with this one mapping, so a policy test
// decides exactly as the gateway would.
func SQLFacts(st sqlfacts.Statement, database, user string) policy.SQL {
	return policy.SQL{
		Command:   st.Command,
		Commands:  st.Commands,
		Kind:      st.Kind,
		Tables:    st.Tables,
		Functions: st.Functions,
		HasWhere:  st.HasWhere,
		Text:      st.Text,
		Database:  database,
		User:      user,
	}
}
