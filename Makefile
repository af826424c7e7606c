# nova-grpc — the two commands a new user needs are `make run` and `make test`.
# Everything else here is a step they depend on.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SYSTEM_DEPS := $(VENV)/.system-deps
GENERATED := services/common/generated/.stamp
PROTOS := $(shell find protos -name '*.proto')
RUFF_PATHS := services tests bench deploy
## the layering contracts in pyproject.toml ([tool.importlinter]): which layer may import what
LINT_IMPORTS := $(VENV)/bin/lint-imports --no-cache

## Debian packages. Running needs what libvirt-python builds against; testing also needs
## PostgreSQL (integration tests run on it) and libvirtd + QEMU + xorriso (the e2e guest).
## Defined before the rules: make expands a rule's prerequisites as it reads it.
## Keep TEST_PACKAGES in sync with tests/support/libvirtd.py (a unit test checks).
RUN_PACKAGES := libvirt-dev pkg-config
## nftables, dnsmasq-base and iproute2 are the compute datapath's (linuxbridge); busybox
## (udhcpc), iputils-ping and netcat-openbsd are the datapath tests' guests and clients.
TEST_PACKAGES := postgresql libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
	qemu-system-x86 qemu-utils xorriso nftables dnsmasq-base iproute2 busybox iputils-ping \
	netcat-openbsd
TEST_SYSTEM_DEPS := $(VENV)/.test-system-deps

## buf lints protos/ and checks them for breaking changes; it comes from npm (@bufbuild/buf).
## npm itself comes from Debian (BUF_PACKAGES) only when the machine has none: a NodeSource
## nodejs already carries its own npm, and Debian's would conflict with it.
BUF_VERSION := 1.75.0
BUF_PACKAGES := nodejs npm
BUF := $(VENV)/buf/node_modules/.bin/buf
BUF_INSTALLED := $(VENV)/buf/.installed-$(BUF_VERSION)
## The API as last released: `make breaking` fails on any change that would break a client
## built against it (buf's PACKAGE rules; deliberate breaks are listed in buf.yaml). Move it
## to each new release (a tag once releases are tagged); now: main before issue 17.
PROTO_BASELINE ?= 050081066f7a5f37ab9b060b15a4a66388b620b3

## Locked dependencies. requirements.lock is the image's set (pyproject's dependencies and the
## code generator: extra "build"), requirements-dev.lock everything `make test` needs (extra
## "dev"), held to the same versions as the first; both carry every file's sha256, and every
## install checks them. `make lock` rewrites both from pyproject.toml and keeps the pins that
## still fit; `make lock UPGRADE=1` moves every pin to the newest release that fits.
UV_VERSION := 0.13.10
LOCK_TOOLS := var/lock-tools
UV_COMPILE := $(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --quiet --universal \
	--python-version 3.11 --generate-hashes --native-tls --custom-compile-command 'make lock' \
	$(if $(UPGRADE),--upgrade)

.PHONY: run test lock proto-lint breaking lint typecheck unit integration functional e2e proto deps system-deps bench guest-image image image-smoke clean

## run: start api, conductor and compute on SQLite + test:///default (Ctrl-C stops all three)
run: deps
	$(PY) -m services.cli.launcher

## test: install what the tests need, then lint (protos too), type-check and run every suite
test: deps $(TEST_SYSTEM_DEPS) $(BUF_INSTALLED)
	$(BUF) lint
	$(BUF) breaking --against '.git#ref=$(PROTO_BASELINE),subdir=protos'
	$(PY) -m ruff check $(RUFF_PATHS)
	$(LINT_IMPORTS)
	$(PY) -m mypy
	$(PY) -m pytest tests

## guest-image: build the tiny bootable guest (Debian cloud kernel + busybox initramfs) and
## register it as image "tiny-guest" in the default database (or NOVA_GRPC_DATABASE_URL)
GUEST_DIR := var/images/tiny-guest
GUEST_CMDLINE := console=ttyS0 panic=-1 rdinit=/init
guest-image: deps $(TEST_SYSTEM_DEPS)
	$(PY) deploy/guest/build_guest_image.py --out $(GUEST_DIR) --cmdline "$(GUEST_CMDLINE)" >/dev/null
	$(PY) -m services.cli.manage image register --name tiny-guest --disk-format kernel \
	  --file $(GUEST_DIR)/vmlinuz --initrd $(GUEST_DIR)/initrd.img --cmdline "$(GUEST_CMDLINE)"

## image: the container image (deploy/Dockerfile). PYTHON_IMAGE overrides the base image,
## DOCKER_BUILD_FLAGS adds flags (e.g. --network host); DOCKER picks the client.
IMAGE ?= nova-grpc:dev
DOCKER ?= docker
image:
	DOCKER_BUILDKIT=1 $(DOCKER) build -f deploy/Dockerfile -t $(IMAGE) $(DOCKER_BUILD_FLAGS) \
	  $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) .

## image-smoke: build the image, then run the three roles from it and create two servers
image-smoke: image deps
	DOCKER=$(DOCKER) deploy/smoke_test_image.sh $(IMAGE)

unit: deps
	$(PY) -m pytest tests/unit
integration: deps
	$(PY) -m pytest tests/integration
functional: deps
	$(PY) -m pytest tests/functional
e2e: deps $(TEST_SYSTEM_DEPS)
	$(PY) -m pytest tests/e2e
bench: deps
	$(PY) -m bench

lint: deps
	$(PY) -m ruff check $(RUFF_PATHS)
	$(LINT_IMPORTS)

## proto-lint: buf lint (STANDARD, with the exceptions buf.yaml explains)
proto-lint: $(BUF_INSTALLED)
	$(BUF) lint
## breaking: buf breaking against PROTO_BASELINE (override: make breaking PROTO_BASELINE=<ref>)
breaking: $(BUF_INSTALLED)
	$(BUF) breaking --against '.git#ref=$(PROTO_BASELINE),subdir=protos'

$(BUF_INSTALLED):
	command -v npm >/dev/null || deploy/install-debian-packages.sh $(BUF_PACKAGES)
	npm install --prefix $(VENV)/buf --no-save --no-audit --no-fund @bufbuild/buf@$(BUF_VERSION)
	@touch $@
typecheck: deps
	$(PY) -m mypy

deps: $(INSTALLED) $(GENERATED)

system-deps: $(SYSTEM_DEPS)
$(SYSTEM_DEPS):
	deploy/install-debian-packages.sh $(RUN_PACKAGES)
	@mkdir -p $(VENV) && touch $@

$(TEST_SYSTEM_DEPS): $(SYSTEM_DEPS)
	deploy/install-debian-packages.sh $(TEST_PACKAGES)
	@touch $@

## the locked set first (hash-checked), then the project itself without resolving anything
## (its build backend, setuptools, is in the lock: no unpinned build environment)
$(INSTALLED): pyproject.toml requirements-dev.lock $(SYSTEM_DEPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

## lock: rewrite requirements.lock and requirements-dev.lock from pyproject.toml (needs PyPI)
lock:
	@test -x $(LOCK_TOOLS)/bin/uv || { $(PYTHON) -m venv $(LOCK_TOOLS) \
	  && $(LOCK_TOOLS)/bin/pip install -q 'uv==$(UV_VERSION)'; }
	$(UV_COMPILE) --extra build -o requirements.lock
	$(UV_COMPILE) --extra dev --constraint requirements.lock -o requirements-dev.lock

## proto: generate the Python code for protos/ into services/common/generated
proto: $(GENERATED)
$(GENERATED): $(PROTOS) protos/generate.py $(INSTALLED)
	$(PY) protos/generate.py
	@touch $@

clean:
	rm -rf services/common/generated var .mypy_cache .ruff_cache .pytest_cache
