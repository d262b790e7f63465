# Two commands do everything on a fresh machine with Python 3.11 and make: `make run` and `make test`.
# The interpreter the venv is made from: the distribution's Python 3.11 where it can make a venv (Debian builds
# it with profile-guided and link-time optimisation; a Python built by pyenv's defaults has neither and links a
# shared libpython: the suite costs 7% more CPU on it, docs/decisions/0108), else python3.11 on PATH.
# `make PYTHON=/path/to/python3.11` chooses another. A venv made from another interpreter is made again.
DISTRIBUTION_PYTHON ?= /usr/bin/python3.11
ifeq ($(origin PYTHON),undefined)  # chosen once (`?=` would run the search at each use)
PYTHON := $(shell for p in $(DISTRIBUTION_PYTHON) python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import ensurepip, venv' 2>/dev/null && { command -v $$p; exit; }; done; \
	command -v python3.11 || command -v python3)
endif
VENV := .venv
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: FORCE bootstrap run test lint typecheck unit system-packages browser clients postgres bench clean-data
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

# The interpreter the venv was made from; rewritten (and the venv made again) only when the choice changes, so
# that its date moves only then.
$(VENV)/.made-from: FORCE
	@if [ "$$(cat $@ 2>/dev/null)" != "$(PYTHON)" ]; then \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && echo "$(PYTHON)" > $@; fi

$(UV): $(VENV)/.made-from
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@touch $@

# Bytecode is compiled at install (docs/decisions/0016): otherwise, where PYTHONDONTWRITEBYTECODE is set or
# site-packages is read-only, every process (each Dagster run, each dbt step) recompiles dagster and dbt.
$(VENV)/.synced: $(UV) pyproject.toml uv.lock Makefile
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

bootstrap: $(VENV)/.synced

## run: simulate the enterprise, run the pipeline over it, publish and show the KPIs
run: bootstrap
	$(BIN)/dataops demo

## test: lint, format check, type check and the whole test suite side by side
# mypy runs on one core for most of a minute: the suite starts beside it instead of after it, its progress shown
# as it goes. `-k`: whichever check fails, the suite still runs to its end and `make test` fails after it (the
# failed check's lines are in the log above the suite's summary; make names it last: "[Makefile:NN: lint] Error").
test: bootstrap
	$(MAKE) --no-print-directory -k -j3 lint typecheck unit

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# Debian's Python 3.11.2 reports a semaphore of sqlfluff's process pool as leaked when the lint ends (its
	@# resource tracker removes it; 3.11.7 does not report it): the warning is not shown.
	cd transforms && PYTHONWARNINGS=ignore:resource_tracker:UserWarning ../$(BIN)/sqlfluff lint models macros --processes 2

typecheck:
	$(BIN)/mypy

# The suite's processes keep the bytecode they compile (the project's modules, the tests' rewritten asserts), even
# where PYTHONDONTWRITEBYTECODE is set: each of the dozens of processes a run starts compiled them again otherwise
# (in __pycache__, ignored by git; docs/decisions/0016).
unit: system-packages clients
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --durations=30

# Debian's packages the tests use, those missing installed in one apt-get run, without Chromium's recommended
# extras (printing, sound, desktop services) but with its fonts, named (the page tests measure widths of text):
# the page tests drive Debian's Chromium (Playwright cannot download its own browsers here); the tests of the
# Dagster instance on PostgreSQL start Debian's server themselves (tests/postgres/conftest.py).
MISSING_PACKAGES = $(strip $(if $(shell command -v chromium),,chromium fonts-liberation) \
	$(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql))
system-packages:
	@$(if $(MISSING_PACKAGES),echo "installing Debian's $(MISSING_PACKAGES) for the tests"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends $(MISSING_PACKAGES) >/dev/null,true)

browser postgres: system-packages

# The analysts' own clients (tests/clients/README.md): older DuckDB releases and the DuckDB CLI, each in a small
# environment of its own from a pinned, hashed requirements file, that the tests open the published files with.
CLIENTS := .clients
CLIENT_ENVS := $(patsubst tests/clients/%.txt,$(CLIENTS)/%/.synced,$(wildcard tests/clients/*.txt))

$(CLIENTS)/%/.synced: tests/clients/%.txt $(UV)
	rm -rf $(CLIENTS)/$*
	$(UV) venv --quiet --python $(PYTHON) $(CLIENTS)/$*
	$(UV) pip install --quiet --python $(CLIENTS)/$*/bin/python --require-hashes --no-deps -r $<
	@touch $@

clients: $(CLIENT_ENVS)

## bench: simulate the sources at SF (default 1), then measure the full build, the floor, daily runs, and the
## event stream at EVENTS=SCALE:DAYS (default 10:31; EVENTS= to skip) (see benchmarks/, docs/performance.md)
SF ?= 1
EVENTS ?= 10:31
BENCH_ARGS ?=
bench: bootstrap
	$(BIN)/python -m benchmarks --scale $(SF) $(if $(EVENTS),--events $(EVENTS)) $(BENCH_ARGS)

clean-data:
	find data -mindepth 1 -not -name README.md -not -name .gitignore -delete
