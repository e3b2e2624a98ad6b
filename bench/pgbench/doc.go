// Command pgbench measures the PostgreSQL gateway with PostgreSQL's own
// pgbench, against the direct path and PgBouncer in the same run:
//
//	sudo go run ./bench/pgbench -interlock bin/interlock [-duration 15s]
//
// It starts a real PostgreSQL (proxy/postgres/pgtest), loads pgbench data
// (pgbench -i) and an upstream role "app", then runs `interlock gateway
// --explicit` with a postgres target, a policy and a mask, and PgBouncer in
// transaction pooling, all on loopback. For each query protocol (simple,
// prepared) and client count (1, 8) it runs the select-only pgbench script
// three times back to back — direct, through the gateway, through
// PgBouncer — so the three see the machine in the same state, and prints
// TPS as ratios to direct, per-transaction latency percentiles (from
// pgbench's transaction logs) and the gateway's added median latency,
// against the goals in docs/benchmarks.md.
//
// It needs root, like the gateway: PostgreSQL and PgBouncer refuse to run
// as root and are started as the postgres OS user. Error contract: any
// set-up failure (a server that does not start, a pgbench run that fails or
// aborts a client, a gateway that does not deny, mask or count what it
// should) exits 1 after stopping everything it started; a missed speed goal
// is reported, never an exit status.
package main
