package pgxsuite_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestExcludedList checks excluded.txt on every test run, so a bad edit
// shows without running the suite.
func TestExcludedList(t *testing.T) {
	excluded, err := loadExclusions("excluded.txt")
	if err != nil {
		t.Fatal(err)
	}
	for pkg, excl := range excluded {
		pattern := skipPattern(excl)
		for _, alt := range strings.Split(pattern, "|") {
			for _, level := range strings.Split(alt, "/") {
				if _, err := regexp.Compile(level); err != nil {
					t.Errorf("%s: -skip %q: %v", pkg, pattern, err)
				}
			}
		}
	}
}

func TestLoadExclusionsRefuses(t *testing.T) {
	for name, text := range map[string]string{
		"no reason":     pgxModule + " TestConnect\n",
		"empty reason":  pgxModule + " TestConnect  #   \n",
		"no test":       pgxModule + "  # reason\n",
		"not a test":    pgxModule + " Connect  # reason\n",
		"other package": "example.com/x TestConnect  # reason\n",
		"twice":         pgxModule + " TestConnect  # a\n" + pgxModule + " TestConnect  # b\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := t.TempDir() + "/excluded.txt"
			writeFile(t, path, text)
			if _, err := loadExclusions(path); err == nil {
				t.Errorf("%q was accepted", text)
			}
		})
	}
}

func TestSkipPattern(t *testing.T) {
	got := skipPattern([]exclusion{{name: "TestA"}, {name: "TestB/sub.case"}})
	if want := `^TestA$|^TestB$/^sub\.case$`; got != want {
		t.Errorf("skipPattern = %q, want %q", got, want)
	}
}

func TestParseEvents(t *testing.T) {
	stream := strings.Join([]string{
		`{"Action":"start","Package":"p"}`,
		`{"Action":"run","Package":"p","Test":"TestOK"}`,
		`{"Action":"pass","Package":"p","Test":"TestOK"}`,
		`{"Action":"run","Package":"p","Test":"TestSkip"}`,
		`{"Action":"skip","Package":"p","Test":"TestSkip"}`,
		`{"Action":"run","Package":"p","Test":"TestBad"}`,
		`{"Action":"run","Package":"p","Test":"TestBad/ok"}`,
		`{"Action":"pass","Package":"p","Test":"TestBad/ok"}`,
		`{"Action":"run","Package":"p","Test":"TestBad/sub"}`,
		`{"Action":"output","Package":"p","Test":"TestBad/sub","Output":"    x_test.go:1: boom\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestBad/sub"}`,
		`{"Action":"fail","Package":"p","Test":"TestBad"}`,
		`{"Action":"fail","Package":"p"}`,
	}, "\n")
	res, err := parseEvents(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	if res.passed != 1 || res.skipped != 1 || res.failedTop != 1 || res.subPassed != 1 || len(res.failed) != 2 || res.broken != "" {
		t.Errorf("counts: %+v", res)
	}
	if len(res.failed) > 0 && (res.failed[0].name != "TestBad/sub" || !strings.Contains(res.failed[0].output, "boom")) {
		t.Errorf("first failure: %+v", res.failed[0])
	}

	// A package that fails with no failed test (a build error, a panic in
	// TestMain) is broken.
	res, err = parseEvents(strings.NewReader("x_test.go:1:1: undefined: y\n" + `{"Action":"fail","Package":"p"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.broken, "undefined: y") {
		t.Errorf("broken = %q", res.broken)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
