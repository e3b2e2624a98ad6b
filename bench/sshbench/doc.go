// Command sshbench measures interlock's SSH gateway against the direct path
// in the same run:
//
//	sudo go run ./bench/sshbench [-size 256] [-rounds 5] [-roundtrips 5000] [-cpuprofile FILE]
//
// It starts a real OpenSSH server on 127.0.0.2 (proxy/ssh/sshtest) and, in
// this process, the ssh handler behind a proxy.Server listening on
// 127.0.0.1, with a policy (a rule on ssh.programs among others), an SSH CA
// and session recording into a temporary folder, exactly as the handler's
// tests wire it. Then, for each path — direct (client to sshd) and gateway
// (client to the gateway, which logs in to sshd) — it measures:
//
//   - bulk transfer: the OpenSSH client runs `dd of=/dev/null` remotely
//     with a file of -size MiB on its standard input, several times; MB/s
//     per path by dd's clock and the ratio gateway/direct, and apart, the
//     same command on empty input (connect, log in, run, exit);
//   - keystroke round trip: a golang.org/x/crypto/ssh client with a pty in
//     raw mode running cat writes one byte and reads until it comes back;
//     p50/p99/mean per path and the median the gateway adds;
//   - CPU: of the gateway (this process), of the ssh client and of sshd's
//     connection processes, per MB transferred.
//
// Paths are interleaved (direct, gateway, direct, ...) so that both see the
// machine in the same state. Tables in Markdown go to stdout, progress to
// stderr; docs/benchmarks.md explains them and holds one run's numbers.
//
// It needs root, because sshd does. Error contract: before measuring, the
// program checks that the gateway path is the gateway's (a session through
// it is recorded, a command the policy denies exits 126, and neither
// happens on the direct path); any failed check, set-up step, ssh exit
// status other than expected, short transfer or I/O error exits 1 after
// stopping and removing everything it started. A missed speed goal is
// reported, never an exit status.
package main
