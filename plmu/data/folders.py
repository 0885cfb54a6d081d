"""Data folders given in a config: one check for every loader, before anything is read, created or downloaded."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from plmu.errors import ConfigError

log = logging.getLogger(__name__)
HUB = "huggingface.co"
_REACHABLE: dict[str, bool] = {}  # asked once per host and process


def offline(host: str | None = None) -> bool:
    """Whether downloads are off: ``HF_DATASETS_OFFLINE`` (the project's offline switch, also HF's) or
    ``PLMU_OFFLINE`` set to 1, true or yes, or (given the ``host`` a loader would download from) that host cannot
    be reached. Loaders then fail at once with a line saying where to put the data, instead of retrying for a
    minute. Offline by detection switches the Hugging Face libraries offline for the process too."""
    names = ("HF_DATASETS_OFFLINE", "PLMU_OFFLINE")
    if any(os.environ.get(name, "0").lower() in ("1", "true", "yes") for name in names):
        return True
    if host is None or reachable(host):
        return False
    go_offline()
    return True


def reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers on its HTTPS port within ``timeout`` seconds (asked once per process; a warning
    when not)."""
    if host not in _REACHABLE:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            _REACHABLE[host] = True
        except OSError:
            _REACHABLE[host] = False
            log.warning("%s cannot be reached (no network?): working offline; PLMU_OFFLINE=1 skips this check", host)
    return _REACHABLE[host]


def go_offline() -> None:
    """Switch the Hugging Face libraries offline for this process (their switches are read at import: set both the
    environment and the modules already imported), so that they answer from their caches at once."""
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    for module, names in (
        ("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
        ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")),
    ):
        loaded = sys.modules.get(module)
        for name in names:
            if loaded is not None and isinstance(getattr(loaded, name, None), bool):
                setattr(loaded, name, True)


def library_progress(show: bool) -> None:
    """The Hugging Face libraries' own progress bars (download, "Generating split", tokenising) on or off: plmu-train
    turns them on only with ``trainer.progress`` on a terminal (off one, tqdm frames would glue to the log lines)."""
    value = "0" if show else "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = value
    for module in ("datasets", "huggingface_hub.utils"):
        loaded = sys.modules.get(module)
        if loaded is not None:  # imported already: its switch was read; flip it
            switch = "enable_progress_bars" if show else "disable_progress_bars"
            getattr(loaded, switch, lambda: None)()


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists: where creating the folder would start."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path  # not reached: "/" or "." exists


def data_folder(value: object, key: str, wanted: str, fix: str) -> Path:
    """``value`` as a folder that exists or can be created, or a ConfigError naming ``key``.

    ``wanted`` says what the key must be ("a folder"), ``fix`` what to do; "" is refused because it would silently
    mean the current folder (an empty environment variable, say), and a number is a typo.
    """
    if not isinstance(value, str | os.PathLike) or str(value) == "":
        raise ConfigError(f"{key} must be {wanted}, got {value!r}: {fix}")
    path = Path(value).expanduser()
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise ConfigError(f"{key}={str(value)!r}: {existing} is a file, not a folder: {fix}")
    return path


def relative_note(path: str | Path) -> str:
    """ " (relative to the working directory <cwd>)" for a relative path, else "": a run resumed from another folder
    reads a relative task.data.path from there."""
    return "" if Path(path).expanduser().is_absolute() else f" (relative to the working directory {Path.cwd()})"
