# The two commands a new machine needs: `make demo` and `make test`.
# Both build .venv in the repo root when it is missing (or when pyproject.toml, setup.py
# or the lock file changed), with every version pinned by requirements/lock.txt.
PYTHON ?= python3
# Bytecode caches on, whatever the shell says: with PYTHONDONTWRITEBYTECODE set, every
# test process re-compiled the package and pytest re-rewrote all 130 test modules
# (collection 13 s instead of 6 s, in each of the suite's six pytest processes and
# before each of the hundreds of digest commands the tests start).
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt

.PHONY: demo test test-clocks lint bench clean venv lock node-tools

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

# Re-resolve every dependency (all extras, any platform, Python 3.11) to its newest
# allowed version and rewrite the lock; the next make reinstalls from it.
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra postgres --extra ses --extra redis \
		--universal --python-version 3.11 --upgrade --custom-compile-command 'make lock' \
		-o $(LOCK)

demo: $(STAMP)
	$(BIN)/digest demo
	@echo "($(BIN)/digest is the digest command; . $(BIN)/activate puts it on PATH as plain digest)"

# The email checks' npm packages (MJML validator, axe-core), outside the repository.
node-tools:
	@bash tests/node/install.sh

# The suite runs on TEST_WORKERS processes (pytest-xdist), a test module to a process:
# a module's servers and fixtures stay together. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP) node-tools
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)
	$(BIN)/python tests/shifted_clocks.py -q -p no:cacheprovider $(XDIST)

# The tests of dates, schedules, windows, waves, tokens and expiry (marked `clock`) again
# under shifted clocks: 400 days ahead and the two Sundays of 2027 on which Europe/Berlin
# changes its clocks (Debian's faketime shifts every process the tests start).
test-clocks: $(STAMP)
	$(BIN)/python tests/shifted_clocks.py --all -q -p no:cacheprovider $(XDIST)

lint: $(STAMP)
	$(BIN)/ruff check digest subscribers tests bench scheduler.py
	$(BIN)/ruff format --check digest subscribers tests bench scheduler.py
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
