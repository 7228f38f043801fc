# The README's two commands: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	bash scripts/run_tests.sh $(PYTEST_ARGS)

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b; done

clean:
	rm -rf build dist *.egg-info .pytest_cache demo_out.mid demo_out.wav
