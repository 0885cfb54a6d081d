"""``plmu-bench --scaling``: one training step of every path over sequence lengths T = 256 … 65,536.

Paths: the parallel LMU's recurrent loop, the original 2019 LMU (its cell eager or under ``torch.compile``, whichever
is faster at the first T: what a careful user would run), ``nn.LSTM`` (cuDNN's fused kernel on a GPU), the library's
causal transformer, the plain (naive) FFT, the fused path, and the last-state path (loss on the last step only; all
the others predict at every step). One layer each, the same width, batch ``BATCH``; θ = T (the memory spans the
sequence). Per step: forward, cross-entropy, backward, Adam; the median (± IQR/2) of ``plmu.bench.timing`` and the
peak memory one step adds (CUDA: ``max_memory_allocated``; CPU: resident set, see ``timing.peak_memory_mb``).

Budget: once a path's step takes longer than ``budget`` seconds (or its next T is predicted, from its growth so
far, to take more than ``PREDICT_FACTOR`` budgets, or to need more than ``MEMORY_FRACTION`` of the free memory), its
larger T are skipped and the table says why; an out-of-memory error (or a kernel refusing the size) skips them too.
Writes ``scaling.png`` (time and memory against T, log-log) when matplotlib imports; ``plmu-bench --scaling
--output-dir DIR`` writes the report there as ``scaling.md``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from plmu.bench.models import PATHS, build, training_step
from plmu.bench.timing import Timing, measure, peak_memory_mb, release_freed_memory, warnings_block

LENGTHS = (256, 1024, 4096, 16384, 65536)
BATCH, HIDDEN, ORDER, CLASSES = 4, 64, 128, 10
SCALING_PATHS = ("recurrent", "original", "lstm", "transformer", "naive_fft", "fused", "last_state")
DEFAULT_BUDGET = {"cpu": 2.0, "cuda": 0.5}  # seconds per step
PREDICT_FACTOR = 5.0
MEMORY_FRACTION = 0.3  # skip a T whose predicted peak memory exceeds this share of the device's free memory


def free_memory_mb(device: torch.device) -> float:
    """Free memory now: the GPU's (``mem_get_info``), or the host's MemAvailable (Linux; infinite elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / 2**20
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return math.inf


QUICK = dict(lengths=(8, 16), batch=2, hidden=4, order=8)


@dataclass
class Point:
    path: str
    steps: int
    timing: Timing | None = None
    peak_mb: float = float("nan")
    skipped: str = ""  # why it was not measured


def sizes_line(quick: bool = False) -> str:
    batch, hidden, order = (QUICK["batch"], QUICK["hidden"], QUICK["order"]) if quick else (BATCH, HIDDEN, ORDER)
    return (
        f"sizes: batch {batch}, one layer of {hidden} units, order {order}, θ = T, memory_d 1, input 1, "
        f"{CLASSES} classes per step; transformer: 4 heads, feed-forward {2 * hidden}"
    )


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def choose_original(device: torch.device, steps: int, sizes: dict, batch: int, repeats: int) -> tuple[bool, str]:
    """(compile the cell?, a line saying what was measured): eager vs ``torch.compile`` of the 2019 cell at ``steps``.

    The compile time (tens of seconds on a CPU) is spent in the warm-up step and not counted."""
    x = torch.rand(batch, steps, 1, device=device)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    results = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = build("original", **sizes, theta=float(steps), compile_original=compiled).to(device)
        try:
            results[compiled] = measure(training_step(model, x, y, True), repeats, 1, device).median
        except Exception as error:  # no compiler on this machine (e.g. no C++ toolchain): eager, said in the report
            if not compiled:
                raise
            results[compiled] = math.inf
            print(f"  torch.compile of the 2019 cell failed: {type(error).__name__}: {error}", file=sys.stderr)
    compiled = results[True] < results[False]
    line = (
        f"original LMU: eager {results[False] * 1e3:.0f} ms vs torch.compile'd cell {results[True] * 1e3:.0f} ms "
        f"per step at T = {steps}: {'compiled' if compiled else 'eager'} is used for every T (torch.jit.script "
        "refuses the cell: keyword-only arguments)"
    )
    return compiled, line


def run(
    device: torch.device,
    lengths: tuple[int, ...] = LENGTHS,
    budget: float | None = None,
    quick: bool = False,
    paths: tuple[str, ...] = SCALING_PATHS,
) -> tuple[list[Point], list[str]]:
    """Every (path, T) point, measured or skipped, and the notes (the original LMU's compile choice)."""
    budget = DEFAULT_BUDGET[device.type] if budget is None else budget
    if budget <= 0:
        raise ValueError(f"budget must be > 0 seconds per step, got {budget}")
    batch, hidden, order = (QUICK["batch"], QUICK["hidden"], QUICK["order"]) if quick else (BATCH, HIDDEN, ORDER)
    repeats = 2 if quick else 3
    sizes = dict(input_size=1, classes=CLASSES, hidden=hidden, order=order, memory_d=1)
    notes, compile_original = [], False
    if "original" in paths and not quick:
        compile_original, line = choose_original(device, lengths[0], sizes, batch, repeats)
        notes.append(line)
    elif "original" in paths:
        notes.append("original LMU: eager (--quick does not try torch.compile: it takes tens of seconds)")
    points = []
    for path in paths:
        full, stop, previous = path != "last_state", "", None  # previous: (T, seconds, peak MB)
        for steps in lengths:
            if stop:
                points.append(Point(path, steps, skipped=stop))
                continue
            point = Point(path, steps)
            try:
                torch.manual_seed(0)
                model = build(path, **sizes, theta=float(steps), full=full, compile_original=compile_original).to(
                    device
                )
                x = torch.rand(batch, steps, 1, device=device)
                y = torch.randint(0, CLASSES, (batch,), device=device)
                step = training_step(model, x, y, full)
                point.timing = measure(step, repeats, 1, device)
                point.peak_mb = peak_memory_mb(step, device)
            except (RuntimeError, torch.OutOfMemoryError) as error:
                # out of memory, or a kernel that refuses the size (cuDNN's LSTM at long T): this T and the larger
                # ones are not measured, and the table says why
                reason = "out of memory" if _is_oom(error) else f"failed: {str(error).splitlines()[0][:80]}"
                point.skipped, stop = reason, f"skipped: {reason} at T = {steps:,}"
                print(f"  [scaling] {path} T={steps}: {reason}", file=sys.stderr, flush=True)
            finally:
                model = step = x = y = None
                release_freed_memory()
            points.append(point)
            if point.timing is None:
                continue
            seconds = point.timing.median
            print(f"  [scaling] {path} T={steps}: {point.timing.ms()} ms/step", file=sys.stderr, flush=True)
            next_steps = next((n for n in lengths if n > steps), steps)
            # the next T's cost, from the growth seen so far and at least in proportion to T
            ratio = next_steps / steps
            predicted = seconds * max(seconds / previous[1] if previous else 1.0, ratio)
            peak = max(point.peak_mb, 1.0) if math.isfinite(point.peak_mb) else 1.0
            predicted_mb = peak * max(peak / max(previous[2], 1.0) if previous else 1.0, ratio)
            if seconds > budget:
                stop = f"skipped: {seconds:.2f} s/step at T = {steps:,} > budget {budget:g} s"
            elif next_steps > steps and predicted > PREDICT_FACTOR * budget:
                stop = f"skipped: predicted {predicted:.1f} s/step (> {PREDICT_FACTOR:g} × budget {budget:g} s)"
            elif next_steps > steps and predicted_mb > MEMORY_FRACTION * free_memory_mb(device):
                stop = f"skipped: predicted {predicted_mb / 1024:.1f} GB peak (> {MEMORY_FRACTION:.0%} of free memory)"
            previous = (steps, seconds, peak)
    return points, notes


def table(points: list[Point], lengths: tuple[int, ...], value: str) -> str:
    """A markdown table, one row per path, one column per T: ms per step (``value="ms"``) or peak MB."""
    unit = "ms/step (median ± IQR/2)" if value == "ms" else "peak MB"
    lines = [
        f"| path ({unit}) | " + " | ".join(f"T = {n:,}" for n in lengths) + " |",
        "| --- | " + " | ".join("---:" for _ in lengths) + " |",
    ]
    for path in dict.fromkeys(p.path for p in points):
        cells = []
        for n in lengths:
            point = next(p for p in points if p.path == path and p.steps == n)
            if point.timing is None:
                cells.append(point.skipped.removeprefix("skipped: ") if point.skipped else "-")
            else:
                digits = 1 if point.peak_mb < 10 else 0  # a small path's 0.2 MB is not "0"
                cells.append(point.timing.ms() if value == "ms" else f"{point.peak_mb:.{digits}f}")
        lines.append(f"| {PATHS[path]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(points: list[Point], path: Path) -> str:
    """scaling.png: ms/step and peak MB against T, log-log; returns a line for the report (what was written).

    The legend sits below both panels, outside them: inside either it hides a curve (the last-state line runs along
    the bottom of the time panel, the others fill its upper half). A peak of 0 MB cannot sit on a log axis: it is left
    out of the memory panel rather than drawn at an invented floor.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "- no plot: matplotlib is not installed here (pip install matplotlib)"
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5.6))
    for name in dict.fromkeys(p.path for p in points):
        measured = [p for p in points if p.path == name and p.timing is not None]
        if not measured:
            continue
        line = left.plot([p.steps for p in measured], [p.timing.median * 1e3 for p in measured], marker="o")[0]
        line.set_label(PATHS.get(name, name))  # a redrawn report's points carry their printed labels
        drawn = [p for p in measured if math.isfinite(p.peak_mb) and p.peak_mb > 0]
        right.plot([p.steps for p in drawn], [p.peak_mb for p in drawn], marker="o", color=line.get_color())
    for axis, ylabel in ((left, "ms per training step"), (right, "peak MB one step adds")):
        axis.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel=ylabel)
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3) or 1, fontsize=8, frameon=False)
    rows = max(1, math.ceil(len(labels) / 3))
    figure.tight_layout(rect=(0, 0.04 * rows + 0.01, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"- plot: {path.name} (time and memory against T, log-log)"


def read_report(path: Path) -> list[Point]:
    """The points of a scaling.md this module wrote (its two tables), to redraw its plot without re-measuring.

    Raises ValueError naming the file when it holds no scaling tables. Each point's ``path`` is the row's label as
    the file printed it (older reports name paths as they were then); cells that say why a T was skipped come back
    as skipped points; a timing keeps only its median (all a plot draws).
    """
    tables: dict[str, dict[tuple[str, int], str]] = {"ms": {}, "mb": {}}
    lengths: list[int] = []
    kind = None
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file: pass a scaling.md that plmu-bench --scaling wrote") from None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| path ("):
            kind = "ms" if "ms/step" in cells[0] else "mb"
            try:
                lengths = [int(c.removeprefix("T = ").replace(",", "")) for c in cells[1:]]
            except ValueError:
                raise ValueError(f"{path}: a table's header is not 'T = <length>' cells: {line.strip()!r}") from None
        elif kind and line.startswith("| ") and not line.startswith("| ---"):
            if len(cells) != len(lengths) + 1:
                raise ValueError(f"{path}: the row {cells[0]!r} has {len(cells) - 1} cells for {len(lengths)} lengths")
            for steps, cell in zip(lengths, cells[1:], strict=True):
                tables[kind][(cells[0], steps)] = cell
        elif not line.startswith("|"):
            kind = None
    if not tables["ms"]:
        raise ValueError(f"{path} holds no scaling table: pass a scaling.md that plmu-bench --scaling wrote")
    points = []
    for (name, steps), cell in tables["ms"].items():
        try:
            median = float(cell.split("±")[0])
        except ValueError:
            points.append(Point(name, steps, skipped=f"skipped: {cell}"))
            continue
        points.append(Point(name, steps, Timing([median / 1e3]), peak_mb=float(tables["mb"].get((name, steps), "nan"))))
    return points


def report(
    device: torch.device,
    output_dir: Path | None = None,
    quick: bool = False,
    lengths: list[int] | None = None,
    budget: float | None = None,
) -> str:
    lengths = tuple(lengths) if lengths else (QUICK["lengths"] if quick else LENGTHS)
    budget = DEFAULT_BUDGET[device.type] if budget is None else budget
    points, notes = run(device, lengths, budget, quick)
    lines = [
        f"device: {device.type}; per-path budget {budget:g} s per step (larger T skipped past it); "
        f"median ± IQR/2 of {2 if quick else 3} steps after 1 warm-up",
        "",
        table(points, lengths, "ms"),
        table(points, lengths, "mb"),
        *[f"- {note}" for note in notes],
    ]
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        lines.append(plot(points, output_dir / "scaling.png"))
    warnings = [p.timing.warning(f"{p.path} T={p.steps}") for p in points if p.timing]
    body = "\n".join(lines) + "\n" + warnings_block(warnings)
    return body
