# plmu: `make help` lists the targets.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= disabled
BENCH_OUT ?= bench-results
BENCH_DEST ?= experiments/speed/cpu
BENCH_THREADS ?= 1
TEST_WORKERS ?= 2
BENCH = OMP_NUM_THREADS=$(BENCH_THREADS) $(PYTHON) -m plmu.bench --device cpu

.DEFAULT_GOAL := help
.PHONY: help install test test-quick lint bench bench-quick bench-commit bench-gpu clean clean-runs

help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: ## install plmu (editable) with the dev tools, pinned to constraints.txt
	$(PIP) install -e ".[dev]" -c constraints.txt

test: ## the whole suite, as CI runs it (offline; two workers of one thread: 5.8 min on 2 idle cores)
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n $(TEST_WORKERS)

test-quick: ## the suite without the end-to-end, subprocess and benchmark tests (46 s on 2 idle cores)
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n $(TEST_WORKERS) -m "not slow"

lint: ## ruff: lint and format check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

bench: ## the CPU speed study into bench-results/ (untracked; 25 min on a loaded 2-core box); then `make bench-commit`
	mkdir -p $(BENCH_OUT)
	$(BENCH) --output $(BENCH_OUT)/paths.md
	$(BENCH) --crossover --output $(BENCH_OUT)/crossover.md
	$(BENCH) --scaling --output-dir $(BENCH_OUT)
	$(BENCH) --text --output $(BENCH_OUT)/text.md
	$(BENCH) --lm --output $(BENCH_OUT)/lm.md
	$(BENCH) --mackey-glass --profile --skip-original --output $(BENCH_OUT)/mackey_glass.md

bench-quick: ## every benchmark at tiny sizes (seconds; checks the code, numbers mean nothing) into bench-results/quick/
	$(MAKE) bench BENCH="$(BENCH) --quick" BENCH_OUT=$(BENCH_OUT)/quick

bench-commit: ## deliberately copy bench-results/ into experiments/speed/cpu/ (tracked); then update its README
	@test -f $(BENCH_OUT)/paths.md || { echo "no $(BENCH_OUT)/paths.md: run make bench first"; exit 1; }
	mkdir -p $(BENCH_DEST)
	cp $(BENCH_OUT)/*.md $(BENCH_DEST)/
	-cp $(BENCH_OUT)/*.png $(BENCH_DEST)/
	@echo "copied into $(BENCH_DEST)/: describe the machine and what changed in experiments/speed/README.md"

bench-gpu: ## on a CUDA machine: the CUDA tests + the whole study (< 8 min) into bench-results/gpu/ (scripts/bench_gpu.sh)
	OUT=$(BENCH_OUT)/gpu scripts/bench_gpu.sh

clean: ## remove caches and build artefacts (keeps trained runs and bench-results/)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

clean-runs: ## DELETE all trained runs and logs: outputs/ multirun/ wandb/
	rm -rf outputs multirun wandb
	@echo "deleted outputs/ multirun/ wandb/"
