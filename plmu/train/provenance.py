"""What makes a result comparable later: versions, the machine, the code's git state, the exact command."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plmu.version import __version__


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The commit of the plmu source tree and whether it had uncommitted changes (None: not a git checkout)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": "unknown", "git_dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit.strip(), "git_dirty": None if status is None else bool(status.strip())}


def git_patch() -> str | None:
    """The tracked files' uncommitted changes against HEAD (``git diff HEAD --binary``), or None when there are none
    or this is no git checkout: with the commit, the code that ran (untracked files are not part of it)."""
    patch = _git("diff", "HEAD", "--binary")
    return patch or None


def save_git_patch(folder: Path) -> str | None:
    """Write the working tree's difference from its commit into ``folder`` as ``code_<digest>.patch`` (named by its
    content: a resumed attempt on other changes keeps its own file) and return the name; None for a clean tree."""
    import hashlib

    from plmu.train.loggers import write_text_atomic

    patch = git_patch()
    if patch is None:
        return None
    name = f"code_{hashlib.sha256(patch.encode()).hexdigest()[:12]}.patch"
    if not (folder / name).is_file():
        write_text_atomic(folder / name, patch)
    return name


def device_name(device: Any) -> str:
    """A human name for the device a run used: the GPU's model, or the CPU's."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: Any) -> dict[str, Any]:
    import torch

    return {
        "plmu_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        **git_state(),
    }


def command_line(overrides: list[str], run_dir: Path) -> str:
    """The ``plmu-train`` command that runs (or resumes) this run: its overrides and its folder, shell-quoted.

    The folder is written relative to the working directory when it lies below it (``hydra.run.dir=outputs/...``,
    the same command from the same place on any machine), else in full."""
    kept = [o for o in overrides if not o.startswith(("hydra.run.dir=", "hydra.sweep.dir=", "hydra.job."))]
    return shlex.join(["plmu-train", *kept, f"hydra.run.dir={shown_path(run_dir)}"])


def shown_path(path: str | Path) -> str:
    """``path`` relative to the working directory if it lies below it, else absolute: how a command names it."""
    resolved, here = Path(path).expanduser().resolve(), Path.cwd().resolve()
    return str(resolved.relative_to(here)) if resolved.is_relative_to(here) else str(resolved)


def run_relative(path: str | Path | None, run_dir: str | Path) -> str | None:
    """``path`` (a checkpoint, a data folder, a report) as a record writes it: relative to the run folder, so that a
    record reads the same on any machine and after the whole tree is moved (``checkpoints/best.pt``,
    ``../../data/mnist``). A path in the user's home that the run folder does not share a folder below the home with
    (the default cache, ``~/.cache/plmu``, for a run in ``/tmp/x``) is written from the home (``~/.cache/plmu``):
    each user's own, where ``../../../../root/.cache/plmu`` would name one machine's layout. None stays None."""
    if path is None:
        return None
    resolved, folder = Path(path).expanduser().resolve(), Path(run_dir).expanduser().resolve()
    home = Path.home().resolve()
    if len(home.parts) > 1 and resolved.is_relative_to(home):
        shared = Path(os.path.commonpath([resolved, folder]))
        if shared == home or not shared.is_relative_to(home):
            inside = resolved.relative_to(home).as_posix()
            return "~" if inside == "." else f"~/{inside}"
    return os.path.relpath(resolved, folder)


def from_record(path: str | None, run_dir: str | Path) -> Path | None:
    """A path a record wrote with :func:`run_relative` (or an absolute one, from an older record), as a Path."""
    if path is None:
        return None
    given = Path(path).expanduser()
    return given if given.is_absolute() else Path(run_dir) / given


MACHINE_PATH_PREFIXES = ("/", "~")


def is_machine_path(value: object) -> bool:
    """Whether a record's value is a path that only means something on the machine that wrote it: absolute, or in
    another user's home (``~alice/...``). ``~`` and ``~/...`` are each user's own home: portable."""
    if not isinstance(value, str) or "\n" in value or value == "~" or value.startswith("~/"):
        return False
    return value.startswith(MACHINE_PATH_PREFIXES)


def machine_paths(record: Any, skip: tuple[str, ...] = ("command", "overrides"), where: str = "") -> list[str]:
    """The keys (dotted) of ``record`` whose values are machine paths; ``skip``: keys kept as typed (the exact
    command and its overrides). What tests/test_experiments.py asks of every committed record."""
    found: list[str] = []
    if isinstance(record, Mapping):
        for key, value in record.items():
            if key not in skip:
                found += machine_paths(value, skip, f"{where}.{key}" if where else str(key))
    elif isinstance(record, list):
        for index, value in enumerate(record):
            found += machine_paths(value, skip, f"{where}[{index}]")
    elif is_machine_path(record):
        found.append(where)
    return found


def portable(record: Any, run_dir: str | Path, skip: tuple[str, ...] = ("command", "overrides")) -> Any:
    """``record`` with every machine path (:func:`is_machine_path`) written relative to the run folder; the keys in
    ``skip`` are kept as they are (the exact command and its overrides)."""
    if isinstance(record, Mapping):
        return {key: value if key in skip else portable(value, run_dir, skip) for key, value in record.items()}
    if isinstance(record, list):
        return [portable(value, run_dir, skip) for value in record]
    return run_relative(record, run_dir) if is_machine_path(record) else record
