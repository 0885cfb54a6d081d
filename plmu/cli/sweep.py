"""Multirun bookkeeping: every job of a sweep appends one line to ``<sweep dir>/jobs.jsonl`` (what it ran, how it
ended, its metric); when the sweep ends, :class:`SweepSummary` (a Hydra callback, ``conf/config.yaml``) prints
the table of jobs and writes it to ``<sweep dir>/summary.md``. A job that fails (bad config, diverged) is a line
in that table, not the end of the sweep.

Files, not memory: with a launcher that runs jobs elsewhere (Slurm, joblib), jobs and summary share only the folder.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("plmu")
JOBS_FILE = "jobs.jsonl"


def record_job(sweep_dir: str | Path, entry: dict[str, Any]) -> None:
    """Append one job's line; one ``write`` of a short line with O_APPEND, so parallel jobs do not interleave."""
    line = (json.dumps(entry, allow_nan=False, default=str) + "\n").encode()
    path = Path(sweep_dir) / JOBS_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as error:
        log.error("could not record job %s in %s: %s", entry.get("job"), path, error.strerror)


def read_jobs(sweep_dir: str | Path) -> dict[int, dict[str, Any]]:
    """The last line per job number (a re-run job's newer line wins); a torn or foreign line is skipped."""
    jobs: dict[int, dict[str, Any]] = {}
    path = Path(sweep_dir) / JOBS_FILE
    if not path.exists():
        return jobs
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
            jobs[int(entry["job"])] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return jobs


def _number(value: Any) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def summary_table(sweep_dir: str | Path) -> tuple[str, list[int]]:
    """A markdown table of the sweep's jobs, and the numbers of the jobs that did not finish."""
    sweep_dir = Path(sweep_dir)
    jobs = read_jobs(sweep_dir)
    numbers = sorted(set(jobs) | {int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()})
    # The overrides every job shares go above the table; each row shows what its job varies.
    lists = [jobs[n].get("overrides", []) for n in numbers if n in jobs]
    common = [o for o in lists[0] if all(o in other for other in lists)] if len(lists) > 1 else []
    rows = [f"Overrides of every job: {' '.join(common) or '(none)'}", ""] if common else []
    rows += ["| job | overrides | status | metric | best val | test | run folder |", "|---|---|---|---|---|---|---|"]
    failed = []
    for number in numbers:
        entry = jobs.get(number, {"status": "no record (killed?)"})
        entry = {**entry, "overrides": [o for o in entry.get("overrides", []) if o not in common]}
        if entry.get("status") != "ok":
            failed.append(number)
        detail = entry.get("error", "")
        status = entry["status"] + (f": {detail}" if detail else "")
        rows.append(
            f"| {number} | {' '.join(entry.get('overrides', []))} | {status.replace('|', '/')} | "
            f"{entry.get('metric', '')} | {_number(entry.get('best_val'))} | {_number(entry.get('test'))} | "
            f"{entry.get('run_dir', sweep_dir / str(number))} |"
        )
    return "\n".join(rows) + "\n", failed


class SweepSummary(Callback):
    """Prints and writes the sweep's table when a multirun ends; remembers whether any job failed."""

    failed_jobs: ClassVar[list[int]] = []  # read by plmu-train's entry point to set its exit status

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        table, failed = summary_table(sweep_dir)
        SweepSummary.failed_jobs = failed
        try:
            (sweep_dir / "summary.md").write_text(table)
        except OSError as error:
            log.error("could not write %s: %s", sweep_dir / "summary.md", error.strerror)
        verdict = f"{len(failed)} failed: jobs {failed}" if failed else "all jobs finished"
        log.info("sweep %s (%s):\n%s", sweep_dir, verdict, table)
