# Two commands: `make demo` runs the default study, `make test` runs the test suite.
# PYTHON: a Python ≥ 3.12; found by itself (python3.12, python3.13, python3 on PATH, then pyenv's).
PYTHON ?= $(shell for p in python3.12 python3.13 python3 \
	$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -V); do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean python

python:
	@test -n "$(PYTHON)" || { echo "make: no Python >= 3.12 found: install python3.12 (or set PYTHON=/path/to/python3.12)" >&2; exit 2; }

$(STAMP): pyproject.toml | python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/siting study --out reports/default

lint: $(STAMP)
	$(BIN)/ruff check siting tests bench
	$(BIN)/mypy siting

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) reports/default .pytest_cache .mypy_cache
