package policy

import "time"

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
	// SSH is set for SSH requests and channels.
	SSH *SSH
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
// sql.commands, sql.tables, sql.functions, sql.has_where, sql.text,
// sql.database, sql.user.
type SQL struct {
	Command string // SELECT, INSERT, UPDATE, DELETE, MERGE, CREATE, ALTER, DROP, TRUNCATE, GRANT, REVOKE, COPY, DO, CALL, SET, BEGIN, ...
	Kind    string // read, write, ddl, dcl, tcl, procedural, session, other
	// Commands are the commands of every statement that runs as part of
	// this one, Command first: EXPLAIN ANALYZE DELETE ... is EXPLAIN,
	// DELETE. A handler that leaves it empty gives CEL [Command] (or []
	// when Command is empty too), so a rule on sql.commands never sees
	// less than one on sql.command.
	Commands  []string
	Tables    []string // as written, lower-cased unless quoted, schema-qualified when written so (never catalog-qualified)
	Functions []string
	HasWhere  bool
	Text      string
	Database  string // the database the client asked for
	User      string // the user name the client asked for
}

// SSH are the facts of one SSH request, channel or SFTP operation. CEL:
// ssh.request, ssh.user, ssh.command, ssh.argv, ssh.programs,
// ssh.program_paths, ssh.assignments, ssh.compound, ssh.subsystem, ssh.forward.host, ssh.forward.port,
// ssh.env.name, ssh.env.value, ssh.file.op, ssh.file.path,
// ssh.file.target, ssh.file.writes.
type SSH struct {
	// Request is exec, shell, subsystem, direct-tcpip (ssh -L),
	// forwarded-tcpip (ssh -R), agent-forwarding, x11, env, or sftp (one
	// file operation inside an sftp subsystem).
	Request string
	User    string // the login name the client asked for
	// Command is an exec request's command as sent; Argv its shell words
	// (see proxy/ssh/sshfacts); Programs the base names of the programs of
	// every simple command in it ("cd /tmp && rm -rf x": cd, rm);
	// ProgramPaths the same programs as written (argv[0]: "rm",
	// "/bin/rm", "./rm"), one for each of Programs; Assignments the
	// NAME=value words that set a program's environment (PATH=/x ls, env
	// LD_PRELOAD=/x.so ls); Compound is set when it is more than one
	// simple command or uses expansions, substitutions or redirections,
	// assignments, or programs that run other code (see proxy/ssh's
	// ExecFacts).
	Command      string
	Argv         []string
	Programs     []string
	ProgramPaths []string
	Assignments  []string
	Compound     bool
	Subsystem    string // subsystem requests: e.g. sftp
	// Forward: the address a direct-tcpip channel asks to reach, or a
	// tcpip-forward request asks the server to listen on.
	ForwardHost string
	ForwardPort int64
	// Env: an env request's variable.
	EnvName, EnvValue string
	// File: an SFTP operation (open, read, write, remove, rename, mkdir,
	// rmdir, opendir, stat, setstat, symlink, ...), its path, the second
	// path of rename, symlink and link, and whether it changes the file
	// system.
	FileOp     string
	FilePath   string
	FileTarget string
	FileWrites bool
}

// Action is what a decision says to do.
type Action string

// Actions.
const (
	Allow  Action = "allow"
	Deny   Action = "deny"
	Review Action = "review" // hold for a human's decision (see policy/review); a handler without a reviewer denies
)

// Decision is the outcome for one Request.
type Decision struct {
	Action Action
	// Rule is the name of the rule that decided; "" when policy.default did.
	Rule string
	// Message is what the client is told on a denial.
	Message string
	// RecordInput: the rule asks for a terminal session's input to be
	// recorded too (off by default: it carries passwords typed at prompts).
	RecordInput bool
	// Review is set when Action is Review: how the held command is
	// decided.
	Review *ReviewSettings
}

// ReviewSettings are a review rule's compiled settings.
type ReviewSettings struct {
	Approvers []string
	Timeout   time.Duration
	Grant     time.Duration // 0: none
	Webhook   string        // "": no notification
	// Definition is the SHA-256 (hex) of the whole rule as configured
	// (name, targets, workloads, condition, review settings): a grant
	// window an approval opened covers only commands the same definition
	// holds, so that a reload that changes the rule ends it.
	Definition string
}
