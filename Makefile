# Everything a fresh machine needs is set up by these targets: `make test` and `make local` are enough.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY ?= python3.11
UV_VERSION := 0.13.9
BOOT := .cache/bootstrap
UV := $(BOOT)/bin/uv
VENV := .venv
VENV_FLINK := .venv-flink
PYTHON := $(VENV)/bin/python
STACKS := local dev staging prod

.PHONY: help venv venv-flink lint typecheck test test-unit test-flink test-integration test-e2e toolchain check-stacks render local bench lock clean

help:
	@echo "make local   run the whole platform on this machine (real Kafka, registry, Flink jobs)"
	@echo "make test    set up everything and run lint, type checks and the whole test suite"
	@echo "make render  write every Kubernetes object of every stack to out/<stack>/"
	@echo "make bench   render benchmark; data-plane benchmark (agent-events vs a transactional pass-through)"
	@echo "make lock    re-resolve the lock files from requirements/*.in"

$(UV):
	$(PY) -m venv $(BOOT)
	$(BOOT)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.stamp: requirements/platform.lock pyproject.toml | $(UV)
	$(UV) venv -q --allow-existing --python $(PY) $(VENV)
	VIRTUAL_ENV=$(VENV) $(UV) pip sync -q --require-hashes --compile-bytecode requirements/platform.lock
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q --no-deps -e .
	touch $@

$(VENV_FLINK)/.stamp: requirements/flink.lock | $(UV)
	$(UV) venv -q --allow-existing --python $(PY) $(VENV_FLINK)
	VIRTUAL_ENV=$(VENV_FLINK) $(UV) pip sync -q --require-hashes --compile-bytecode requirements/flink.lock
	touch $@

venv: $(VENV)/.stamp
venv-flink: $(VENV_FLINK)/.stamp

lock: | $(UV)
	$(UV) pip compile -q --generate-hashes --python-version 3.11 requirements/platform.in -o requirements/platform.lock
	$(UV) pip compile -q --generate-hashes --python-version 3.11 requirements/flink.in -o requirements/flink.lock

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

TYPED := $(dir $(wildcard headwater/__init__.py headwater_cli/__init__.py components/__init__.py policies/__init__.py flink_apps/__init__.py)) bench __main__.py

typecheck: venv
	$(VENV)/bin/mypy $(TYPED)

test-unit: venv
	$(PYTHON) -m pytest -q tests --ignore=tests/flink --ignore=tests/integration --ignore=tests/e2e

check-stacks: venv
	for s in $(STACKS); do $(VENV)/bin/headwater check --stack $$s; done
	$(VENV)/bin/headwater contracts check

test-flink: venv-flink
	$(VENV_FLINK)/bin/python -m pytest -q tests/flink

test-integration: venv venv-flink
	$(PYTHON) -m pytest -q tests/integration

# The deploy toolchain (Pulumi CLI, language host, Kubernetes provider, etcd, kube-apiserver, controllers, kwok),
# built from Go modules at the versions in headwater/versions.py, cached outside the clone (about 30 min cold).
toolchain:
	engine/build.sh

# `pulumi preview/up/destroy` of this project by the real engine against a control plane the tests start.
test-e2e: venv toolchain
	$(PYTHON) -m pytest -q tests/e2e

test: lint typecheck test-unit check-stacks test-flink test-integration test-e2e
	@echo "make test: all suites passed"

# The whole platform on this machine until Ctrl-C; ARGS passes options, e.g. make local ARGS="--duration 120".
local: venv venv-flink
	$(VENV)/bin/headwater local up $(ARGS)

render: venv
	for s in $(STACKS); do $(VENV)/bin/headwater render --stack $$s --out out/$$s; done

bench: venv venv-flink
	$(PYTHON) bench/render_bench.py
	$(PYTHON) bench/dataplane_bench.py $(ARGS)

clean:
	rm -rf $(VENV) $(VENV_FLINK) .cache out .pytest_cache .mypy_cache .ruff_cache
