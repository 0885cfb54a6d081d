"""Data folders given in a config: one check for every loader, before anything is read, created or downloaded."""

from __future__ import annotations

import os
from pathlib import Path

from plmu.errors import ConfigError


def offline() -> bool:
    """Whether downloads are off: ``HF_DATASETS_OFFLINE`` (the project's offline switch, also HF's) or
    ``PLMU_OFFLINE`` set to 1, true or yes. Loaders then fail at once with a line saying where to put the data."""
    names = ("HF_DATASETS_OFFLINE", "PLMU_OFFLINE")
    return any(os.environ.get(name, "0").lower() in ("1", "true", "yes") for name in names)


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
