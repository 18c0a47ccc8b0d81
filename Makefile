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

.PHONY: help venv venv-flink prometheus redis postgres chromium contract-check flink-functions lint typecheck test test-unit test-flink test-integration test-under-load test-e2e toolchain control-plane check-stacks render local bench lock clean

help:
	@echo "make local   run the whole platform on this machine (real Kafka, registry, Flink jobs)"
	@echo "make test    set up everything and run lint, type checks and the whole test suite"
	@echo "make test-under-load   the integration suite with every core kept busy"
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

# Debian's Prometheus (with promtool): `make local` runs it as a plain process in the state dir, and the tests
# check and unit-test the alert rules with promtool. Installed only when missing; never run as a service.
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  { echo "installing Debian's prometheus package (apt-get)"; apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; }

# Debian's Redis: the online feature store's server, which `make local` and the tests run as a plain process
# on 127.0.0.1 with a password and its data in a state or tmp dir. Installed only when missing; never a service.
redis:
	@command -v redis-server >/dev/null || \
	  { echo "installing Debian's redis-server package (apt-get)"; apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server; }

# Debian's Chromium and its chromedriver (the same version): the approvers' page is tested in this headless
# browser. Installed only when missing; the tests start it as a plain process and stop it.
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { echo "installing Debian's chromium and chromium-driver packages (apt-get)"; apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; }

# Debian's PostgreSQL server for the outbox sources: the local platform and the CDC tests run it as a plain
# process in the state dir. It refuses to run as root, so as root an unprivileged system user runs it.
PG_USER := headwater-postgres
postgres:
	@{ ls /usr/lib/postgresql/*/bin/postgres && command -v prometheus-postgres-exporter; } >/dev/null 2>&1 || \
	  { echo "installing Debian's postgresql and prometheus-postgres-exporter packages (apt-get)"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    postgresql prometheus-postgres-exporter; }
	@if [ "$$(id -u)" = 0 ] && ! id -u $(PG_USER) >/dev/null 2>&1; then \
	  echo "creating the system user $(PG_USER) that runs PostgreSQL"; \
	  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $(PG_USER); fi

# The outbox contract check (connect/contract-check), our own Connect transform: Maven builds it and runs its unit
# tests into .cache/jvm/contract-check (only when its sources or pinned versions change; Maven's local repository
# keeps what it fetched from Maven Central). The local Connect worker loads it from there.
contract-check: venv
	$(PYTHON) -m headwater.jvm build contract-check

# The Flink apps' native functions (flink/functions): the agent-events hot path in the JVM, built the same way
# into .cache/jvm/flink-functions and put on the local jobs' pipeline.jars (the image builds its own copy).
flink-functions: venv
	$(PYTHON) -m headwater.jvm build flink-functions

lock: | $(UV)
	$(UV) pip compile -q --generate-hashes --python-version 3.11 requirements/platform.in -o requirements/platform.lock
	$(UV) pip compile -q --generate-hashes --python-version 3.11 requirements/flink.in -o requirements/flink.lock
	$(UV) pip compile -q --generate-hashes --python-version 3.11 requirements/feature-store.in -c requirements/platform.lock -o requirements/feature-store.lock
	$(UV) pip compile -q --generate-hashes --python-version 3.11 requirements/approval-gate.in -o requirements/approval-gate.lock

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

TYPED := $(dir $(wildcard headwater/__init__.py headwater_cli/__init__.py components/__init__.py policies/__init__.py feature_store/__init__.py approval_gate/__init__.py)) bench __main__.py
# Test folders import their helpers as top-level modules (and each has a conftest), so each is its own run.
TYPED_TESTS := unit schema policy contracts integration e2e

# mypy --strict on everything; the apps and their tests against the apps' environment, where PyFlink lives.
typecheck: venv venv-flink
	$(VENV)/bin/mypy $(TYPED)
	for d in $(TYPED_TESTS); do $(VENV)/bin/mypy tests/$$d; done
	$(VENV)/bin/mypy --python-executable $(VENV_FLINK)/bin/python flink_apps
	$(VENV)/bin/mypy --python-executable $(VENV_FLINK)/bin/python tests/flink

test-unit: venv prometheus
	$(PYTHON) -m pytest -q tests --ignore=tests/flink --ignore=tests/integration --ignore=tests/e2e

check-stacks: venv
	for s in $(STACKS); do $(VENV)/bin/headwater check --stack $$s; done
	$(VENV)/bin/headwater contracts check

test-flink: venv-flink flink-functions
	$(VENV_FLINK)/bin/python -m pytest -q tests/flink

# Needs the control plane too: the admission tests run a real kube-apiserver.
test-integration: venv venv-flink control-plane prometheus redis postgres chromium contract-check flink-functions
	$(PYTHON) -m pytest -q tests/integration

# The deploy toolchain, built from Go modules at the versions in headwater/versions.py and cached outside the
# clone (engine/README.md): `control-plane` is etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kwok; `toolchain` adds the Pulumi CLI, its Python language host and the Kubernetes provider.
control-plane:
	engine/build.sh kube

toolchain:
	engine/build.sh all

# `pulumi preview/up/destroy` of this project by the real engine against a control plane the tests start.
test-e2e: venv toolchain
	$(PYTHON) -m pytest -q tests/e2e

# The integration suite with every core kept busy by CPU burners the session starts and stops: races
# between the platform and a loaded machine show up here first.
test-under-load: venv venv-flink prometheus redis postgres chromium contract-check flink-functions
	HEADWATER_TEST_BURN_CPUS=all $(PYTHON) -m pytest -q tests/integration

test: lint typecheck test-unit check-stacks test-flink test-integration test-e2e
	@echo "make test: all suites passed"

# The whole platform on this machine until Ctrl-C; ARGS passes options, e.g. make local ARGS="--duration 120".
local: venv venv-flink prometheus redis postgres contract-check flink-functions
	$(VENV)/bin/headwater local up $(ARGS)

render: venv
	for s in $(STACKS); do $(VENV)/bin/headwater render --stack $$s --out out/$$s; done

bench: venv venv-flink flink-functions
	$(PYTHON) bench/render_bench.py
	$(PYTHON) bench/dataplane_bench.py $(ARGS)

clean:
	rm -rf $(VENV) $(VENV_FLINK) .cache out .pytest_cache .mypy_cache .ruff_cache
