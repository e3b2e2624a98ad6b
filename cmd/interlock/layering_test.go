package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/interlock-dev/interlock/"

// layers is the design's import table for the project's own packages: which
// top-level folders a folder's packages may import besides their own.
// cmd/, bench/ and docs/ wire things together and may import anything.
var layers = map[string][]string{
	"redirect": nil,
	"identity": nil,
	"policy":   nil,
	"record":   nil,
	"proxy":    {"identity", "policy", "record"},
}

// allowedImports are the exceptions to layers, each with its reason.
var allowedImports = map[[2]string]string{
	// The review workflow records who asked and who decided: an
	// identity.Identity, the same value the policy's identity.* facts
	// come from.
	{"policy/review", "identity"}: "reviews name their requester and decider",
	// Test harnesses of every layer share one skip-or-fail gate and one
	// server-process runner (redirecttest.Unavailable, Daemon).
	{"identity/oidctest", "redirect/redirecttest"}:     "shared test harness",
	{"proxy/postgres/pgtest", "redirect/redirecttest"}: "shared test harness",
	{"proxy/ssh/sshtest", "redirect/redirecttest"}:     "shared test harness",
}

// protocolPackage names the per-protocol handler pkg belongs to ("" for
// other packages): handlers never import each other.
func protocolPackage(pkg string) string {
	parts := strings.Split(pkg, "/")
	if len(parts) < 2 || parts[0] != "proxy" {
		return ""
	}
	switch parts[1] {
	case "postgres", "ssh", "kube", "tcp":
		return parts[1]
	}
	return ""
}

// TestImportLayering holds the packages to the import table (see layers):
// a package that reaches across layers fails here, not in review.
func TestImportLayering(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from the test's folder: %v", err)
	}
	checked := 0
	used := map[[2]string]bool{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		top, _, _ := strings.Cut(pkg, "/")
		allowed, layered := layers[top]
		if !layered {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			depTop, _, _ := strings.Cut(dep, "/")
			switch {
			case protocolPackage(pkg) != "" && protocolPackage(dep) != "" && protocolPackage(pkg) != protocolPackage(dep):
				t.Errorf("%s imports %s: protocol packages never import each other", pkg, dep)
			case depTop == top || slices.Contains(allowed, depTop):
			case allowedImports[[2]string{pkg, dep}] != "":
				used[[2]string{pkg, dep}] = true
			default:
				may := "none"
				if len(allowed) > 0 {
					may = strings.Join(allowed, ", ")
				}
				t.Errorf("%s imports %s: of the project's other folders %s/ may import %s (see TestImportLayering)", pkg, dep, top, may)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no package files checked")
	}
	for pair := range allowedImports {
		if !used[pair] {
			t.Errorf("exception %s → %s is no longer used; remove it", pair[0], pair[1])
		}
	}
}
