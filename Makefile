# The two commands that matter: `make demo` and `make test`. Each sets up what it needs (venv, pip
# packages, Debian packages) on a fresh machine and does nothing twice.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
APT_PACKAGES := prometheus
# the CPU build; a bare `torch` from PyPI would pull a multi-GB CUDA build
TORCH ?= torch==2.13.0
DEMO_ARGS ?= --duration 600

.PHONY: demo test venv system-deps bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test,torch]' '$(TORCH)'
	touch $(STAMP)

# Debian packages the tests run for real (Prometheus scrapes our /metrics endpoint).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# A simulated 2-host x 8-GPU H100 cluster with one injected fault (a cooling failure), exporting
# OTLP to the RCA service; GPUs and incidents printed live. Ctrl-C stops; `make demo DEMO_ARGS=` runs
# until interrupted.
demo: $(STAMP)
	$(VENV)/bin/factorylens demo --hosts 2 --gpus-per-host 8 --model H100 \
	  --scenario receivers/gpu/scenarios/demo.yaml --speed 10 --collection-interval 2 \
	  --prometheus-port 9400 $(DEMO_ARGS)

test: $(STAMP) system-deps
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/receiver.py
	$(PY) bench/ingest.py
	$(PY) bench/instrumentation.py
	$(PY) bench/baselines.py
	$(PY) bench/nab.py
	$(PY) bench/rca.py
	$(PY) bench/ranking.py
	$(PY) bench/scenarios.py
	$(PY) bench/specificity.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
