"""``plmu-eval RUN_DIR``: evaluate a trained run, by default as an RNN one time step at a time.

Rebuilds the model from the config saved in the checkpoint, loads its weights, and evaluates a split:
``--mode recurrent`` (default) steps through time with ``model.step``, O(1) work per step, as a deployed streaming
model would; ``--mode parallel`` runs the training-time forward. Either way it reports the metric, the throughput,
and the largest difference between the recurrent and the parallel outputs on the evaluated data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from plmu.errors import ConfigError, PlmuError
from plmu.train import checkpoint
from plmu.train.objectives import objective
from plmu.train.run import build_model, load_data
from plmu.train.trainer import resolve_device


def checkpoint_path(run_dir: Path, which: str) -> Path:
    if which in ("best", "last"):
        return run_dir / "checkpoints" / f"{which}.pt"
    return Path(which)


def evaluate(args: argparse.Namespace) -> dict:
    run_dir = Path(args.run_dir)
    path = checkpoint_path(run_dir, args.checkpoint)
    payload = checkpoint.load(path)
    cfg = OmegaConf.create(payload["config"])
    if args.data_root is not None:
        keys = [key for key in ("root", "cache_dir") if key in cfg.task.data]
        if not keys:
            raise ConfigError(f"--data-root: task {cfg.task.name} has no data folder to override")
        cfg.task.data[keys[0]] = args.data_root
    device = resolve_device(args.device)
    model = build_model(cfg)
    checkpoint.load_model_state(model, payload["model"], path)
    model.to(device).eval()
    split = getattr(load_data(cfg), args.split)
    task_objective = objective(cfg.task.objective)
    batch_size = args.batch_size or cfg.trainer.eval_batch_size or cfg.trainer.batch_size

    sums, max_difference, max_output, samples, seconds = torch.zeros(3), 0.0, 0.0, 0, 0.0
    with torch.no_grad():
        for x, y in split.batches(batch_size, limit=args.limit_batches):
            x, y = x.to(device), y.to(device)
            start = time.perf_counter()
            recurrent = model.forward_recurrent(x) if args.mode == "recurrent" else None
            middle = time.perf_counter()
            parallel = model(x)
            end = time.perf_counter()
            prediction = recurrent if args.mode == "recurrent" else parallel
            seconds += (middle - start) if args.mode == "recurrent" else (end - middle)
            if recurrent is None and samples == 0:  # parallel mode: check the RNN on the first batch only (slow)
                recurrent = model.forward_recurrent(x)
            if recurrent is not None:
                max_difference = max(max_difference, (recurrent - parallel).abs().max().item())
                max_output = max(max_output, parallel.abs().max().item())
            sums += task_objective.sums(prediction, y).cpu()
            samples += len(x)
    steps = split.x.shape[1]
    return {
        "run_dir": str(run_dir),
        "checkpoint": str(path),
        "split": args.split,
        "mode": args.mode,
        "metric": task_objective.metric,
        "value": task_objective.reduce(sums),
        "samples": samples,
        "samples_per_second": samples / seconds,
        "time_steps_per_second": samples * steps / seconds,
        "max_abs_difference_recurrent_vs_parallel": max_difference,
        # relative to the largest output: float32 rounding accumulated over T steps is ~1e-6 .. 1e-5
        "max_relative_difference_recurrent_vs_parallel": max_difference / max(max_output, 1e-30),
        "device": str(device),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plmu-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a plmu-train run directory (holds checkpoints/ and config.yaml)")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint path")
    parser.add_argument("--mode", choices=["recurrent", "parallel"], default="recurrent")
    parser.add_argument("--split", choices=["test", "val", "train"], default="test")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--limit-batches", type=int, default=None, help="evaluate only this many batches")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-root", default=None, help="where the data is, if not where training found it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = evaluate(args)
    except PlmuError as error:
        print(f"plmu-eval: error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    print(text)
    (Path(args.run_dir) / f"eval_{args.mode}_{args.split}.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
