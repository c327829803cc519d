# Two commands set everything up on a fresh machine (see README.md):
#   make demo   installs into .venv and runs the CPU quickstart sweep on an embedded local Ray
#   make test   installs into .venv and runs the linter and the test suite
# TORCH picks the torch build: the default pin is a CPU wheel on CPU-only machines and PyPI's
# CUDA wheel elsewhere; e.g. `make test TORCH='torch==2.13.0'`.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := quickstart-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install demo test lint bench repro clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/arbiter sweep --template quickstart.toml --gpus 0 --storage arbiter_results --name $(DEMO)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/core_overhead.py
	$(BIN)/python benchmarks/sweep_overhead.py
	$(BIN)/python benchmarks/grokfast.py
	$(BIN)/python benchmarks/grokking_scheduler.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/checkpoint_cost.py
	$(BIN)/python benchmarks/gpu_throughput.py
	$(BIN)/python benchmarks/storage.py
	$(BIN)/python benchmarks/packing.py

# The published results of docs/reproductions.md as full sweeps: hours on a CPU (nanda took 56
# minutes on a 2-core CPU, prieto 51, phases 18); add GPUS=N to use GPUs. A goal
# not met does not stop the others (exit code 1 of reproduce.py, ignored here).
GPUS ?= 0
repro: install
	-$(BIN)/python benchmarks/reproduce.py nanda --gpus $(GPUS)
	-$(BIN)/python benchmarks/reproduce.py grokfast --gpus $(GPUS)
	-$(BIN)/python benchmarks/reproduce.py prieto --gpus $(GPUS)
	-$(BIN)/python benchmarks/reproduce.py prieto_mlp --gpus $(GPUS)
	-$(BIN)/python benchmarks/reproduce.py phases --gpus $(GPUS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
