"""``init_from``: a run starts from another run's weights (:func:`plmu.train.run.train` loads every tensor whose
name and shape match). Read before any data, so a missing or corrupt file fails at once; refused across
vocabularies, where the embedding and output rows would load by shape and mean other tokens."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from plmu.errors import CheckpointError, ConfigError
from plmu.train import checkpoint, provenance

log = logging.getLogger(__name__)


def init_from_checkpoint(cfg: DictConfig) -> tuple[Path, dict[str, Any]] | None:
    """``init_from``: null, or a run folder (its checkpoints/best.pt, else last.pt) or a checkpoint file, read now
    (before any data) so that a missing or corrupt file fails at once. Returns (the checkpoint's path, its payload).
    """
    given = cfg.get("init_from")
    if given is None:
        return None
    try:
        path = checkpoint.resolve(given)
        return path, checkpoint.load(path)
    except CheckpointError as error:
        raise CheckpointError(f"init_from={str(given)!r}: {error}") from None


VOCABULARY_KEYS = ("tokenizer", "alphabet")  # data_info.json's keys that say what each token id means


def _same_vocabulary(a: Any, b: Any, a_run: Path) -> bool:
    """Equal values, or two paths of tokenizer files with the same content (one tokenizer, cached in two places).
    ``a`` comes from the data_info.json of the run folder ``a_run``, which writes paths relative to it."""
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str):
        path_a, path_b = provenance.from_record(a, a_run), Path(b)
        if path_a.is_file() and path_b.is_file():
            return path_a.read_bytes() == path_b.read_bytes()
    return False


def check_same_vocabulary(source: Path, data_info: Mapping[str, Any]) -> None:
    """Refuse ``init_from`` across vocabularies: the embedding and output rows would load by shape and mean other
    tokens, silently. ``source`` is the checkpoint; its run's ``data_info.json`` (beside ``checkpoints/``) says which
    tokenizer or alphabet it trained with. A bare checkpoint without one cannot be checked (said in the log)."""
    info_path = Path(source).parent.parent / "data_info.json"
    try:
        theirs = json.loads(info_path.read_text())
    except (OSError, ValueError):
        log.warning("init_from: %s has no readable data_info.json: its vocabulary is not checked", source)
        return
    for key in VOCABULARY_KEYS:
        if key in theirs and key in data_info and not _same_vocabulary(theirs[key], data_info[key], info_path.parent):
            raise ConfigError(
                f"init_from={str(source)!r} was trained with another {key} ({theirs[key]!r}, this run: "
                f"{data_info[key]!r}): its token ids mean other tokens. Use the data settings of that run (for a "
                f"trained tokenizer: the same vocab_size, lowercase, val_size, split_seed and max_train), or "
                f"init_from=null"
            )
