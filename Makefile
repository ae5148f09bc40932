# Two commands do everything on a fresh machine:
#   make run   - create .venv, install simlm_ir (Java 21 included), run the main benchmark job
#   make test  - same install if needed, then the test suite
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test clean-work

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-plaid.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# One resolve: torch is pinned to the CPU build in pyproject.toml next to pyserini.
	$(PY) -m pip install --quiet -e '.[test]'
	# PyLate's PLAID engine (ColBERT baseline) goes in after, without its dependencies: its pins
	# conflict with ours but the part we use needs none of them (see requirements-plaid.txt).
	$(PY) -m pip install --quiet --no-deps -r requirements-plaid.txt
	# Checks Java 21, and compiles PLAID's C++ extensions into $(VENV)/torch_extensions once.
	$(PY) -m simlm_ir.doctor
	touch $@

run: install
	$(PY) benchmarks/run_beir.py

test: install
	$(PY) -m pytest -q

clean-work:
	rm -rf work
