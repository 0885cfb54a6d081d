"""A run folder as one run's record: who may write it (a lock), what it already holds, and resuming it safely.

A run folder holds ``config.yaml``, ``metrics.jsonl``, ``checkpoints/{last,best}.pt``, ``results.json`` and
``train.log``. Two rules keep that record true:

- one writer at a time: :meth:`RunFolder.lock` takes an exclusive ``flock`` on the folder itself (no lock file to
  go stale: the kernel drops it when the process dies, even by ``kill -9``);
- a folder that already holds a run is either resumed with a compatible config (:func:`check_resume`) or refused;
  it is never silently mixed with another run's records.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra.utils

from plmu.errors import ConfigError, RunFolderError
from plmu.train.provenance import shown_path
from plmu.train.schedules import takes_total_steps
from plmu.train.settings import RESUMABLE

# Keys that may differ between a checkpoint's config and the config that resumes it: they say where the data
# lives, where metrics go and how the run is shown or executed, not what is trained. The trainer's are declared with
# its settings (plmu.train.settings.RESUMABLE, each with its reason). The run's length may grow (see check_resume).
RESUME_MAY_CHANGE = (
    "data_dir",
    "task.data.root",
    "task.data.cache_dir",
    "task.data.path",  # a text task's local files, moved or mounted elsewhere
    "task.data.download",
    "task.sequence_length",  # the memory estimate's input, not the data's (runs before it had none)
    "logger",
    *RESUMABLE,
)


class RunFolder:
    """The folder of one run; ``with RunFolder(path) as folder:`` holds its lock for the block."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    def lock(self) -> None:
        """Take the folder for this process, or fail at once if a live run holds it."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"run folder {self.path} is a file; choose another hydra.run.dir")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as error:
            raise RunFolderError(
                f"cannot create run folder {self.path} ({error.strerror}); choose another hydra.run.dir"
            ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.unlock()
            raise RunFolderError(
                f"run folder {self.path} is in use by another plmu-train process; wait for it to finish, or "
                f"choose another hydra.run.dir"
            ) from None
        if not os.access(self.path, os.W_OK):
            self.unlock()
            raise RunFolderError(f"run folder {self.path} is not writable; choose another hydra.run.dir")

    def unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunFolder:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    def holds_run(self) -> bool:
        """True when the folder has a checkpoint or a result: records that a new run must not mix with."""
        return self.last_checkpoint.exists() or self.results.exists()

    def remove_if_created_since(self, started_ns: int) -> bool:
        """Drop this folder if the failed command that started at ``started_ns`` (``time.time_ns()``) made it and
        left it empty (Hydra creates run folders up front); True if removed.

        Never a folder another process holds (a live run's, still empty while it loads its data: removing it would
        leave that run's lock on a deleted folder and let a third run take the path), nor one older than the
        command (the user's own, empty before a bad config): its inode changed last before the command started.
        """
        try:
            changed = self.path.stat().st_ctime_ns
        except OSError:
            return False
        if changed < started_ns:
            return False
        owned = self._fd is not None
        if not owned:
            try:
                self.lock()
            except RunFolderError:  # a live run's folder: not ours to remove
                return False
        try:
            self.path.rmdir()  # fails when not empty: it holds something, so it stays
            return True
        except OSError:
            return False
        finally:
            if not owned:
                self.unlock()


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{"trainer.optimizer.lr": 0.001, ...}: one entry per leaf of a nested dict/list config."""
    if isinstance(config, dict):
        items = [(f"{prefix}{key}", value) for key, value in config.items()]
    elif isinstance(config, list):
        items = [(f"{prefix}{index}", value) for index, value in enumerate(config)]
    else:
        return {prefix.rstrip("."): config}
    flat: dict[str, Any] = {}
    for key, value in items:
        if isinstance(value, dict | list) and value:
            flat.update(flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def _may_change(key: str) -> bool:
    return any(key == allowed or key.startswith(allowed + ".") for allowed in RESUME_MAY_CHANGE)


RUN_LENGTH = ("trainer.max_epochs", "trainer.max_steps")


def _schedule_spans_the_run(config: dict[str, Any]) -> bool:
    """Whether the config's scheduler is given ``total_steps`` from the run's length (see plmu.train.schedules)."""
    scheduler = config.get("trainer", {}).get("scheduler") if isinstance(config.get("trainer"), dict) else None
    if not isinstance(scheduler, dict) or "_target_" not in scheduler:
        return False
    try:
        target = hydra.utils.get_method(scheduler["_target_"])
    except Exception:  # an unknown target fails later, with the trainer's own error
        return False
    keywords = {key: value for key, value in scheduler.items() if not key.startswith("_")}
    return takes_total_steps(functools.partial(target, **keywords))


def _added_off(key: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A setting added to plmu after the checkpoint was made, at null now: off, which is what the old run did (e.g.
    ``task.data.train_split``: null trains on the task's own training split, as every run before it did)."""
    return key not in old and key in new and new[key] is None


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The flattened keys (``flatten``) whose values would train a different run, the task's and the model's first
    (what a reader checks first), then sorted; the keys that may change on a resume (``RESUME_MAY_CHANGE``), the run's
    length and settings added at null are left out."""
    keys = [
        key
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
        and not _may_change(key)
        and key not in RUN_LENGTH
        and not _added_off(key, old, new)
    ]
    first = ("task.name", "model._target_")
    return sorted(keys, key=lambda key: first.index(key) if key in first else len(first))


def shown_differences(keys: list[str], old: dict[str, Any], new: dict[str, Any], where: str) -> str:
    """The differences for one line, six at most: "key: <old> <where>, <new> now"."""
    shown = [f"{key}: {old.get(key, '<absent>')!r} {where}, {new.get(key, '<absent>')!r} now" for key in keys[:6]]
    return "; ".join(shown) + (f"; and {len(keys) - 6} more" if len(keys) > 6 else "")


def _as_override(key: str, value: Any) -> str:
    """``key=value`` as a command line writes it (null, true, numbers; a string quoted only where Hydra needs it)."""
    import json

    if isinstance(value, str):
        plain = value and all(c.isalnum() or c in "._-/:+" for c in value)
        return f"{key}={value}" if plain else f"{key}='{value}'"
    return f"{key}={json.dumps(value)}"


def _effective_model(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its model as its builder is called (keys at their defaults filled in): a key that the configs
    came to state at the value it always had is no difference (:func:`plmu.models.build.model_with_defaults`)."""
    from plmu.models.build import model_with_defaults

    if not isinstance(config.get("model"), dict):
        return config
    return {**config, "model": model_with_defaults(config["model"])}


def check_resume(
    saved: dict[str, Any], current: dict[str, Any], epoch: int, path: Path, step: int | None = None
) -> None:
    """Refuse to resume the checkpoint at ``path`` (made with config ``saved``, at ``epoch`` and optimizer ``step``)
    with a config that would train a different run; only the keys in ``RESUME_MAY_CHANGE`` may differ, and the run's
    length (max_epochs, max_steps) may grow, unless the learning-rate schedule decays over that length (its
    ``total_steps`` comes from it): extending such a run would bend the schedule mid-way.
    """
    old, new = flatten(_effective_model(saved)), flatten(_effective_model(current))
    differences = config_differences(old, new)
    if differences:
        shown = shown_differences(differences, old, new, "in the checkpoint")
        # the checkpoint's values as overrides: they win over the run's saved ones (.hydra/overrides.yaml, which may
        # be what was edited), so this command resumes whatever the difference came from (list items excepted)
        named = [key for key in differences[:6] if key in old and not key[-1:].isdigit()]
        values = " ".join(_as_override(key, old[key]) for key in named)
        resume = f"plmu-train resume={shown_path(Path(path).parent.parent)}" + (f" {values}" if values else "")
        raise ConfigError(
            f"cannot resume {path} with a different config ({shown}). Resume with the checkpoint's values "
            f"({resume}), or start a new run in another folder (another hydra.run.dir)"
        )
    lengthened = [key for key in RUN_LENGTH if old.get(key) != new.get(key)]
    if lengthened and _schedule_spans_the_run(current):
        key = lengthened[0]
        raise ConfigError(
            f"cannot resume {path} with {key}={new.get(key)!r} (the checkpoint's: {old.get(key)!r}): its learning-rate "
            f"schedule decays over the run's length, so a new length would change the schedule mid-run. Resume with "
            f"{key}={old.get(key)!r}, or start a new run from its weights: init_from=<this run folder>"
        )
    progress = {"trainer.max_epochs": epoch, "trainer.max_steps": step}
    for key, done in progress.items():
        limit = new.get(key)
        if isinstance(limit, int) and done is not None and limit < done:
            raise ConfigError(
                f"{key}={limit} is below what {path} has done ({done}): a resumed run can only be extended; use "
                f"{key}>={done}"
            )


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM turned into it) during a run; ``kept`` says what the run folder holds for a resume."""

    def __init__(self, kept: str) -> None:
        super().__init__(kept)
        self.kept = kept


@contextmanager
def held_warnings() -> Iterator[list[logging.LogRecord]]:
    """The warnings plmu logs during the block (they still reach the console), kept for ``run_log``: a warning about
    the data comes before train.log opens, and belongs in it."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger("plmu").addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger("plmu").removeHandler(handler)


@contextmanager
def run_log(path: Path, earlier: list[logging.LogRecord] | None = None) -> Iterator[None]:
    """Everything plmu logs during the block also goes to ``path`` (appended: a resumed run continues its story),
    after the ``earlier`` records (``held_warnings``: what was said before the file could be opened)."""
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as error:
        raise RunFolderError(f"cannot write {path} ({error.strerror}); choose another hydra.run.dir") from None
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    for record in earlier or []:
        handler.handle(record)
    logger = logging.getLogger("plmu")
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    except BaseException as error:  # the end of the story goes to the file too (the console gets it from the CLI)
        text = "interrupted (Ctrl-C)" if isinstance(error, KeyboardInterrupt) else f"stopped: {error}"
        handler.handle(logger.makeRecord(logger.name, logging.ERROR, __file__, 0, text, (), None))
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)


# status.json: what the run's process is doing. A process the kernel kills (out of memory) or kill -9 writes
# nothing, so "running" with no live process is how such a folder says what happened to it.
STATUS_NOTE = (
    "running: written when training starts; a run that ends writes finished, interrupted or failed. Still running "
    "with no live process {pid} on {host}: killed without a word (out of memory, kill -9); resume it with "
    "plmu-train resume=<this folder>"
)


def write_status(folder: Path, status: str, detail: str | None = None) -> None:
    """Record the run's state in ``folder/status.json`` (atomically): running, finished, interrupted, failed."""
    import socket
    from datetime import UTC, datetime

    from plmu.train.loggers import write_json_atomic

    pid, host = os.getpid(), socket.gethostname()
    record: dict[str, Any] = {"status": status, "pid": pid, "host": host,
                              "at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    if detail:
        record["detail"] = detail
    if status == "running":
        record["note"] = STATUS_NOTE.format(pid=pid, host=host)
    write_json_atomic(Path(folder) / "status.json", record)


def killed_attempt(folder: Path) -> str | None:
    """Why the last attempt in ``folder`` left status ``running`` with its process gone (read before a new attempt
    overwrites it), or None: it ended and said so, it is alive, or it ran on another host (not knowable here)."""
    import json
    import socket

    try:
        record = json.loads((Path(folder) / "status.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("status") != "running" or record.get("host") != socket.gethostname():
        return None
    pid = record.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
        return None  # that process is alive (the folder lock refuses a second writer anyway)
    except ProcessLookupError:
        return f"process {pid} stopped while training, since {record.get('at')}: killed, e.g. out of memory or kill -9"
    except PermissionError:
        return None


# A run's records: what plmu-train writes and every tool reads; no other tool writes over them (issue 27).
RUN_RECORDS = ("config.yaml", "metrics.jsonl", "results.json", "data_info.json", "status.json", "train.log")
RECORD_FOLDERS = ("checkpoints", ".hydra", "wandb")


def is_run_folder(folder: Path) -> bool:
    """A folder plmu-train wrote: its config.yaml beside a checkpoint folder, metrics, results or a status."""
    folder = Path(folder)
    return (folder / "config.yaml").is_file() and any(
        (folder / name).exists() for name in ("checkpoints", "metrics.jsonl", "results.json", "status.json")
    )


def is_record(name: str) -> bool:
    """Whether a name in a run folder is one of its records (``RUN_RECORDS``, ``RECORD_FOLDERS``, or the
    ``code_<digest>.patch`` of a run from a modified tree); anything else there is a report or not plmu's."""
    return name in RUN_RECORDS or name in RECORD_FOLDERS or (name.startswith("code_") and name.endswith(".patch"))


def run_folder_holding(path: Path) -> tuple[Path, bool] | None:
    """(the run folder ``path`` lies in, whether ``path`` is one of its records), or None when it lies in no run.

    A record is a file of ``RUN_RECORDS`` or anything under ``RECORD_FOLDERS``; other files in a run folder
    (plmu-eval's ``eval_*.json``, plmu-export's ``step_*.pt2``) are its reports."""
    path = Path(path).expanduser().absolute()
    if is_run_folder(path.parent):
        return path.parent, is_record(path.name)
    for parent in path.parents:
        if parent.name in RECORD_FOLDERS and is_run_folder(parent.parent):
            return parent.parent, True
    return None


def refuse_writing_records(target: Path, own_run: Path | None, flag: str) -> None:
    """Refuse a tool's output ``target`` that would write over a run's record, or put a report of one run into
    another run's folder (where plmu-report would take it for that run's); ``own_run``: the run it reports on."""
    found = run_folder_holding(target)
    if found is None:
        return
    folder, is_record = found
    if is_record:
        raise RunFolderError(
            f"{flag} {target} would write over a record of the run in {folder} (plmu never writes over a run's "
            f"config, metrics, results or checkpoints): give a path outside it"
        )
    if own_run is None or folder.resolve() != Path(own_run).expanduser().resolve():
        raise RunFolderError(
            f"{flag} {target} lies in the run folder {folder}, not in the run it comes from"
            f"{'' if own_run is None else f' ({own_run})'}: a report there would read as that run's; give a path "
            f"outside it"
        )
