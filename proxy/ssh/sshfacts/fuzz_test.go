package sshfacts

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// singleQuote quotes every word, even a safe one, the plainest round trip.
func singleQuote(words []string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

var sentinels = []error{ErrUnterminated, ErrTrailingBackslash, ErrNUL, ErrTooLong, ErrTooComplex, ErrHeredocDelimiter}

func sentinel(err error) error {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// FuzzSplit feeds arbitrary commands to Split and Analyze and checks that:
//   - neither panics, they fail together with the same sentinel error, and
//     every error is one of the sentinels;
//   - the words, each single-quoted (or quoted by Join) and joined with
//     spaces, split back into the same words;
//   - every command in Commands has a program, and Programs matches it;
//   - LiteralWords has a flag for each word of Commands, and a Literal
//     command's words are all literal;
//   - a command that is not Compound is one simple command: its words,
//     separators aside, are its assignments and its argv;
//   - the argv of a Literal command, joined, is read back as a Literal
//     command with the same argv.
//
// The seed corpus is in testdata/fuzz/FuzzSplit.
func FuzzSplit(f *testing.F) {
	f.Fuzz(func(t *testing.T, command string) {
		words, err := Split(command)
		facts, aerr := Analyze(command)
		if sentinel(err) != sentinel(aerr) {
			t.Fatalf("Split(%q) error %v, Analyze error %v", command, err, aerr)
		}
		if err != nil {
			if !slices.Contains(sentinels, sentinel(err)) {
				t.Fatalf("Split(%q): error %v wraps no sentinel", command, err)
			}
			if words != nil {
				t.Fatalf("Split(%q) returned words with the error %v", command, err)
			}
			return
		}
		if !reflect.DeepEqual(facts.Words, words) {
			t.Fatalf("Analyze(%q).Words = %q, Split gives %q", command, facts.Words, words)
		}

		for _, join := range []func([]string) string{singleQuote, Join} {
			joined := join(words)
			if len(joined) > MaxCommandLen {
				continue
			}
			again, err := Split(joined)
			if err != nil {
				t.Fatalf("Split(%q) = %q, but Split(%q): %v", command, words, joined, err)
			}
			if len(again) != len(words) || (len(words) > 0 && !reflect.DeepEqual(again, words)) {
				t.Fatalf("Split(%q) = %q, but Split(%q) = %q", command, words, joined, again)
			}
		}

		if len(facts.Commands) != len(facts.Programs) {
			t.Fatalf("Analyze(%q): %d commands, %d programs", command, len(facts.Commands), len(facts.Programs))
		}
		for i, argv := range facts.Commands {
			if len(argv) == 0 || facts.Programs[i] != baseName(argv[0]) {
				t.Fatalf("Analyze(%q): command %q, program %q", command, argv, facts.Programs[i])
			}
		}
		if len(facts.LiteralWords) != len(facts.Commands) {
			t.Fatalf("Analyze(%q): %d commands, %d rows of LiteralWords", command, len(facts.Commands), len(facts.LiteralWords))
		}
		for i, argv := range facts.Commands {
			if len(facts.LiteralWords[i]) != len(argv) {
				t.Fatalf("Analyze(%q): command %q, LiteralWords %v", command, argv, facts.LiteralWords[i])
			}
			if facts.Literal() && slices.Contains(facts.LiteralWords[i], false) {
				t.Fatalf("Analyze(%q) is Literal, but its words %q are not all literal: %v", command, argv, facts.LiteralWords[i])
			}
		}
		if len(facts.Commands) > 0 && (!reflect.DeepEqual(facts.Argv, facts.Commands[0]) || facts.Program != facts.Programs[0]) {
			t.Fatalf("Analyze(%q): Argv %q is not the first command", command, facts.Argv)
		}
		if (facts.Substitution || facts.Redirection) && !facts.Compound {
			t.Fatalf("Analyze(%q): a substitution or redirection is not compound", command)
		}

		if !facts.Compound {
			// Split's words do not tell the separators ; and newline from
			// words of that text, so both sides leave them out.
			plain := withoutSeparators(words)
			simple := withoutSeparators(append(append([]string(nil), facts.Assignments...), facts.Argv...))
			if len(plain) != len(simple) || (len(plain) > 0 && !reflect.DeepEqual(plain, simple)) {
				t.Fatalf("Analyze(%q) is not compound but its words %q are not %q", command, words, simple)
			}
		}

		if facts.Literal() && len(facts.Argv) > 0 {
			joined := Join(facts.Argv)
			if len(joined) > MaxCommandLen {
				return
			}
			again, err := Analyze(joined)
			if err != nil || !again.Literal() || !reflect.DeepEqual(again.Argv, facts.Argv) || again.Assignments != nil {
				t.Fatalf("Analyze(%q).Argv = %q, but Analyze(%q) = %+v, %v", command, facts.Argv, joined, again, err)
			}
		}
	})
}

func withoutSeparators(words []string) []string {
	var out []string
	for _, w := range words {
		if w != ";" && w != "\n" {
			out = append(out, w)
		}
	}
	return out
}
