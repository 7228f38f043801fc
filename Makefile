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
# A benchmark that needs what this machine lacks is "not run here", with a printed line (its last saved result, if
# any, stays in the report): gpu_check needs an NVIDIA GPU (nvidia-smi), remote_encoder root (network and time
# namespaces), train_engine pandas + pyarrow for Ray Data (not MusicHal dependencies; RAYDATA_PATH=DIR adds them).
BENCHES ?= $(filter-out _common report,$(basename $(notdir $(wildcard benchmarks/*.py))))
RAYDATA_PATH ?=
bench: setup
	@failed=""; notrun=""; for b in $(BENCHES); do why=""; env=""; \
	  case $$b in \
	    gpu_check) command -v nvidia-smi >/dev/null 2>&1 || why="no NVIDIA GPU here (nvidia-smi not found)";; \
	    remote_encoder) [ "$$(id -u)" = 0 ] || why="needs root (network and time namespaces)";; \
	    train_engine) env="PYTHONPATH=$(RAYDATA_PATH)"; \
	      env $$env $(PY) -c 'import pandas, pyarrow' 2>/dev/null \
	        || why="Ray Data needs pandas and pyarrow (not MusicHal dependencies; set RAYDATA_PATH)";; \
	  esac; \
	  if [ -n "$$why" ]; then echo "== benchmarks/$$b.py: not run here: $$why" >&2; notrun="$$notrun $$b"; continue; fi; \
	  echo "== benchmarks/$$b.py" >&2; \
	  env $$env $(PY) benchmarks/$$b.py || failed="$$failed $$b"; done; \
	$(PY) benchmarks/report.py || failed="$$failed report"; \
	if [ -n "$$notrun" ]; then echo "make bench: not run here:$$notrun" >&2; fi; \
	if [ -n "$$failed" ]; then echo "make bench: failed:$$failed" >&2; exit 1; fi

clean:
	rm -rf build dist *.egg-info .pytest_cache demo_out.mid demo_out.wav
