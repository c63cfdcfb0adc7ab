# marketpipe: `make demo` and `make test` do all set-up on a fresh Debian machine.
GO       ?= go
BIN      ?= bin
SERVICES := requester poller collector transformer loader vendorsim
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Test time bounds: the whole suite stays well under CI's limit.
TEST_TIMEOUT ?= 12m
# How long `make fuzz` runs each fuzz target (`make test` runs each for 3s).
FUZZTIME ?= 60s

.PHONY: all build deps clickhouse busybox zookeeper test test-e2e unit e2e faults chaos compose-test fuzz demo bench fmt vet clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/marketpipe $(foreach s,$(SERVICES),./services/$(s)/cmd/$(s))

# ClickHouse 18.16 from Debian's clickhouse-server package; installed only when missing.
clickhouse:
	@if command -v clickhouse-server >/dev/null 2>&1 || command -v clickhouse >/dev/null 2>&1; then \
		echo "clickhouse-server: $$(command -v clickhouse-server || command -v clickhouse)"; \
	else \
		echo "installing clickhouse-server with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq clickhouse-server >/dev/null; \
	fi

# Debian's static busybox: the compose test puts it in the images it makes for healthchecks.
busybox:
	@if ! dpkg -s busybox-static >/dev/null 2>&1; then \
		echo "installing busybox-static with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq busybox-static >/dev/null; \
	fi

# ZooKeeper from Debian's zookeeper package (it needs Java, pulled in when missing: about 30 s
# and 42 MB with Java already there): the replicated ClickHouse test coordinates through it.
zookeeper:
	@if [ ! -f /usr/share/java/zookeeper.jar ]; then \
		echo "installing zookeeper with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends zookeeper >/dev/null; \
	fi

deps: clickhouse busybox zookeeper
	$(GO) mod download

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Every test: unit tests of every package and the deployment checks, then at once the
# end-to-end tests of tests/ (stages as separate processes against in-process NATS and private
# ClickHouse servers) and docker-compose.yml run for real (tests/compose: skipped when no Docker
# engine answers, a failure under CI=true), which mostly waits on its containers; each one's
# output is printed when it ends (--output-sync), and either failing fails the target.
# MARKETPIPE_REQUIRE_CLICKHOUSE makes a missing server a failure, never a skip.
# tests/ runs verbose so the end-to-end and fault figures are printed.
test: deps fmt vet
	MARKETPIPE_REQUIRE_CLICKHOUSE=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v -e '/tests$$' -e '/tests/compose$$')
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-e2e compose-test
	@$(MAKE) --no-print-directory fuzz FUZZTIME=3s

# The end-to-end tests of tests/ alone.
test-e2e:
	MARKETPIPE_REQUIRE_CLICKHOUSE=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v ./tests/

unit:
	$(GO) test -count=1 -short ./pkg/... ./services/... ./cmd/...

e2e: deps
	MARKETPIPE_REQUIRE_CLICKHOUSE=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v -run TestEndToEnd ./tests/

# The delivery-guarantee test alone: kills, a NATS restart, a ClickHouse outage, vendor faults.
faults: deps
	MARKETPIPE_REQUIRE_CLICKHOUSE=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v -run TestFaults ./tests/

# The pipeline on a 3-node NATS cluster while a random node is killed ten times: 3 to 4 minutes,
# so not part of `make test` (whose TestThreeNodeCluster kills one node once).
chaos: deps
	MARKETPIPE_CHAOS=1 MARKETPIPE_REQUIRE_CLICKHOUSE=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v -run 'TestClusterChaos$$' ./tests/

# docker-compose.yml run for real on the local Docker engine with images the test makes (no
# registry is needed): two jobs loaded exactly, a loader and a transformer killed mid-job, then
# `down -v` and the images removed; then again with docker-compose.auth.yml (least privilege,
# mutual TLS). 3 to 6 minutes.
compose-test: deps
	$(GO) test -count=1 -timeout 10m -v ./tests/compose/

# Every fuzz target (each `func FuzzX` of a _test.go file, found here so none is left out) for
# FUZZTIME each. Their seed corpora also run as ordinary tests in `go test`.
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg services cmd); do \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$t in ./$$(dirname $$f) for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./$$(dirname $$f); \
		done; \
	done

# Builds, runs `marketpipe dev` (embedded NATS, the vendor simulator, the five stages and a
# private ClickHouse unless one answers on CLICKHOUSE_ADDR), submits the sample job with live
# progress, and prints what was loaded.
demo: deps build
	./scripts/demo.sh

# The package benchmarks, then the harness (bench/cmd/mpbench): direct insert, the five stages
# as processes, loader leg, poller CPU, peak RSS, transformer replicas, latency. BENCH_SCALE=0.1
# for a quick run (1.0: 5,000,000 observations); the last line printed is the JSON result.
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/... ./services/...
	$(GO) run ./bench/cmd/mpbench

clean:
	rm -rf $(BIN) .marketpipe
