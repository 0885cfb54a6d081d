"""``plmu-train``: train one task (``plmu-train task=psmnist``) or sweep (``plmu-train -m model.order=4,8``).

Configs come from the package (``conf/`` of the repository, installed as ``plmu.conf``), so the command works from
any folder after ``pip install``. Returns the best validation metric, for Hydra sweepers (e.g. Optuna) to optimise
(None for a failed job, or a run without a finite validation value: Optuna marks that trial failed and goes on).

Errors are one line (``plmu-train: error: ...``, exit status 2); Ctrl-C prints the command that resumes the run
(exit status 130). In a sweep, a job that fails is recorded and the sweep goes on; the sweep's table of jobs
(``<sweep dir>/summary.md``) names the failures, and the exit status is 1 if any job failed.
torch is imported only when a run starts, so ``--help`` and shell completion answer at once.

Several processes: ``torchrun --nproc_per_node N -m plmu.cli.train ...`` (or ``torchrun --no-python plmu-train
...``) trains one run with DistributedDataParallel (:mod:`plmu.train.distributed`); the processes agree on rank 0's
run folder, and a sweep (``-m``) is refused (one torchrun per sweep point).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from plmu.cli import stop_on_sigterm
from plmu.cli.preflight import command_line_problem, output_folders, resumed_arguments
from plmu.cli.sweep import (
    JOB_SWEEP_FILE,
    RESULT_KEYS,
    NoTrialCompleted,
    SweepSummary,
    current_sweep,
    interrupted_sweep,
    record_job,
    record_job_run_alone,
)
from plmu.errors import PlmuError, plmu_cause

log = logging.getLogger("plmu")

# When this command started: a folder changed before it is not this command's to remove (RunFolder docs).
COMMAND_STARTED_NS = time.time_ns()


# The output folders this command may create (hydra.run.dir / sweep.dir, as typed or the default outputs/) and the
# folders among them and their parents that existed before it (main() fills both): a failed command removes the
# empty folders it made (outputs/<task>/<model>/ of a bad config), never one of these.
OUTPUT_ROOTS: list[Path] = []
FOLDERS_BEFORE: set[Path] = set()


def _existing_output_folders(roots: list[Path]) -> set[Path]:
    found: set[Path] = set()
    for root in roots:
        found.update(folder for folder in (root, *root.parents) if folder.is_dir())
        if root.is_dir():  # outputs/<task>/<model>: two levels (runs are the third)
            found.update(folder.resolve() for folder in (*root.glob("*"), *root.glob("*/*")) if folder.is_dir())
    return found


def _remove_failed_run_folder(run_dir: Path) -> None:
    """Drop the run folder Hydra made for this failed command if it is empty (RunFolder.remove_if_created_since),
    then the empty parents this command made on the way (never one that existed before it)."""
    from plmu.train.run_folder import RunFolder

    if not RunFolder(run_dir).remove_if_created_since(COMMAND_STARTED_NS):
        return
    run_dir = run_dir.resolve()
    if not any(run_dir.is_relative_to(root) for root in OUTPUT_ROOTS):
        return  # an interpolated folder: which of its parents existed before is not known
    for parent in run_dir.parents:  # every existing one up to the root was recorded (_existing_output_folders)
        if parent in FOLDERS_BEFORE:
            return
        try:
            parent.rmdir()  # fails when not empty (another run's folder appeared): it stays
        except OSError:
            return


def _hydra_records(cfg: DictConfig, hydra_cfg: DictConfig, sweep_dir: Path | None, job: int | None) -> dict[str, str]:
    """Hydra's usual ``.hydra/`` files, written by plmu once the run's checks pass (``hydra.output_subdir`` is
    null, so that a failing command cannot overwrite a finished run's record); a sweep's job also names its sweep
    (``.hydra/sweep.json``), so that resuming it alone updates that sweep's table and no other."""
    records = {
        ".hydra/config.yaml": OmegaConf.to_yaml(cfg),
        ".hydra/overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task),
    }
    sweep = current_sweep(sweep_dir) if sweep_dir is not None else None
    if sweep is not None:
        records[JOB_SWEEP_FILE] = json.dumps({"sweep": sweep["sweep"], "job": job}) + "\n"
    return records


@hydra.main(config_path="pkg://plmu.conf", config_name="config", version_base="1.3")
def run(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    # as typed: an override like seed=${oc.env:SEED} is a string here, not resolved (it may not resolve at all)
    overrides = [str(o) for o in OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)]
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    sweep_dir = Path(hydra_cfg.sweep.dir) if multirun else None
    job: dict[str, Any] = {
        "job": OmegaConf.select(hydra_cfg, "job.num"),
        "overrides": overrides,
        "run_dir": str(run_dir) if sweep_dir is None else os.path.relpath(run_dir, sweep_dir),  # portable record
    }
    try:
        from plmu.train import distributed  # imports torch: not needed for --help or tab completion

        if distributed.env_world_size() > 1:
            run_dir = _join_processes(cfg, run_dir, multirun)
        from plmu.train.run import train

        group = f"{cfg.task.name}-{sweep_dir.name}" if sweep_dir is not None else None
        results = train(cfg, run_dir, overrides, group, _hydra_records(cfg, hydra_cfg, sweep_dir, job["job"]))
    except KeyboardInterrupt as interrupt:
        if getattr(interrupt, "kept", None) is None:  # stopped before training: leave no empty folder
            _remove_failed_run_folder(run_dir)
        if sweep_dir is not None:  # the sweep ends here: its table lists every job, and one command resumes them
            print(f"plmu-train: {interrupted_sweep(sweep_dir, job, getattr(interrupt, 'kept', None))}", file=sys.stderr)
            sys.exit(130)
        _interrupted(interrupt, overrides, run_dir)
    except (PlmuError, OSError, OmegaConfBaseException) as error:
        # Hydra made the folder for this command: a failed command leaves nothing behind (only its own folders)
        _remove_failed_run_folder(run_dir)
        message = _error_line(error)
        if sweep_dir is None:
            _fail(message)
        log.error("job %s (%s) failed: %s", job["job"], " ".join(overrides), message)
        record_job(sweep_dir, {**job, "status": "failed", "error": message})
        return None  # one failed job must not end the sweep: the Optuna sweeper marks a None trial failed
    if sweep_dir is not None:
        record_job(sweep_dir, {**job, "status": "ok", **{key: results.get(key) for key in RESULT_KEYS}})
    elif distributed.context().is_main:  # one process writes (under torchrun every rank returns the results)
        record_job_run_alone(run_dir, overrides, results)  # a sweep's job resumed on its own: its sweep's table too
    best_val = results["best_val"]
    finite = isinstance(best_val, (int, float)) and math.isfinite(best_val)
    return best_val if finite else None  # optuna 2.10 refuses a NaN value and ends the search


MULTIRUN_UNDER_TORCHRUN = (
    "plmu-train -m cannot run under torchrun: launch one torchrun per sweep point (e.g. a shell loop, or a cluster "
    "launcher that starts torchrun per job), or sweep with one process per job"
)


def _join_processes(cfg: DictConfig, run_dir: Path, multirun: bool) -> Path:
    """Under torchrun: join the process group and take rank 0's run folder (each process's Hydra may have named
    its own, ``${now:...}`` differing by a microsecond); the empty folder Hydra made for this process goes."""
    from plmu.errors import ConfigError
    from plmu.train import distributed
    from plmu.train.run_folder import RunFolder
    from plmu.train.settings import TrainerSettings

    if multirun:  # hydra.mode=MULTIRUN; main() refuses -m before the sweep starts
        raise ConfigError(MULTIRUN_UNDER_TORCHRUN)
    distributed.setup(TrainerSettings.recorded(cfg.trainer).device)
    agreed = Path(distributed.agree_run_dir(str(run_dir)))
    if agreed != run_dir:
        RunFolder(run_dir).remove_if_created_since(COMMAND_STARTED_NS)
    return agreed


def _error_line(error: BaseException) -> str:
    """What plmu-train prints after "error:" for an error that ended the run."""
    if isinstance(error, OmegaConfBaseException) and (cause := plmu_cause(error)) is not None:
        return str(cause)  # a resolver's own message (a family without a size for the task)
    if isinstance(error, OmegaConfBaseException):  # e.g. ${nonexist}, ${oc.env:NOPE}: the first line says which
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"the config does not resolve: {first}; fix or remove that interpolation"
    if isinstance(error, OSError) and not isinstance(error, PlmuError) and error.filename:
        return f"{error.strerror}: {error.filename}"  # e.g. a full disk while writing a record
    return str(error)


def _fail(message: str) -> NoReturn:
    rank = os.environ.get("RANK", "0") if os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1") else "0"
    where = "" if rank == "0" else f" (rank {rank})"  # torchrun's other processes: the same line, marked
    print(f"plmu-train: error{where}: {message}", file=sys.stderr)
    sys.exit(2)


def _interrupted(interrupt: KeyboardInterrupt, overrides: list[str], run_dir: Path) -> NoReturn:
    from plmu.train.provenance import command_line, shown_path

    kept = getattr(interrupt, "kept", None)
    if kept is None:
        print("plmu-train: interrupted before training started", file=sys.stderr)
    else:
        short = f"plmu-train resume={shown_path(run_dir)}"
        print(f"plmu-train: interrupted. {kept}. Resume with: {short} (that is: {command_line(overrides, run_dir)})",
              file=sys.stderr)  # fmt: skip
    sys.exit(130)


def main() -> None:
    """The ``plmu-train`` entry point: Hydra's command line, then the exit status of a sweep."""
    global COMMAND_STARTED_NS
    COMMAND_STARTED_NS = time.time_ns()
    stop_on_sigterm()  # SIGTERM (kill, a cluster's pre-emption) ends a run like Ctrl-C: recorded, resumable
    if os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1") and {"-m", "--multirun"} & set(sys.argv[1:]):
        _fail(MULTIRUN_UNDER_TORCHRUN)  # before Hydra starts a sweep on every process
    arguments, problem = resumed_arguments(sys.argv[1:])  # resume=<run folder>: that run's saved command
    if problem is not None:
        _fail(problem)
    if arguments != sys.argv[1:]:
        print(f"plmu-train: resuming with: {shlex.join(arguments)}", file=sys.stderr)
        sys.argv[1:] = arguments
    problem = command_line_problem(sys.argv[1:])
    if problem is not None:
        _fail(problem)  # one line, where Hydra prints a traceback or a hint to set HYDRA_FULL_ERROR
    OUTPUT_ROOTS[:] = [Path(folder).expanduser().resolve() for folder in output_folders(sys.argv[1:]).values()]
    FOLDERS_BEFORE.clear()
    FOLDERS_BEFORE.update(_existing_output_folders(OUTPUT_ROOTS))
    SweepSummary.failed_jobs = []
    try:
        run()
    except NoTrialCompleted as nothing:
        _fail(str(nothing))
    finally:
        if "plmu.train.distributed" in sys.modules:  # a torchrun process leaves its process group
            sys.modules["plmu.train.distributed"].teardown()
    if SweepSummary.failed_jobs:
        sys.exit(1)


if __name__ == "__main__":
    main()
