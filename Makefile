# svidbroker — the two commands a new machine needs are `make demo` and `make test`.

GO       ?= go
BIN      := $(CURDIR)/.bin
FUZZTIME ?= 30s
BENCHTIME ?= 2000x

# Every package; the end-to-end suites live under test/ and need `make tools`.
PKGS := ./...

.PHONY: all build tools npm test vet unit integration demo demo-down bench fuzz clean deploy-check

all: build

## build: the broker, the SPIRE agent attestor plugin, the demo launcher, the demo's upstream API and MCP
## server, and the test OpenID provider, into .bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/svidbroker ./cmd/svidbroker
	$(GO) build -o $(BIN)/svidbroker-agent-attestor ./attestors/agent
	$(GO) build -o $(BIN)/svidbroker-demo ./examples/demo
	$(GO) build -o $(BIN)/svidbroker-shopapi ./examples/shopapi
	$(GO) build -o $(BIN)/svidbroker-mcpshop ./examples/mcpshop
	$(GO) build -o $(BIN)/svidbroker-oidc ./test/oidc/cmd/svidbroker-oidc

## tools: third-party programs pinned in tools/go.mod (SPIRE), into .bin/; a no-op when up to date
tools: $(BIN)/spire-server $(BIN)/spire-agent

$(BIN)/spire-server $(BIN)/spire-agent &: tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	@echo "Building spire-server and spire-agent (pinned in tools/go.mod) into $(BIN). The first build downloads"
	@echo "and compiles SPIRE from source: about 6 minutes on 2 cores. Each package is listed as it compiles."
	cd tools && GOBIN=$(BIN) $(GO) install -v github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
	@touch $(BIN)/spire-server $(BIN)/spire-agent
	@echo "SPIRE is built; later runs reuse it until tools/go.mod changes."

## npm: the TypeScript packages, installed from their lock files: the MCP client the end-to-end tests
## run (test/mcp-ts) and the Claude agent example (examples/claude-agent). `npm ci` runs only when a
## directory's package.json or package-lock.json is newer than its last install.
NPM_DIRS := test/mcp-ts examples/claude-agent
npm: $(addsuffix /node_modules/.svidbroker-installed,$(NPM_DIRS))

%/node_modules/.svidbroker-installed: %/package.json %/package-lock.json
	@command -v npm >/dev/null || { echo "npm is not installed: install Node.js 20 or later (Debian: nodejs and npm)"; exit 1; }
	cd $* && npm ci --no-audit --no-fund
	@touch $@

## test: go vet, then every test with the race detector, including the real-stack suites, then a short
## run of every fuzz target (its seed corpus, then 3000 generated inputs)
test: vet tools build npm
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) deploy-check
	$(MAKE) fuzz FUZZTIME=3000x

vet:
	$(GO) vet $(PKGS)
	cd deploy && $(GO) vet ./...

## unit: the tests that need nothing but Go
unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /test/)
	$(MAKE) deploy-check

## deploy-check: the Kubernetes manifests, alert rules and dashboard in deploy/ against the broker (a
## module of its own, so that their libraries stay out of the broker's go.mod)
deploy-check:
	cd deploy && $(GO) test -count=1 ./...

## integration: the suites against real SPIRE, PostgreSQL and the broker
integration: tools build npm
	$(GO) test -race -count=1 -timeout 20m ./test/...

## demo: start SPIRE, PostgreSQL and the broker in the background; prints what to try
demo: tools build npm
	$(BIN)/svidbroker-demo up --dir .demo --bin $(BIN)

## demo-down: stop everything `make demo` started; the audit log and policies stay in .demo/ unless WIPE=1
## (exactly 1: WIPE=0 keeps them)
demo-down:
	@if [ -x $(BIN)/svidbroker-demo ]; then $(BIN)/svidbroker-demo down --dir .demo $(if $(filter 1,$(WIPE)),--wipe); \
	else echo "The demo is not running."; $(if $(filter 1,$(WIPE)),rm -rf .demo;) fi

## bench: each measurement against its baseline in the same run, reported as ratios (benchstat reads it)
bench: tools build
# BenchmarkPgbenchPaths compares the broker with pgbouncer (Debian's package).
	command -v pgbouncer >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer; }
	$(GO) test -run '^$$' -bench . -benchtime 20000x -count 1 ./broker/authz/ ./plugins/protocol/postgres/sqlclass/
# JSON masking of a 10 MB response beside io.Copy of it (x-direct); 20000x of 10 MB would take too long.
	$(GO) test -run '^$$' -bench . -benchtime 10x -count 1 ./plugins/protocol/http/jsonmask/
# Span export: 512 statement spans through the official OTLP/HTTP exporter beside the broker's own encoder
# (direct), and one span's start, end and export.
	$(GO) test -run '^$$' -bench 'Export|SpanExported' -benchtime 2000x -count 1 ./broker/tracing/
# A statement's CPU time with tracing off, SDK spans, and the broker's own tracing (in one process).
	$(GO) test -run '^$$' -bench 'TracedStatements' -benchtime 20000x -count 1 ./plugins/protocol/postgres/
# HTTP targets: 16 keep-alive clients direct, through httputil.ReverseProxy and through the engine (ratios
# and added p50); a 10 MB response with 2 masked fields per object through the engine beside direct.
	$(GO) test -run '^$$' -bench 'HTTPPaths' -benchtime 20000x -count 1 ./plugins/protocol/http/proxy/
	$(GO) test -run '^$$' -bench 'HTTPMasked10MB' -benchtime 10x -count 1 ./plugins/protocol/http/proxy/
# MCP targets: tools/call round trips of 16 go-sdk clients through the engine (decided, pinned, masked,
# recorded) beside the go-sdk server directly, at the default tools_max_age and listing before every call
# (ratios, added p50 and p99).
	$(GO) test -run '^$$' -bench 'MCPToolCall' -benchtime 4000x -count 1 ./plugins/protocol/mcp/proxy/
	$(GO) test -run '^$$' -bench 'Postgres|Handshake|CredentialAcquisition' -benchtime $(BENCHTIME) -count 1 -timeout 20m ./test/e2e/
	$(GO) test -run '^$$' -bench 'PgbenchAudit|PgbenchPaths|MaskedMillionRows|IdleSessionMemory' -benchtime 1x -count 1 -timeout 30m ./test/e2e/
# HTTP targets on the real stack: the broker binary (packs, audit) in front of the shop API and of a static
# upstream, beside the upstream directly and httputil.ReverseProxy (throughput ratios, added p50/p99); masked
# 1 MB and 10 MB responses beside direct (time ratios, the broker's allocated bytes per response).
	$(GO) test -run '^$$' -bench 'BenchmarkHTTPStack' -benchtime 1x -count 1 -timeout 20m ./test/e2e/
# Counting an operation's metrics from two cores: all sessions in one stripe (shared) beside each session in
# a stripe of its own (sessions), as the broker counts.
	$(GO) test -run '^$$' -bench 'BenchmarkOperation$$' -cpu 2 -count 1 ./broker/metrics/
# Metrics and tracing (every span exported over OTLP/HTTP to a sink in the test) against both off:
# throughput of otherwise identical brokers, started afresh for each of twelve sets of rounds (their order
# rotating), of SELECT 1 (on/off) and of pgbench's select-only statement (select-only-on/off), beside a
# control broker configured as the baseline (control/off: the run's noise floor).
	$(GO) test -run '^$$' -bench 'BenchmarkObservabilityOverhead' -benchtime 1x -count 1 -timeout 20m ./test/e2e/

## fuzz: run each fuzz target for FUZZTIME, a duration (30s) or a number of inputs (3000x). Go 1.26's
## fuzzing engine can fail a run whose duration ran out with a bare "context deadline exceeded" and no
## failing input (golang/go#75804, fixed in Go 1.27): such a run is made once more; any other failure,
## and a failing input above all, fails at once. `make test` counts inputs, which that race cannot hit.
fuzz:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    for try in 1 2; do \
	      echo "fuzz $$pkg $$target"; \
	      $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) -parallel 2 $$pkg >$$out 2>&1; rc=$$?; \
	      cat $$out; \
	      [ $$rc -eq 0 ] && break; \
	      if [ $$try -eq 1 ] && grep -q 'context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
	        echo "fuzz: $$target: the fuzzing engine's end-of-run race (golang/go#75804), not a finding; once more"; \
	      else exit 1; fi; \
	    done; \
	  done; \
	done

clean: demo-down
	rm -rf $(BIN) .demo
