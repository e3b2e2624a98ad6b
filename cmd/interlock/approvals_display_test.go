package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestApprovalShownEscaped: a held command with a carriage return and a
// terminal escape that would redraw its line as "ls -la" is shown with
// both visible, with what policy read it as.
func TestApprovalShownEscaped(t *testing.T) {
	a := approvalView{ID: "ab2cd3ef4g", State: "pending", Command: "touch /x #\r\x1b[2Kls -la", Kind: "exec", Operation: "touch",
		Target: "bastion", Protocol: "ssh", Workload: "agent", Requester: "agent", Rule: "review", Approvers: []string{"ops"}}
	var b bytes.Buffer
	writeApproval(&b, a)
	out := b.String()
	for _, want := range []string{`command   touch /x #\r\x1b[2Kls -la` + "\n", "reads as  exec: touch\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("show prints\n%s\nwithout %q", out, want)
		}
	}
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("show prints control characters: %q", out)
	}
	long := "ls #" + strings.Repeat(" ", 200) + "\nrm -rf /srv"
	if got := oneLine(long, 60); !strings.Contains(got, "[truncated: 216 bytes in all]") || strings.Contains(got, "\n") {
		t.Errorf("list cell %q: want it marked as cut short, on one line", got)
	}
}
