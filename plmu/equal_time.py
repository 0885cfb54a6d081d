"""What a given training time buys: each run's validation metric against the seconds it trained, and the best it
had reached by a few time budgets (``plmu-report RUN... --by-time 5,10,30,60``).

The paper's thesis is speed; a per-step benchmark shows it for one step, this shows it for the user's question
("I have an hour: which model?"). The clock, per validation record of ``metrics.jsonl``:

- ``train_seconds`` (plmu-train since issue 26): training time over all attempts, validation excluded, so how often
  a run validated does not change its clock;
- otherwise (older records) the running sum of ``epoch_seconds``, which includes each epoch's validation; only
  epoch-end validations count then.

The value at a budget is the best validation metric among the validations at or before it: what the run's
``best.pt`` held then. A run that ended before a budget keeps its final best there (marked "done").
Times are only comparable between runs made on the same machine, threads and precision; the table says which
clock each run used.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plmu.errors import PlmuError
from plmu.report import model_label, read_config, read_records

# The direction of each metric plmu-train validates (plmu.train.objectives); higher is better only for accuracy.
LOWER_IS_BETTER = {"nrmse": True, "perplexity": True, "bpc": True, "accuracy": False}
CLOCKS = ("train_seconds", "epoch_seconds")


class TimeReportError(PlmuError):
    """A run folder that cannot give a curve against time (no results.json, no timed validation)."""


@dataclass
class TimedRun:
    """One run's validation metric against its training clock (seconds), and what that clock is."""

    path: Path
    label: str
    task: str
    metric: str
    clock: str  # "train_seconds" or "epoch_seconds" (CLOCKS)
    points: list[tuple[float, float]]  # (seconds, validation metric), in the order trained
    parameters: int | None
    threads: int | None
    precision: str | None

    @property
    def lower_is_better(self) -> bool:
        return LOWER_IS_BETTER[self.metric]

    def best_by(self, seconds: float) -> float | None:
        """The best validation metric among those at or before ``seconds`` of training; None before the first."""
        values = [value for at, value in self.points if at <= seconds]
        if not values:
            return None
        return min(values) if self.lower_is_better else max(values)

    @property
    def seconds(self) -> float:
        """The clock at the run's last validation."""
        return self.points[-1][0]


def clock_points(lines: list[dict[str, Any]], metric: str) -> tuple[str, list[tuple[float, float]]]:
    """(clock, [(seconds, val metric)]) from a run's metrics.jsonl records (see the module docstring)."""
    key = f"val/{metric}"
    validations = [r for r in lines if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if validations and all(isinstance(r.get("train_seconds"), (int, float)) for r in validations):
        return "train_seconds", [(float(r["train_seconds"]), float(r[key])) for r in validations]
    points, total = [], 0.0
    for record in validations:
        if isinstance(record.get("epoch_seconds"), (int, float)):
            total += float(record["epoch_seconds"])
            points.append((total, float(record[key])))
    return "epoch_seconds", points


def load_timed_run(path: Path) -> TimedRun:
    """A finished (or stopped) plmu-train run folder as a :class:`TimedRun`; one-line errors otherwise."""
    results_file, metrics_file = path / "results.json", path / "metrics.jsonl"
    try:
        results = json.loads(results_file.read_text())
    except (OSError, ValueError) as error:
        raise TimeReportError(f"{results_file}: not a finished plmu-train run ({error})") from None
    metric = results.get("metric")
    if metric not in LOWER_IS_BETTER:
        raise TimeReportError(f"{results_file}: metric {metric!r} is not one of {sorted(LOWER_IS_BETTER)}")
    if not metrics_file.is_file():
        raise TimeReportError(f"{path} has no metrics.jsonl: nothing to put against time")
    clock, points = clock_points(read_records(metrics_file, []), metric)  # a torn last line: the records before it
    if not points:
        raise TimeReportError(f"{metrics_file} has no timed validation of {metric} (no train_seconds or epoch_seconds)")
    return TimedRun(
        path=path,
        label=model_label(read_config(path)),
        task=str(results.get("task", "?")),
        metric=metric,
        clock=clock,
        points=points,
        parameters=results.get("parameters"),
        threads=results.get("torch_threads"),
        precision=results.get("precision"),
    )


def _cell(run: TimedRun, minutes: float) -> str:
    value = run.best_by(minutes * 60)
    if value is None:
        return "–"
    text = f"{100 * value:.2f}%" if run.metric == "accuracy" else f"{value:.4g}"
    return text + (" (done)" if run.seconds <= minutes * 60 else "")


def time_table(runs: list[TimedRun], minutes: list[float]) -> str:
    """A markdown table: per run, the best validation metric reached within each budget, and its clock."""
    heads = [f"{m:g} min" for m in minutes]
    lines = [
        f"| run | model | parameters | {' | '.join(heads)} | trained (min) | clock; threads, precision |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in heads) + " | ---: | --- |",
    ]
    for run in runs:
        cells = " | ".join(_cell(run, m) for m in minutes)
        parameters = "?" if run.parameters is None else f"{run.parameters:,}"
        setup = f"{run.threads or '?'} thread{'s' if run.threads != 1 else ''}, precision {run.precision or '?'}"
        lines.append(
            f"| {run.path.name} | {run.label} | {parameters} | {cells} | {run.seconds / 60:.1f} | {run.clock}; "
            f"{setup} |"
        )
    return "\n".join(lines) + "\n"


def plot_time(runs: list[TimedRun], path: Path, minutes: list[float]) -> Path | None:
    """validation metric against minutes of training (log x), one line per run, the budgets dotted; None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    figure, axes = plt.subplots(figsize=(7, 4.2))
    families = list(dict.fromkeys(run.label for run in runs))  # one colour a model family, a line style a run
    seen: dict[str, int] = {}
    for run in runs:
        xs = [seconds / 60 for seconds, _ in run.points]
        ys = [100 * v if run.metric == "accuracy" else v for _, v in run.points]
        style = ("-", "--", ":", "-.")[seen.get(run.label, 0) % 4]
        seen[run.label] = seen.get(run.label, 0) + 1
        colour = f"C{families.index(run.label) % 10}"
        axes.plot(
            xs, ys, style, color=colour, marker="." if len(xs) < 40 else None, label=f"{run.label} ({run.path.name})"
        )
    for budget in minutes:
        axes.axvline(budget, color="grey", linestyle=":", linewidth=0.8)
    metric = runs[0].metric
    axes.set_xscale("log")
    axes.set_xticks(sorted({1.0, 2.0, *minutes}))  # the budgets, labelled in plain minutes
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.xaxis.set_minor_formatter(NullFormatter())
    clocks = {run.clock for run in runs}
    xlabel = "minutes of training" + (
        " (validation excluded)" if clocks == {"train_seconds"} else " (epoch_seconds runs: validation included)"
    )
    axes.set(xlabel=xlabel, ylabel=f"validation {metric}" + (" (%)" if metric == "accuracy" else ""),
             title=f"validation {metric} against training time")  # fmt: skip
    if LOWER_IS_BETTER[metric]:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def parse_minutes(text: str) -> list[float]:
    """``"5,10,30,60"`` → [5, 10, 30, 60]; one-line error on anything else."""
    try:
        minutes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        minutes = []
    if not minutes or any(not math.isfinite(m) or m <= 0 for m in minutes):
        raise TimeReportError(f"--by-time takes positive minutes separated by commas, e.g. 5,10,30,60; got {text!r}")
    return sorted(set(minutes))
