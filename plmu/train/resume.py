"""Resuming a run in its own folder: which checkpoint (``trainer.resume``), checked against this config and the
run's data before any record is rewritten; a folder holding another run is refused; a run that already ended
returns its recorded results."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from plmu.data.fingerprint import check_same_data
from plmu.errors import CheckpointError, RunFolderError
from plmu.train import checkpoint
from plmu.train.provenance import shown_path
from plmu.train.run_folder import (
    RunFolder,
    check_resume,
    config_differences,
    flatten,
    is_record,
    shown_differences,
)
from plmu.train.settings import TrainerSettings
from plmu.train.trainer import TrainState

log = logging.getLogger(__name__)


def resume_path(resume: str | None, folder: RunFolder) -> Path | None:
    """``trainer.resume``: null (never), auto (this run folder's last.pt if it exists), or a checkpoint path."""
    if resume in (None, "none", "null"):
        return None
    if resume == "auto":
        return folder.last_checkpoint if folder.last_checkpoint.exists() else None
    path = Path(resume).expanduser()
    if not path.is_file():  # checked now, before any data is loaded
        raise CheckpointError(f"trainer.resume={resume!r}: no such checkpoint; give a last.pt a run wrote, or auto")
    owner = path.resolve().parent.parent  # <run folder>/checkpoints/last.pt
    if owner != folder.path.resolve():
        # Resumed here, the run would go on without that run's best.pt and metrics: its test would score weights
        # its record does not name (issue 16). A run continues in its own folder; a new one starts from weights.
        raise CheckpointError(
            f"trainer.resume={resume!r} is a checkpoint of the run in {owner}, not of this run folder "
            f"({folder.path}): continue that run there (hydra.run.dir={owner} trainer.resume=auto), or start a new "
            f"run from its weights with init_from={path}"
        )
    return path


def refuse_mixing(folder: RunFolder, resume: Path | None, config: dict[str, Any]) -> None:
    """A new run writes only into an empty folder or its own (an earlier attempt of this same config that stopped
    before its first checkpoint); a folder that holds a run takes only that run, resumed; anything else (a user's
    files, another run's records) is refused before a byte is written."""
    if resume is not None:
        return
    if folder.results.exists() and not folder.last_checkpoint.exists():
        best = folder.path / "checkpoints" / "best.pt"
        weights = f"; to train on from its weights: init_from={shown_path(best)}" if best.exists() else ""
        raise RunFolderError(
            f"run folder {shown_path(folder.path)} holds a run's results.json but no checkpoints/last.pt (removed), "
            f"so that run can be neither resumed nor extended: start a new run in another folder "
            f"(hydra.run.dir=<path>){weights}"
        )
    if folder.holds_run():
        raise RunFolderError(
            f"run folder {folder.path} already holds a run (checkpoints/last.pt or results.json) and this command "
            f"would start a new one there. Resume it with trainer.resume=auto, or choose another hydra.run.dir"
        )
    entries = sorted(p.name for p in folder.path.iterdir() if not checkpoint.is_orphan(p))
    if not entries:
        return
    foreign = [name for name in entries if not is_record(name)]  # an early attempt's records are all it may hold
    if foreign or "config.yaml" not in entries:
        shown = ", ".join((foreign or entries)[:5]) + (" ..." if len(foreign or entries) > 5 else "")
        raise RunFolderError(
            f"run folder {shown_path(folder.path)} is not empty and holds no plmu run ({shown}): a run writes "
            f"config.yaml, metrics.jsonl and train.log there and would write over such files. Choose an empty or new "
            f"folder (hydra.run.dir=<path>)"
        )
    try:  # OmegaConf's loader: it reads back what it wrote (1e-06 is a float, not YAML 1.1's string)
        saved = OmegaConf.to_container(OmegaConf.load(folder.path / "config.yaml"))
    except Exception as error:  # unreadable for any reason: not a config this run can be compared with
        saved = error
    if not (isinstance(saved, dict) and all(isinstance(saved.get(key), dict) for key in ("task", "model", "trainer"))):
        raise RunFolderError(
            f"run folder {shown_path(folder.path)} holds a config.yaml that is not a plmu run's config (no task, "
            f"model and trainer): a new run would write over it. Choose an empty or new folder (hydra.run.dir=<path>)"
        )
    old, new = flatten(saved), flatten(config)
    differences = config_differences(old, new)
    if differences:
        raise RunFolderError(
            f"run folder {shown_path(folder.path)} holds another run that stopped before its first checkpoint "
            f"({shown_differences(differences, old, new, 'there')}): this command would mix the two runs' records. "
            f"Choose another folder (hydra.run.dir=<path>), or run that config again there"
        )
    log.info("%s: starting over the attempt that stopped before its first checkpoint", shown_path(folder.path))


def read_folder(
    cfg: DictConfig, folder: RunFolder, config: dict[str, Any], settings: TrainerSettings
) -> tuple[Path | None, dict[str, Any] | None, dict[str, Any] | None]:
    """(the checkpoint to resume, its payload, the recorded results if that run already ended), all checked
    against this config; a folder holding another run is refused."""
    resume = resume_path(settings.resume, folder)
    refuse_mixing(folder, resume, config)
    payload = checkpoint.load(resume) if resume is not None else None
    if payload is None:
        return None, None, None
    state = payload["train_state"]  # old checkpoints have no step: only max_epochs is checked against them
    check_resume(payload["config"], config, state["epoch"], resume, step=state.get("step"))
    return resume, payload, finished_results(folder, payload, settings)


def check_resumed_data(folder: RunFolder, current: dict[str, Any], resume: Path) -> None:
    """A run resumes on the data it was trained on (its data_info.json's fingerprint), moved or not; before any
    record is rewritten."""
    path = folder.path / "data_info.json"
    try:
        recorded = json.loads(path.read_text()).get("fingerprint")
    except FileNotFoundError:
        recorded = None  # a run of an older plmu
    except (OSError, ValueError, AttributeError) as error:  # torn or edited: the data cannot be compared
        raise RunFolderError(
            f"{path} cannot be read ({' '.join(str(error).split())[:120]}), so the resumed data cannot be checked "
            f"against the run's: restore the file from a copy of the run, or delete it to resume without the check "
            f"(as a run of an older plmu)"
        ) from None
    fix = f"a run resumes on its own data: start a new run from these weights with init_from={resume}"
    if not check_same_data(recorded, current, fix):
        log.info("no data fingerprint recorded (a run of an older plmu): the resumed data is not compared")


def finished_results(folder: RunFolder, payload: dict[str, Any], settings: TrainerSettings) -> dict | None:
    """The recorded results when the checkpoint's run already ended and has them; nothing is re-run or rewritten."""
    state = payload["train_state"]
    by_epochs = settings.max_epochs is not None and state["epoch"] >= settings.max_epochs
    by_steps = settings.max_steps is not None and state["step"] >= settings.max_steps
    by_time = (
        settings.max_seconds is not None and TrainState.from_checkpoint(state).train_seconds >= settings.max_seconds
    )
    if not (state["stopped_early"] or by_epochs or by_steps or by_time) or not folder.results.exists():
        return None
    try:
        results = json.loads(folder.results.read_text())
    except (OSError, ValueError):
        return None  # a damaged results.json: run the test again and rewrite it
    if state["stopped_early"]:
        further = "It stopped early"
    else:
        further = "Raise " + " and ".join(
            key
            for key, reached in (
                ("trainer.max_epochs", by_epochs),
                ("trainer.max_steps", by_steps),
                ("trainer.max_seconds", by_time),
            )
            if reached
        )
        further += " to train further"
    log.info(
        "%s is complete (epoch %d, step %d); results.json is unchanged. %s",
        folder.path,
        state["epoch"],
        state["step"],
        further,
    )
    return results


EVALUATION_REPORTS = ("eval_*.json", "translate_*.json")  # plmu-eval's and plmu-translate's records in a run folder


def warn_of_earlier_reports(run_dir: Path) -> None:
    """A run that trains on after a resume makes its folder's evaluation reports describe an older model (each names
    the checkpoint epoch it read): one warning naming them, so that nobody quotes them as this run's. Reports are
    records: they are kept, never removed."""
    names = sorted({path.name for pattern in EVALUATION_REPORTS for path in run_dir.glob(pattern)})
    if names:
        log.warning(
            "%s in %s were made from this run's checkpoints before it went on; they keep describing those (their "
            "checkpoint_epoch): run plmu-eval / plmu-translate again when it ends",
            ", ".join(names),
            run_dir,
        )
