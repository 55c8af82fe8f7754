# Quick start: `make demo` (sample release to the local registry), `make test` (every test).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
INVOKE := $(VENV)/bin/invoke

.PHONY: setup install demo test test-fast lint bench clean

setup:
	bash scripts/setup.sh

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m compileall -q hookbuild tasks.py  # bytecode even where PYTHONDONTWRITEBYTECODE is set
	touch $@

install: $(VENV)/.installed

# The demo signs with the key setup.sh made once (outside the repo) and ends by verifying what it pushed.
DEMO_KEY := /etc/hookbuild/demo-signing-key.pem
demo: setup install
	mkdir -p dist
	$(INVOKE) release --variant istio --sample --signing-key $(DEMO_KEY) --json > dist/sample-release.json
	$(INVOKE) versions --variant istio --versions-file dist/sample/versions.toml
	$(INVOKE) verify "$$($(PY) -c 'import json; r = json.load(open("dist/sample-release.json")); print(r["variant"] + "@" + r["version"])')" \
		--versions-file dist/sample/versions.toml --key /etc/hookbuild/demo-signing-key.pub.pem

lint: install
	$(VENV)/bin/ruff check hookbuild tasks.py tests benchmarks scripts
	$(VENV)/bin/ruff format --check hookbuild tasks.py tests benchmarks scripts
	$(VENV)/bin/mypy

# The developer's loop: in-process tests, no Docker, Bazel, registry or bpftrace (see tests/README.md).
test-fast: install
	$(VENV)/bin/ruff check hookbuild tasks.py tests benchmarks scripts
	$(PY) -m pytest -m "not docker and not registry and not bazel and not bpf and not slow" -q

test: setup install lint
	$(PY) -m pytest

bench: setup install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf dist .pytest_cache .mypy_cache .ruff_cache
