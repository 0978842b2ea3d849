# ferry — build, lint and test entry points.
#
#   make build   build bin/ferry
#   make lint    gofmt (must list nothing), go vet, staticcheck (pinned, installed into bin/)
#   make unit    every package except ./e2e, with the race detector
#   make e2e     end-to-end tests: TestE2E* in ./e2e/..., real namespaces, needs root,
#                once with node.offload true and once false (E2EOFFLOAD='true false')
#   make e2e-race the end-to-end tests once more against a ferry built with
#                -race (bin/ferry-race): a data race in the daemon under real
#                traffic makes it exit with status 66, which fails the test
#   make test    lint + unit + e2e + e2e-race, in that order (the CI entry point)
#   make fuzz    every FuzzXxx target for FUZZTIME each (default 30s)
#   make bench   all benchmarks with allocation counts
#   make demo    scripts/demo.sh
#   make clean   remove bin/
#
# Tests that need root skip themselves without it (nstest.RequireRoot), so
# `make unit` also works unprivileged. Unit tests run in full, not -short:
# `make test` is the gate and must see every test; pass
# UNITFLAGS='-race -short' for a quicker local loop.

GO        ?= go
BIN       := $(CURDIR)/bin
FERRY     := $(BIN)/ferry
FUZZTIME  ?= 30s
UNITFLAGS ?= -race
E2EFLAGS  ?=
# The e2e tests run once per value: node.offload on and off (FERRY_E2E_OFFLOAD).
E2EOFFLOAD ?= true false
BENCHFLAGS ?=

# staticcheck 2026.2.2 (module version v0.8.2) is built with and supports Go 1.26.
STATICCHECK_VERSION := v0.8.2
STATICCHECK         := $(BIN)/staticcheck

# Targets run one after another even under make -j, so `make test` output
# ends with go test's own summary.
.NOTPARALLEL:

.PHONY: all build lint tools unit e2e e2e-race test fuzz bench demo clean

all: build

# What `ferry version`, the daemon's status and benchmark reports call this
# build: the git commit (-dirty with uncommitted changes), or "dev" outside
# a git checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(FERRY) ./cmd/ferry

# Install the pinned staticcheck into bin/ unless that exact version is there.
tools:
	@if ! $(STATICCHECK) -version 2>/dev/null | grep -qF '($(STATICCHECK_VERSION:v%=%))'; then \
		echo "installing staticcheck $(STATICCHECK_VERSION) into $(BIN)"; \
		GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi

lint: tools
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt -l: these files need gofmt -w:"; echo "$$unformatted"; exit 1; \
	fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Every package but the end-to-end ones, which `make e2e` runs on their own.
unit:
	@all=$$($(GO) list ./...) || exit 1; \
	pkgs=$$(printf '%s\n' "$$all" | grep -v -E '/e2e(/|$$)'); \
	echo "$(GO) test $(UNITFLAGS) -count=1 -timeout 10m <all packages but ./e2e>"; \
	$(GO) test $(UNITFLAGS) -count=1 -timeout 10m $$pkgs

# End-to-end tests are named TestE2E* and live under ./e2e/. They may run the
# built binary, found through $$FERRY_BIN. With no ./e2e packages yet this
# target only says so.
e2e:
	@pkgs=$$($(GO) list ./e2e/... 2>/dev/null); \
	if [ -z "$$pkgs" ]; then \
		echo "e2e: no packages under ./e2e, nothing to run" >&2; exit 0; \
	fi; \
	$(MAKE) --no-print-directory build || exit 1; \
	for off in $(E2EOFFLOAD); do \
		echo "FERRY_E2E_OFFLOAD=$$off FERRY_BIN=$(FERRY) $(GO) test -count=1 -run '^TestE2E' -timeout 15m $(E2EFLAGS) ./e2e/..." && \
		FERRY_E2E_OFFLOAD=$$off FERRY_BIN=$(FERRY) $(GO) test -count=1 -run '^TestE2E' -timeout 15m $(E2EFLAGS) ./e2e/... || exit 1; \
	done

# The unit tests run with the race detector, but the daemon's goroutines
# (workers, control server, metrics, the dataplane's control updates) only
# meet under traffic in a real daemon. One pass, offloads on; a race report
# makes the daemon exit with GORACE's exitcode 66, which the harness checks.
# FERRY_E2E_RACE tells the tests the daemon is slower (e2e/harness_test.go).
e2e-race:
	@pkgs=$$($(GO) list ./e2e/... 2>/dev/null); \
	if [ -z "$$pkgs" ]; then \
		echo "e2e-race: no packages under ./e2e, nothing to run" >&2; exit 0; \
	fi; \
	echo "$(GO) build -race -o $(FERRY)-race ./cmd/ferry" && \
	$(GO) build -race -ldflags "-X main.version=$(VERSION)-race" -o $(FERRY)-race ./cmd/ferry || exit 1; \
	echo "FERRY_E2E_RACE=1 FERRY_E2E_OFFLOAD=true FERRY_BIN=$(FERRY)-race $(GO) test -count=1 -run '^TestE2E' -timeout 15m $(E2EFLAGS) ./e2e/..." && \
	FERRY_E2E_RACE=1 FERRY_E2E_OFFLOAD=true FERRY_BIN=$(FERRY)-race $(GO) test -count=1 -run '^TestE2E' -timeout 15m $(E2EFLAGS) ./e2e/...

test: lint unit e2e e2e-race

# Discover the fuzz targets of each package with go test -list and run each
# one alone (go test -fuzz accepts one target per run).
# A target that fails without writing a crasher to testdata/fuzz/ hit Go
# 1.26's fuzz-coordinator race at the -fuzztime deadline ("context deadline
# exceeded", go.dev/issue/75804, fixed in Go 1.27): reported as a flake and
# the sweep goes on. A failure that writes a crasher fails the target.
fuzz:
	@fail=0; \
	for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		list=$$($(GO) test -list '^Fuzz' $$pkg) || exit 1; \
		for f in $$(printf '%s\n' "$$list" | grep '^Fuzz' || true); do \
			before=$$(find "$$dir/testdata/fuzz/$$f" -type f 2>/dev/null | wc -l); \
			echo "$(GO) test -run=NONE -fuzz=^$$f\$$ -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x $$pkg"; \
			if ! $(GO) test -run=NONE -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x $$pkg; then \
				after=$$(find "$$dir/testdata/fuzz/$$f" -type f 2>/dev/null | wc -l); \
				if [ "$$after" -gt "$$before" ]; then \
					echo "FUZZ FAIL: $$f wrote a crasher to $$dir/testdata/fuzz/$$f"; fail=1; \
				else \
					echo "fuzz flake: $$f failed without a crasher (go.dev/issue/75804)"; \
				fi; \
			fi; \
		done; \
	done; \
	exit $$fail

bench:
	$(GO) test -run=NONE -bench=. -benchmem $(BENCHFLAGS) ./...

demo: build
	FERRY_BIN=$(FERRY) ./scripts/demo.sh

clean:
	rm -rf $(BIN)
