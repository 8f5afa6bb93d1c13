SHELL := /bin/bash
# tollgate — build, test and demo entry points. See README.md.
GO        ?= go
CLANG     ?= clang
BIN       := bin/tollgate
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BPF_CFLAGS := -O2 -g -Wall -Werror -nostdinc -mcpu=v3
# staticcheck runs at this version against go.mod (not tools.mod: it must
# see the dependency versions the build uses).
STATICCHECK := v0.8.2

.PHONY: all build generate test hygiene test-unit test-e2e bench demo lint fuzz package clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tollgate

# Regenerate the committed eBPF objects (needs clang; not needed to build).
generate:
	cd redirect && BPF_CLANG=$(CLANG) BPF_CFLAGS="$(BPF_CFLAGS)" $(GO) generate ./...

# Everything CI runs: unprivileged unit tests, then the privileged end-to-end
# tests (root, real kernel, real cgroups, real eBPF, real PostgreSQL).
test: hygiene test-unit test-e2e

# The committed go.mod and eBPF objects are what the sources make: go mod
# tidy and bpf2go (clang) leave no diff.
hygiene:
	@$(GO) mod tidy -diff || { echo "hygiene: go.mod or go.sum is not tidy: run go mod tidy"; exit 1; }
	@$(MAKE) --no-print-directory generate
	@git diff --exit-code --stat -- redirect/ || { echo "hygiene: the committed eBPF objects differ from bpf/: run make generate and commit redirect/"; exit 1; }
	@shellcheck -x -P SCRIPTDIR packaging/lab/*.sh packaging/scripts/*.sh scripts/*.sh || { echo "hygiene: fix what shellcheck reports above"; exit 1; }
	@vagrant validate --ignore-provider >/dev/null || { vagrant validate --ignore-provider; echo "hygiene: fix the Vagrantfile"; exit 1; }

test-unit: lint
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test$$)

test-e2e:
	@if [ "$$(id -u)" != 0 ]; then echo "test-e2e needs root (real eBPF, cgroups)"; exit 1; fi
	$(GO) test -count=1 -v -timeout 60m ./test/ 2>&1 | tee test-e2e.out; status=$${PIPESTATUS[0]}; \
	  if grep -q -- '--- SKIP' test-e2e.out && [ "$$CI" = true ]; then echo "privileged e2e tests were skipped under CI"; exit 1; fi; \
	  exit $$status

# Benchmarks compare against a baseline in the same run (direct connection,
# bbolt's DB.Batch); figures are recorded in docs/BENCHMARKS.md.
bench:
	$(GO) test -run '^$$' -bench '^BenchmarkAppend$$' -benchtime 2000x ./audit/
	TOLLGATE_BENCH_ROUNDS=10 $(GO) test -run '^$$' -bench '^BenchmarkAppendTree$$' -benchtime 1x ./audit/
	$(GO) test -run '^$$' -bench '^BenchmarkVerify$$' -benchtime 1x -timeout 30m ./audit/evidence/
	$(GO) test -run '^$$' -bench '^BenchmarkPrune$$' -benchtime 200000x ./audit/
	@if [ "$$(id -u)" != 0 ]; then echo "the interception benchmarks need root"; exit 1; fi
	$(GO) test -run '^$$' -bench '^BenchmarkConnect$$' -benchtime 2000x ./test/
	$(GO) test -run '^$$' -bench '^BenchmarkPostgresUnixConnect$$' -benchtime 300x ./test/
	$(GO) test -run '^$$' -bench '^BenchmarkRelayThroughput$$' -benchtime 4x ./test/
	$(GO) test -run '^$$' -bench '^BenchmarkIdleConnectionRSS$$' -benchtime 1x ./test/
	$(GO) test -run '^$$' -bench '^BenchmarkPostgresIdleRSS$$' -benchtime 1x ./test/
	$(GO) test -run '^$$' -bench '^BenchmarkMaskingThroughput$$' -benchtime 1x -timeout 30m ./test/
	$(GO) test -run '^$$' -bench '^BenchmarkPostgresProtocolSwitch$$' -benchtime 1x -timeout 30m ./test/
	$(GO) test -run '^$$' -bench '^BenchmarkDecodePrepare$$' -benchtime 20x ./audit/collector/
	$(GO) test -run '^$$' -bench '^BenchmarkCollectorIngest$$' -benchtime 1x -timeout 30m ./test/
	$(GO) test -run '^$$' -bench '^BenchmarkSSH$$' -benchtime 1x -timeout 30m ./test/
	TOLLGATE_BENCH_SSH_CIPHER=aes128-gcm@openssh.com TOLLGATE_BENCH_SSH_SESSIONS=20 \
	  $(GO) test -run '^$$' -bench '^BenchmarkSSH$$' -benchtime 1x -timeout 30m ./test/
	$(GO) test -run '^$$' -bench '^BenchmarkCollectorLag$$' -benchtime 1x -timeout 30m ./test/
	TOLLGATE_BENCH_REPORT=$(CURDIR)/docs/pgbench-latest.txt TOLLGATE_PGBENCH_ROUNDS=3 TOLLGATE_PGBENCH_CLIENTS=1,8 \
	  $(GO) test -run '^$$' -bench '^BenchmarkPostgres$$' -benchtime 1x -timeout 90m ./test/

demo: build
	bash scripts/demo.sh

# Hygiene: each failing check names the command that fixes it.
lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "lint: run gofmt -w on the files above"; exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./... || { echo "lint: fix what staticcheck reports above"; exit 1; }

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 60s ./audit/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime 60s ./audit/evidence/
	$(GO) test -run '^$$' -fuzz '^FuzzScanFrames$$' -fuzztime 60s ./audit/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzNegotiate$$' -fuzztime 60s ./agent/postgres/
	$(GO) test -run '^$$' -fuzz '^FuzzRelay$$' -fuzztime 60s ./agent/postgres/
	$(GO) test -run '^$$' -fuzz '^FuzzTextCodec$$' -fuzztime 60s ./agent/postgres/
	$(GO) test -run '^$$' -fuzz '^FuzzMaskRows$$' -fuzztime 60s ./agent/postgres/
	$(GO) test -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime 60s ./policy/sql/
	$(GO) test -run '^$$' -fuzz '^FuzzEscapeStrings$$' -fuzztime 60s ./policy/sql/
	$(GO) test -run '^$$' -fuzz '^FuzzMaskRow$$' -fuzztime 60s ./policy/mask/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 60s ./audit/collector/
	$(GO) test -run '^$$' -fuzz '^FuzzSplitCommand$$' -fuzztime 60s ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzSFTPLog$$' -fuzztime 60s ./agent/ssh/

# deb and rpm with the systemd unit and default config (nfpm from tools.mod).
GOARCH ?= $(shell $(GO) env GOARCH)
# The man page and the shell completions are generated from the CLI's own
# definitions, so they cannot drift from it.
package: build
	mkdir -p dist build/share
	$(BIN) man | gzip -9n > build/share/tollgate.8.gz
	$(BIN) completion bash > build/share/tollgate.bash
	$(BIN) completion zsh > build/share/_tollgate
	$(BIN) completion fish > build/share/tollgate.fish
	cd packaging && for p in deb rpm; do \
	  GOARCH=$(GOARCH) VERSION=$(VERSION) $(GO) tool -modfile=../tools.mod nfpm package -f nfpm.yaml -p $$p -t ../dist/ || exit 1; done

clean:
	rm -rf bin build dist test-e2e.out
