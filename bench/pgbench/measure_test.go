//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSummary(t *testing.T) {
	sample, err := os.ReadFile("testdata/pgbench15-prepared.txt")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		out     string
		want    result
		wantErr string
	}{
		{name: "pgbench 15", out: string(sample), want: result{tps: 93416.2953, latencyAvg: 21 * time.Microsecond, txns: 93324}},
		{name: "failed transactions", out: strings.Replace(string(sample), "failed transactions: 0", "failed transactions: 3", 1), wantErr: "3 transactions failed"},
		{name: "no tps", out: "pgbench: error: connection to server failed\n", wantErr: "no tps line"},
		{name: "nothing done", out: "number of transactions actually processed: 0\nlatency average = 0.000 ms\ntps = 0.000000 (without initial connection time)\n", wantErr: "no transaction completed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSummary(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.tps < tt.want.tps-0.001 || got.tps > tt.want.tps+0.001 || got.latencyAvg != tt.want.latencyAvg || got.txns != tt.want.txns {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadTransactionLogs(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "gateway-simple-2")
	files := map[string]string{
		prefix + ".100":   "0 1 672 0 1795942309 359024\n0 2 66 0 1795942309 359102\n",
		prefix + ".100.1": "1 1 799 0 1795942309 359189\n1 2 73 0 1795942309 359274\n1 3 47 0 1795942309 359323\n",
	}
	for name, text := range files {
		if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lat, err := readTransactionLogs(prefix)
	if err != nil {
		t.Fatal(err)
	}
	c := &cell{}
	c.add(result{latencies: lat})
	if len(lat) != 5 || c.percentile(0.5) != 73 || c.percentile(0.99) != 799 || c.percentile(0) != 47 {
		t.Errorf("latencies %v: p50 %d, p99 %d", lat, c.percentile(0.5), c.percentile(0.99))
	}
	if left, _ := filepath.Glob(prefix + ".*"); len(left) != 0 {
		t.Errorf("logs not removed: %v", left)
	}

	if err := os.WriteFile(prefix+".7", []byte("0 1 failed 0 1795942309 359024\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readTransactionLogs(prefix); err == nil || !strings.Contains(err.Error(), "did not complete") {
		t.Errorf("a failed transaction in the log: %v", err)
	}
}
