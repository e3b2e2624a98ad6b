// Package policy owns "may it run, and what may come back": the policy's
// rules and their CEL conditions, decisions, masks and the value detectors,
// and the policy's own tests.
//
// It owns:
//   - the schema of the configuration's policy section (Config, RuleConfig,
//     MaskConfig, TestConfig) and its validation (Compile);
//   - deciding one command (Policy.Decide): ordered rules, the first whose
//     targets, workloads and condition match decides; when none does,
//     policy.default (allow unless set to deny) decides with Rule "";
//   - masks (Policy.Masker): whole columns by name and value detectors
//     (email, credit_card, iban, aws_key, jwt, private_key) run over text;
//   - the policy's tests (Policy.RunTests), which `interlock check` runs.
//
// policy knows nothing of protocols. A handler hands it a Request with the
// facts it has (request.go); the SQL classifier is passed to RunTests as a
// function, so this package never imports protocol code.
//
// # Conditions
//
// A rule's `when` is a CEL expression of type bool, compiled once by
// Compile. Its variables, each an object whose fields the checker knows (a
// misspelt field fails Compile, like an undeclared variable, a syntax error
// or a non-bool result):
//
//	sql       command, kind, text, database, user (string); commands,
//	          tables, functions (list of string); has_where (bool)
//	identity  subject, issuer (string); groups (list of string)
//	target    name, protocol, address (string)
//	workload  name (string)
//
// Every variable is always bound: a fact the handler did not give is its
// zero value ("", [], false), so `sql.kind == "ddl"` is simply false for an
// SSH command, and has(sql.kind) reports whether the fact is non-zero. The
// standard CEL library and the cel-go strings extension (lowerAscii,
// split, ...) are available; objects cannot be created in a condition.
//
// # Failing closed
//
// A condition that fails at run time (an index out of range, a value of
// the wrong type) denies the request in the rule's name, with the message
// "policy rule <name> could not be evaluated"; the error goes to
// Options.Logger. A request is never allowed because its rule broke. So
// does one whose rule costs more than its limit (a regular expression is
// charged by the size of its compiled program, and refused before it runs
// when that is over what its rule has left), or whose rules take longer
// than a second, checked at every comprehension step and after each rule:
// facts come from agents.
//
// # Masks
//
// Every mask whose targets and workloads match a request applies. A column
// entry replaces the whole value ("[masked]"): "email" covers that column
// of any table, "customers.email" only that table, "public.customers.email"
// only that schema's; when the result does not tell the table or schema, a
// qualified entry applies anyway, so that doubt masks rather than leaks.
// Detectors replace each match in a text value by "[masked:<detector>]";
// Scan repeats until nothing matches, returns its input itself (no copy,
// no allocation) when nothing did, and never modifies it.
//
// # Errors
//
// Compile reports every problem at once, joined with errors.Join. Each is a
// *ConfigError naming the item, its field and the reason, e.g.
//
//	policy.rules[0] (no-ddl): when: ERROR: <input>:1:1: undeclared reference to 'sqll'
//
// and matches ErrInvalidPolicy with errors.Is. Decide, Masker and Scan do
// not fail: their errors are decisions (deny). RunTests reports a test
// whose request cannot be built in TestResult.Err.
//
// # Metrics
//
// Register adds interlock_policy_decision_seconds, a histogram of Decide's
// duration labelled by protocol (the Request's Target.Protocol; the Env's
// protocols exist from the start). The protocol label is bounded by the
// handlers that exist, and tells a slow SQL rule from a slow SSH rule.
// Matches are counted by the handlers (interlock_masked_values_total) from
// the Hits that Scan returns. Decisions an SQLDecisions takes from memory
// are not evaluations and are not observed.
//
// # Decisions per session
//
// SQLDecisions decides one session's SQL statements and remembers each
// decision by the statement's facts other than its text, which is sound
// because a session's other facts are fixed and conditions are pure (a
// denial because a condition failed is not remembered: a deadline depends
// on more than the facts); it
// evaluates every statement when some rule's condition may read sql.text
// (the check is syntactic and errs towards evaluating).
package policy
