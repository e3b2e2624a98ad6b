package policy

// The facts a protocol handler hands the policy. policy/ knows nothing of
// protocols beyond these: a handler fills what it knows, the rest stays
// zero. Every namespace is always present in CEL (with zero values), so a
// rule about sql.* simply does not match an SSH request.

// Request is one command (or connection) to decide.
type Request struct {
	Target   Target
	Workload Workload
	Identity Identity
	// SQL is set for PostgreSQL statements.
	SQL *SQL
}

// Target is the configured target the command goes to. CEL: target.name,
// target.protocol, target.address.
type Target struct {
	Name     string
	Protocol string
	Address  string
}

// Workload is the caller's workload. CEL: workload.name.
type Workload struct {
	Name string
}

// Identity is who the caller is. CEL: identity.subject, identity.groups,
// identity.issuer.
type Identity struct {
	Subject string
	Groups  []string
	Issuer  string
}

// SQL are the facts of one SQL statement. CEL: sql.command, sql.kind,
// sql.tables, sql.functions, sql.has_where, sql.text, sql.database,
// sql.user.
type SQL struct {
	Command   string   // SELECT, INSERT, UPDATE, DELETE, MERGE, CREATE, ALTER, DROP, TRUNCATE, GRANT, REVOKE, COPY, DO, CALL, SET, BEGIN, ...
	Kind      string   // read, write, ddl, dcl, tcl, procedural, session, other
	Tables    []string // as written, lower-cased unless quoted, schema-qualified when written so
	Functions []string
	HasWhere  bool
	Text      string
	Database  string // the database the client asked for
	User      string // the user name the client asked for
}

// Action is what a decision says to do.
type Action string

// Actions.
const (
	Allow  Action = "allow"
	Deny   Action = "deny"
	Review Action = "review" // hold for a human (a later issue); until then treated as deny by handlers
)

// Decision is the outcome for one Request.
type Decision struct {
	Action Action
	// Rule is the name of the rule that decided; "" when policy.default did.
	Rule string
	// Message is what the client is told on a denial.
	Message string
}
