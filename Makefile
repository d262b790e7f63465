# Two commands do everything on a fresh machine with Python 3.11 and make: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: bootstrap run test lint typecheck unit bench clean-data

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

bootstrap: $(VENV)/.synced

## run: simulate the enterprise, run the pipeline over it, publish and show the KPIs
run: bootstrap
	$(BIN)/dataops demo

## test: lint, format check, type check, then the whole test suite
test: bootstrap lint typecheck unit

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/pytest

clean-data:
	find data -mindepth 1 -not -name README.md -not -name .gitignore -delete
