"""Multirun bookkeeping: every job of a sweep appends one line to ``<sweep dir>/jobs.jsonl`` (what it ran, how it
ended, its metric); :class:`SweepSummary` (a Hydra callback, ``conf/config.yaml``) turns those lines into the table
``<sweep dir>/summary.md``, refreshed after every job and written again, and printed, when the sweep ends. A job that
fails (bad config, diverged) is a line in that table, not the end of the sweep; a job that crashes (an exception
plmu does not expect) is recorded too, though Hydra's sweepers then stop the sweep.

Files, not memory: with a launcher that runs jobs elsewhere (Slurm, joblib), jobs and summary share only the folder.
Each sweep writes its id to ``<sweep dir>/sweep.json`` when it starts and each job's line carries it: a sweep dir used
again (a killed sweep started again, whose jobs resume; or another sweep) appends to jobs.jsonl, and the table shows
the current sweep's jobs only. After an Optuna search (``hparams_search=...``) the table also names the job of the
sweeper's best trial (``optimization_results.yaml``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("plmu")
JOBS_FILE = "jobs.jsonl"
SUMMARY_FILE = "summary.md"
OPTUNA_RESULTS = "optimization_results.yaml"  # written by hydra-optuna-sweeper when its search ends
SWEEP_FILE = "sweep.json"  # {"sweep": id, "started": unix time}: the sweep now using the folder
JOB_SWEEP_FILE = ".hydra/sweep.json"  # in a job's run folder: {"sweep": id, "job": n}, the sweep that started it
RESULT_KEYS = ("metric", "best_val", "test", "epochs", "wall_seconds")  # what a finished job's line takes from results


class NoTrialCompleted(BaseException):
    """An Optuna search whose every trial failed: a BaseException, so that Hydra's report (a traceback for any
    Exception) lets it through to plmu-train's entry point, which prints its one line."""


def start_sweep(sweep_dir: str | Path, planned: list[list[str]] | None = None) -> str:
    """Give the sweep starting in ``sweep_dir`` a new id (sweep.json, atomically), with its ``planned`` jobs'
    overrides when they are known in advance (the basic sweeper's grid); the id."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    sweep_id = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}-{uuid.uuid4().hex[:8]}"
    record: dict[str, Any] = {"sweep": sweep_id, "started": time.time()}
    if planned is not None:
        record["planned"] = planned  # job n runs planned[n]: a job never started is still a row of the table
    tmp = sweep_dir / f".{SWEEP_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, sweep_dir / SWEEP_FILE)
    return sweep_id


def planned_jobs(overrides: list[str]) -> list[list[str]] | None:
    """Each job's overrides, in job order, as Hydra's basic sweeper expands the command line's; None when they
    cannot be listed in advance (an interval or a glob: another sweeper's search space)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:  # Hydra's grammar or a sweep it cannot enumerate: the table lists the jobs that ran
        return None


def current_sweep(sweep_dir: str | Path) -> dict[str, Any] | None:
    """The folder's sweep.json (the sweep now using it), or None (none written, or unreadable)."""
    try:
        current = json.loads((Path(sweep_dir) / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return current if isinstance(current, dict) and isinstance(current.get("sweep"), str) else None


def _finite(value: Any) -> Any:
    """NaN and infinities as null: JSON has no such numbers (a run that never validated returns NaN)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def record_job(sweep_dir: str | Path, entry: dict[str, Any]) -> None:
    """Append one job's line: one ``write`` of a short line with O_APPEND, so parallel jobs on one machine do not
    interleave, under a POSIX lock, which NFS clients honour where O_APPEND alone is not atomic (Slurm jobs on
    several nodes)."""
    current = current_sweep(sweep_dir)
    if current is not None and "sweep" not in entry:
        entry = {"sweep": current["sweep"], **entry}
    line = (json.dumps({k: _finite(v) for k, v in entry.items()}, allow_nan=False, default=str) + "\n").encode()
    path = Path(sweep_dir) / JOBS_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            with contextlib.suppress(OSError):  # a file system without locks (ENOLCK): the append alone
                fcntl.lockf(fd, fcntl.LOCK_EX)
            os.write(fd, line)  # closing the descriptor releases the lock
        finally:
            os.close(fd)
    except OSError as error:
        log.error("could not record job %s in %s: %s", entry.get("job"), path, error.strerror)


def _entries(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job line of jobs.jsonl in order, ``job`` as an int; a torn or foreign line is skipped."""
    try:
        lines = (sweep_dir / JOBS_FILE).read_text().splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
            entries.append({**entry, "job": int(entry["job"])})
        except (ValueError, KeyError, TypeError):
            continue
    return entries


def _last_per_job(entries: list[dict[str, Any]], sweep_id: str | None) -> dict[int, dict[str, Any]]:
    """The last line per job number (a re-run job's newer line wins), of sweep ``sweep_id`` (None: every line)."""
    return {entry["job"]: entry for entry in entries if sweep_id is None or entry.get("sweep") == sweep_id}


def read_jobs(sweep_dir: str | Path, every_sweep: bool = False) -> dict[int, dict[str, Any]]:
    """The last line per job number of the folder's current sweep (sweep.json; all lines when there is none, or
    with ``every_sweep``)."""
    current = None if every_sweep else current_sweep(sweep_dir)
    return _last_per_job(_entries(Path(sweep_dir)), None if current is None else current["sweep"])


def _number(value: Any) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def summary_table(sweep_dir: str | Path, unrecorded: str = "no record (killed?)") -> tuple[str, list[int]]:
    """A markdown table of the sweep's jobs, and the numbers of the jobs that did not finish. ``unrecorded`` is the
    status of a job folder without a line (while the sweep runs, that job may still be running)."""
    sweep_dir = Path(sweep_dir)
    entries, current = _entries(sweep_dir), current_sweep(sweep_dir)
    jobs = _last_per_job(entries, None if current is None else current["sweep"])
    started = current.get("started", 0) if current is not None else 0
    started = started if isinstance(started, int | float) else 0
    # a job folder without a line counts if this sweep changed it (an earlier sweep's folders are not its jobs)
    folders = {
        int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit() and p.stat().st_mtime >= started
    }
    planned = current.get("planned") if current is not None and isinstance(current.get("planned"), list) else []
    never = {n: {"status": "not run", "overrides": o} for n, o in enumerate(planned) if n not in set(jobs) | folders}
    jobs = {**never, **jobs}
    numbers = sorted(set(jobs) | folders)
    # The overrides every job shares go above the table; each row shows what its job varies.
    lists = [jobs[n].get("overrides", []) for n in numbers if n in jobs]
    common = [o for o in lists[0] if all(o in other for other in lists)] if len(lists) > 1 else []
    rows = [f"Overrides of every job: {' '.join(common) or '(none)'}", ""] if common else []
    if current is not None:
        earlier = sum(entry.get("sweep") != current["sweep"] for entry in entries)
        note = f" ({earlier} lines of earlier sweeps in this folder's {JOBS_FILE})" if earlier else ""
        rows = [f"Sweep {current['sweep']}{note}", "", *rows]
    rows += [
        "| job | overrides | status | metric | best val | test | run folder (in the sweep's) |",
        "|---|---|---|---|---|---|---|",
    ]
    failed = []
    for number in numbers:
        entry = jobs.get(number, {"status": unrecorded})
        entry = {**entry, "overrides": [o for o in entry.get("overrides", []) if o not in common]}
        if entry.get("status") != "ok":
            failed.append(number)
        detail = entry.get("error", "")
        status = entry["status"] + (f": {detail}" if detail else "")
        status += " (run alone)" if entry.get("alone") else ""
        rows.append(
            f"| {number} | {' '.join(entry.get('overrides', []))} | {status.replace('|', '/')} | "
            f"{entry.get('metric', '')} | {_number(entry.get('best_val'))} | {_number(entry.get('test'))} | "
            f"{'—' if entry['status'] == 'not run' else _folder_cell(sweep_dir, entry.get('run_dir', str(number)))} |"
        )
    return "\n".join(rows) + "\n" + _optuna_best(sweep_dir, jobs), failed


def interrupted_sweep(sweep_dir: Path, job: dict[str, Any], kept: str | None) -> str:
    """Record ``job`` as interrupted, write the table (jobs not run listed too) and return the line that resumes
    the whole sweep: the same command with this sweep folder (finished jobs return their results, the interrupted
    one resumes from its checkpoint, the others start)."""
    import shlex
    import sys

    record_job(sweep_dir, {**job, "status": "interrupted", "error": kept or "before training started"})
    table, unfinished = summary_table(sweep_dir, unrecorded="no record (interrupted, or killed)")
    write_summary(sweep_dir, table)
    arguments = [a for a in sys.argv[1:] if not a.startswith("hydra.sweep.dir=")] + [f"hydra.sweep.dir={sweep_dir}"]
    return (
        f"the sweep was interrupted at job {job.get('job')}; {len(unfinished)} of its jobs are not finished "
        f"({sweep_dir / SUMMARY_FILE}). Resume them all with: plmu-train {shlex.join(arguments)}"
    )


def _folder_cell(sweep_dir: Path, run_dir: str) -> str:
    """The job's run folder, or that it has none (a job refused before training leaves no folder behind)."""
    return run_dir if (sweep_dir / run_dir).is_dir() else f"none (the job wrote nothing; {run_dir} was not kept)"


def job_of_sweep(run_dir: Path) -> tuple[Path, int] | None:
    """(sweep folder, job number) when ``run_dir`` is a sweep's job folder (``<sweep>/<n>`` beside its jobs.jsonl or
    sweep.json), else None."""
    sweep_dir = run_dir.parent
    if run_dir.name.isdigit() and ((sweep_dir / JOBS_FILE).is_file() or (sweep_dir / SWEEP_FILE).is_file()):
        return sweep_dir, int(run_dir.name)
    return None


def job_sweep(run_dir: Path, sweep_dir: Path, number: int) -> str | None:
    """The id of the sweep whose job ``run_dir`` is: its ``.hydra/sweep.json`` (written when the job started), else
    (a run of an older plmu) the sweep of the job's last finished line; "" for a sweep without ids; None when no
    sweep's line made this run (a later sweep's refused job shares the number, not the run)."""
    try:
        named = json.loads((run_dir / JOB_SWEEP_FILE).read_text()).get("sweep")
        if isinstance(named, str):
            return named
    except (OSError, ValueError, AttributeError):
        pass
    lines = [entry for entry in _entries(sweep_dir) if entry["job"] == number and entry.get("status") == "ok"]
    if not lines:
        return None
    return lines[-1].get("sweep", "")


def record_job_run_alone(run_dir: Path, overrides: list[str], results: dict[str, Any]) -> None:
    """A sweep's job run again on its own (``plmu-train resume=<sweep>/<n>``, e.g. a killed job finished, or one
    extended): its new line in the sweep's jobs.jsonl, under the sweep its earlier line belonged to, and summary.md
    written again, so the sweep's table does not keep the job's old status and numbers."""
    found = job_of_sweep(run_dir)
    if found is None:
        return
    sweep_dir, number = found
    sweep_id = job_sweep(run_dir, sweep_dir, number)
    if sweep_id is None:
        log.info("%s: no sweep of %s names this run as its job %d; its table is left as it is", run_dir, sweep_dir,
                 number)  # fmt: skip
        return
    entry: dict[str, Any] = {"sweep": sweep_id} if sweep_id else {}
    entry |= {"job": number, "overrides": overrides, "run_dir": run_dir.name, "status": "ok", "alone": True}
    record_job(sweep_dir, entry | {key: results.get(key) for key in RESULT_KEYS})
    write_summary(sweep_dir, summary_table(sweep_dir)[0])
    log.info("sweep %s: job %d's line and %s brought up to date", sweep_dir, number, SUMMARY_FILE)


def _optuna_best(sweep_dir: Path, jobs: dict[int, dict[str, Any]]) -> str:
    """The line naming the Optuna sweeper's best trial, found among the jobs by its value; empty without a search."""
    path = sweep_dir / OPTUNA_RESULTS
    if not path.is_file():
        return ""
    try:
        best = OmegaConf.load(path).get("best_value")
    except Exception:  # a torn or foreign file: the table stands without the line
        return ""
    if not isinstance(best, float | int):  # a multi-objective search has best_trials, not one value
        return f"\nOptuna's results: {OPTUNA_RESULTS}\n"
    matches = [n for n, e in sorted(jobs.items()) if e.get("best_val") is not None and e["best_val"] == best]
    where = f"job {', '.join(map(str, matches))}" if matches else "no recorded job"
    return f"\nOptuna's best trial: {where}, best val {_number(float(best))} ({OPTUNA_RESULTS})\n"


def write_summary(sweep_dir: Path, table: str) -> None:
    """summary.md, replaced atomically: jobs ending together each rewrite it, and a reader never sees half a table."""
    tmp = sweep_dir / f".{SUMMARY_FILE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(table)
        os.replace(tmp, sweep_dir / SUMMARY_FILE)
    except OSError as error:
        log.error("could not write %s: %s", sweep_dir / SUMMARY_FILE, error.strerror)
        tmp.unlink(missing_ok=True)


class SweepSummary(Callback):
    """Keeps ``summary.md`` current: after each job (in the job's own process, wherever the launcher ran it) and when
    the multirun ends; remembers whether any job failed."""

    failed_jobs: ClassVar[list[int]] = []  # read by plmu-train's entry point to set its exit status

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        basic = "BasicSweeper" in str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
        typed = OmegaConf.select(config, "hydra.overrides.task", default=None)
        overrides = [str(o) for o in OmegaConf.to_container(typed, resolve=False)] if typed is not None else []
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
        overrides += [f"{key}={value}" for key, value in params.items()]  # an experiment's own sweep, as Hydra adds it
        start_sweep(config.hydra.sweep.dir, planned_jobs(overrides) if basic else None)
        if "optuna" in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).lower():
            _one_line_when_no_trial_completes()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra_cfg = config.get("hydra")
        if hydra_cfg is None or hydra_cfg.get("mode") != RunMode.MULTIRUN:
            return
        sweep_dir = Path(hydra_cfg.sweep.dir)
        if job_return.status == JobStatus.FAILED:  # an exception plmu-train did not catch: its line is written here
            error = job_return._return_value  # the exception itself (the return_value property would raise it)
            record_job(
                sweep_dir,
                {
                    "job": OmegaConf.select(hydra_cfg, "job.num"),
                    "overrides": OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False),
                    "run_dir": os.path.relpath(hydra_cfg.runtime.output_dir, sweep_dir),  # portable record
                    "status": "crashed",
                    "error": f"{type(error).__name__}: {' '.join(str(error).split())[:300]}",  # one table row
                },
            )
        if sweep_dir.is_dir():
            write_summary(sweep_dir, summary_table(sweep_dir, unrecorded="no record yet (running, or killed)")[0])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        table, failed = summary_table(sweep_dir)
        SweepSummary.failed_jobs = failed
        write_summary(sweep_dir, table)
        verdict = f"{len(failed)} failed: jobs {failed}" if failed else "all jobs finished"
        log.info("sweep %s (%s):\n%s", sweep_dir, verdict, table)


def _one_line_when_no_trial_completes() -> None:
    """hydra-optuna-sweeper ends a search whose every trial failed with optuna's ValueError ("No trials are completed
    yet"), which Hydra prints as a 20-line traceback: make it :class:`NoTrialCompleted`, one line from plmu-train."""
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    original = OptunaSweeperImpl.sweep
    if getattr(original, "plmu_guarded", False):
        return

    def sweep(self: Any, arguments: list[str]) -> None:
        try:
            original(self, arguments)
        except ValueError as error:
            if "No trials are completed" not in str(error):
                raise
            sweep_dir = self.config.hydra.sweep.dir
            raise NoTrialCompleted(
                f"no trial of the Optuna search completed: every job failed; {sweep_dir}/{SUMMARY_FILE} gives "
                "each job's error"
            ) from None

    sweep.plmu_guarded = True  # type: ignore[attr-defined]
    OptunaSweeperImpl.sweep = sweep  # type: ignore[method-assign]
