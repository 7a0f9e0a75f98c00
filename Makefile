# ddlguard build, test and demo entry points. `make help` lists targets.

GO      ?= go
BIN     := bin/ddlguard
# The build flags live in scripts/build.sh, shared with the Dockerfile.
# VERSION (stamped into `ddlguard version`) defaults there to
# `git describe --always --dirty`; `make build VERSION=1.2.3` sets it.
VERSION ?=
export GO VERSION

.PHONY: all help deps build test check-deploy check-image schemacheck check-k8s helm check-helm check-compose check-packaging image fuzz soak demo bench bench-profile bench-seed bench-migrate fmt clean

all: build

help:
	@echo 'targets:'
	@echo '  deps   install system packages the tests/demo need (scripts/install-deps.sh)'
	@echo '  build  build $(BIN) with scripts/build.sh (VERSION=... to stamp a version; default git describe)'
	@echo '  test   deps, check-deploy, check-packaging, go vet, all tests against real PostgreSQL, short fuzz runs'
	@echo '  check-deploy  deps, promtool check/test of the Prometheus rules and config, Grafana dashboard checks, metric names vs deploy/metric-names.txt'
	@echo '  check-image  lint the Dockerfile, replay its build stage, check the binary against the runtime image (glibc 2.36) and smoke-run it'
	@echo '  check-k8s    check deploy/kubernetes (strict decoding into the Kubernetes API types, probes, shutdown timing, security, ddlguard check-config on the ConfigMap)'
	@echo '  check-helm   install the pinned Helm (scripts/install-helm.sh), lint and render deploy/helm/ddlguard and check the output'
	@echo '  check-compose  check deploy/compose (mounts, ports, ddlguard and promtool config checks)'
	@echo '  check-packaging  all four above (part of make test)'
	@echo '  image  docker build the image as $(IMAGE) (needs Docker; VERSION=... to stamp a version)'
	@echo '  fuzz   fuzz targets for FUZZTIME each (default 20000x: inputs, not seconds)'
	@echo '  soak   deps, then a bounded soak of the binary: pgbench + DDL + a blocker coming and going (SOAK_DURATION, default 3m)'
	@echo '  demo   deps, build, then ./$(BIN) demo'
	@echo '  bench  deps, then pgbench -S direct vs ddlguard vs PgBouncer (modes x 1/16/64 clients; BENCH_FLAGS)'
	@echo '  bench-profile  deps, then a CPU profile of an in-process ddlguard under pgbench (ddlguard.cpu.pprof; BENCH_FLAGS)'
	@echo '  bench-seed  deps, then the seed benchmark: readers vs. a blocked ALTER, direct and through ddlguard (BENCH_FLAGS)'
	@echo '  bench-migrate  deps, then the migration-history corpus direct vs through ddlguard, psql and pgx runners (BENCH_MIGRATE_RUNS, default 3)'
	@echo '  fmt    gofmt all Go files'
	@echo '  clean  remove build and coverage outputs'

deps:
	bash scripts/install-deps.sh

build:
	bash scripts/build.sh $(BIN)

# Short fuzz runs of the decoders and the guard (longer: FUZZTIME=2000000x make
# fuzz). The budget is a count of inputs (2-14 s a target here), not a
# duration: Go 1.26's fuzzing coordinator can fail a run that found nothing
# with "context deadline exceeded" when a duration runs out while a worker is
# mid-input (golang/go#75804, fixed in Go 1.27); a count has no deadline. A
# duration (FUZZTIME=10m) still works, with that risk.
FUZZTIME ?= 20000x
FUZZ_TARGETS := ./guard:FuzzDecide ./guard:FuzzMightBeGuarded ./proxy:FuzzCopyFrames ./proxy:FuzzStartupPacket \
	./proxy:FuzzAuthRelay ./proxy:FuzzReadyForQuery ./proxy:FuzzParameterStatus ./proxy:FuzzBackendKeyData \
	./proxy:FuzzErrorResponse ./proxy:FuzzSSLAnswer ./proxy:FuzzQuery ./proxy:FuzzParse ./proxy:FuzzBind \
	./proxy:FuzzCancelRequest

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

# Offline checks of the packaging: the image build (Dockerfile lint, the
# build stage replayed with scripts/build.sh, the binary against the
# runtime image's glibc, a smoke run as the image's user), the plain
# Kubernetes manifests, the Helm chart (pinned Helm built into .cache/bin by
# scripts/install-helm.sh; a few minutes the first time) and the compose
# example. No Docker engine or cluster needed; each step fails the target.
IMAGE_CHECK_DIR := .cache/image-check
IMAGE_CHECK_BIN := $(IMAGE_CHECK_DIR)/fs/src/bin/ddlguard
K8S_MANIFESTS   := $(addprefix deploy/kubernetes/,configmap.yaml deployment.yaml service.yaml pdb.yaml)

check-image: deps
	PYTHON3=$(PYTHON3) bash scripts/check-image-build.sh $(IMAGE_CHECK_DIR)

# Strict decoding into the Kubernetes API's Go types (a separate module).
SCHEMACHECK := $(CURDIR)/.cache/bin/k8s-schemacheck
schemacheck:
	cd deploy/kubernetes/schemacheck && CGO_ENABLED=0 $(GO) build -trimpath -o $(SCHEMACHECK) .

check-k8s: check-image schemacheck
	$(SCHEMACHECK) $(K8S_MANIFESTS)
	$(PYTHON3) deploy/kubernetes/check-manifests.py --kustomization deploy/kubernetes/kustomization.yaml \
		--tls --monitor-secret --admin-token-secret --ddlguard $(IMAGE_CHECK_BIN) $(K8S_MANIFESTS)
	@echo 'check-k8s: ok (deploy/kubernetes)'

helm:
	bash scripts/install-helm.sh >/dev/null

check-helm: check-image helm schemacheck
	PYTHON3=$(PYTHON3) SCHEMACHECK=$(SCHEMACHECK) bash deploy/helm/check-chart.sh $(IMAGE_CHECK_BIN)

check-compose: check-image
	PROMTOOL=$(PROMTOOL) $(PYTHON3) deploy/compose/check-compose.py $(IMAGE_CHECK_BIN)

check-packaging: check-image check-k8s check-helm check-compose

# Build the image (needs a Docker engine; not part of make test).
IMAGE ?= ddlguard:dev
image:
	docker build --build-arg VERSION="$${VERSION:-$$(git describe --always --dirty 2>/dev/null || echo dev)}" -t $(IMAGE) .

# The e2e tests run again on PostgreSQL 18 (scripts/install-pg-major.sh);
# tests that start a PostgreSQL 18 server of their own are not among them.
E2E_PG18_TESTS := TestLockWait|TestPooler|TestPartitioned|TestRefresh|TestDriverParity|TestYoung|TestFacts|TestExtended|TestRewrite|TestEnforce|TestKept|TestExactlyOnce|TestReview

test: deps check-deploy check-packaging
	$(GO) vet ./...
	GO=$(GO) scripts/go-test.sh -count=1 -timeout 20m ./...
	@echo "e2e again with plain upstream legs: plain clients go through the event loop"
	E2E_PLAIN_RELAY=1 GO=$(GO) scripts/go-test.sh -count=1 -timeout 20m ./e2e
	@echo "e2e of execution, facts, rewrites, drivers and poolers again on PostgreSQL 18"
	E2E_PG_MAJOR=18 GO=$(GO) scripts/go-test.sh -count=1 -timeout 20m -run '$(E2E_PG18_TESTS)' ./e2e
	$(MAKE) --no-print-directory fuzz

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) $${t%%:*}; \
	done

# Opt-in soak (e2e/soak_test.go, build tag soak): reports RSS, goroutines
# and errors over time; fails on unexpected errors or growth.
SOAK_DURATION ?= 3m
soak: deps
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -tags soak -count=1 -timeout 60m -run '^TestSoak$$' -v ./e2e

demo: deps build
	./$(BIN) demo

# Relay cost: pgbench -S direct, through the ddlguard binary and through
# PgBouncer, in one run. Flags pass through, e.g.
# BENCH_FLAGS='--duration 5s --rounds 3 --json'.
bench: deps
	$(GO) run ./cmd/ddlguard-bench relay $(BENCH_FLAGS)

bench-profile: deps
	$(GO) run ./cmd/ddlguard-bench profile --cpuprofile ddlguard.cpu.pprof $(BENCH_FLAGS)

# The seed scenario, direct and through an in-process ddlguard, on a
# throwaway cluster. Flags pass through, e.g. BENCH_FLAGS='--readers 4 --json'.
BENCH_FLAGS ?=
bench-seed: deps
	$(GO) run ./cmd/ddlguard-bench seed $(BENCH_FLAGS)

# What ddlguard costs a migration: e2e/testdata/migrations applied
# directly and through an in-process ddlguard (no configuration), by psql
# (a process and a connection per file) and by a pgx extended-protocol
# runner (one connection, one Parse/Bind/Execute/Sync per statement). Prints
# direct-ms/op, ddlguard-ms/op, their ratio and added-us/statement.
BENCH_MIGRATE_RUNS ?= 3
bench-migrate: deps
	$(GO) test -count=1 -run '^$$' -bench '^BenchmarkMigrationHistories$$' -benchtime $(BENCH_MIGRATE_RUNS)x -timeout 30m ./e2e

fmt:
	$(GO) fmt ./...

clean:
	rm -rf bin/ coverage.out coverage.html *.coverprofile
