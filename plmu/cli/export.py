"""``plmu-export RUN_DIR``: save a trained model's one-step function (x_t, state) → (output_t, new_state) for streaming.

The model is rebuilt from its checkpoint (``--checkpoint best`` by default, or ``last``, or a path), put in eval mode
and exported with ``torch.export`` (``--format export``, a ``.pt2``) or TorchScript (``--format torchscript``); see
:mod:`plmu.export` for the program's inputs and outputs. The file loads with torch alone (``LOAD_SNIPPET``,
printed by ``--help``).

The saved file is loaded back and compared with ``model.step`` over 20 steps from the zero state (random inputs);
the largest difference is in the report. ``--latency N`` also times N steps at batch 1 (after ``--warmup`` untimed
ones) through the eager ``model.step`` and the loaded program: per-step median and 10th/90th percentiles, on the CPU
with torch's current threads (set OMP_NUM_THREADS).

``--config OVERRIDE ...`` instead of RUN_DIR builds the model from the configs (untrained weights, seeded) for
latency measurements, e.g. ``plmu-export --config task=psmnist --latency 2000``: then nothing is written unless
``--output`` is given. A language model's vocabulary is ``task.output_size`` there (``--vocab-size`` to change it).

The JSON report goes to stdout. Errors are one line on stderr (``plmu-export: error: ...``), exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from plmu.cli import fail, flags, stop_on_sigterm
from plmu.cli.flags import positive_int_flag
from plmu.errors import ConfigError, PlmuError, one_line

PROG = "plmu-export"
LOAD_SNIPPET = """loading what it writes needs torch alone (the state's shapes travel inside the file):

    extra = {"plmu_step.json": ""}       # torch.jit.load(path, _extra_files=extra) for --format torchscript
    step = torch.export.load("RUN_DIR/step_best.pt2", extra_files=extra).module()
    shapes = json.loads(extra["plmu_step.json"])["signature"]["state_shapes"]          # None: the batch
    state = tuple(torch.zeros([1 if n is None else n for n in shape]) for shape in shapes)
    output, state = step(x_t, state)                                                    # one step
"""
CHECK_STEPS = 20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=LOAD_SNIPPET,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_dir = "a plmu-train run directory (holds checkpoints/ and config.yaml)"
    flags.add_run(parser, run_dir, device=None, optional=True)
    parser.add_argument("--format", choices=["export", "torchscript"], default="export")
    parser.add_argument("--output", metavar="FILE", help="where to save (default: RUN_DIR/step_<checkpoint><suffix>)")
    parser.add_argument("--config", nargs="+", metavar="OVERRIDE", help="build from the configs instead of a run")
    parser.add_argument("--vocab-size", type=positive_int_flag, help="with --config: a token model's vocabulary")
    parser.add_argument("--latency", type=positive_int_flag, metavar="STEPS", help="time this many steps at batch 1")
    parser.add_argument("--warmup", type=positive_int_flag, default=200, help="untimed steps before --latency's")
    args = parser.parse_args(argv)
    if (args.run_dir is None) == (args.config is None):
        parser.error("give a RUN_DIR or --config OVERRIDE ..., one of the two")
    return args


def model_from_run(run_dir: Path, which: str) -> tuple[Any, dict[str, Any]]:
    """The run's model with its checkpoint's weights, in eval mode, and where it came from."""
    from plmu.runs import load_run

    run = load_run(run_dir, which)
    source = {"run_dir": str(run_dir.resolve()), "checkpoint": str(run.checkpoint.resolve()), "epoch": run.epoch}
    return run.model, source


def model_from_config(overrides: list[str], vocab_size: int | None) -> tuple[Any, dict[str, Any]]:
    """The model the configs build with these overrides, untrained (seeded), in eval mode."""
    import torch
    from hydra import compose, initialize_config_module

    from plmu.cli.preflight import malformed_override, unknown_group_choice, unknown_key
    from plmu.models.build import build_model, model_args

    problem = unknown_group_choice(overrides) or malformed_override(overrides) or unknown_key(overrides)
    if problem is not None:  # the same line plmu-train gives, not Hydra's search path
        raise ConfigError(f"--config: {problem}")
    try:
        with initialize_config_module(config_module="plmu.conf", version_base="1.3"):
            cfg = compose("config", overrides=[*overrides, "logger=none"])
    except Exception as error:  # hydra's own: what the checks above do not cover
        message = one_line(error)
        raise ConfigError(f"--config {' '.join(overrides)}: {message}") from None
    torch.manual_seed(cfg.seed)
    vocab = vocab_size or cfg.task.output_size
    model = build_model(cfg, model_args(cfg, {"vocab_size": vocab}))
    return model.eval(), {"config": list(overrides), "weights": f"untrained (seed {cfg.seed})", "vocab_size": vocab}


def _check_one_stream(model: Any) -> None:
    """The families plmu-export cannot write, named in the command line's terms (plmu.export's own messages speak
    to Python callers: ``example_input=``, ``encode_recurrent``)."""
    from plmu.models.seq2seq import Seq2Seq
    from plmu.models.sequence import PairModel

    if isinstance(model, Seq2Seq):
        raise ConfigError(
            "a translation model reads its whole source before it writes: it has no one-input step to export; "
            "translate with plmu-translate (plmu-export takes a model of one input stream: psmnist, mackey_glass, "
            "imdb, text8)"
        )
    if isinstance(model, PairModel):
        raise ConfigError(
            "a sentence-pair classifier (qqp, snli) reads two whole sequences: it has no one-input step to export "
            "(plmu-export takes a model of one input stream: psmnist, mackey_glass, imdb, text8)"
        )


def default_output(args: argparse.Namespace, run_dir: Path) -> Path:
    from plmu.cli.run_tools import checkpoint_label
    from plmu.export import SUFFIX

    if args.checkpoint in ("best", "last"):
        name = args.checkpoint
    else:  # another run's best.pt must not take the name (and the file) of this run's own export
        name = checkpoint_label(run_dir, Path(args.checkpoint).expanduser()) or "best"
    return run_dir / f"step_{name}{SUFFIX[args.format]}"


def export(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import torch
    from torch.utils._pytree import tree_flatten, tree_unflatten

    import plmu
    from plmu import export as ex
    from plmu.train.run_folder import refuse_writing_records

    run_dir = None
    if args.run_dir is not None:
        run_dir = Path(args.run_dir).expanduser()
        model, source = model_from_run(run_dir, args.checkpoint)
        output = Path(args.output).expanduser() if args.output else default_output(args, run_dir)
    else:
        model, source = model_from_config(args.config, args.vocab_size)
        output = Path(args.output).expanduser() if args.output else workdir / f"step{ex.SUFFIX[args.format]}"
    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder: give a file name, e.g. {output / 'step.pt2'}")
    refuse_writing_records(output, run_dir, "--output")
    _check_one_stream(model)
    program, signature = ex.export_step(model, args.format)
    info = {"format": args.format, "model": type(model).__name__, "plmu_version": plmu.__version__, **source}
    ex.save_step(program, signature, output, info)
    loaded = ex.load_step(output)
    check = ex.random_inputs(model, CHECK_STEPS, 1, seed=0)
    report: dict[str, Any] = {
        "output": str(output.resolve()) if args.run_dir is not None or args.output else None,
        **info,
        "signature": signature.to_json(),
        "parameters": sum(p.numel() for p in model.parameters()),
        f"max_abs_difference_vs_model_step_{CHECK_STEPS}_steps": ex.max_step_difference(model, loaded.fn, check),
    }
    if args.latency:
        x = ex.random_inputs(model, args.latency + args.warmup, 1, seed=1)
        zero, spec = tree_flatten(model.initial_state(1))
        report["latency"] = {
            "batch": 1,
            "torch_threads": torch.get_num_threads(),
            "warmup_steps": args.warmup,
            "eager_model_step": ex.step_latency(model.step, x, tree_unflatten(list(zero), spec), args.warmup),
            f"loaded_{args.format}": ex.step_latency(loaded.fn, x, tuple(zero), args.warmup),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    try:
        with tempfile.TemporaryDirectory(prefix="plmu-export-") as workdir:
            report = export(args, Path(workdir))
    except PlmuError as error:
        return fail(PROG, str(error))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(report, indent=2))
    if report["output"]:
        print(f"{PROG}: wrote {report['output']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
