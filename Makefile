# interlock — see README.md. `make demo` and `make test` are the two entry
# points; both need root for the eBPF data path.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BPF_CFLAGS ?= -I/usr/include/$(shell uname -m)-linux-gnu
TEST_TIMEOUT ?= 40m

.PHONY: all build generate check-generate test test-pgx lint demo bench clean

all: build

# The gateway links libpg_query (cgo): building needs a C compiler.
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/interlock ./cmd/interlock

# Rebuild the committed bpf2go output from bpf/ (needs clang, libbpf-dev).
generate:
	BPF_CFLAGS='$(BPF_CFLAGS)' $(GO) generate ./redirect/...

# Fails when the committed eBPF objects are not what bpf/ compiles to.
check-generate: generate
	git diff --exit-code -- redirect/ || { echo "generated eBPF objects are stale: run make generate and commit" >&2; exit 1; }

# The whole suite. As root the privileged tests (eBPF, cgroups) run; set
# INTERLOCK_REQUIRE_PRIVILEGED=1 to make a skipped privileged test fail.
# The OIDC tests run Ory Hydra (bin/hydra) as the identity provider.
test: bin/hydra
	INTERLOCK_HYDRA=$(CURDIR)/bin/hydra $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# Ory Hydra, a real OIDC provider for the identity tests: a tool in go.mod,
# built with SQLite for its in-memory store.
bin/hydra: go.mod go.sum
	$(GO) build -tags sqlite,sqlite_omit_load_extension -o bin/hydra github.com/ory/hydra/v2

# The pgx v5 test suite through the gateway (proxy/postgres/pgxsuite): a
# real PostgreSQL, the gateway in-process under the race detector, pgx's
# own tests with PGX_TEST_DATABASE pointed at it. Needs no root.
test-pgx:
	INTERLOCK_PGX_SUITE=1 $(GO) test -race -count=1 -timeout 30m -run '^TestPgxSuite$$' -v ./proxy/postgres/pgxsuite

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Runs the gateway with docs/demo/demo.yaml and a scripted agent in a cgroup.
demo: build
	$(GO) run ./docs/demo -interlock bin/interlock -config docs/demo/demo.yaml

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./bench/...
	$(GO) test -run '^$$' -bench SessionMemory ./proxy/postgres/ ./proxy/ssh/
	$(GO) run ./bench/pgbench -interlock bin/interlock
	$(GO) run ./bench/sshbench

clean:
	rm -rf bin/
