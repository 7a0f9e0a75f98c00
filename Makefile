# ddlguard build, test and demo entry points. `make help` lists targets.

GO      ?= go
BIN     := bin/ddlguard
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

# All build flags live here; the version lands in main.version.
LDFLAGS       := -X main.version=$(VERSION)
GOFLAGS_BUILD := -trimpath -ldflags '$(LDFLAGS)'

.PHONY: all help deps build test check-deploy fuzz demo bench-seed fmt clean

all: build

help:
	@echo 'targets:'
	@echo '  deps   install system packages the tests/demo need (scripts/install-deps.sh)'
	@echo '  build  build $(BIN) (version $(VERSION))'
	@echo '  test   deps, check-deploy, go vet, all tests against real PostgreSQL, short fuzz runs'
	@echo '  check-deploy  deps, promtool check/test of the Prometheus rules and config, Grafana dashboard checks, metric names vs deploy/metric-names.txt'
	@echo '  fuzz   fuzz targets for FUZZTIME each (default 5s)'
	@echo '  demo   deps, build, then ./$(BIN) demo'
	@echo '  bench-seed  deps, then the seed benchmark: readers vs. a blocked ALTER, direct and through ddlguard (BENCH_FLAGS)'
	@echo '  fmt    gofmt all Go files'
	@echo '  clean  remove build and coverage outputs'

deps:
	bash scripts/install-deps.sh

build:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/ddlguard

# Short fuzz runs of the decoders and the guard (longer: FUZZTIME=10m make fuzz).
FUZZTIME ?= 5s
FUZZ_TARGETS := ./guard:FuzzDecide ./guard:FuzzMightBeGuarded ./proxy:FuzzCopyFrames ./proxy:FuzzStartupPacket

# Offline checks of deploy/: Prometheus rules and their unit tests, the
# example Prometheus config, the Grafana dashboard and provisioning, and the
# metric names both use. Each step fails the target.
PROMTOOL  ?= promtool
PYTHON3   ?= /usr/bin/python3
DASHBOARD := deploy/grafana/ddlguard-dashboard.json

check-deploy: deps
	$(PROMTOOL) check rules deploy/prometheus/ddlguard-rules.yml
	$(PROMTOOL) test rules deploy/prometheus/ddlguard-rules.test.yml
	$(PROMTOOL) check config deploy/prometheus/prometheus.yml
	$(PYTHON3) -m json.tool $(DASHBOARD) >/dev/null
	PROMTOOL=$(PROMTOOL) $(PYTHON3) deploy/grafana/check-dashboard.py $(DASHBOARD)
	bash deploy/check-metric-names.sh

test: deps check-deploy
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) $${t%%:*}; \
	done

demo: deps build
	./$(BIN) demo

# The seed scenario, direct and through an in-process ddlguard, on a
# throwaway cluster. Flags pass through, e.g. BENCH_FLAGS='--readers 4 --json'.
BENCH_FLAGS ?=
bench-seed: deps
	$(GO) run ./cmd/ddlguard-bench seed $(BENCH_FLAGS)

fmt:
	$(GO) fmt ./...

clean:
	rm -rf bin/ coverage.out coverage.html *.coverprofile
