"""`plmu-bench` (also ``python -m plmu.bench``): the speed study, one timing harness for every benchmark.

    plmu-bench [--device auto|cpu|cuda] [--quick] [--output FILE]            every memory path at psMNIST size
    plmu-bench --crossover                                                   direct vs FFT over T, and auto's choice
    plmu-bench --scaling --output-dir DIR                                    every path over T = 256 … 65,536 (+ PNGs)
    plmu-bench --replot DIR/scaling.md                                       redraw its scaling.png, no re-measuring
    plmu-bench --text | --lm                                                 text classifiers / text8 language models
    plmu-bench --mackey-glass [--profile]                                    Mackey-Glass step times, profile, floor
    plmu-bench --trainer                                                     a psMNIST epoch: trainer vs bare step

Modules: ``timing`` (the harness: warm-up, CUDA sync, median and IQR, spread warnings, peak memory), ``models`` (the
library's models per path), ``paths``, ``scaling``, ``text``, ``lm``, ``mackey_glass``, ``trainer``. ``--quick``
shrinks every size so a run takes seconds (tests, smoke runs); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from plmu.bench.timing import machine_description, resolve_device
from plmu.train.machine import keep_freed_memory

QUICK = dict(batch=3, steps=20, order=8, theta=10.0, hidden=4, repeats=2, warmup=1)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plmu-bench", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--crossover", action="store_true", help="time direct vs fft over T, and what auto picks")
    what.add_argument("--scaling", action="store_true", help="every path over sequence lengths, with plots")
    what.add_argument("--replot", type=Path, metavar="SCALING_MD", help="redraw scaling.png beside a scaling.md")
    what.add_argument("--text", action="store_true", help="the text classifiers (LMU, LSTM, transformer)")
    what.add_argument("--lm", action="store_true", help="the text8 language models: training and generation chars/s")
    what.add_argument("--mackey-glass", action="store_true", help="Mackey-Glass training steps (+ --profile)")
    what.add_argument("--trainer", action="store_true", help="a psMNIST epoch: the trainer against the bare step")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for tests (numbers mean nothing)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=784, help="sequence length T")
    parser.add_argument("--input-size", type=int, default=1)
    parser.add_argument("--memory-d", type=int, default=1)
    parser.add_argument("--order", type=int, default=468)
    parser.add_argument("--theta", type=float, default=784.0)
    parser.add_argument("--hidden", type=int, default=346)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument(
        "--repeats", type=int, help="timed steps per path (median and IQR reported); default 5, --trainer: 3 epochs"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--cases", default="last,full", help="comma-separated: last, full")
    parser.add_argument("--skip-original", action="store_true", help="leave out the (slow) 2019 LMU rows")
    parser.add_argument("--crossover-steps", type=_int_list, default=[4, 8, 16, 32, 64, 128, 256, 512, 1024])
    parser.add_argument("--lengths", type=_int_list, help="--scaling: the sequence lengths (default 256 … 65536)")
    parser.add_argument("--budget", type=float, help="--scaling: seconds per step above which larger T are skipped")
    parser.add_argument("--profile", action="store_true", help="--mackey-glass: profile the steps, state the floor")
    parser.add_argument("--output", type=Path, help="also write the report (markdown) to this file")
    parser.add_argument("--output-dir", type=Path, help="--scaling: write scaling.md and scaling.png here")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or any(c not in ("last", "full") for c in cases):
        parser.error(f"--cases must list 'last' and/or 'full', got {args.cases!r}")
    args.cases = cases
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.repeats is None and not args.trainer:
        args.repeats = 5
    if args.device not in ("auto", "cpu", "cuda"):
        parser.error(f"--device must be auto, cpu or cuda, got {args.device!r}")
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.crossover_steps = [4, 16, 64]
    return args


def _code_version() -> str:
    """plmu's git commit (with "+ changes" when the tree had uncommitted ones), or its version outside git."""
    from plmu.train.provenance import git_state

    state = git_state()
    if state["git_commit"] == "unknown":
        from importlib.metadata import version

        return f"plmu {version('plmu')}"
    return state["git_commit"][:12] + (" + uncommitted changes" if state["git_dirty"] else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        from plmu.bench import scaling

        try:
            points = scaling.read_report(args.replot)
            print(scaling.plot(points, args.replot.with_name("scaling.png")).removeprefix("- "))
        except (OSError, ValueError) as error:  # unreadable or foreign report; a plot folder not writable
            print(f"plmu-bench: {error}", file=sys.stderr)
            return 2
        return 0
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        print(f"plmu-bench: {error}", file=sys.stderr)
        return 2
    command = "plmu-bench " + " ".join(sys.argv[1:] if argv is None else argv)
    kept = keep_freed_memory()  # as plmu-train does (trainer.keep_memory): no page faults on every step's tensors
    header = [
        f"command: `{command.strip()}`",
        f"machine: {machine_description(device)}"
        + ("; freed memory kept in the process, as plmu-train does" if kept else ""),
        f"date: {time.strftime('%Y-%m-%d')}; code: {_code_version()}",
        f"sizes: batch {args.batch}, T {args.steps}, input {args.input_size}, memory_d {args.memory_d}, "
        f"order {args.order}, theta {args.theta:g}, hidden {args.hidden}, classes {args.classes}; "
        f"median ± IQR/2 of {args.repeats} steps after {args.warmup} warm-up",
        "",
    ]
    if args.text:
        from plmu.bench import text

        header[3] = "sizes: conf/sizes/<family>.yaml (imdb)"
        body = text.report(device, quick=args.quick)
    elif args.lm:
        from plmu.bench import lm

        header[3] = "sizes: conf/sizes/<family>.yaml (text8)"
        body = lm.report(device, quick=args.quick)
    elif args.mackey_glass:
        from plmu.bench import mackey_glass

        header[3] = "sizes: conf/sizes/<family>.yaml (mackey_glass; batch 32 × 5000 steps)"
        body = mackey_glass.report(
            device, quick=args.quick, profile=args.profile, repeats=args.repeats, skip_original=args.skip_original
        )
    elif args.trainer:
        from plmu.bench import trainer

        header[3] = (
            f"sizes: the psMNIST model (batch {args.batch}, T {args.steps}, order {args.order}, theta {args.theta:g}, "
            f"hidden {args.hidden}); whole epochs, not steps"
        )
        body = trainer.report(args, repeats=args.repeats or 3)
    elif args.scaling:
        from plmu.bench import scaling

        header[3] = scaling.sizes_line(args.quick)
        body = scaling.report(device, args.output_dir, quick=args.quick, lengths=args.lengths, budget=args.budget)
    elif args.crossover:
        from plmu.bench.paths import crossover

        body = crossover(args, device)
    else:
        from plmu.bench.paths import report

        body = report(args, device)
    text_out = "\n".join(header) + "\n" + body
    print(text_out, end="")
    outputs = [args.output] if args.output else []
    if args.scaling and args.output_dir:
        outputs.append(args.output_dir / "scaling.md")
    for output in outputs:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text_out)
    return 0
