# The two commands the README opens with: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install data clean pictures benchmark

$(STAMP): requirements.txt requirements-qc.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	@if ! ls data/*.svs >/dev/null 2>&1; then $(BIN)/python get_data.py --synthetic 3; fi

demo: data
	$(BIN)/python pipeline.py --data-dir data --output-dir output

test: $(STAMP)
	$(BIN)/python -m pytest
	$(MAKE) test-prefect3

lint: $(STAMP)
	$(BIN)/ruff check .

pictures: $(STAMP)
	$(BIN)/python docs/make_pictures.py --overview

# Every script on 8 synthetic 20k x 15k slides, 3 rounds: about 5 minutes on 2 cores. Rewrites docs/benchmark.md.
benchmark: $(STAMP)
	$(BIN)/python benchmarks/run_benchmark.py

# The Prefect 3 edition (prefect3/): its own venv, because Prefect 1 and 3 cannot share one.
VENV3 := .venv-prefect3
BIN3 := $(VENV3)/bin
STAMP3 := $(VENV3)/.installed

.PHONY: install-prefect3 test-prefect3

$(STAMP3): requirements-qc.txt prefect3/requirements.txt prefect3/requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV3)
	$(BIN3)/pip install --quiet --upgrade pip
	$(BIN3)/pip install --quiet -r prefect3/requirements-dev.txt
	$(BIN3)/pip install --quiet --no-deps -e .
	touch $(STAMP3)

install-prefect3: $(STAMP3)

test-prefect3: $(STAMP3)
	$(BIN3)/python -m pytest prefect3/tests

clean:
	rm -rf output .pytest_cache
