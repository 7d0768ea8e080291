# make demo / make test create .venv when missing and install the project with its test extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: demo test slow soak chaos chaos-faults fuzz bench protos mutation clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow" tests

slow: $(STAMP)
	$(PY) -m pytest -q -m slow --durations=12 tests

soak: $(STAMP)
	$(PY) bench/soak.py

chaos: $(STAMP)
	$(PY) bench/chaos.py

chaos-faults: $(STAMP)
	$(PY) bench/chaos.py --faults all --kills 12 --streams 50

fuzz: $(STAMP)
	$(PY) bench/fuzz.py

bench: $(STAMP)
	$(PY) bench/agent_bench.py
	$(PY) bench/sim_bench.py

# mutation testing of reference_agent/ with the conformance suite as the only test (a sample; see docs/CONFORMANCE.md)
mutation: $(STAMP)
	$(PY) scripts/mutation.py --sample 60 --budget 3000 --out out/mutation.json

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
