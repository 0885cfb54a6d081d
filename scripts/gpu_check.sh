#!/usr/bin/env bash
# The checks that need a GPU, in one go (a lent GPU machine, or your own): the whole test suite with CUDA visible
# (the CUDA tests run instead of skipping, and every trainer test runs on the GPU through trainer.device=auto), a
# plmu-train run on cuda, and plmu-bench on cuda. Results go to ${OUT:-gpu-check}/: device.txt, pytest.log,
# train.json (results.json of the run) and bench.md. Usage: scripts/gpu_check.sh [extra pytest arguments]
# The speed study on a GPU (CUDA tests + every benchmark, < 8 min) is scripts/bench_gpu.sh (`make bench-gpu`).
set -uo pipefail
out=${OUT:-gpu-check}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
$python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
  | tee -a "$out/device.txt"

# pytest-xdist, where installed, spreads the suite over the machine's cores.
parallel=()
$python -c "import xdist" 2>/dev/null && parallel=(-n "${JOBS:-8}")
pytest -q -rs "${parallel[@]}" "$@" 2>&1 | tee "$out/pytest.log" || status=1

run=$(mktemp -d)
plmu-train task=mackey_glass trainer.device=cuda trainer.max_epochs=20 trainer.progress=false logger=none \
  data_dir="$run/data" hydra.run.dir="$run/run" 2>&1 | tail -5 && cp "$run/run/results.json" "$out/train.json" || status=1

if [ -z "${SKIP_BENCH:-}" ]; then  # SKIP_BENCH=1: the tests and the run only
  plmu-bench --device cuda --output "$out/bench.md" 2>&1 | tail -40 || status=1
fi
exit $status
