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
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plmu.cli import fail, flags, run_tools, stop_on_sigterm
from plmu.cli.flags import positive_int_flag
from plmu.cli.run_tools import (
    DATA_KEYS,
    ReportFile,
    check_recorded_data,
    checkpoint_label,
    resolve_eval_device,
    set_data_root,
    strict_json,
)
from plmu.errors import CheckpointError, ConfigError, OutOfMemoryError, PlmuError
from plmu.runs import checkpoint_path
from plmu.train.provenance import portable
from plmu.version import __version__

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
    """The report: :func:`plmu.evaluate.evaluate` of the run's model on ``args.split``, and what was used."""
    import torch
    from omegaconf import OmegaConf

    from plmu.evaluate import evaluate as measure
    from plmu.runs import load_run
    from plmu.train.objectives import build_objective
    from plmu.train.settings import TrainerSettings

    device = resolve_eval_device(args.device)  # before the checkpoint: a wrong flag fails at once
    run = load_run(run_dir, str(path), device)
    cfg = run.config
    batch_size = run_tools.batch_size(args, cfg, path)
    data_root = set_data_root(args, cfg)
    try:
        task_objective = build_objective(cfg.task.objective)
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {path}: its saved config does not build an objective: {error}") from None
    split = load_split(args, cfg, path, data_root, run_dir)
    try:
        measured = measure(
            run.model, split, task_objective, mode=args.mode, batch_size=batch_size, limit_batches=args.limit_batches,
            # a stream task (trainer.state=carry, e.g. text8): chunk i + 1 continues chunk i, in both modes
            carry=TrainerSettings.recorded(cfg.get("trainer") or {}).state == "carry",
            device=device, progress=not args.no_progress, label=f"{args.mode} {args.split}",
        )  # fmt: skip
    except OutOfMemoryError as error:
        raise PlmuError(f"{error}; pass a smaller --batch-size") from None
    return {
        "checkpoint": str(path.resolve()),
        "checkpoint_epoch": run.epoch,  # epochs finished when the checkpoint was written
        "checkpoint_step": run.step,
        "task": cfg.task.name,
        "split": args.split,
        "mode": args.mode,
        **{key: measured[key] for key in ("metric", "value", "metrics", "samples", "batches")},
        "batch_size": batch_size,
        "limit_batches": args.limit_batches,
        **{key: value for key, value in measured.items() if key.endswith(("per_second", "vs_parallel"))},
        "device": str(device),
        "data_root": data_root,
        "data_root_from": "--data-root" if args.data_root is not None else "checkpoint config",
        "data": OmegaConf.to_container(cfg.task.data, resolve=True),
        "torch_version": torch.__version__,
        "plmu_version": __version__,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------------------------------ command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    flags.add_run(parser, "a plmu-train run directory (holds checkpoints/ and config.yaml)")
    parser.add_argument("--mode", choices=["recurrent", "parallel"], default="recurrent")
    parser.add_argument("--split", choices=["test", "val", "train"], default="test")
    parser.add_argument("--limit-batches", type=positive_int_flag, default=None, help="evaluate only this many batches")
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
