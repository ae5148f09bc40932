# Two commands do everything on a fresh machine:
#   make run   - create .venv, install simlm_ir (Java 21 included), run the main benchmark job
#   make test  - same install if needed, then the test suite
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test mutants clean-work

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

# Mutation testing (not part of CI): small bugs planted one at a time in the core numeric modules
# ([tool.mutmut] in pyproject.toml), each run against the fast tests that execute it; prints every
# surviving mutant and the score. Results are cached in mutants/: a re-run only re-tests what changed
# (rm -rf mutants to start over). MUTANTS_JOBS sets the parallel workers (default 2).
mutants: install
	$(PY) -m pip install --quiet -e '.[test,mutants]'
	OMP_NUM_THREADS=1 $(PY) -m mutmut run --max-children $${MUTANTS_JOBS:-2}
	$(PY) -m mutmut export-cicd-stats
	$(PY) -m mutmut results
	@$(PY) -c "import json; s = json.load(open('mutants/mutmut-cicd-stats.json')); k, n = s['killed'], s['total']; \
	print(f'mutation score: {k}/{n} killed ({100 * k / max(n, 1):.1f}%); survived {s[\"survived\"]}, ' \
	f'not covered by the fast tests {s[\"no_tests\"]}, timed out {s[\"timeout\"]}')"

clean-work:
	rm -rf work
