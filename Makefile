# The two commands a new user needs: `make run` (main job on the embedded default) and
# `make test`. Both create the project's virtual environment from the lock file first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := true
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

.PHONY: install run test test-team bench lint format clean check-lock pretrain-vit gpu-check chaos

# Bytecode is compiled once at install: with PYTHONDONTWRITEBYTECODE set, every process
# (each `kedro run`, each test subprocess) would otherwise recompile torch and mlflow.
install: $(STAMP)

# Quiet: errors only (uv --quiet still prints them; pip -qq is its ERROR level), not the ~250
# lines of the installed package list.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "installing $(VENV) from requirements.lock (a few minutes on a fresh clone) ..."
	@$(PY) -m pip install -qq --upgrade pip uv
	@$(VENV)/bin/uv pip sync --quiet --compile-bytecode --python $(PY) requirements.lock
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	@# Animal-MNIST is a data-only wheel whose metadata pulls in TensorFlow: the suite reads its
	@# pickle only (sha256 checked first), so it is installed without its dependencies.
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps animal-mnist==0.4
	@touch $(STAMP)

run: install
	$(VENV)/bin/kedro run

test: install
	$(VENV)/bin/pytest

# The team setup for real: PostgreSQL (initdb/pg_ctl on PATH) + `mlflow server` on localhost.
test-team: install
	$(VENV)/bin/pytest -m team tests/e2e/test_team_server.py

# Pretrain the two tiny ViTs again on Fashion-MNIST (Debian dataset-fashion-mnist; the
# supervised one and the MAE one, docs/backbones.md for the time) and ship each: its weights
# and provenance record in data/01_raw/weights, which `make run` loads instead of pretraining.
# One model: `make pretrain-vit VIT_MODELS=vit_fmnist_mae`.
VIT_MODELS := vit_fmnist vit_fmnist_mae
pretrain-vit: install
	$(PY) -m visprompt.weights.ship $(addprefix --model ,$(VIT_MODELS))

# Crash consistency (docs/faults.md): `kedro run` of a tiny experiment killed with SIGKILL at
# 20 seeded points over every phase and rerun; each final state must equal an uninterrupted
# run's. Writes the table of points and outcomes (about half an hour on 2 shared cores).
CHAOS_ARGS ?= --points 20 --seed 0 --chain 5
chaos: install
	OMP_NUM_THREADS=1 $(PY) tests/chaos/chaos.py $(CHAOS_ARGS) --out benchmarks/results/chaos_cpu_2core.md

bench: install
	$(PY) benchmarks/efficiency.py $(BENCH_ARGS)

# On a lent GPU machine (no network needed): every method's train step and throughput in
# bf16 + channels_last at 224 px, data wait and the training engine, in <= 8 minutes:
# benchmarks/results/gpu_check_<gpu>.md. `--tiny` runs anywhere (tests/benchmarks).
gpu-check: install
	$(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks .ci
	$(VENV)/bin/ruff format --check src tests benchmarks .ci

format: install
	$(VENV)/bin/ruff check --fix src tests benchmarks .ci
	$(VENV)/bin/ruff format src tests benchmarks .ci

# The committed dvc.lock matches the code and parameters at HEAD (outputs may be missing).
check-lock: install
	PATH=$(VENV)/bin:$$PATH $(PY) .ci/check_dvc_lock.py

clean:
	rm -rf $(VENV) .pytest_cache
