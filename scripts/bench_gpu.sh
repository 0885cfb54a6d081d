#!/usr/bin/env bash
# The speed study on one GPU, in under 8 minutes, plus the CUDA tests (`make bench-gpu`). Writes at most 8 files into
# ${OUT:-bench-results/gpu}/ (what a lent GPU machine returns): device.txt, pytest.log, paths.md (every path at psMNIST
# size, then the direct/FFT crossover), scaling.md and scaling.png (T = 256 … 65,536), mackey_glass.md (steps, the
# 2019 LMU's compiled step, profile), lm.md, text.md. Each stage gets what is left of BUDGET_S (default 470 s) and is
# cut off past it, so the whole stays under 8 minutes; a cut stage says so in its file.
#
# Runs from a source tree without installing plmu (PYTHONPATH=.). On a machine without internet, put wheels of the
# missing pure-Python requirements (hydra-core 1.3.8, omegaconf 2.3.1, antlr4-python3-runtime 4.9.3; matplotlib and
# its dependencies for the plot, which is optional) into .gpu-wheels/ and they are installed from there first.
# scripts/gpu_check.sh is the other GPU check: the whole test suite and a training run.
set -uo pipefail
out=${OUT:-bench-results/gpu}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
python=${PYTHON:-python3}
deadline=$((SECONDS + ${BUDGET_S:-470}))
status=0

if [ -d .gpu-wheels ]; then  # offline: what the box lacks, from carried wheels; each may fail alone (another Python)
  for wheel in .gpu-wheels/*.whl; do
    $python -m pip install -q --no-index --no-deps "$wheel" >/dev/null 2>&1 || echo "not installed: $wheel" >&2
  done
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  echo "cpu: $(nproc) cores; date: $(date -u +%Y-%m-%dT%H:%MZ)"
} 2>&1 | tee "$out/device.txt"

stage() {  # stage FILE COMMAND...: run with what is left of the budget; a cut-off run says so in FILE
  local file=$1 left=$((deadline - SECONDS))
  shift
  if [ "$left" -lt 10 ]; then echo "skipped: the ${BUDGET_S:-470} s budget was spent" >>"$file"; status=1; return; fi
  timeout "$left" "$@" || { echo "stopped (exit $?; after $left s left in the budget): $*" >>"$file"; status=1; }
}

bench=($python -m plmu.bench --device cuda)
# The CUDA tests (they skip without a GPU): every path against the loop, padding on the GPU.
stage "$out/pytest.log" $python -m pytest -q -rs -k cuda tests/test_layers.py tests/test_masks.py >"$out/pytest.log" 2>&1
stage "$out/paths.md" "${bench[@]}" --output "$out/paths.md" >/dev/null
stage "$out/paths.md" "${bench[@]}" --crossover --crossover-steps 16,64,128,256,512,1024,2048,4096 --output "$out/crossover.tmp" >/dev/null
[ -f "$out/crossover.tmp" ] && { printf '\n## Direct/FFT crossover\n\n' >>"$out/paths.md"; cat "$out/crossover.tmp" >>"$out/paths.md"; rm "$out/crossover.tmp"; }
stage "$out/lm.md" "${bench[@]}" --lm --output "$out/lm.md" >/dev/null
stage "$out/scaling.md" "${bench[@]}" --scaling --output-dir "$out" >/dev/null
stage "$out/text.md" "${bench[@]}" --text --output "$out/text.md" >/dev/null
# last: the 2019 LMU's cells compile first (tens of seconds), and a cut-off here loses nothing else
stage "$out/mackey_glass.md" "${bench[@]}" --mackey-glass --profile --repeats 3 --output "$out/mackey_glass.md" >/dev/null
echo "bench_gpu.sh: $SECONDS s in all; files in $out/: $(ls "$out" | tr '\n' ' ')"
exit $status
