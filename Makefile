# kvsctl: build, test, lint and run. 'make help' lists the targets.
GO       ?= go
BIN      := bin/kvsctl
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# PostgreSQL for the storage tests; .ci/run exports the same URL.
export KVS_TEST_DATABASE ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: help build test lint run clean bench bench-scale bench-pki bench-watch fuzz reliability man lifecycle

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/kvsctl, version stamped
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kvsctl

test: ## every test, with the race detector, PostgreSQL included
	$(GO) test -race -count=1 -timeout 20m ./...

lint: ## gofmt check, go vet, staticcheck and govulncheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@# govulncheck exits 3 on findings; a database it cannot reach (no route to
	@# vuln.go.dev) is reported loudly but does not fail the lint.
	@out=$$($(GO) run golang.org/x/vuln/cmd/govulncheck@v1.9.0 ./... 2>&1); rc=$$?; echo "$$out"; \
	if [ $$rc -ne 0 ] && echo "$$out" | grep -q 'fetching vulnerabilities'; then \
	  echo "!!! govulncheck could not fetch the vulnerability database: dependencies NOT checked !!!" >&2; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

fuzz: ## every fuzz target for FUZZTIME each (default 60s), from the committed seeds
	@scripts/reliability.sh --fuzz-only

reliability: ## fault, attack, lost-update and secrets checks plus fuzzing; writes docs/reliability.md
	@scripts/reliability.sh

run: build ## quick start: certificates if missing, serve on the embedded store, a put/get round trip
	@scripts/quickstart.sh $(BIN)

bench: build ## the side-by-side performance comparison with etcd (not part of make test)
	@scripts/bench.sh $(BIN)

bench-scale: build ## how cost grows with keys, value size, CRL, policy and connections; writes docs/scale.md (~12 min)
	@scripts/bench-scale.sh $(BIN)

bench-watch: build ## 1,000 watchers on one server while PUTs go through another: delivery, latency, memory, throughput (docs/performance.md, Watch)
	@go run ./scripts/benchwatch -bin $(BIN) $(BENCH_WATCH_FLAGS)

bench-pki: build ## time 'kvsctl pki init' against the original two openssl runs
	@scripts/bench-pki.sh $(BIN)

lifecycle: build ## 6 minutes of the online CA, renewal agents, two servers and bench; prints the report for docs/lifecycle.md
	@go run ./scripts/lifecycle -bin $(BIN) $(LIFECYCLE_FLAGS)

man: build ## write the manual page docs/kvsctl.1 (read it with man -l docs/kvsctl.1)
	$(BIN) man > docs/kvsctl.1.tmp && mv docs/kvsctl.1.tmp docs/kvsctl.1

clean: ## remove build output (never certs/ or data/)
	rm -rf bin
