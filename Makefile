# Two entry points: `make run` runs the daily job once, `make test` runs the
# test suite. Both create .venv and install the project when it is missing.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PREFECT_HOME ?= $(CURDIR)/var/prefect
export TF_CPP_MIN_LOG_LEVEL ?= 2
# The temporary Prefect server would otherwise send usage telemetry on every run.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: run test install clean

run: $(STAMP)
	$(BIN)/parkcast run

test: $(STAMP)
	@# Prefect 3 creates PREFECT_HOME without its parents and fails on a fresh checkout.
	mkdir -p "$(PREFECT_HOME)"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf var
