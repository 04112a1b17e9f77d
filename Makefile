# The two commands the README opens with: `make demo` and `make test`. Both do all the set-up:
# a Python 3.11 venv with the project installed, and (make test) the programs the tests need.
# Python 3.11: python3.11 when there is one, else python3 when it is 3.11; PYTHON=... chooses.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Prefect 3 edition (prefect3/) has a venv of its own: Prefect 1 and 3 cannot share one.
VENV3 := .venv-prefect3
BIN3 := $(VENV3)/bin
STAMP3 := $(VENV3)/.installed
IS_311 := import sys; sys.exit(sys.version_info[:2] != (3, 11))

.PHONY: demo test lint install data clean pictures benchmark check-python venv-version system-deps mutation check-exercise

# Refused before any venv is made: Prefect 1.4.1's pins (pendulum 2) build on 3.11 only.
check-python:
	@$(PYTHON) -c '$(IS_311)' 2>/dev/null || { echo "error: Python 3.11 is needed, '$(PYTHON)' is" \
	  "$$($(PYTHON) --version 2>&1 || echo missing). Install it (Debian/Ubuntu: apt-get install python3.11" \
	  "python3.11-venv; macOS: brew install python@3.11; or pyenv install 3.11) and run: make $(MAKECMDGOALS)" \
	  "PYTHON=/path/to/python3.11" >&2; exit 2; }

# A venv made by another Python (an earlier `python3 -m venv .venv` of 3.12, say) is made again.
venv-version: check-python
	@for venv in $(VENV) $(VENV3); do \
	  if [ -e $$venv/bin/python ] && ! $$venv/bin/python -c '$(IS_311)' 2>/dev/null; then \
	    echo "$$venv is $$($$venv/bin/python --version 2>&1), not 3.11: making it again"; rm -rf $$venv; fi; done

$(STAMP): requirements.txt requirements-qc.txt requirements-dev.txt pyproject.toml | venv-version
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# graphviz's dot and Chromium: apt-get as root, else one message with the commands (exit 2).
system-deps:
	@bash tools/system_deps.sh

install: venv-version $(STAMP)

data: venv-version $(STAMP)
	@if ! ls data/*.svs >/dev/null 2>&1; then $(BIN)/python get_data.py --synthetic 3; fi

# The QC of data/, then each slide's percent blurry beside its ground truth (synthetic slides).
demo: data
	$(BIN)/python pipeline.py --data-dir data --output-dir output --run-name demo --overwrite --log-level WARNING
	@echo
	$(BIN)/python tools/compare_truth.py output/demo --data-dir data

# Both venvs first: tests/ also runs the Prefect 3 scripts (tests/test_faults.py), which would be
# skipped without .venv-prefect3. The lint gate runs first (so CI's `make test` has it) and a
# finding stops the run before any test.
test: venv-version system-deps $(STAMP) $(STAMP3)
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest
	$(MAKE) test-prefect3

# Style, docstrings and types, all configured in pyproject.toml ([tool.ruff], [tool.mypy]): 0 findings.
lint: venv-version $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pictures: $(STAMP)
	$(BIN)/python docs/make_pictures.py --overview --artefacts

# Mutation testing of the core (not part of `make test`: it runs the core's tests once per mutant;
# 2,417 mutants: about 18 minutes on 2 cores). Configured in pyproject.toml [tool.mutmut]; scores: docs/mutation.md.
mutation: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/python tools/mutation_summary.py

# Every script on 8 synthetic 20k x 15k slides, 3 rounds: about 6 minutes on 2 cores. Rewrites docs/benchmark.md.
benchmark: $(STAMP)
	$(BIN)/python benchmarks/run_benchmark.py

# The Prefect 3 edition's venv (VENV3 above) and its own tests.
.PHONY: install-prefect3 test-prefect3 benchmark-prefect3-server

$(STAMP3): requirements-qc.txt prefect3/requirements.txt prefect3/requirements-dev.txt pyproject.toml | venv-version
	$(PYTHON) -m venv $(VENV3)
	$(BIN3)/pip install --quiet --upgrade pip
	$(BIN3)/pip install --quiet -r prefect3/requirements-dev.txt
	$(BIN3)/pip install --quiet --no-deps -e .
	touch $(STAMP3)

install-prefect3: venv-version $(STAMP3)

test-prefect3: venv-version system-deps $(STAMP3)
	$(BIN3)/python -m pytest prefect3/tests

# The Prefect 3 server path with 128 slides, on SQLite and on PostgreSQL (system-deps installs it):
# about 10 minutes on 2 cores. Rewrites its section of docs/benchmark.md.
benchmark-prefect3-server: venv-version system-deps $(STAMP3)
	$(BIN3)/python benchmarks/prefect3_server_scale.py --database sqlite
	$(BIN3)/python benchmarks/prefect3_server_scale.py --database postgresql

clean:
	rm -rf output .pytest_cache

# Is my exercise right? make check-exercise N=3 FILE=my_exercise3.py (tools/check_exercise.py)
check-exercise: $(STAMP)
	@test -n "$(N)" -a -n "$(FILE)" || { echo "usage: make check-exercise N=<1-5> FILE=<your file>" >&2; exit 2; }
	$(BIN)/python tools/check_exercise.py $(N) $(FILE)
