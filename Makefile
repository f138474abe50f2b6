# seccompagent — build, test and demo. Run as root on Debian 12 (see README).

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

GO       ?= go
BIN      := bin/seccompagent
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

# Debian packages, by what needs them. `make demo` installs only DEMO_PACKAGES;
# `make deps` (and so `make build` and `make test`) installs the full set.
# The cgroup v2 VM tier boots Debian's kernel package without installing it:
# test/vm fetches it with `apt-get download` and unpacks it into build/vm/kernel.
BUILD_PACKAGES := gcc libc6-dev make pkg-config libseccomp-dev ca-certificates
# test/demo: runc containers running static busybox and the test programs
# (test/rootfs/build.sh: musl-gcc, gcc -m32), and its LXCFS column (the demo
# starts a private lxcfs; it skips that column if lxcfs is missing).
DEMO_PACKAGES  := $(BUILD_PACKAGES) runc musl-tools busybox-static gcc-multilib lxcfs
TEST_PACKAGES  := $(DEMO_PACKAGES) crun jq util-linux dpkg-dev \
	python3 nodejs openjdk-17-jre-headless podman containerd docker.io netavark \
	qemu-system-x86 kmod

.PHONY: all deps deps-demo deps-build build image test demo consumers bench lint clean

all: build

# install-debs PACKAGES: install the missing ones (Debian only, as root).
define install-debs
	@if [ ! -f /etc/debian_version ]; then \
		echo "this installs Debian packages; on this system install by hand: $(1)"; \
		echo "(Go >= 1.26 at /usr/local/go; see README Requirements)"; \
		exit 1; \
	fi
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages: $$missing — run as root"; exit 1; fi; \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go not found: install Go >= 1.26 at /usr/local/go"; exit 1; }
endef

deps:
	$(call install-debs,$(TEST_PACKAGES))
	$(GO) mod download

# Only what `make demo` needs; go run fetches only the modules the demo imports.
deps-demo:
	$(call install-debs,$(DEMO_PACKAGES))

deps-build:
	$(call install-debs,$(BUILD_PACKAGES))

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/seccompagent
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/seccompagent-runtime ./oci-hook/cmd/seccompagent-runtime

# The agent's container image (examples/kubernetes/daemonset.yaml): the agent
# and the runtime wrapper, linked statically (libseccomp.a, glibc), written by
# Go as one tarball for `ctr -n k8s.io images import`, `docker load`, `podman load`.
IMAGE     ?= localhost/seccompagent:latest
IMAGE_TAR ?= build/seccompagent-image.tar
IMAGE_DIR ?= build/image
STATIC    := CGO_ENABLED=1 $(GO) build -tags osusergo,netgo -ldflags "$(LDFLAGS) -s -w -linkmode external -extldflags -static"

image: deps-build
	rm -rf $(IMAGE_DIR)/rootfs && mkdir -p $(IMAGE_DIR)/rootfs/usr/local/bin
	$(STATIC) -o $(IMAGE_DIR)/rootfs/usr/local/bin/seccompagent ./cmd/seccompagent
	$(STATIC) -o $(IMAGE_DIR)/rootfs/usr/local/bin/seccompagent-runtime ./oci-hook/cmd/seccompagent-runtime
	$(GO) run ./examples/kubernetes/image --rootfs $(IMAGE_DIR)/rootfs --name $(IMAGE) --out $(IMAGE_TAR)

# Every tier that exists: unit (fixtures), kernel (re-executed subprocess),
# end-to-end (root: runc and crun containers, consumer matrix), engines
# (podman, containerd, dockerd), Kubernetes through containerd's CRI plugin
# and cgroup v2 (qemu VM). Under CI=true a tier that
# cannot run fails instead of skipping. Packages run one at a time (-p 1): the
# VM tier's emulated CPUs would otherwise starve the timing checks (live
# updates within 1 s, uptime) of the host tiers on a 2-CPU machine.
test: build lint
	$(GO) test -p 1 -count=1 -timeout 30m ./...

demo: deps-demo
	$(GO) run ./test/demo

# Speed and fairness against a minimal C supervisor measured in the same run
# (test/bench): prints one table, asserts nothing. Not part of `make test`.
# Its tight loop also runs in the 6.1 cgroup v2 VM (qemu, a few minutes;
# BENCH_FLAGS=-skip=vm leaves it out, BENCH_FLAGS=-only=vm runs only that).
bench: deps
	$(GO) run ./test/bench $(BENCH_FLAGS)

# What real programs see, with and without the agent and with LXCFS:
# regenerates test/consumers.md, its cgroup v1 section on this host, its
# cgroup v2 section in the VM tier (test/vm boots it with only TestConsumers
# selected). `make test` runs both and writes nothing.
CONSUMERS_MD := $(CURDIR)/test/consumers.md
consumers: deps
	SECCOMPAGENT_CONSUMERS_MD=$(CONSUMERS_MD) $(GO) test -count=1 -timeout 20m -run '^TestConsumers$$' -v ./test/e2e
	SECCOMPAGENT_CONSUMERS_MD=$(CONSUMERS_MD) SECCOMPAGENT_VM_RUN='^TestConsumers$$' \
		$(GO) test -count=1 -timeout 20m -run '^TestCgroupV2VM$$' -v ./test/vm

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin build
