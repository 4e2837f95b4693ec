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
GOTEST_FLAGS ?= -race -count=1 -timeout 10m
# Image tag and the version otpd -version prints (make image VERSION=1.2.3).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Every kustomization rendered and checked by validate-deploy.
KUSTOMIZATIONS := deploy/kubernetes/base $(wildcard deploy/kubernetes/overlays/*)

.PHONY: help run build test test-go lint fmt generate check-generate tools redis-server validate-deploy image bench load clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

run: ## run otpd in dev mode: in-memory store, codes printed to the terminal
	$(GO) build -o $(BIN)/otpd ./cmd/otpd
	exec $(BIN)/otpd

build: ## build bin/otpd and bin/otpctl
	$(GO) build -trimpath -o $(BIN)/otpd ./cmd/otpd
	$(GO) build -trimpath -o $(BIN)/otpctl ./cmd/otpctl

test: redis-server lint check-generate validate-deploy test-go ## everything CI runs: lint, generated code, deploy files, go test -race

test-go: redis-server ## go test -race ./... against real redis-server processes
	OTPD_REQUIRE_REDIS=1 $(GO) test $(GOTEST_FLAGS) ./...

lint: tools ## go vet, gofmt, buf lint, buf format
	$(GO) vet ./...
	$(GO) vet -tags otpd_fake,pprof ./internal/registry ./internal/server
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(BUF) lint
	$(BUF) format -d --exit-code

fmt: tools ## format Go and proto files
	gofmt -w $$(git ls-files '*.go')
	$(BUF) format -w

generate: tools ## regenerate the Go code of proto/ with buf
	PATH="$(BIN):$$PATH" $(BUF) generate

check-generate: tools ## fail if the committed generated code does not match proto/
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	PATH="$(BIN):$$PATH" $(BUF) generate --output "$$tmp"; \
	if ! diff -r -x '*.proto' "$$tmp/proto" proto; then \
		echo "generated code is stale: run 'make generate' and commit"; exit 1; \
	fi; echo "generated code matches proto/"

tools: $(BUF) $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(KUSTOMIZE) ## install pinned tools into bin/

$(BUF):
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc &: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	@touch $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

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

bench: ## Go benchmarks of the hot paths
	OTPD_REQUIRE_REDIS=1 $(GO) test -run '^$$' -bench . -benchmem ./...

load: redis-server $(GHZ) ## ghz load test of otpd next to the baseline, same settings (deploy/ghz; LOAD_STRICT=1 fails on a missed target)
	deploy/ghz/load.sh

clean: ## remove bin/
	rm -rf $(BIN)
