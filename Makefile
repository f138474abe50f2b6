# seccompagent — build, test and demo. Run as root on Debian 12 (see README).

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

GO       ?= go
BIN      := bin/seccompagent
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

# Debian packages the build, the demo and every test tier need.
DEB_PACKAGES := gcc gcc-multilib make pkg-config libseccomp-dev runc crun jq musl-tools busybox-static util-linux \
	dpkg-dev python3 nodejs openjdk-17-jre-headless podman containerd docker.io netavark \
	qemu-system-x86 linux-image-amd64 kmod lxcfs

.PHONY: all deps build test demo consumers bench lint clean

all: build

deps:
	@if [ ! -f /etc/debian_version ]; then \
		echo "make deps installs Debian packages; on this system install by hand:"; \
		echo "  Go >= 1.26, gcc, pkg-config, libseccomp (>= 2.5, with headers), runc (>= 1.1) or crun (>= 0.19),"; \
		echo "  jq, musl-gcc (musl-tools), a static busybox, util-linux (unshare), gcc -m32 (multilib),"; \
		echo "  dpkg-dev and deb-src access (apt-get source busybox), python3, nodejs, OpenJDK 17,"; \
		echo "  podman, containerd, docker (dockerd 20.10 or later), netavark, lxcfs (>= 5, with fuse),"; \
		echo "  qemu-system-x86_64 and a distribution kernel with /boot/vmlinuz-<ver> and /lib/modules/<ver> (cgroup v2 VM tier)"; \
		exit 1; \
	fi
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages: $$missing — run 'make deps' as root"; exit 1; fi; \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go not found: install Go >= 1.26 at /usr/local/go"; exit 1; }
	$(GO) mod download

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/seccompagent
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/seccompagent-runtime ./oci-hook/cmd/seccompagent-runtime

# Every tier that exists: unit (fixtures), kernel (re-executed subprocess),
# end-to-end (root: runc and crun containers, consumer matrix), engines
# (podman, containerd, dockerd) and cgroup v2 (qemu VM). Under CI=true a tier that
# cannot run fails instead of skipping. Packages run one at a time (-p 1): the
# VM tier's emulated CPUs would otherwise starve the timing checks (live
# updates within 1 s, uptime) of the host tiers on a 2-CPU machine.
test: build lint
	$(GO) test -p 1 -count=1 -timeout 30m ./...

demo: deps
	$(GO) run ./test/demo

# Speed and fairness against a minimal C supervisor measured in the same run
# (test/bench): prints one table, asserts nothing. Not part of `make test`.
bench: deps
	$(GO) run ./test/bench $(BENCH_FLAGS)

# What real programs see, with and without the agent: regenerates test/consumers.md.
consumers: deps
	$(GO) test -count=1 -timeout 20m -run 'TestConsumers' -v ./test/e2e

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin build
