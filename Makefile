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

.PHONY: run test lint typecheck unit integration functional e2e proto deps system-deps bench clean

## run: start api, conductor and compute on SQLite + test:///default (Ctrl-C stops all three)
run: deps
	$(PY) -m services.cli.launcher

## test: install what the tests need, then lint, type-check and run every suite
test: deps
	$(PY) -m ruff check services tests bench
	$(PY) -m mypy
	$(PY) -m pytest tests

unit: deps
	$(PY) -m pytest tests/unit
integration: deps
	$(PY) -m pytest tests/integration
functional: deps
	$(PY) -m pytest tests/functional
bench: deps
	$(PY) -m bench

lint: deps
	$(PY) -m ruff check services tests bench
typecheck: deps
	$(PY) -m mypy

deps: $(INSTALLED) $(GENERATED)

## system-deps: Debian packages: libvirt-dev + pkg-config (libvirt-python builds against them)
## and PostgreSQL 15 (the integration tests run on it too). Root; apt-get update first.
DEBIAN_PACKAGES := libvirt-dev pkg-config postgresql
system-deps: $(SYSTEM_DEPS)
$(SYSTEM_DEPS):
	@missing=""; \
	pkg-config --exists libvirt 2>/dev/null || missing="$$missing libvirt-dev pkg-config"; \
	command -v pg_ctlcluster >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

$(INSTALLED): pyproject.toml $(SYSTEM_DEPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

## proto: generate the Python code for protos/ into services/common/generated
proto: $(GENERATED)
$(GENERATED): $(PROTOS) protos/generate.py $(INSTALLED)
	$(PY) protos/generate.py
	@touch $@

clean:
	rm -rf services/common/generated var .mypy_cache .ruff_cache .pytest_cache
