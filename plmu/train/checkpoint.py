"""Checkpoints: written atomically (temp file, fsync, rename), read back with errors that say what to do."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plmu.errors import CheckpointError

FORMAT = "plmu-checkpoint-v1"


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` so that ``path`` holds either the old checkpoint or the complete new one, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path) -> dict[str, Any]:
    """The payload of a plmu checkpoint; :class:`CheckpointError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: give the path of a last.pt or best.pt a run wrote")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, random bytes, pickles of foreign objects
        raise CheckpointError(
            f"checkpoint {path} is unreadable (corrupt or truncated: {type(error).__name__}). Delete it, or point "
            f"trainer.resume / --checkpoint at another one (each run keeps last.pt and best.pt)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a plmu checkpoint (expected format {FORMAT!r})")
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
