# Two entry points (README quick start): `make demo` and `make test`.
# Both create .venv on first use and install the pinned stack; later runs reuse it.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
export PATH := $(BIN):$(PATH)

.PHONY: demo demo-posec3d demo-zoo demo-drsr test lint setup clean-results

setup: $(STAMP)

# torch first (a CPU wheel is pinned; an unpinned resolve would pull CUDA), mediapipe without its
# deps (see envs/requirements.txt), then our package.
$(STAMP): envs/requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r envs/requirements.txt
	$(BIN)/pip install -q --no-deps mediapipe==0.10.21
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --workflow-profile profiles/default

# The demo plus the PoseC3D joint and limb streams and their fusion (config/extra/demo_posec3d.yaml).
demo-posec3d: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --workflow-profile profiles/default \
		--configfile config/config.yaml config/extra/demo_posec3d.yaml

# The demo plus a small config of every skeleton family with their ensembles
# (config/extra/demo_zoo.yaml): fusion.txt then lists every stream and ensemble.
demo-zoo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --workflow-profile profiles/default \
		--configfile config/config.yaml config/extra/demo_zoo.yaml

# The demo plus RGB-D: the synthetic dataset's masked depth, the depth stage and DRSR's RGB,
# depth and FusionNet streams (config/extra/demo_drsr.yaml); prints the table and the wall time.
demo-drsr: $(STAMP)
	start=$$(date +%s); $(BIN)/snakemake --cores $(CORES) --workflow-profile profiles/default \
		--configfile config/config.yaml config/extra/demo_drsr.yaml \
	&& cat results/demo_xsub/fusion.txt && echo "wall time: $$(( $$(date +%s) - start )) s"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks workflow
	$(BIN)/ruff format --check src tests benchmarks workflow
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint --cores 1

test: $(STAMP) lint
	$(BIN)/python -m pytest

# What runs write: outputs, job logs, per-rule benchmark TSVs (benchmarks/<rule>/), the report,
# and Snakemake's record of them (its metadata, locks, incomplete markers; conda envs are kept).
clean-results:
	rm -rf results logs report.html
	rm -rf .snakemake/metadata .snakemake/incomplete .snakemake/locks .snakemake/log
	find benchmarks -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
