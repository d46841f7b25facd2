# Two commands: `make demo` runs the default study, `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/siting study --out reports/default

lint: $(STAMP)
	$(BIN)/ruff check siting tests bench

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) reports/default .pytest_cache
