# The two commands that matter: `make demo` and `make test`. Each sets up what it needs (venv, pip
# packages, Debian packages) on a fresh machine and does nothing twice. `make check` is the quick loop.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# the demo needs the RCA service, rotel, the simulator and rich (the `demo` extra); the test stamp implies it
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test
# libpython3.11: rotel-agent (the rotel wheel's collector) links it and runs its Python processors in it;
# chromium (tests only): the demo report's screenshot test
APT_PACKAGES := prometheus libpython3.11
TEST_APT_PACKAGES := $(APT_PACKAGES) chromium
# the CPU build; a bare `torch` from PyPI would pull a multi-GB CUDA build
TORCH ?= torch==2.13.0
DEMO_ARGS ?=
# parallel test workers (pytest-xdist); 0 runs in one process
TEST_WORKERS ?= 2

.PHONY: demo test check lint types data venv system-deps test-system-deps bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[demo]'
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[dev,torch]' '$(TORCH)'
	touch $@ $(DEMO_STAMP)

venv: $(TEST_STAMP)

# Debian packages the demo and the tests run for real (Prometheus scrapes our /metrics endpoint; rotel-agent
# loads libpython; the tests also screenshot the demo report in chromium).
system-deps test-system-deps: PACKAGES = $(if $(filter test-system-deps,$@),$(TEST_APT_PACKAGES),$(APT_PACKAGES))
system-deps test-system-deps:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# A simulated AI factory through the real stack (docs/demo.md): the RCA service, rotel, Prometheus, the node
# agents of 4 hosts x 8 H100s and the instrumented jobs of two teams as separate processes; five faults
# of five domains (a straggler rank, a throttled GPU, a data-loader stall, a congested fabric port, a slow
# checkpoint file system) minutes apart, at 10x. A live view, then each incident with its ranked causes
# and whether it named the injected fault, the cost per team, and an HTML report in demo-report/. About
# 5 minutes; Ctrl-C stops everything. `make demo DEMO_ARGS="--plain --speed 6"`, `--keep-running`, ...
demo: $(DEMO_STAMP) system-deps
	$(VENV)/bin/factorylens demo $(DEMO_ARGS)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(TEST_STAMP)
	$(VENV)/bin/mypy

# The quick loop (about a minute): lint, types and the unit tests (not the servers, real data or
# end-to-end runs, which are marked slow).
check: lint types
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS)

# Everything: lint, types and every test (the README's command; .ci/run calls it).
# the end-to-end tests run real processes in real time (collector, RCA service, Prometheus, simulated GPUs
# at 10x): they run alone after the rest, so another worker's load does not slow their clocks
test: $(TEST_STAMP) test-system-deps lint types
	$(PY) -m pytest -q -n $(TEST_WORKERS) --ignore=tests/e2e
	$(PY) -m pytest -q tests/e2e

# The public datasets the real-data tests and benchmarks use, into the cache (see docs/benchmarks.md).
data: $(DEMO_STAMP)
	$(VENV)/bin/factorylens datasets fetch

bench: $(TEST_STAMP)
	$(PY) bench/receiver.py
	$(PY) bench/ingest.py
	$(PY) bench/processors.py
	$(PY) bench/analysis.py
	$(PY) bench/instrumentation.py
	$(PY) bench/baselines.py
	$(PY) bench/nab.py
	$(PY) bench/rca.py
	$(PY) bench/crossval.py
	$(PY) bench/ranking.py
	$(PY) bench/scenarios.py
	$(PY) bench/specificity.py
	$(PY) bench/fuzz.py
	$(PY) bench/soak.py
	$(PY) bench/install_size.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
