# plmu: `make help` lists the targets.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= disabled

.DEFAULT_GOAL := help
.PHONY: help install test lint bench clean clean-runs

help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

install: ## install plmu (editable) with the dev tools, pinned to constraints.txt
	$(PIP) install -e ".[dev]" -c constraints.txt

test: ## run the test suite (offline, a few minutes on 2 cores)
	$(PYTHON) -m pytest -q

lint: ## ruff: lint and format check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

bench: ## time every memory path at psMNIST size, the text classifiers and language models; writes experiments/speed/results*.md
	plmu-bench --output experiments/speed/results.md
	plmu-bench --text --output experiments/speed/results-text.md
	plmu-bench --lm --output experiments/speed/results-lm.md

clean: ## remove caches and build artefacts (keeps trained runs)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

clean-runs: ## DELETE all trained runs and logs: outputs/ multirun/ wandb/
	rm -rf outputs multirun wandb
	@echo "deleted outputs/ multirun/ wandb/"
