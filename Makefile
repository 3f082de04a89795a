# Two commands matter: `make run` (the demo) and `make test` (the whole suite).
# Every target that needs Python creates or updates .venv itself; the stamp makes
# that a no-op when pyproject.toml has not changed.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data
DEMO_HOURS ?= 48
DEMO_SCALE ?= 1.0
DEMO_SEED ?= 7
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test lint typecheck unit integration bench venv clean tools dashboards

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	@mkdir -p $(DATA)
	@rm -rf $(DATA)/chdb
	$(BIN)/koxpulse simulate --out $(DATA)/demo.jsonl.gz --hours $(DEMO_HOURS) --seed $(DEMO_SEED) --scale $(DEMO_SCALE) --incidents
	$(BIN)/koxpulse run --input $(DATA)/demo.jsonl.gz --clickhouse chdb://$(DATA)/chdb \
		--metrics-textfile $(DATA)/metrics.prom --summary
	@echo
	@echo "Alerts against the demo's labelled incidents:"
	$(BIN)/koxpulse evaluate --labels $(DATA)/demo.labels.jsonl --clickhouse chdb://$(DATA)/chdb
	@echo
	$(BIN)/koxpulse report --out $(DATA)/report.html --clickhouse chdb://$(DATA)/chdb
	@echo "Report: $(abspath $(DATA)/report.html)"


# Regenerate dashboards/json from the Python definitions (a test fails while they differ).
dashboards: $(STAMP)
	$(BIN)/koxpulse dashboards build

# System tools the tests drive (Debian packages): headless Chromium (the HTML report),
# promtool (rules, PromQL of the dashboards), amtool and Alertmanager 0.25. A no-op when
# installed; the packages' services are not used, tests start their own on loopback ports.
SUDO := $(shell test "$$(id -u)" -eq 0 || echo sudo)
tools:
	@command -v chromium >/dev/null && command -v promtool >/dev/null \
		&& command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null \
		|| ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
			-y -qq --no-install-recommends chromium prometheus prometheus-alertmanager >/dev/null)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) tools
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) tools
	$(BIN)/pytest -q tests/integration

test: lint typecheck tools
	$(BIN)/pytest -q tests

# `make bench` also needs the bench extra (py-spy) and Quix Streams, the peer it is compared
# with. Quix pins confluent-kafka below koxpulse's version, so it gets an environment of its
# own inside .venv; if it cannot be installed the benchmark says so instead of comparing.
BENCH_STAMP := $(VENV)/.bench-installed
QUIX_VENV := $(VENV)/quix
QUIX_STAMP := $(QUIX_VENV)/.installed
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP) pyproject.toml
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

$(QUIX_STAMP): bench/requirements-quix.txt
	@test -x $(QUIX_VENV)/bin/python || $(PY) -m venv $(QUIX_VENV)
	@$(QUIX_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r bench/requirements-quix.txt && touch $(QUIX_STAMP) \
		|| echo "bench: Quix Streams could not be installed; the comparison will say why"

bench: $(BENCH_STAMP) $(QUIX_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .mypy_cache .ruff_cache
