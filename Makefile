# The two commands the README opens with: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install data clean pictures

$(STAMP): requirements.txt requirements-qc.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	@if ! ls data/*.svs >/dev/null 2>&1; then $(BIN)/python get_data.py --synthetic 3; fi

demo: data
	$(BIN)/python pipeline.py --data-dir data --output-dir output

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

pictures: $(STAMP)
	$(BIN)/python docs/make_pictures.py --overview

clean:
	rm -rf output .pytest_cache
