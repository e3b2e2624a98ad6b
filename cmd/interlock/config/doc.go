// Package config owns the gateway's YAML configuration: its schema, loading it
// from a file, filling defaults and validating it before anything starts.
//
// A configuration names the gateway's listeners and folders, the targets whose
// connections are redirected into the gateway, and the workloads (cgroup
// subtrees or systemd units) whose connections are redirected, with their
// static identity and their egress default. Everything the rest of the binary
// needs in parsed form (addresses, prefixes, ports, allow rules, IDs) is filled
// in by [Config.Validate], so a bad configuration fails at load and never at
// the first connection.
//
// # Error contract
//
// Every problem is reported as a [*FieldError] that names the file and the
// field, with the line and column when the YAML source is known:
//
//	demo.yaml:12:14: targets[0].address: "127.0.0.2" has no port
//	demo.yaml:5:3: unknown field "lisen" in gateway; did you mean "listen"?
//	demo.yaml: targets: at least one target is required
//
// [Parse] and [Config.Validate] report every validation problem at once,
// joined with [errors.Join]; callers walk them with errors.As or by unwrapping
// the joined error. Decoding stops at the first YAML problem (syntax, an
// unknown field, a wrong type), because nothing after it can be trusted.
// Reading the file is the only error that is not a [*FieldError].
package config
