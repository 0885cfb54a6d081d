"""Collect finished runs into one results report: the paper's number beside ours, only from what the runs wrote.
(Over 400 lines as one idea: reading run records into the results tables and plots.)

A run is a folder plmu-train wrote: ``results.json`` (the test metric, parameters, ...), ``metrics.jsonl`` (one JSON
object per line; validation lines carry ``val/<metric>``) and ``config.yaml`` or ``.hydra/config.yaml``.

An experiment folder (``experiments/<name>/``) says in ``results.yaml`` which of its runs are result rows and on what
data they ran, because a run cannot tell a stand-in data set from the real one::

    task: imdb                  # a key of PAPER (results.json's task)
    data: real review snippets (Rotten Tomatoes), a stand-in: IMDB cannot be downloaded here
    paper_data: false           # true: the paper's own data set (its rows come first, marked so)
    protocol: from scratch, the task's default config   # how the rows were trained, beside the paper's way
    runs:
      - dir: rotten_tomatoes_plmu
        model: parallel LMU      # the row's label (default: the config's backbone)
        protocol: ...            # this row's, when it is not the experiment's
      - dir: synthetic_plmu      # a metric another command measured in the run folder, instead of results.json's:
        metric_from: {file: translate_test.json, key: bleu_tokenized, name: BLEU}
      - dirs: [plmu_seed0, plmu_seed1, plmu_seed2]   # one row for several seeds: mean ± sample std (n), min-max
        model: parallel LMU

Every number in a row is read from a run folder (``results.json``, or the file ``metric_from`` names); the paper's
numbers come from :data:`PAPER`, copied from README.md's results table and ``shared/reference/lmu-facts.md``.
Experiment folders without ``results.yaml`` still give rows, from all their runs, with the data marked "not
described". Runs of an experiment that its manifest does not list (sweeps, ablations) are listed apart.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plmu.data.text_tasks import TASKS as TEXT_TASKS
from plmu.data.text_tasks import PaperRow
from plmu.errors import PlmuError

MANIFEST = "results.yaml"
SKIP_DIRS = {"checkpoints", "wandb", ".hydra", "__pycache__"}


class ReportError(PlmuError, ValueError):
    """A path, manifest or run file the report cannot use; the message names the file."""


# The paper's rows (Chilkuri & Eliasmith 2021), in the README's order, keyed by results.json's task.
PAPER: dict[str, PaperRow] = {
    "psmnist": PaperRow("psMNIST", "test accuracy", "98.49% (165k params)"),
    "mackey_glass": PaperRow("Mackey-Glass", "test NRMSE", "LSTM 0.059, LMU 0.049, hybrid 0.045"),
    **{
        name: task.paper for name, task in TEXT_TASKS.items() if task.paper
    },  # declared with the data (plmu/data/text_tasks.py)
    "text8": PaperRow("text8", "test bpc", "1.61"),
    "iwslt15_en_vi": PaperRow("IWSLT'15 En-Vi", "tst2013 BLEU", "(not readable); Luong & Manning 2015: 23.3"),
}


@dataclass
class Run:
    """One run folder's records. ``value`` is the row's number, read from ``source``."""

    path: Path
    results: dict[str, Any]
    config: dict[str, Any]
    label: str
    metric: str
    value: float | None
    source: str
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, val metric)
    warnings: list[str] = field(default_factory=list)
    seeds: list[Run] = field(default_factory=list)  # a row over several seeds: its runs (value is their mean)
    protocol: str | None = None  # how it was trained (results.yaml's, for a result row)
    not_a_result: str | None = None  # why its test is no result (not_a_result); such a run is never a table row

    @property
    def spread(self) -> float | None:
        """The sample standard deviation of the seeds' values (None for one run)."""
        values = [run.value for run in self.seeds if run.value is not None]
        if len(values) < 2:
            return None
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))

    @property
    def task(self) -> str:
        return str(self.results.get("task", "?"))


@dataclass
class Experiment:
    """A folder of runs: the rows its manifest lists (or all), and its other runs."""

    path: Path
    task: str | None
    data: str | None
    rows: list[Run]
    others: list[Run]
    manifest: bool
    paper_data: bool = False  # the manifest says the runs used the paper's own data set


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ReportError(f"{path} is not valid JSON (line {error.lineno}: {error.msg}): re-run or remove it") from None
    except OSError as error:
        raise ReportError(f"cannot read {path}: {error.strerror or error}") from None
    if not isinstance(value, dict):
        raise ReportError(f"{path} holds a {type(value).__name__}, not a JSON object: not a plmu results file")
    return value


def read_config(run: Path) -> dict[str, Any]:
    """The run's config.yaml (resolved) or .hydra/config.yaml; {} when it has neither or it is unreadable."""
    for path in (run / "config.yaml", run / ".hydra" / "config.yaml"):
        if path.is_file():
            try:
                config = yaml.safe_load(path.read_text())
            except (yaml.YAMLError, OSError):
                return {}
            return config if isinstance(config, dict) else {}
    return {}


def read_records(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl, in order; a corrupt line (a torn write) is skipped with a warning."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            warnings.append(f"{path}:{number}: not a JSON line, skipped (a torn write?)")
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_curve(path: Path, metric: str, warnings: list[str]) -> list[tuple[int, float]]:
    """(step, val/<metric>) of every validation line of metrics.jsonl; a corrupt line is skipped with a warning."""
    if not path.is_file():
        return []
    points = []
    for record in read_records(path, warnings):
        value = record.get(f"val/{metric}")
        if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(record.get("step"), int):
            points.append((record["step"], float(value)))
    return points


def model_label(config: dict[str, Any]) -> str:
    from plmu.models.backbones import family_label, model_family  # the registry (plmu.models imports torch)

    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    return family_label(model_family(model)) if model else "?"


def legend_name(run: Run) -> str:
    """A run in a plot's legend: its label and the overrides that set it apart (not the task, the family or the
    folder), else its folder's name."""
    shared = ("task=", "model=", "hydra.", "logger=", "data_dir=", "trainer.progress=")
    kept = [str(o) for o in run.results.get("overrides") or [] if not str(o).startswith(shared)]
    return f"{run.label} ({' '.join(kept) if kept else run.path.name})"


def not_a_result(results: dict[str, Any]) -> str | None:
    """Why a finished run's test is no result for a table (a smoke run, a test on part of the split, a test that is
    not a number), or None."""
    if any(str(override).startswith("debug=") for override in results.get("overrides") or []):
        return "debug: a smoke run, not a result"  # a few batches of one epoch
    if results.get("test_limited"):
        scored = results.get("test_scored") or {}
        return (
            f"limited test: {scored.get('batches')} of {scored.get('of_batches')} batches "
            f"(trainer.limit_eval_batches={scored.get('limit_eval_batches')}), not a result"
        )
    test = results.get("test")
    if isinstance(test, float) and not math.isfinite(test):
        return f"test {test}: not a result"
    return None


def read_run_record(path: Path, entry: dict[str, Any] | None = None) -> Run:
    """The record of the run at ``path`` (results.json, config.yaml, metrics.jsonl: no weights; :func:`plmu.load_run`
    loads a model); ``entry`` is its manifest entry (label, metric_from)."""
    entry = entry or {}
    results = read_json(path / "results.json")
    metric = results.get("metric")
    value = results.get("test")
    if not isinstance(metric, str) or not (value is None or isinstance(value, (int, float))):
        raise ReportError(f"{path / 'results.json'} lacks a metric name or a numeric test value: not plmu-train's")
    config = read_config(path)
    label = entry.get("model") or model_label(config)
    why_not = not_a_result(results)
    if why_not is not None:
        label += f" [{why_not}]"  # never read as a measurement
    run = Run(path, results, config, label, metric, value, "results.json")
    run.not_a_result = why_not
    run.curve = read_curve(path / "metrics.jsonl", metric, run.warnings)
    source = entry.get("metric_from")
    if source is not None:
        file = path / str(source.get("file"))
        measured = read_json(file).get(source.get("key"))
        if not isinstance(measured, (int, float)):
            raise ReportError(f"{file} has no number under {source.get('key')!r} (named by {MANIFEST})")
        run.metric, run.value, run.source = str(source.get("name", source["key"])), float(measured), file.name
    return run


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ReportError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    runs = manifest.get("runs") if isinstance(manifest, dict) else None
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) and _entry_dirs(r) for r in runs):
        raise ReportError(
            f"{path} needs task, data and runs: a list of {{dir: <run folder>, model: <label>}} (or dirs: [<run "
            f"folder>, ...] for one row over several seeds)"
        )
    if not isinstance(manifest.get("paper_data", False), bool):
        raise ReportError(f"{path}: paper_data must be true or false, got {manifest['paper_data']!r}")
    if manifest.get("task") not in PAPER:
        raise ReportError(f"{path}: task must be one of {list(PAPER)}, got {manifest.get('task')!r}")
    if not isinstance(manifest.get("data"), str):
        raise ReportError(f"{path}: data must say, in words, what data the runs used")
    for entry in runs:
        protocol = entry.get("protocol", manifest.get("protocol"))
        if not isinstance(protocol, str) or not protocol.strip():
            raise ReportError(
                f"{path}: protocol must say, in words, how {_entry_dirs(entry)} were trained (beside the paper's "
                f"way): set it for the experiment or for the entry"
            )
        source = entry.get("metric_from")
        if source is not None and not (isinstance(source, dict) and "file" in source and "key" in source):
            raise ReportError(f"{path}: metric_from of {entry['dir']} must be {{file: ..., key: ..., name: ...}}")
        for name in _entry_dirs(entry):
            if not (folder / name / "results.json").is_file():
                raise ReportError(f"{path} names {name}, but {folder / name} has no results.json")
    return manifest


def _entry_dirs(entry: dict[str, Any]) -> list[str]:
    """The run folders of a manifest entry: ``dir``, or the seeds of ``dirs``; [] when it names none properly."""
    if isinstance(entry.get("dir"), str) and "dirs" not in entry:
        return [entry["dir"]]
    dirs = entry.get("dirs")
    if isinstance(dirs, list) and dirs and all(isinstance(d, str) for d in dirs) and "dir" not in entry:
        return dirs
    return []


def seed_row(runs: list[Run], entry: dict[str, Any]) -> Run:
    """One row over several seeds' runs: the mean of their values, the first run's records for the rest."""
    metrics = {run.metric for run in runs}
    if len(metrics) != 1:
        raise ReportError(f"the seeds {[str(r.path) for r in runs]} report different metrics: {sorted(metrics)}")
    values = [run.value for run in runs]
    mean = None if any(v is None for v in values) else sum(values) / len(values)
    first = runs[0]
    row = Run(first.path, first.results, first.config, entry.get("model") or first.label, first.metric, mean,
              first.source, list(first.curve), [w for run in runs for w in run.warnings], list(runs))  # fmt: skip
    return row


def run_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` (itself included) that holds a results.json, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        if "results.json" in files:
            found.append(Path(folder))
    return sorted(found)


def load_experiment(folder: Path, warnings: list[str]) -> Experiment:
    """One folder: its manifest's rows, or every run under it; runs that cannot be read are skipped with a warning
    unless the manifest names them (then the report stops: a listed row must not vanish)."""
    listed: dict[Path, dict[str, Any]] = {}
    manifest = None
    rows = []
    if (folder / MANIFEST).is_file():
        manifest = _manifest(folder)
        for entry in manifest["runs"]:
            runs = [read_run_record(folder / name, entry) for name in _entry_dirs(entry)]
            for run in runs:
                if run.not_a_result:
                    raise ReportError(
                        f"{folder / MANIFEST} lists {run.path.name}, which is no result ({run.not_a_result}): "
                        f"re-run it as a full run, or take it out of the manifest"
                    )
            listed.update({run.path.resolve(): entry for run in runs})
            row = runs[0] if "dir" in entry else seed_row(runs, entry)
            row.protocol = entry.get("protocol", manifest.get("protocol"))
            rows.append(row)
    others = []
    for path in run_folders(folder):
        if path.resolve() in listed:
            continue
        try:
            others.append(read_run_record(path))
        except ReportError as error:
            warnings.append(f"skipped {path}: {error}")
    for run in rows + others:
        warnings.extend(run.warnings)
    if manifest is not None:
        paper_data = bool(manifest.get("paper_data", False))
        return Experiment(folder, manifest["task"], manifest["data"], rows, others, True, paper_data)
    results = [run for run in others if run.not_a_result is None]  # no manifest: every run with a real test
    return Experiment(folder, None, None, results, [run for run in others if run.not_a_result], False)


def collect(paths: list[Path]) -> tuple[list[Experiment], list[str]]:
    """The experiments under ``paths``: an ``experiments/`` folder (each subfolder an experiment), experiment folders,
    or run folders. A run given by name must be readable; one found in a folder of many is skipped with a warning."""
    warnings: list[str] = []
    experiments = []
    for path in paths:
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise ReportError(f"{path} {what}: give run folders or an experiments/ folder")
        if (path / MANIFEST).is_file():
            experiments.append(load_experiment(path, warnings))
        elif (path / "results.json").is_file():
            run = read_run_record(path)
            warnings.extend(run.warnings)
            result = run.not_a_result is None  # listed either way; a table row only with a real test
            experiments.append(Experiment(path, None, None, [run] if result else [], [] if result else [run], False))
        else:
            children = sorted(p for p in path.iterdir() if p.is_dir() and p.name not in SKIP_DIRS)
            folders = [p for p in children if (p / MANIFEST).is_file() or run_folders(p)]
            if not folders:
                raise ReportError(f"no runs under {path} (no results.json, no {MANIFEST} in it): give plmu-train run "
                                  f"folders or experiments/")  # fmt: skip
            experiments.extend(load_experiment(folder, warnings) for folder in folders)
    if not any(experiment.rows or experiment.others for experiment in experiments):
        raise ReportError(f"no readable runs under {', '.join(map(str, paths))}: {'; '.join(warnings[:3])}")
    return experiments, warnings


# ------------------------------------------------------------------------------------------------ formatting
def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a (not finite)"
    if metric == "accuracy":
        return f"{100 * value:.2f}%"
    if metric in ("nrmse", "mse"):
        return f"{value:.4f}"
    if metric == "bpc":
        return f"{value:.3f}"
    if "bleu" in metric.lower():
        return f"{value:.1f}"
    return f"{value:.2f}"


def test_cell(metric: str, results: dict[str, Any]) -> str:
    """The test value, or why there is none: a selection run (trainer.test=false) leaves test_metrics null."""
    if "test_metrics" in results and results["test_metrics"] is None:
        return "not measured (selection run)"
    return format_value(metric, results.get("test"))


def link(target: Path, base: Path, text: str | None = None) -> str:
    relative = Path(os.path.relpath(target.resolve(), base.resolve())).as_posix()
    return f"[{text or relative}]({relative})"


def data_cell(experiment: Experiment, run: Run, base: Path) -> str:
    readme = experiment.path / "README.md"
    if experiment.data is None:
        text = f"not described (no {MANIFEST}): {run.results.get('dataset', '?')}"
    else:
        text = experiment.data
    if experiment.paper_data:
        text = f"**the paper's data**: {text}"
    return link(readme, base, text) if readme.is_file() else text


def measured_cell(run: Run) -> str:
    """The row's number; over several seeds their mean ± sample std, the count and the range."""
    measured = format_value(run.metric, run.value)
    if run.seeds and run.value is not None:
        values = [r.value for r in run.seeds]
        spread = run.spread or 0.0
        scale = 100 if run.metric == "accuracy" else 1
        low, high = (format_value(run.metric, v) for v in (min(values), max(values)))
        measured = f"{measured} ± {scale * spread:.2f} ({len(values)} seeds: {low}–{high})"
    return measured


UNRECORDED_CODE_MARK = "(†)"
UNRECORDED_CODE_NOTE = (
    "(†): a run made from a working tree with uncommitted changes that its record does not hold (before plmu "
    "wrote them as code_*.patch, issue 27): its commit alone is not the code that ran."
)


def code_recorded(run: Run) -> bool:
    """Whether a run's record names the code that made it: a clean commit, or the commit and its saved patch."""
    results = run.results
    if results.get("git_dirty") is not True:  # clean, or not known (no git checkout): nothing is claimed lost
        return True
    patch = results.get("git_patch")
    return isinstance(patch, str) and (run.path / patch).is_file()


def task_of(experiment: Experiment, run: Run) -> str:
    return experiment.task or run.task


def results_table(experiments: list[Experiment], base: Path) -> str:
    """The README's table: per paper task (in PAPER's order, then any other task), every listed run, with the
    paper's number; a task without runs says so. Links are relative to ``base``."""
    header = [
        "| task | metric | paper | data (see the experiment's README) | protocol | model | plmu (measured) | params "
        "| run |",
        "| --- | --- | --- | --- | --- | --- | ---: | ---: | --- |",
    ]
    rows: dict[str, list[str]] = {task: [] for task in PAPER}
    marked = False
    # within a task, the runs on the paper's own data first (a stable sort keeps the folders' order otherwise)
    for experiment in sorted(experiments, key=lambda e: not e.paper_data):
        for run in experiment.rows:
            task = task_of(experiment, run)
            paper = PAPER.get(task, PaperRow(task, run.metric, "(no paper row)"))
            measured = measured_cell(run)
            if run.metric.lower() not in paper.metric.lower():  # say which metric when it is not the paper's
                measured = f"{run.metric} {measured}"
            if not all(code_recorded(seed) for seed in run.seeds or [run]):
                measured += " " + UNRECORDED_CODE_MARK
                marked = True
            params = run.results.get("parameters")
            cells = [
                paper.name,
                paper.metric,
                paper.paper,
                data_cell(experiment, run, base),
                run.protocol or "not stated (no results.yaml)",
                run.label,
                measured,
                f"{params:,}" if isinstance(params, int) else "?",
                link(run.path, base, Path(os.path.relpath(run.path, experiment.path.parent)).as_posix()),
            ]
            rows.setdefault(task, []).append("| " + " | ".join(cells) + " |")
    body = []
    for task, lines in rows.items():
        if not lines and task in PAPER:
            paper = PAPER[task]
            lines = [f"| {paper.name} | {paper.metric} | {paper.paper} | — | — | — | not run yet | | |"]
        body.extend(lines)
    note = ["", f"{UNRECORDED_CODE_MARK} {UNRECORDED_CODE_NOTE}"] if marked else []
    return "\n".join(header + body + note) + "\n"


def runs_table(experiments: list[Experiment], base: Path) -> str:
    """Every run found, listed or not: the numbers of results.json and the command that made it."""
    lines = [
        "| run | in results table | task | model | metric | test | best val (epoch) | params | epochs | wall s "
        "| command |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for experiment in experiments:
        listed_runs = [seed for row in experiment.rows for seed in (row.seeds or [row])]
        for run in listed_runs + experiment.others:
            listed = "yes" if any(run is row for row in listed_runs) else "no"
            r = run.results
            metric = r.get("metric", "?")
            best = r.get("best_val")
            best = (
                f"{format_value(metric, best)} ({r.get('best_epoch', '?')})" if isinstance(best, (int, float)) else ""
            )
            command = f"`{r['command']}`" if r.get("command") else "(not recorded)"
            wall = str(r.get("wall_seconds", "?"))
            if r.get("resumed_from"):  # results.json's wall time is the last attempt's; its epochs' own sum spans all
                wall += f" (last attempt; epochs {r.get('epoch_seconds_total', '?')} in all)"
            cells = [link(run.path, base, Path(os.path.relpath(run.path, experiment.path.parent)).as_posix()), listed,
                     run.task, run.label, metric,
                     test_cell(metric, r), best,
                     f"{r.get('parameters', '?'):,}" if isinstance(r.get("parameters"), int) else "?",
                     str(r.get("epochs", "?")), wall, command]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
