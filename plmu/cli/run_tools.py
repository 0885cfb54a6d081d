"""What the tools that read a trained run share (plmu-eval, -translate, -generate, -export): the device flag, the
report file (created first, written atomically, strict JSON) and its name's checkpoint label, and the check that a
split read now is the one the run was trained on."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plmu.errors import ConfigError

if TYPE_CHECKING:  # torch loads lazily: a tool's --help should not wait seconds for it
    import argparse

    import torch
    from omegaconf import DictConfig

# the task.data key that names the data folder, per loader; a text task's local files (path) before its hub cache
DATA_KEYS = ("path", "root", "cache_dir", "data_dir")


def checkpoint_label(run_dir: Path, path: Path) -> str | None:
    """The report name's part for a checkpoint other than the run's best.pt: its stem (``last``), and for a file
    outside this run's checkpoints/ a digest of its place too, so that another run's last.pt never overwrites the
    report of this run's own."""
    own = (run_dir / "checkpoints").resolve()
    resolved = path.resolve()
    if resolved == own / "best.pt":
        return None
    if resolved.parent == own:
        return path.stem
    return f"{path.stem}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"


class ReportFile:
    """The report's temp file, created before the evaluation so an unwritable place fails in a second, not after it.

    ``commit`` renames it over the target (a killed evaluation never leaves a torn report); ``discard`` removes it.
    """

    def __init__(self, target: Path, flag: str | None, run_dir: Path | None = None) -> None:
        from plmu.train.run_folder import refuse_writing_records

        refuse_writing_records(target, run_dir, "--output" if flag else "the report")
        self.target = target
        where = f"--output {flag}" if flag else f"cannot write the report into {target.parent}"
        fix = "choose a writable path" if flag else "pass --output PATH to write it elsewhere"
        if not target.parent.is_dir():
            raise ConfigError(f"{where}: folder {target.parent} does not exist; create it or {fix}")
        try:
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as error:  # read-only folder, full disk, no permission
            raise ConfigError(f"{where}: {error.strerror or error}; {fix}") from None
        self.file, self.tmp = os.fdopen(fd, "w"), Path(name)

    def commit(self, text: str) -> bool:
        """Write and rename; True when an earlier report was replaced."""
        replaced = self.target.exists()
        with self.file:
            self.file.write(text)
            self.file.flush()
            os.fsync(self.file.fileno())
        umask = os.umask(0)  # mkstemp makes the file 0600; a report should be as readable as any other file
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)
        os.replace(self.tmp, self.target)
        return replaced

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def batch_size(args: argparse.Namespace, cfg: DictConfig, checkpoint: Path) -> int:
    """``--batch-size``, else the run's evaluation batch (:func:`plmu.train.settings.evaluation_batch_size`); a run
    whose config gives none is told to pass the flag."""
    if args.batch_size is not None:
        return args.batch_size
    from plmu.errors import CheckpointError
    from plmu.train.settings import evaluation_batch_size

    try:
        return evaluation_batch_size(cfg.get("trainer") or {})
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {checkpoint}: its config: {error}; pass --batch-size N") from None


def resolve_eval_device(name: str) -> torch.device:
    """``--device``, checked here so errors name the flag, not the training key ``trainer.device``."""
    from plmu.train.distributed import named_device

    return named_device(name, "--device ", "--device cpu or auto")


def check_recorded_data(run_dir: Path, name: str, split: Any, checkpoint: Path | None = None) -> None:
    """The split read now is the one the weights were trained on, or a DataError: the fingerprint in the
    data_info.json of the run that wrote ``checkpoint`` (another run's, given with --checkpoint), else ``run_dir``'s."""
    from plmu.data.fingerprint import check_same_data, split_fingerprint

    owner = Path(checkpoint).expanduser().resolve().parent.parent if checkpoint is not None else None
    source = owner if owner is not None and (owner / "data_info.json").is_file() else run_dir
    try:
        recorded = json.loads((source / "data_info.json").read_text()).get("fingerprint") or {}
    except (OSError, ValueError, AttributeError):
        return  # no record to compare with (a run of an older plmu)
    fix = "restore the files, tokenizer or vocabulary it was trained with (or point --data-root at them)"
    if source.resolve() != Path(run_dir).expanduser().resolve():
        fix = f"the checkpoint's own run ({source}) recorded it; " + fix
    check_same_data({name: recorded.get(name)}, {name: split_fingerprint(split)}, fix)


def strict_json(report: dict[str, Any]) -> str:
    """JSON that every parser accepts: NaN / inf (a diverged model) become null, each with a note saying so."""
    notes: list[str] = []

    def clean(value: Any, key: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            notes.append(f"{key} was {value} (not finite); written as null")
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return value

    cleaned = clean(report, "")
    cleaned["notes"] = notes
    return json.dumps(cleaned, indent=2, allow_nan=False)


def set_data_root(args: argparse.Namespace, cfg: DictConfig) -> str | None:
    """Apply ``--data-root``; returns the data folder the evaluation reads (None for loaders without one)."""
    # path null: the hub's data, found through the cache (issue 16: --data-root moved the cache of local files)
    keys = [key for key in DATA_KEYS if key in cfg.task.data and not (key == "path" and cfg.task.data.path is None)]
    if args.data_root is None:
        return str(Path(cfg.task.data[keys[0]]).expanduser().resolve()) if keys else None  # as the loader reads it
    if not keys:
        raise ConfigError(f"--data-root {args.data_root}: task {cfg.task.name} has no data folder to override")
    root = Path(args.data_root).expanduser()
    if not root.is_dir():
        fix = f"give the folder that holds the data (training read {cfg.task.data[keys[0]]})"
        raise ConfigError(f"--data-root {args.data_root}: no such folder; {fix}")
    cfg.task.data[keys[0]] = str(root.resolve())
    return str(root.resolve())
