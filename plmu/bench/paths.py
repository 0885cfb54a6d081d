"""Every memory path at psMNIST's sizes (``plmu-bench``), and the direct/FFT crossover (``plmu-bench --crossover``).

A step is forward, cross-entropy, backward and an Adam update. Two cases:

- ``last``: classify from the last step only (psMNIST): the parallel layer needs m_T alone (eq. 25);
- ``full``: a prediction at every step (Mackey-Glass, text8): the layer's whole output sequence is needed.

Each row reports the median ms per step ± half its IQR (``plmu.bench.timing``), the peak memory one step adds, and
the speed-up over the recurrent loop of the same parallel model. The crossover table times the memory's direct and
FFT convolutions over sequence lengths on the chosen device and says what ``mode="auto"`` picks there
(``plmu.conv.choose_conv``) and whether that is the faster one.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch

from plmu.bench.models import PATHS, build, training_step
from plmu.bench.timing import Timing, measure, peak_memory_mb, release_freed_memory, warnings_block
from plmu.conv import DIRECT_MAX_STEPS, DIRECT_MAX_STEPS_BY_DEVICE, choose_conv
from plmu.memory import LegendreMemory

# Targets of the core issue, checked against what this run measured.
TARGET_LAST_VS_LOOP = 150.0
TARGET_FULL_VS_BASELINES = 2.0
CASE_PATHS = {
    "last": ["recurrent", "last_state", "original"],
    "full": ["recurrent", "naive_fft", "fft", "direct", "fused", "auto", "original"],
}


@dataclass
class Row:
    case: str
    path: str  # a key of PATHS
    timing: Timing
    peak_mb: float

    @property
    def seconds(self) -> float:
        return self.timing.median

    def speedup(self, baseline: Row) -> float:
        return baseline.seconds / self.seconds


def run_case(args: argparse.Namespace, case: str, device: torch.device) -> list[Row]:
    full = case == "full"
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, args.steps, args.input_size, generator=generator).to(device)
    y = torch.randint(0, args.classes, (args.batch,), generator=generator).to(device)
    rows = []
    for path in CASE_PATHS[case]:
        if args.skip_original and path == "original":
            continue
        torch.manual_seed(0)
        model = build(
            path, input_size=args.input_size, classes=args.classes, hidden=args.hidden, order=args.order,
            theta=args.theta, memory_d=args.memory_d, full=full,
        ).to(device)  # fmt: skip
        step = training_step(model, x, y, full)
        timing = measure(step, args.repeats, args.warmup, device)
        rows.append(Row(case, path, timing, peak_memory_mb(step, device)))
        print(f"  [{case}] {PATHS[path]}: {timing.ms()} ms/step", file=sys.stderr, flush=True)
        del model, step
        release_freed_memory()
    return rows


def format_table(rows: list[Row]) -> str:
    lines = [
        "| case | path | ms/step (median ± IQR/2) | peak MB | speed-up vs loop |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        baseline = next(r for r in rows if r.case == row.case)
        lines.append(
            f"| {row.case} | {PATHS[row.path]} | {row.timing.ms()} | {row.peak_mb:.0f} | {row.speedup(baseline):.1f}x |"
        )
    return "\n".join(lines) + "\n" + warnings_block([r.timing.warning(f"{r.case} {r.path}") for r in rows])


def check_targets(rows: list[Row]) -> list[str]:
    """One line per target of the core issue (the measured ratio, the target, met or not), and what auto picks."""
    by_key = {(r.case, r.path): r for r in rows}
    lines = []

    def line(what: str, fast: Row | None, slow: Row | None, target: float) -> None:
        if fast and slow:
            ratio = fast.speedup(slow)
            lines.append(f"- {what}: {ratio:.1f}x (target >= {target:g}x): {'met' if ratio >= target else 'NOT met'}")

    last, fused = by_key.get(("last", "last_state")), by_key.get(("full", "fused"))
    plain = by_key.get(("full", "naive_fft"))
    line("last-state step vs its recurrent loop", last, by_key.get(("last", "recurrent")), TARGET_LAST_VS_LOOP)
    line("full-sequence step vs its recurrent loop", fused, by_key.get(("full", "recurrent")), TARGET_FULL_VS_BASELINES)
    line("full-sequence step vs the plain FFT", fused, plain, TARGET_FULL_VS_BASELINES)
    if fused and plain:
        verdict = "met" if fused.peak_mb < plain.peak_mb else "NOT met"
        lines.append(
            f"- full-sequence peak memory vs the plain FFT: {fused.peak_mb:.0f} MB vs {plain.peak_mb:.0f} MB: {verdict}"
        )
    original = by_key.get(("last", "original"))
    if last and original:
        lines.append(f"- last-state step vs the original LMU (the paper's 'up to 200x'): {last.speedup(original):.0f}x")
    parallel = [r for r in rows if r.case == "full" and r.path in ("naive_fft", "fft", "direct", "fused")]
    auto = by_key.get(("full", "auto"))
    if auto and parallel:
        best = min(parallel, key=lambda r: r.seconds)
        ratio = auto.seconds / best.seconds
        verdict = "the fastest" if ratio <= 1.1 else f"{ratio:.1f}x slower than {PATHS[best.path]}"
        lines.append(f"- full sequence, mode=auto on this device: {auto.seconds * 1e3:.1f} ms per step, {verdict}")
    return lines


def crossover(args: argparse.Namespace, device: torch.device) -> str:
    """Forward+backward of the memory alone, direct vs FFT, over sequence lengths, on ``device``."""
    memory = LegendreMemory(args.order, args.theta, args.memory_d).to(device)
    lines = [
        f"device: {device.type}; memory order {args.order}, memory_d {args.memory_d}, batch {args.batch}; "
        f"forward + backward of the memory; auto = plmu.conv.choose_conv (direct up to T = "
        f"{DIRECT_MAX_STEPS_BY_DEVICE.get(device.type, DIRECT_MAX_STEPS)} on {device.type})",
        "",
        "| T | direct ms | fft ms | faster | auto picks | auto right? |",
        "| ---: | ---: | ---: | --- | --- | --- |",
    ]
    warnings, wrong = [], []
    for steps in args.crossover_steps:
        u = torch.rand(args.batch, steps, args.memory_d, device=device, requires_grad=True)
        times = {}
        for mode in ("direct", "fft"):
            run = lambda m=mode, u=u: memory(u, mode=m).sum().backward()  # noqa: E731
            times[mode] = measure(run, args.repeats, args.warmup, device)
            warnings.append(times[mode].warning(f"T={steps} {mode}"))
        faster = min(times, key=lambda m: times[m].median)
        auto = choose_conv(steps, device.type)
        right = "yes" if auto == faster else f"no ({times[auto].median / times[faster].median:.2f}x slower)"
        if auto != faster:
            wrong.append(steps)
        lines.append(f"| {steps} | {times['direct'].ms()} | {times['fft'].ms()} | {faster} | {auto} | {right} |")
    summary = (
        f"\n- auto's choice was the faster at every T on {device.type}"
        if not wrong
        else (f"\n- auto's choice was slower on {device.type} at T = {', '.join(map(str, wrong))}")
    )
    return "\n".join(lines) + "\n" + summary + "\n" + warnings_block(warnings)


def report(args: argparse.Namespace, device: torch.device) -> str:
    rows = [row for case in args.cases for row in run_case(args, case, device)]
    return format_table(rows) + "\n" + "\n".join(check_targets(rows)) + "\n"
