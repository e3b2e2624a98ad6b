// Package bench holds the gateway's timing goals as benchmarks: each one runs
// the same workload twice in the same process and run, once straight to a
// loopback target ("direct") and once through interlock's proxy.Server with
// the tcp handler ("gateway"), so the cost of the gateway is read as a ratio
// against the direct path on the same machine at the same moment rather than
// as an absolute number that depends on the host.
//
// Only the userspace data path is measured. Connections reach the gateway by
// an explicit dial to its listener, and attribution is a fixed in-test
// answer: the eBPF redirect and the kernel origins-map lookup are benchmarked
// separately. docs/benchmarks.md explains each benchmark, how to run them
// (make bench) and how to read the ratios, with numbers from one run.
//
// The package has no non-test code. Error contract: a benchmark that sees any
// I/O error, or a byte count other than what it sent, fails (b.Fatal) rather
// than report a time, and TestGatewayForwards checks that the gateway setup
// the benchmarks use really carries every byte, so a broken path cannot pass
// for a fast one. No test asserts wall-clock speed.
package bench
