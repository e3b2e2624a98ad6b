package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAliasExpansionBounded: aliases of aliases that would stand for
// millions of values are refused at once, before the YAML library builds
// them; ordinary anchors, aliases and merge keys still load.
func TestAliasExpansionBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("targets:\n  - {name: t, protocol: tcp, address: \"127.0.0.2:7000\"}\npolicy:\n  rules:\n    - &r0 {name: a0, action: deny}\n")
	for i := 1; i <= 10; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*r%d, ", i-1), 9), ", ")
		fmt.Fprintf(&b, "    - &r%d {<<: [%s]}\n", i, refs)
	}
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "anchors and aliases expand to more than") {
		t.Errorf("a %d-byte file of nested merge keys: %v", b.Len(), err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusing it took %v", d)
	}

	ok := "targets:\n  - {name: t, protocol: tcp, address: \"127.0.0.2:7000\"}\nworkloads:\n" +
		"  - {name: a, match: {cgroup: /a}, identity: &id {subject: s, groups: [g]}}\n" +
		"  - {name: b, match: {cgroup: /b}, identity: {<<: *id}}\n"
	c, err := Parse("ok.yaml", []byte(ok))
	if err != nil {
		t.Fatalf("a merge key: %v", err)
	}
	if c.Workloads[1].Identity.Subject != "s" || c.Workloads[1].Name != "b" {
		t.Errorf("merged workload: %+v", c.Workloads[1])
	}
}
