# tributary: the two commands are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tributary-installed

.PHONY: setup tools browser demo test test-unit lint docs bench down clean

# Creates the virtualenv once and reuses it (torch is large: installed once).
setup: $(STAMP)
$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "installing Java 17 (Kafka broker)"; apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; }
	@command -v mvn >/dev/null || { echo "installing Maven (fetches the Kafka jars)"; apt-get update -qq && apt-get install -y -qq maven; }
	@command -v go >/dev/null || { echo "installing Go (builds stripe-mock)"; apt-get update -qq && apt-get install -y -qq golang-go; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's chromium for the portal's browser tests (driven by Playwright; no browser download)
browser:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium (the portal's browser tests)"; apt-get update -qq && apt-get install -y -qq chromium; }

# helm for the chart tests (built once with Go into $GOPATH/bin)
HELM := $(shell command -v helm 2>/dev/null || echo $${GOPATH:-$$HOME/go}/bin/helm)
tools: $(HELM)
$(HELM):
	@echo "building helm with go install (first run only)"
	go install helm.sh/helm/v3/cmd/helm@v3.22.0

demo: setup
	$(VENV)/bin/tributary demo

test: setup tools browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -ra

test-unit: setup
	$(VENV)/bin/pytest -ra -m "not kafka and not clickhouse and not stripe and not model and not qdrant and not helm"

bench: setup
	$(VENV)/bin/python benchmarks/streams_bench.py
	$(VENV)/bin/python benchmarks/sink_bench.py
	$(VENV)/bin/python benchmarks/attribution_bench.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

docs: setup
	$(PY) -m schemas.docs > docs/topics.md
	$(PY) -m sinks.clickhouse.dictionary > docs/tables.md

down:
	$(VENV)/bin/tributary down

clean: down
	rm -rf $(VENV)
