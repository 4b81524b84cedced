# FlyingDutchman. `make run` starts the daemon, `make test` runs every test; both install
# what they need first (Debian packages, Go modules). Run them as root.

GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin/dutchman
# The vm runtime's guest agent: static, stripped (it goes into every guest's initramfs).
AGENT   := bin/dutchman-agent
# The integration tests run a race-detector build of the daemon, so data races in the
# daemon fail the tests too.
TESTBIN := bin/dutchman.race

# Debian packages the engine and its tests need (QEMU and virtiofsd for the vm runtime).
DEBS       := runc fuse3 busybox-static docker-registry skopeo util-linux attr gcc vim rsync git containernetworking-plugins iptables iproute2 \
	qemu-system-x86 qemu-system-common erofs-utils e2fsprogs qemu-user-static
BENCH_DEBS := podman conmon containernetworking-plugins golang-github-containers-common uidmap skopeo curl python3 \
	podman-compose docker-compose docker.io containerd erofs-utils e2fsprogs
STATICCHECK_VERSION := v0.8.2

# Daemon flags for `make run`, e.g. make run ARGS='--insecure-registry registry.lan:5000'
ARGS ?=

.PHONY: all build agent buildkitd run test unit integration deps bench-deps bench lint clean

all: build

build: agent bin/buildkitd
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/dutchman

agent:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(AGENT) ./cmd/dutchman-agent

# BuildKit's daemon, from its own module (tools/buildkitd/README.md), with the build tags
# of buildkit's release; rebuilt when that module changes.
BUILDKIT_VERSION := $(shell awk '$$1 == "github.com/moby/buildkit" {print $$2}' tools/buildkitd/go.mod)
buildkitd: bin/buildkitd
bin/buildkitd: tools/buildkitd/go.mod tools/buildkitd/go.sum
	cd tools/buildkitd && CGO_ENABLED=0 $(GO) build -trimpath -tags "osusergo netgo static_build seccomp" \
		-ldflags "-X github.com/moby/buildkit/version.Version=$(BUILDKIT_VERSION)" -o ../../bin/buildkitd github.com/moby/buildkit/cmd/buildkitd

$(TESTBIN): FORCE agent
	$(GO) build -race -ldflags '$(LDFLAGS)' -o $(TESTBIN) ./cmd/dutchman
FORCE:

run: deps build
	$(BIN) daemon $(ARGS)

test: deps $(TESTBIN) bin/buildkitd
	# atexit_sleep_ms=0: a race-detector binary otherwise sleeps a second at every exit.
	GORACE=atexit_sleep_ms=0 DUTCHMAN_BIN=$(abspath $(TESTBIN)) $(GO) test -race -count=1 -timeout 25m ./...

# Apt packages are installed only where missing; Go modules come through the module proxy.
deps:
	@./.ci/apt-install $(DEBS)
	@$(GO) version >/dev/null 2>&1 || { echo "Go 1.26 or newer is needed: /usr/local/go/bin/go (go.dev/dl) was not found" >&2; exit 1; }
	$(GO) mod download

bench-deps: deps
	@./.ci/apt-install $(BENCH_DEBS)

bench: bench-deps build
	./bench/run

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out" >&2; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin $(GO) build ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

clean:
	rm -rf bin
