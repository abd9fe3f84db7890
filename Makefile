# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint typecheck zoo clean

# The package and what it needs to run, with the pinned torch: all that `make demo` waits for.
$(RUNTIME): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$$(grep '^torch==' requirements-dev.txt)"
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

# The development and test tools, and the optional extras the tests cover.
$(STAMP): $(RUNTIME)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# The robust zoo model on the whole 2,000-point eval split with the default (fast) suite, one process per core.
DEMO_PROCS ?= 2
demo: $(RUNTIME)
	OMP_NUM_THREADS=1 $(BIN)/torchrun --standalone --nproc-per-node $(DEMO_PROCS) -m bastion evaluate \
		--model zoo:mnist-cnn-at --data mnist-sample:eval --norm linf --eps 0.3 --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pgd.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Retrain the bundled zoo model from the 8,000-image training split (writes the shipped weights).
zoo: $(STAMP)
	$(BIN)/python -m bastion.models.train_zoo mnist-cnn

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info
