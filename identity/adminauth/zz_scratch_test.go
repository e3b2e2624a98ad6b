package adminauth

import (
	"fmt"
	"testing"
)

func TestScratchPrint(t *testing.T) {
	for _, c := range []string{
		"- token: \"s3cret-s3cret-s3cret-s3cret\n  subject: alice\n",
		"- token: \"s3cret-s3cret-s3cret-s3cret\"\n    subject: alice\n   groups: [x]\n",
		"- token: \"s3cret-s3cret-s3cret-s3cret\"\n  subject: alice\n  subject: bob\n",
		"- token: \"s3cret-s3cret-s3cret-s3cret\"\n  subject: alice\n- token: s3cret-s3cret-s3cret-s3cret\n  subject: b\n",
		"- token: \"ab\\qcd\"\n",
		"- token: |\n    s3cret-s3cret-s3cret-s3cret\n  subject: a\n",
		"- ? token\n  : \"s3cret-s3cret-s3cret-s3cret\"\n  subject: a\n",
		"- {token: \"s3cret-s3cret-s3cret-s3cret\", subject: a, groups: [x], }\n",
		"- token: \"s3cret-s3cret-s3cret-s3cret\"\n  subject: a\n  groups:\n",
		"\t- token: x\n",
	} {
		_, err := parseTokens("f.yaml", []byte(c))
		fmt.Printf("%q\n  -> %v\n", c, err)
	}
	p := writeFile(t, goodFile, 0o644)
	_, err := LoadTokens(p)
	fmt.Println(err)
}
