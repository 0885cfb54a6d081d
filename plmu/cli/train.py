"""``plmu-train``: train one task (``plmu-train task=psmnist``) or sweep (``plmu-train -m model.order=4,8``).

Configs come from the package (``conf/`` of the repository, installed as ``plmu.conf``), so the command works from
any folder after ``pip install``. Returns the best validation metric, for Hydra sweepers (e.g. Optuna) to optimise.

Errors are one line (``plmu-train: error: ...``, exit status 2); Ctrl-C prints the command that resumes the run
(exit status 130). In a sweep, a job that fails is recorded and the sweep goes on; the sweep's table of jobs
(``<sweep dir>/summary.md``) names the failures, and the exit status is 1 if any job failed.
torch is imported only when a run starts, so ``--help`` and shell completion answer at once.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from plmu.cli.sweep import SweepSummary, record_job
from plmu.errors import PlmuError

log = logging.getLogger("plmu")


def _hydra_records(cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, str]:
    """Hydra's usual ``.hydra/`` files, written by plmu once the run's checks pass (``hydra.output_subdir`` is
    null, so that a failing command cannot overwrite a finished run's record)."""
    return {
        ".hydra/config.yaml": OmegaConf.to_yaml(cfg),
        ".hydra/overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task),
    }


@hydra.main(config_path="pkg://plmu.conf", config_name="config", version_base="1.3")
def run(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    sweep_dir = Path(hydra_cfg.sweep.dir) if multirun else None
    job: dict[str, Any] = {
        "job": OmegaConf.select(hydra_cfg, "job.num"),
        "overrides": overrides,
        "run_dir": str(run_dir),
    }
    try:
        from plmu.train.run import train  # imports torch: not needed for --help or tab completion

        group = f"{cfg.task.name}-{sweep_dir.name}" if sweep_dir is not None else None
        results = train(cfg, run_dir, overrides, group, _hydra_records(cfg, hydra_cfg))
    except KeyboardInterrupt as interrupt:
        if getattr(interrupt, "kept", None) is None:  # stopped before training: leave no empty folder
            from plmu.train.run_folder import RunFolder

            RunFolder(run_dir).remove_if_empty()
        _interrupted(interrupt, overrides, run_dir)
    except (PlmuError, OSError) as error:
        from plmu.train.run_folder import RunFolder

        RunFolder(run_dir).remove_if_empty()  # Hydra made the folder; a failed command leaves nothing behind
        message = _one_line(error)
        if sweep_dir is None:
            _fail(message)
        log.error("job %s (%s) failed: %s", job["job"], " ".join(overrides), message)
        record_job(sweep_dir, {**job, "status": "failed", "error": message})
        return float("nan")  # one failed job must not end the sweep; Optuna records a NaN as a failed trial
    if sweep_dir is not None:
        keys = ("metric", "best_val", "test", "epochs", "wall_seconds")
        record_job(sweep_dir, {**job, "status": "ok", **{key: results.get(key) for key in keys}})
    return results["best_val"]


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and not isinstance(error, PlmuError) and error.filename:
        return f"{error.strerror}: {error.filename}"  # e.g. a full disk while writing a record
    return str(error)


def _fail(message: str) -> NoReturn:
    print(f"plmu-train: error: {message}", file=sys.stderr)
    sys.exit(2)


def _interrupted(interrupt: KeyboardInterrupt, overrides: list[str], run_dir: Path) -> NoReturn:
    from plmu.train.provenance import command_line

    kept = getattr(interrupt, "kept", None)
    if kept is None:
        print("plmu-train: interrupted before training started", file=sys.stderr)
    else:
        print(f"plmu-train: interrupted. {kept}. Resume with: {command_line(overrides, run_dir)}", file=sys.stderr)
    sys.exit(130)


def _terminate(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt  # SIGTERM (kill, a cluster's pre-emption) ends a run like Ctrl-C: recorded, resumable


def main() -> None:
    """The ``plmu-train`` entry point: Hydra's command line, then the exit status of a sweep."""
    signal.signal(signal.SIGTERM, _terminate)
    SweepSummary.failed_jobs = []
    run()
    if SweepSummary.failed_jobs:
        sys.exit(1)


if __name__ == "__main__":
    main()
