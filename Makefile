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

# Every benchmark (each saves benchmarks/results/<name>.json), then docs/benchmarks.md from those JSON files.
# Fails when any script fails (the others still run, so one crash hides no other figure).
BENCHES ?= $(filter-out _common report,$(basename $(notdir $(wildcard benchmarks/*.py))))
bench: setup
	@failed=""; for b in $(BENCHES); do echo "== benchmarks/$$b.py" >&2; \
	  $(PY) benchmarks/$$b.py || failed="$$failed $$b"; done; \
	$(PY) benchmarks/report.py || failed="$$failed report"; \
	if [ -n "$$failed" ]; then echo "make bench: failed:$$failed" >&2; exit 1; fi

clean:
	rm -rf build dist *.egg-info .pytest_cache demo_out.mid demo_out.wav
