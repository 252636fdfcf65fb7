# Two commands do everything on a fresh machine:
#   make repro   create .venv if missing, install the pinned packages, run `dvc repro`
#   make test    same set-up, then the whole test suite
#   make repro-systems   the StyleGAN / CycleGAN / super-resolution preset (presets/systems)
#   make repro-mixtures  PacGAN's Table 1 on its 2-D ring and grid (presets/mixtures)
#   make study           the default equal-budget study: digits GAN losses + VAE (presets/study)
#   make repro-mnist, repro-fashion-mnist, repro-cifar10   your downloaded files on a GPU cluster
#                        (presets/<name>/README.md: where the files go, the CPU override)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch 2.13.0 comes from the machine's local CPU wheel; any other spec pulls CUDA builds.
WHEELS := $(wildcard /opt/wheels)
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check $(if $(WHEELS),--find-links $(WHEELS))
export PATH := $(abspath $(BIN)):$(PATH)
export RAY_USAGE_STATS_ENABLED := 0
export DVC_NO_ANALYTICS := 1

.PHONY: install repro repro-systems repro-mixtures repro-mnist repro-fashion-mnist repro-cifar10 study test \
	clean-runs help

help:
	@echo "make repro   set up .venv and run the whole DVC pipeline (dvc repro)"
	@echo "make test    set up .venv and run the test suite"
	@echo "make repro-systems   the StyleGAN / CycleGAN / super-resolution preset (presets/systems/README.md)"
	@echo "make repro-mixtures  PacGAN's Table 1: GAN, PacGAN2-4 on ring and grid, 5 seeds (presets/mixtures/README.md)"
	@echo "make study          the default equal-budget study: every model tuned alike, then compared (presets/study/README.md)"
	@echo "make repro-mnist / repro-fashion-mnist / repro-cifar10   DCGAN, WGAN-GP, VAE on your downloaded files,"
	@echo "                     sized for GPUs (presets/<name>/README.md: the files, the CPU override)"

# A venv whose creation was interrupted has a python but no pip: made again, not reused.
# torch-fidelity is the FID parity test's reference implementation; --no-deps: its torchvision
# requirement resolves to a CUDA build whose ops do not load beside the CPU torch
# (tests/test_inception_parity.py). (Comments in a recipe would be echoed by make.)
$(STAMP): pyproject.toml constraints.txt
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PIP) -c constraints.txt torch==2.13.0
	$(PIP) -c constraints.txt -e '.[dev]'
	$(PIP) -c constraints.txt --no-deps torch-fidelity==0.4.0
	touch $(STAMP)

install: $(STAMP)

repro: $(STAMP)
	infra/local/with-ray.sh $(BIN)/dvc repro

# its own DVC project (dvc init --subdir): run from its folder, it reads presets/systems/params.yaml
repro-systems: $(STAMP)
	cd presets/systems && ../../infra/local/with-ray.sh $(abspath $(BIN))/dvc repro

# the same layout; it trains in-process (ray.num_workers 0), so no Ray cluster is started
repro-mixtures: $(STAMP)
	cd presets/mixtures && $(abspath $(BIN))/dvc repro

# the dataset presets: the same layout, on your downloaded files (presets/<name>/README.md); as
# repro-systems, one local Ray head for the run unless RAY_ADDRESS names your cluster
repro-mnist repro-fashion-mnist repro-cifar10: repro-%: $(STAMP)
	cd presets/$(subst -,_,$*) && ../../infra/local/with-ray.sh $(abspath $(BIN))/dvc repro

# the default equal-budget study (issue 28): the same layout, one local Ray head for its sweeps
study: $(STAMP)
	cd presets/study && ../../infra/local/with-ray.sh $(abspath $(BIN))/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean-runs:
	rm -rf .ray_storage
