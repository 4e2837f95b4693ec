# otpd's front door. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go
export GOTOOLCHAIN := local
BIN := $(CURDIR)/bin
BUF_VERSION := v1.75.0
BUF := $(BIN)/buf
KUSTOMIZE := $(BIN)/kustomize
GHZ := $(BIN)/ghz
# golangci-lint v2 is installed with `go install` from its own module, at an
# exact version (its docs advise against sharing a go.mod with other tools:
# MVS would move ~200 of its dependencies and those of ghz/kustomize). The
# binary name carries the version, so a bump here reinstalls it. ~3 min cold.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# govulncheck is a `tool` of tools/go.mod (go get -tool golang.org/x/vuln/cmd/govulncheck@v1.9.0):
# it only shares golang.org/x/* modules with the other tools. ~50 s cold.
GOVULNCHECK := $(BIN)/govulncheck
# The Go vulnerability database, offline: the module proxy serves
# golang.org/x/vulndb, whose data/osv/ holds every GO-*.json OSV entry, and
# `govulncheck -db file://<dir>` reads such a flat directory. Refresh by
# setting this to what `go list -m -json golang.org/x/vulndb@latest` prints.
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
# Every module of the repository, for tidy-check.
GO_MODULES := . tools deploy/validate deploy/ghz/baseline
# The modules govulncheck scans: what ships (deploy/validate and the load
# baseline are test tools that never run in production).
VULN_MODULES := .
# 1 = standard-library findings fail `make vuln` as well. They are fixed by
# a newer Go toolchain, not by go.mod, so they only warn by default.
VULN_STRICT ?= 0

GOTEST_FLAGS ?= -race -count=1 -timeout 10m
# Image tag and the version otpd -version prints (make image VERSION=1.2.3).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# What otpd -version and otpctl version print (make build, make run).
LDFLAGS = -ldflags "-X main.version=$(VERSION)"
# Where make certs writes the dev CA and certificates: make certs DIR=...
# (from the command line only; a DIR in the environment is ignored).
CERTS_DIR := $(if $(filter command line,$(origin DIR)),$(DIR),$(BIN)/certs)
# Every kustomization rendered and checked by validate-deploy.
KUSTOMIZATIONS := deploy/kubernetes/base $(wildcard deploy/kubernetes/overlays/*)

.PHONY: help run build certs test test-go lint fmt tidy-check vuln generate check-generate tools redis-server node-deps validate-deploy image bench load clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

run: ## run otpd in dev mode: in-memory store, codes printed to the terminal
	$(GO) build $(LDFLAGS) -o $(BIN)/otpd ./cmd/otpd
	exec $(BIN)/otpd

build: ## build bin/otpd and bin/otpctl, both reporting $(VERSION) (-version)
	$(GO) build -trimpath $(LDFLAGS) -o $(BIN)/otpd ./cmd/otpd
	$(GO) build -trimpath $(LDFLAGS) -o $(BIN)/otpctl ./cmd/otpctl

certs: ## write a dev CA, a server certificate (localhost, 127.0.0.1, ::1) and a client one into bin/certs (DIR=...; FORCE=1 replaces), print the tls block and otpctl flags
	$(GO) run ./internal/devcerts/cmd -dir "$(CERTS_DIR)" $(if $(filter 1,$(FORCE)),-force)

test: redis-server lint check-generate validate-deploy test-go ## everything CI runs: lint, generated code, deploy files, go test -race

test-go: redis-server node-deps ## go test -race ./... against real redis-server processes and the npm clients of test/node
	OTPD_REQUIRE_REDIS=1 OTPD_REQUIRE_NODE=1 $(GO) test $(GOTEST_FLAGS) ./...

lint: tools $(GOLANGCI_LINT) tidy-check vuln ## golangci-lint (.golangci.yml) on every module and tagged build, go mod tidy, govulncheck, buf lint, buf format
	$(GOLANGCI_LINT) run ./...
	$(GOLANGCI_LINT) run --build-tags otpd_fake,pprof ./internal/registry/... ./internal/server/...
	cd deploy/validate && $(GOLANGCI_LINT) run ./...
	cd deploy/ghz/baseline && $(GOLANGCI_LINT) run ./...
	$(BUF) lint
	$(BUF) format -d --exit-code

fmt: tools $(GOLANGCI_LINT) ## format Go (gofmt, goimports with the local group) and proto files
	$(GOLANGCI_LINT) fmt
	$(BUF) format -w

tidy-check: ## fail if go.mod/go.sum of any module is not what go mod tidy would write
	@fail=0; for m in $(GO_MODULES); do \
		echo "go mod tidy -diff ($$m)"; \
		(cd $$m && $(GO) mod tidy -diff) || fail=1; \
	done; exit $$fail

vuln: $(GOVULNCHECK) ## govulncheck every module offline against the pinned Go vulnerability database
	@$(GO) mod download golang.org/x/vulndb@$(VULNDB_VERSION)
	@db="file://$$($(GO) env GOMODCACHE)/golang.org/x/vulndb@$(VULNDB_VERSION)/data/osv"; fail=0; \
	for m in $(VULN_MODULES); do \
		echo "== govulncheck ($$m)"; \
		(cd $$m && $(GOVULNCHECK) -db "$$db" ./...) && continue; \
		if [ "$(VULN_STRICT)" = 1 ]; then fail=1; continue; fi; \
		ids=$$(cd $$m && $(GOVULNCHECK) -db "$$db" -format json ./... | \
			jq -rs '[.[] | .finding? // empty | select(.trace[0].function != null and .trace[0].module != "stdlib") | .osv] | unique | join(" ")') || \
			{ echo "!! govulncheck could not scan $$m"; fail=1; continue; }; \
		if [ -n "$$ids" ]; then echo "!! called vulnerabilities in dependencies (fix in go.mod): $$ids"; fail=1; \
		else echo "-- only standard-library findings: fixed by a newer Go, not by go.mod (VULN_STRICT=1 fails on them)"; fi; \
	done; exit $$fail

# The Node/TypeScript example client (examples/node, Connect protocol):
# npm ci again whenever package-lock.json is newer than the last one (its
# protoc-gen-es serves make generate), then tsc into examples/node/dist,
# which cmd/otpd's TestNodeConnect* run (they compile it again themselves).
EXAMPLE_DIR := examples/node
EXAMPLE_NPM_STAMP := $(EXAMPLE_DIR)/node_modules/.npm-ci.stamp

generate: tools $(EXAMPLE_NPM_STAMP) ## regenerate the Go code of proto/ and the TypeScript of examples/node with buf
	PATH="$(BIN):$$PATH" $(BUF) generate
	$(BUF) generate --template examples/node/buf.gen.yaml

check-generate: tools $(EXAMPLE_NPM_STAMP) ## fail if the committed generated code (Go, examples/node's TypeScript) does not match the protos
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	PATH="$(BIN):$$PATH" $(BUF) generate --output "$$tmp"; \
	$(BUF) generate --template examples/node/buf.gen.yaml --output "$$tmp"; \
	if ! diff -r -x '*.proto' "$$tmp/proto" proto || ! diff -r "$$tmp/$(EXAMPLE_DIR)/src/gen" $(EXAMPLE_DIR)/src/gen; then \
		echo "generated code is stale: run 'make generate' and commit"; exit 1; \
	fi; echo "generated code matches proto/ and examples/node/proto/"

.PHONY: node-example
test-go: node-example

$(EXAMPLE_NPM_STAMP): $(EXAMPLE_DIR)/package-lock.json | node-deps
	cd $(EXAMPLE_DIR) && npm ci --no-audit --no-fund
	@touch $@

node-example: $(EXAMPLE_NPM_STAMP) ## npm ci (when its lock changed) and tsc of the Node example client in examples/node
	cd $(EXAMPLE_DIR) && node node_modules/typescript/bin/tsc -p .

tools: $(BUF) $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(KUSTOMIZE) $(GOLANGCI_LINT) $(GOVULNCHECK) ## install pinned tools into bin/

# buf: the prebuilt release binary from npm (sha512 pinned in the script,
# ~3 s), else `go install` (~2-3 min cold). BUF_INSTALL=go forces the build.
$(BUF):
	GO=$(GO) tools/install-buf.sh $(BUF_VERSION) $@

$(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc &: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	@touch $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

$(GOLANGCI_LINT):
	@mkdir -p $(BIN); tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "go install golangci-lint@$(GOLANGCI_LINT_VERSION)"; \
	GOBIN=$$tmp $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	mv "$$tmp/golangci-lint" $@

$(GOVULNCHECK): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/ golang.org/x/vuln/cmd/govulncheck
	@touch $(GOVULNCHECK)

$(KUSTOMIZE): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/ sigs.k8s.io/kustomize/kustomize/v5
	@touch $(KUSTOMIZE)

$(GHZ): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/ github.com/bojand/ghz/cmd/ghz
	@touch $(GHZ)

validate-deploy: $(KUSTOMIZE) ## render deploy/kubernetes into bin/k8s and check it, the Dockerfile, alert rules and dashboard (offline)
	@# deploy/validate asks bin/otpd (-print-config) what each otpd container's configuration is.
	$(GO) build -trimpath -o $(BIN)/otpd ./cmd/otpd
	@rm -rf $(BIN)/k8s && mkdir -p $(BIN)/k8s
	@for k in $(KUSTOMIZATIONS); do \
		echo "kustomize build $$k > bin/k8s/$$(basename $$k).yaml"; \
		$(KUSTOMIZE) build $$k > $(BIN)/k8s/$$(basename $$k).yaml; \
	done
	cd deploy/validate && $(GO) vet ./...
	@out=$$(gofmt -l deploy/validate); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	cd deploy/validate && OTPD_BIN=$(BIN)/otpd OTPD_K8S_RENDERED=$(BIN)/k8s OTPD_K8S_CONFIG_OUT=$(BIN) $(GO) test -count=1 ./...
	@echo "otpd.yaml of each layout: $$(cd $(BIN) && ls k8s-otpd*.yaml | tr '\n' ' ')(in bin/)"

image: ## build the container image otpd:$(VERSION) with deploy/Dockerfile (needs Docker with BuildKit)
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) -t otpd:$(VERSION) .

redis-server: ## make sure Debian's redis-server is installed (tests start their own)
	@if ! command -v redis-server >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing redis-server (Debian package)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
		else \
			echo "redis-server is missing: install it with 'sudo apt-get install -y redis-server'"; exit 1; \
		fi; \
	fi

# The npm clients that cmd/otpd's Node tests run (test/node: Logto's HTTP
# connectors, standardwebhooks), installed from package-lock.json again
# whenever it is newer than the last npm ci.
NODE_DIR := test/node
NODE_STAMP := $(NODE_DIR)/node_modules/.npm-ci.stamp

node-deps: ## make sure node and npm are installed (Debian's nodejs, npm), then npm ci in test/node when its lock changed
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
		sudo=; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
		echo "installing nodejs and npm (Debian packages)"; \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi
	@if [ ! -f $(NODE_STAMP) ] || [ $(NODE_DIR)/package-lock.json -nt $(NODE_STAMP) ]; then \
		echo "npm ci ($(NODE_DIR))"; \
		(cd $(NODE_DIR) && npm ci --no-audit --no-fund) && touch $(NODE_STAMP); \
	fi

bench: ## Go benchmarks of the hot paths
	OTPD_REQUIRE_REDIS=1 $(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: bench-memory
bench-memory: redis-server ## Redis bytes per live code: 100,000 sends on a single node and on a Cluster (BenchmarkLiveCodeMemory)
	OTPD_REQUIRE_REDIS=1 $(GO) test -run '^$$' -bench LiveCodeMemory -benchtime 1x ./service/

.PHONY: bench-scripts
bench-scripts: redis-server ## Redis CPU per verification and send script vs the same commands with the least Lua and the floor's script: 5 interleaved runs, medians (BenchmarkScriptRedisCPU)
	@for i in 1 2 3 4 5; do \
		OTPD_REQUIRE_REDIS=1 $(GO) test -run '^$$' -bench ScriptRedisCPU -benchtime 20000x ./service/redisstore/ | grep '^Benchmark' || exit 1; \
	done | awk '{ name = $$1; sub(/-[0-9]+$$/, "", name); sub(/^BenchmarkScriptRedisCPU\//, "", name); print name, $$5 }' | sort -k1,1 -k2,2n | \
		awk '{ v[$$1] = v[$$1] " " $$2; n[$$1]++ } \
		END { for (k in v) { split(substr(v[k], 2), a, " "); printf "%-22s median %6.1f redis-us/op  (sorted:%s)\n", k, a[int((n[k] + 1) / 2)], v[k] } }' | sort

load: redis-server $(GHZ) ## ghz load test of otpd next to the baseline, same settings (deploy/ghz; LOAD_STRICT=1 fails on a missed target)
	deploy/ghz/load.sh

.PHONY: soak
soak: redis-server $(GHZ) ## 10-minute mixed send/verify soak: otpd's RSS and goroutines flat, Redis bounded (deploy/ghz; SOAK_DURATION=1m for a smoke run)
	deploy/ghz/soak.sh

clean: ## remove bin/
	rm -rf $(BIN)
