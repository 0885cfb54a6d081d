"""``plmu-eval RUN_DIR``: evaluate a trained run, by default as an RNN one time step at a time.

Rebuilds the model from the config saved in the checkpoint, loads its weights, and evaluates a split:
``--mode recurrent`` (default) steps through time with ``model.step``, O(1) work per step, as a deployed streaming
model would; ``--mode parallel`` runs the training-time forward. Either way it reports the metric, the throughput,
and the largest difference between the recurrent and the parallel outputs (every batch in recurrent mode, the first
batch in parallel mode, where the step-by-step pass would dominate the time).

The JSON report goes to stdout (progress and messages go to stderr) and to a file, by default in RUN_DIR:

    eval_<mode>_<split>[_<checkpoint>][_limit<N>].json

``_<checkpoint>`` is left out for the run's own best.pt (the default) and is otherwise ``last`` or the stem of the
``--checkpoint`` file, with ``-<8 hex digits of its path's digest>`` for a file outside the run's checkpoints/
(another run's last.pt never replaces this run's report); ``_limit<N>`` is added with ``--limit-batches N``.
Evaluations that differ in what they measure thus get different files; repeating one replaces its file (stderr says
so), and the report records what was used: checkpoint and its epoch, data folder and data config, batch size, batch
limit, device, torch and plmu versions.
``--output PATH`` writes elsewhere (into PATH/<default name> when PATH is a folder). The file is written atomically
(temp file, then rename), strict JSON: a non-finite number is written as null, with a line in ``notes``.

Errors are one line on stderr (``plmu-eval: error: ...``), exit code 2; Ctrl-C exits 130 without writing a report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plmu.cli import fail, flags, stop_on_sigterm
from plmu.cli.flags import positive_int
from plmu.cli.reports import (
    DATA_KEYS,
    ReportFile,
    check_recorded_data,
    checkpoint_label,
    resolve_eval_device,
    set_data_root,
    strict_json,
)
from plmu.errors import CheckpointError, ConfigError, PlmuError
from plmu.runs import checkpoint_path, saved_config, saved_model
from plmu.train.provenance import portable

if TYPE_CHECKING:  # torch and plmu.train load lazily: `plmu-eval --help` should not wait seconds for torch
    from omegaconf import DictConfig

    from plmu.data.splits import TensorSplit

PROG = "plmu-eval"


# ------------------------------------------------------------------------------------------------ report, config, data
def output_path(args: argparse.Namespace, run_dir: Path, path: Path) -> Path:
    """Where the report goes (see the module docstring for the name)."""
    parts = [f"eval_{args.mode}_{args.split}"]
    if (label := checkpoint_label(run_dir, path)) is not None:
        parts.append(label)
    if args.limit_batches is not None:
        parts.append(f"limit{args.limit_batches}")
    name = "_".join(parts) + ".json"
    if args.output is None:
        return run_dir / name
    output = Path(args.output).expanduser()
    folder = output.is_dir() or args.output.endswith(("/", os.sep))  # "out/" means a folder even before it exists
    return output / name if folder else output


# ------------------------------------------------------------------------------------------------ config and data
def eval_batch_size(args: argparse.Namespace, cfg: DictConfig, path: Path) -> int:
    if args.batch_size is not None:
        return args.batch_size
    from omegaconf import OmegaConf

    size = OmegaConf.select(cfg, "trainer.eval_batch_size") or OmegaConf.select(cfg, "trainer.batch_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise CheckpointError(f"checkpoint {path}: its config has no usable batch size ({size!r}); pass --batch-size N")
    return size


def load_split(
    args: argparse.Namespace, cfg: DictConfig, path: Path, data_root: str | None, run_dir: Path
) -> TensorSplit:
    """``args.split`` of the task; data errors are said in terms of ``--data-root``, the one data flag eval has."""
    from plmu.data.folders import library_progress
    from plmu.train.run import load_data

    where = f"--data-root {args.data_root}: " if args.data_root is not None else ""
    library_progress(not args.no_progress and sys.stderr.isatty())  # datasets' bars: a terminal's, not a log's
    try:
        data = load_data(cfg)
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {path}: its saved config cannot load the data: {error}") from None
    except PlmuError as error:  # e.g. DataNotFoundError, whose fix names task.data.root
        message = str(error)
        for key in DATA_KEYS:
            message = message.replace(f"set task.data.{key} to", "point --data-root at")
            message = message.replace(f"task.data.{key}", "--data-root")
        fix = "" if "--data-root" in message else f"; point --data-root at the folder that has the data ({data_root})"
        raise ConfigError(f"{where}{message}{fix}") from None
    except OSError as error:  # unreadable folder, or a read-only one a cache should be written to
        raise ConfigError(f"{where}cannot read the data in {data_root}: {error}; point --data-root elsewhere") from None
    split = getattr(data, args.split)
    if len(split) == 0:
        raise ConfigError(f"--split {args.split}: task {cfg.task.name} has no {args.split} data; use another split")
    check_recorded_data(run_dir, args.split, split, path)
    return split


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate(args: argparse.Namespace, run_dir: Path, path: Path) -> dict[str, Any]:
    import torch
    from omegaconf import OmegaConf
    from tqdm import tqdm

    import plmu
    from plmu.train import checkpoint
    from plmu.train.objectives import build_objective

    device = resolve_eval_device(args.device)  # before the checkpoint: a wrong flag fails at once
    payload = checkpoint.load(path)
    cfg = saved_config(payload, path, run_dir)
    batch_size = eval_batch_size(args, cfg, path)
    data_root = set_data_root(args, cfg)
    try:
        task_objective = build_objective(cfg.task.objective)
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {path}: its saved config does not build an objective: {error}") from None
    model = saved_model(payload, path, cfg)
    model.to(device).eval()
    split = load_split(args, cfg, path, data_root, run_dir)

    total = split.num_batches(batch_size, args.limit_batches)
    interactive = sys.stderr.isatty()
    stats, max_difference, max_output, samples, seconds, compared = task_objective.zeros(), 0.0, 0.0, 0, 0.0, 0
    time_steps = 0
    # A stream task (trainer.state=carry, e.g. text8): chunk i + 1 continues chunk i, in both modes.
    carry = OmegaConf.select(cfg, "trainer.state") == "carry"
    recurrent_state = parallel_state = None
    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    bar = tqdm(
        split.batches(batch_size, limit=args.limit_batches),
        total=total,
        desc=f"{args.mode} {args.split}",
        unit="batch",
        file=sys.stderr,
        disable=args.no_progress,
        leave=not interactive,  # a terminal gets its line back; a log keeps the final count and rate
        dynamic_ncols=interactive,
        mininterval=0.1 if interactive else 30.0,  # in a log file every refresh is a line: one per 30 s is plenty
    )
    try:
        with bar, torch.no_grad():
            for batch in bar:
                batch = {key: value.to(device) for key, value in batch.items()}
                start = time.perf_counter()
                recurrent = None
                if args.mode == "recurrent" and carry:
                    recurrent, recurrent_state = model.forward_recurrent_with_state(batch, recurrent_state)
                elif args.mode == "recurrent":
                    recurrent = model.forward_recurrent(batch)
                middle = time.perf_counter()
                if carry:
                    parallel, parallel_state = model.forward_with_state(batch, parallel_state)
                else:
                    parallel = model(batch)
                end = time.perf_counter()
                prediction = recurrent if args.mode == "recurrent" else parallel
                seconds += (middle - start) if args.mode == "recurrent" else (end - middle)
                if recurrent is None and samples == 0:  # parallel mode: check the RNN on the first batch only (slow)
                    recurrent = model.forward_recurrent(batch)
                if recurrent is not None:
                    max_difference = max(max_difference, (recurrent - parallel).abs().max().item())
                    max_output = max(max_output, parallel.abs().max().item())
                    compared += 1
                stats += task_objective.stats(prediction, batch).cpu()
                samples += len(batch["target"])
                inputs = batch.get("inputs")
                if inputs is not None:  # real steps only, where a padding mask says which
                    mask = batch.get("mask")
                    time_steps += int(mask.sum()) if mask is not None else inputs.shape[0] * inputs.shape[1]
                bar.set_postfix(samples_per_s=f"{samples / max(seconds, 1e-9):.1f}", refresh=False)
    except out_of_memory:
        raise PlmuError(f"out of memory on {device} at batch size {batch_size}; pass a smaller --batch-size") from None

    train_state = payload.get("train_state") or {}
    return {
        "checkpoint": str(path.resolve()),
        "checkpoint_epoch": train_state.get("epoch"),  # epochs finished when the checkpoint was written
        "checkpoint_step": train_state.get("step"),
        "task": cfg.task.name,
        "split": args.split,
        "mode": args.mode,
        "metric": task_objective.metric,
        "value": task_objective.value(stats),
        "metrics": task_objective.reduce(stats),
        "samples": samples,
        "batches": total,
        "batch_size": batch_size,
        "limit_batches": args.limit_batches,
        "samples_per_second": samples / seconds if seconds > 0 else None,
        "time_steps_per_second": time_steps / seconds if seconds > 0 else None,
        "max_abs_difference_recurrent_vs_parallel": max_difference,
        # relative to the largest output: float32 rounding accumulated over T steps is ~1e-6 .. 1e-5
        "max_relative_difference_recurrent_vs_parallel": max_difference / max(max_output, 1e-30),
        "batches_compared_recurrent_vs_parallel": compared,
        "device": str(device),
        "data_root": data_root,
        "data_root_from": "--data-root" if args.data_root is not None else "checkpoint config",
        "data": OmegaConf.to_container(cfg.task.data, resolve=True),
        "torch_version": torch.__version__,
        "plmu_version": plmu.__version__,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------------------------------ command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    flags.add_run(parser, "a plmu-train run directory (holds checkpoints/ and config.yaml)")
    parser.add_argument("--mode", choices=["recurrent", "parallel"], default="recurrent")
    parser.add_argument("--split", choices=["test", "val", "train"], default="test")
    parser.add_argument("--limit-batches", type=positive_int, default=None, help="evaluate only this many batches")
    flags.add_data(parser)
    flags.add_report_output(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    report_file: ReportFile | None = None
    try:
        run_dir = Path(args.run_dir).expanduser()
        path = checkpoint_path(run_dir, args.checkpoint)
        report_file = ReportFile(output_path(args, run_dir, path), args.output, run_dir)
        target = report_file.target
        report = {**evaluate(args, run_dir, path), "output": str(target.resolve())}
        text = strict_json(portable(report, run_dir))  # paths relative to the run folder: any machine reads it
        try:
            replaced = report_file.commit(text + "\n")
        except OSError as error:  # disk full, or the folder went away during the evaluation
            raise PlmuError(f"cannot write the report to {target}: {error}; pass --output PATH") from None
        report_file = None
    except PlmuError as error:
        return fail(PROG, str(error))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        if report_file is not None:  # failed or interrupted: no partial report, no stray temp file
            report_file.discard()
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `plmu-eval RUN | head`: the report is on disk; do not trace back
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    print(f"{PROG}: wrote {target}{' (replaced an earlier report)' if replaced else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
