package policy

import (
	"errors"
	"log/slog"
)

// Config is the policy section of the configuration file. It is plain data:
// Compile validates it and turns it into a Policy.
type Config struct {
	// Default decides a request no rule matches: "allow" or "deny"; ""
	// means allow.
	Default string       `yaml:"default"`
	Rules   []RuleConfig `yaml:"rules"`
	Masks   []MaskConfig `yaml:"masks"`
	Tests   []TestConfig `yaml:"tests"`
}

// RuleConfig is one ordered rule; the first rule that matches a request
// decides it.
type RuleConfig struct {
	// Name is required and unique among the rules; decisions, metrics and
	// recordings name the rule that decided.
	Name string `yaml:"name"`
	// Targets limits the rule to these targets (by name); empty means all.
	Targets []string `yaml:"targets"`
	// Workloads limits the rule to these workloads (by name); empty means all.
	Workloads []string `yaml:"workloads"`
	// When is a CEL expression of type bool over the request's facts
	// (see the package documentation); empty means always.
	When string `yaml:"when"`
	// Action is allow, deny or review.
	Action string `yaml:"action"`
	// Message is what the client is told when the rule denies (or holds for
	// review); the default names the rule.
	Message string `yaml:"message"`
	// RecordInput, on a rule that allows a terminal session (an SSH shell
	// or pty), records what the client types too. Off by default: input
	// carries passwords typed at prompts.
	RecordInput bool `yaml:"record_input"`
	// Review configures a rule whose action is review: who may decide and
	// for how long the command is held. Required with action review, not
	// allowed with the others.
	Review *ReviewConfig `yaml:"review"`
}

// ReviewConfig is how a held command is decided.
type ReviewConfig struct {
	// Approvers are the groups whose members may approve or reject;
	// required. The requester can never decide its own request.
	Approvers []string `yaml:"approvers"`
	// Timeout is how long the command is held; no decision by then
	// denies it. A Go duration ("5m"); default 5m, at most 24h.
	Timeout string `yaml:"timeout"`
	// Grant, when set, makes an approval also cover the same workload's
	// commands on the same target under the same rule for this long
	// ("15m"); at most 24h.
	Grant string `yaml:"grant"`
	// Notify says whom to tell that a request waits.
	Notify ReviewNotify `yaml:"notify"`
}

// ReviewNotify is where review requests are announced.
type ReviewNotify struct {
	// Webhook receives a JSON POST with a text field (chat incoming
	// webhooks render it) and the request's details; http or https.
	Webhook string `yaml:"webhook"`
}

// MaskConfig is one mask rule. Every mask whose targets and workloads match
// a request applies to its results.
type MaskConfig struct {
	// Name is required and unique among the masks; hits are counted and
	// recorded by it.
	Name      string   `yaml:"name"`
	Targets   []string `yaml:"targets"`   // empty means all
	Workloads []string `yaml:"workloads"` // empty means all
	// Columns are result columns replaced whole: "email" (any table),
	// "customers.email" (that table, any schema) or "public.customers.email".
	// Matching is case-insensitive.
	Columns []string `yaml:"columns"`
	// Detectors are run over every text value: email, credit_card, iban,
	// aws_key, jwt, private_key.
	Detectors []string `yaml:"detectors"`
}

// TestConfig is one policy test: a request and the decision the policy must
// reach for it. `interlock check` runs them.
type TestConfig struct {
	Name    string      `yaml:"name"`
	Request TestRequest `yaml:"request"`
	// Expect is allow, deny or review.
	Expect string `yaml:"expect"`
	// Rule, if set, is the rule expected to decide.
	Rule string `yaml:"rule"`
}

// TestRequest describes a test's request by names; the facts function given
// to RunTests turns it into Requests (one per SQL statement).
type TestRequest struct {
	Target   string   `yaml:"target"`
	Workload string   `yaml:"workload"`
	Subject  string   `yaml:"subject"`
	Groups   []string `yaml:"groups"`
	SQL      string   `yaml:"sql"`
	Database string   `yaml:"database"`
	User     string   `yaml:"user"`
	// Issuer is identity.issuer: an OIDC workload's is its issuer's URL
	// (the default for a workload with an OIDC identity), a static
	// identity has none.
	Issuer string `yaml:"issuer"`
	// SSH describes an SSH request; the facts function fills argv and
	// programs from Command.
	SSH *TestSSH `yaml:"ssh"`
}

// TestSSH is an SSH request in a policy test.
type TestSSH struct {
	Request     string `yaml:"request"` // exec (default when command is set), shell, subsystem, direct-tcpip, ...
	User        string `yaml:"user"`
	Command     string `yaml:"command"`
	Subsystem   string `yaml:"subsystem"`
	ForwardHost string `yaml:"forward_host"`
	ForwardPort int64  `yaml:"forward_port"`
	EnvName     string `yaml:"env_name"`
	EnvValue    string `yaml:"env_value"`
	FileOp      string `yaml:"file_op"`
	FilePath    string `yaml:"file_path"`
	FileTarget  string `yaml:"file_target"`
	FileWrites  bool   `yaml:"file_writes"`
}

// Env is what a policy is compiled against: the names rules may refer to.
type Env struct {
	// Targets maps each configured target's name to its protocol.
	Targets map[string]string
	// Workloads are the configured workloads' names.
	Workloads []string
}

// Options are the optional collaborators of a compiled Policy.
type Options struct {
	// Logger receives rule evaluation failures (which fail closed). Nil
	// discards them.
	Logger *slog.Logger
}

// ErrInvalidPolicy is matched (errors.Is) by every problem Compile reports.
var ErrInvalidPolicy = errors.New("invalid policy")

// ConfigError is one problem Compile found, located by its configuration
// path, e.g. "policy.rules[0] (no-ddl): when: undeclared reference to 'sqll'".
type ConfigError struct {
	// Path locates the item: "policy.rules[0] (no-ddl)", "policy.default".
	Path string
	// Field is the item's field at fault ("when", "action", ...); "" when the
	// problem is the item as a whole.
	Field string
	// Err is the reason.
	Err error
}

func (e *ConfigError) Error() string {
	if e.Field == "" {
		return e.Path + ": " + e.Err.Error()
	}
	return e.Path + ": " + e.Field + ": " + e.Err.Error()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Is makes every ConfigError match ErrInvalidPolicy.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidPolicy }
