"""Files written atomically (checkpoints, and through ``loggers`` the JSON and YAML records), read back with errors
that say what to do.

Every write goes to a unique temp file in the destination's folder (``.<name>.<random>.tmp``), is fsynced and then
renamed over the destination, so the path holds either the old file or the complete new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import random
import re
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plmu.errors import CheckpointError, ConfigError, RunFolderError
from plmu.models.build import upgrade_model_config

FORMAT = "plmu-checkpoint-v1"


def _read_umask() -> int:
    """The process umask. Linux reports it in /proc; elsewhere it can only be read by setting it (os.umask), which
    is process-wide, so this runs once, at import, before any thread of ours writes files."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates its files 0600; a finished file gets the mode a plain open() would give it (0644 under umask 022),
# so checkpoints and records are as readable as everything else in the run folder (shared servers, rsync, backups).
FILE_MODE = 0o666 & ~_read_umask()

# Temp files: a dot, the destination's name, a dot, mkstemp's random part (8 of [a-z0-9_] in CPython; any word
# accepted, so earlier fixed names like ".results.json.tmp" are cleaned up too), ".tmp". A hidden "*.tmp" in a run
# folder is never a user's file.
_ORPHAN = re.compile(r"\..+\.\w+\.tmp", re.ASCII)


RUN_FOLDER_ELSEWHERE = "another run folder (hydra.run.dir=...)"


def write_failure(
    path: str | Path, error: OSError, what: str = "", elsewhere: str = RUN_FOLDER_ELSEWHERE
) -> RunFolderError:
    """The one-line error for an OSError while writing ``path`` (``what`` names the kind of file, e.g. "checkpoint";
    ``elsewhere`` where else it could go)."""
    reason = error.strerror or str(error) or type(error).__name__
    code = errno.errorcode.get(error.errno) if error.errno is not None else None
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = f"make the folder writable or choose {elsewhere}"
    elif error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = f"free disk space or choose {elsewhere}"
    else:
        fix = f"check the disk, or choose {elsewhere}"
    label = f"{what} " if what else ""
    return RunFolderError(f"could not write {label}{path}: {reason}{f' ({code})' if code else ''}; {fix}")


class _Sink:
    """The temp file as torch.save (and everyone else) sees it: unbuffered writes that write everything or raise.

    Through a buffered file object torch turns ENOSPC into ``RuntimeError: unexpected pos ...`` and the cause is
    lost; here a short write is retried and the OSError (disk full, I/O error) reaches :func:`write_failure`.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError as error:
            self.error = error  # kept in case the caller (torch's C++ writer) replaces the exception
            raise
        return done

    def flush(self) -> None:
        pass  # nothing is buffered


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; best effort, as some file systems cannot open or fsync a folder."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block ends, then deliver them to the handlers they had.

    A KeyboardInterrupt raised inside ``torch.save`` makes its zip writer's ``__exit__`` fail with a RuntimeError
    ("unexpected pos") that replaces the interrupt: the run then ended in a traceback (exit 1) instead of its
    "interrupted, resume with" line. A write takes milliseconds, so the signal waits that long. Signal handlers can
    only be changed in the main thread; elsewhere the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum)) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: one set outside Python
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)  # the restored handler runs now: KeyboardInterrupt, or the default action


def _write_atomic(
    path: Path, write: Callable[[_Sink], None], what: str = "", elsewhere: str = RUN_FOLDER_ELSEWHERE
) -> None:
    """Write ``path`` through ``write(sink)`` via a unique temp file; any OSError becomes :func:`write_failure`'s.
    Ctrl-C and SIGTERM wait for the write (:func:`interrupts_deferred`)."""
    with interrupts_deferred():
        _write_atomic_now(path, write, what, elsewhere)


def _write_atomic_now(path: Path, write: Callable[[_Sink], None], what: str, elsewhere: str) -> None:
    tmp: str | None = None
    sink: _Sink | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            sink = _Sink(fd)
            write(sink)
            os.fchmod(fd, FILE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    except Exception as error:
        cause = error if isinstance(error, OSError) else sink.error if sink is not None else None
        if cause is None:
            raise
        raise write_failure(path, cause, what, elsewhere) from None
    finally:
        if tmp is not None:  # failed or interrupted (KeyboardInterrupt too): leave no temp file behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _fsync_folder(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes, what: str = "", elsewhere: str = RUN_FOLDER_ELSEWHERE) -> None:
    """``path`` holds ``data`` or its previous content, never a mix; :class:`RunFolderError` if it cannot be written."""
    _write_atomic(Path(path), lambda sink: sink.write(data), what, elsewhere)


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` so that ``path`` holds either the old checkpoint or the complete new one, never a torn file.

    A disk that is full or read-only gives a :class:`RunFolderError` naming the checkpoint (the old one is kept).
    """
    _write_atomic(Path(path), lambda sink: torch.save({"format": FORMAT, **payload}, sink), what="checkpoint")


def is_orphan(path: Path) -> bool:
    """A temp file a killed atomic write left (``.<name>.<random>.tmp``)."""
    return bool(_ORPHAN.fullmatch(path.name)) and path.is_file() and not path.is_symlink()


def remove_orphans(folder: str | Path) -> list[Path]:
    """Delete the temp files (``.<name>.<random>.tmp``) that writes killed mid-way left in ``folder`` (not below it).

    Only safe while no other process writes there: the runner calls it after taking the run folder's lock.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if is_orphan(path):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:
                raise RunFolderError(
                    f"could not remove the leftover temp file {path}: {error.strerror or error}; delete it by hand"
                ) from None
            removed.append(path)
    return removed


def load(path: str | Path) -> dict[str, Any]:
    """The payload of a plmu checkpoint; :class:`CheckpointError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: give the path of a last.pt or best.pt a run wrote")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, random bytes, pickles of foreign objects
        in_run = path.parent.name == "checkpoints"  # a run's own file, damaged; anything else is not plmu's to judge
        if not in_run and not _starts_like_a_checkpoint(path):
            raise CheckpointError(
                f"{path} is not a checkpoint (not a PyTorch file): give a last.pt or best.pt a plmu-train run wrote"
            ) from None
        fix = (
            "Delete it, or point trainer.resume / --checkpoint at another one (each run keeps last.pt and best.pt)"
            if in_run
            else "give a last.pt or best.pt a plmu-train run wrote"
        )
        raise CheckpointError(
            f"checkpoint {path} is unreadable (corrupt or truncated: {type(error).__name__}). {fix}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a plmu checkpoint (expected format {FORMAT!r})")
    return upgrade(payload)


def _starts_like_a_checkpoint(path: Path) -> bool:
    """Whether the file opens as torch.save's formats do: a zip archive, or a pickle of the legacy format."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(b"PK") or head[:1] == b"\x80"


# What checkpoints of earlier versions hold differently, undone in one place (:func:`upgrade`) as each is loaded, so
# that their runs still resume, evaluate and export. A change of what a checkpoint holds adds a line here and a test
# in tests/train/test_checkpoint.py.
TRAIN_STATE_RENAMED = {"bad_epochs": "bad_validations"}  # early stopping counts validations since steps can validate
CONFIG_KEYS_ADDED = {  # keys added since, at the values the runs before them ran with
    "trainer": {"scheduler_interval": "epoch", "accumulate_grad_batches": 1, "state": "reset"},
}


# Loaders that moved to another module: a checkpoint's config names them where they are now.
TARGETS_MOVED = {"plmu.data.translation.synthetic_en_vi": "plmu.data.synthetic_translation.synthetic_en_vi"}


def upgrade(payload: dict[str, Any]) -> dict[str, Any]:
    """A loaded checkpoint in today's layout: renamed training-state fields, config keys added since, loaders moved
    (:data:`TARGETS_MOVED`), model builders merged (:func:`plmu.models.build.upgrade_model_config`). Tensor names
    are the model's own business (which names are old depends on its class): ``SequenceModel`` renames those of its
    earlier layout as it loads them (:data:`plmu.models.sequence.RENAMED_PARAMETERS`); a ``Seq2Seq`` has an
    ``encoder`` of its own."""
    payload = dict(payload)
    state = payload.get("train_state")
    if isinstance(state, dict):
        payload["train_state"] = {TRAIN_STATE_RENAMED.get(key, key): value for key, value in state.items()}
    config = payload.get("config")
    if isinstance(config, dict):
        config = dict(config)
        for group, added in CONFIG_KEYS_ADDED.items():
            if isinstance(config.get(group), dict):
                config[group] = {**added, **config[group]}
        if isinstance(config.get("model"), dict):  # the per-family builders of earlier versions
            config["model"] = upgrade_model_config(config["model"])
        task = config.get("task")
        data = task.get("data") if isinstance(task, dict) else None
        if isinstance(data, dict) and data.get("_target_") in TARGETS_MOVED:
            config["task"] = {**task, "data": {**data, "_target_": TARGETS_MOVED[data["_target_"]]}}
        payload["config"] = config
    return payload


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """``model.load_state_dict`` with a message naming what differs, when the checkpoint is another model's."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = str(error).split("\n", 1)[-1].strip()
        raise CheckpointError(
            f"checkpoint {path} was made for a different model than this config builds "
            f"({detail[:400]}). Use the config the checkpoint was trained with, or start a new run"
        ) from None


def rng_state() -> dict[str, Any]:
    """Every random generator training touches, as tensors and plain values (loadable with weights_only)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's ``checkpoints/best.pt`` (else its ``last.pt``); a folder without either
    is a :class:`CheckpointError`. A file is returned as it is (:func:`load` says if it is missing or not ours)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return path
    for folder in (path / "checkpoints", path):  # a run folder, or its checkpoints/ folder itself
        for name in ("best.pt", "last.pt"):
            if (folder / name).is_file():
                return folder / name
    raise CheckpointError(
        f"{path} is a folder without checkpoints/best.pt or checkpoints/last.pt: give a run folder a run wrote, or "
        f"the path of a checkpoint"
    )


@dataclass(frozen=True)
class Warmstart:
    """What :func:`load_matching` loaded: tensor names by outcome."""

    path: Path
    loaded: list[str]  # name and shape match: copied into the model
    new: list[str]  # only in the model: left as initialised
    skipped: list[str]  # in both, shapes differ: left as initialised
    unused: list[str]  # only in the checkpoint

    def summary(self) -> str:
        """One line for the run's log."""
        return (
            f"init_from {self.path}: loaded {len(self.loaded)} tensors; {len(self.new)} new (not in the checkpoint), "
            f"{len(self.skipped)} skipped (shape differs{': ' + ', '.join(self.skipped[:5]) if self.skipped else ''}"
            f"{', ...' if len(self.skipped) > 5 else ''}), {len(self.unused)} of the checkpoint unused"
        )


def load_matching(model: torch.nn.Module, payload: dict[str, Any], path: str | Path) -> Warmstart:
    """Copy into ``model`` every tensor of ``payload["model"]`` whose name and shape match one of the model's state
    (parameters and persistent buffers); the rest of the model keeps its initialisation.

    Raises :class:`ConfigError` when nothing matches (another kind of model altogether), naming the path and what
    the checkpoint holds. The optimiser, scheduler and training state of the checkpoint are not touched.
    """
    saved: dict[str, Any] = payload.get("model") or {}
    own = model.state_dict()
    loaded = [name for name, value in saved.items() if name in own and tuple(value.shape) == tuple(own[name].shape)]
    matched = set(loaded)
    skipped = [name for name in saved if name in own and name not in matched]
    new = [name for name in own if name not in saved]
    unused = [name for name in saved if name not in own]
    if not loaded:
        target = (payload.get("config") or {}).get("model", {}).get("_target_", "an unknown model")
        shown = ", ".join(f"{name} {tuple(value.shape)}" for name, value in list(saved.items())[:4])
        raise ConfigError(
            f"init_from={str(path)!r}: none of its {len(saved)} tensors fits this model by name and shape (it holds "
            f"a {target} model: {shown or 'no tensors'}{', ...' if len(saved) > 4 else ''}); give a checkpoint of a "
            f"model that shares layers with this one, or init_from=null"
        )
    model.load_state_dict({name: saved[name] for name in loaded}, strict=False)
    return Warmstart(Path(path), loaded, new, skipped, unused)


# A carried model state (plmu.models.state: tensors in tuples, lists, dicts and named tuples) as plain containers
# that torch.load(weights_only=True) reads back: a named tuple becomes {_NAMED_TUPLE: "module.Class", "fields": [...]}.
_NAMED_TUPLE = "__plmu_named_tuple__"


def state_to_plain(state: Any) -> Any:
    """``state`` with every tensor detached and on the CPU, and named tuples as tagged dicts (see above)."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        kind = type(state)
        return {_NAMED_TUPLE: f"{kind.__module__}.{kind.__qualname__}", "fields": [state_to_plain(s) for s in state]}
    if isinstance(state, tuple | list):
        return type(state)(state_to_plain(s) for s in state)
    if isinstance(state, dict):
        return {key: state_to_plain(s) for key, s in state.items()}
    return state


def state_from_plain(plain: Any, device: torch.device | str = "cpu") -> Any:
    """The inverse of :func:`state_to_plain`, tensors moved to ``device``.

    Only named tuples of plmu's own modules are rebuilt: a checkpoint must not make us import or call anything else.
    """
    if isinstance(plain, torch.Tensor):
        return plain.to(device)
    if isinstance(plain, dict) and _NAMED_TUPLE in plain:
        module, _, name = plain[_NAMED_TUPLE].rpartition(".")
        kind = getattr(importlib.import_module(module), name, None) if module.split(".")[0] == "plmu" else None
        if not (isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields")):
            raise CheckpointError(f"the checkpoint's carried state holds an unknown type {plain[_NAMED_TUPLE]!r}")
        return kind(*(state_from_plain(s, device) for s in plain["fields"]))
    if isinstance(plain, tuple | list):
        return type(plain)(state_from_plain(s, device) for s in plain)
    if isinstance(plain, dict):
        return {key: state_from_plain(s, device) for key, s in plain.items()}
    return plain
