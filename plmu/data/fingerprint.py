"""A data set's identity: one content digest per split, as the model sees it.

``plmu-train`` records ``fingerprint(data)`` in the run's ``data_info.json``; whoever reads the run's data again
compares it (:func:`check_same_data`): a resumed run, ``plmu-eval`` and ``plmu-translate``. The digest covers what
the loader hands the trainer (token ids after the tokenizer or vocabulary, labels, pixels after the permutation,
reference sentences), not file names or places, so the same data moved elsewhere (``task.data.path``,
``--data-root``) passes, while a retrained tokenizer, an edited vocabulary or a replaced file does not.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import torch

from plmu.errors import DataError

SPLITS = ("train", "val", "test")


def _update(digest: Any, value: Any) -> None:
    """Feed ``value`` (arrays, tensors, dataclasses of them, strings, numbers, containers) into ``digest``."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"array {array.dtype.str} {array.shape};".encode())
        digest.update(array.view(np.uint8).data if array.size else b"")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(f"{type(value).__name__}(".encode())
        for field in dataclasses.fields(value):
            if field.init and not field.name.startswith("_"):
                digest.update(f"{field.name}=".encode())
                _update(digest, getattr(value, field.name))
        digest.update(b")")
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)};".encode())
        for key in sorted(value, key=str):
            _update(digest, str(key))
            _update(digest, value[key])
    elif isinstance(value, list | tuple):
        digest.update(f"list {len(value)};".encode())
        for item in value:
            _update(digest, item)
    elif isinstance(value, str):
        encoded = value.encode()
        digest.update(f"str {len(encoded)};".encode() + encoded)
    else:  # numbers, booleans, None
        digest.update(f"{type(value).__name__} {value!r};".encode())


def split_fingerprint(split: Any) -> dict[str, Any]:
    """``{"examples": len(split), "sha256": <hex digest of its content>}`` of one split."""
    digest = hashlib.sha256()
    _update(digest, split)
    return {"examples": len(split), "sha256": digest.hexdigest()}


def fingerprint(data: Any) -> dict[str, dict[str, Any]]:
    """The fingerprint of every split of a run's data (``train``, ``val``, ``test``)."""
    return {name: split_fingerprint(getattr(data, name)) for name in SPLITS}


def check_same_data(recorded: dict[str, Any] | None, current: dict[str, Any], fix: str) -> bool:
    """Raise a DataError naming the first split whose fingerprint differs from ``recorded`` (data_info.json's);
    splits missing from either side are not compared. False when nothing was recorded (a run of an older plmu)."""
    if not isinstance(recorded, dict):
        return False
    for name, now in current.items():
        before = recorded.get(name)
        if not isinstance(before, dict) or before.get("sha256") == now["sha256"]:
            continue
        raise DataError(
            f"the {name} split is not the data this run was trained on: {before.get('examples')} examples "
            f"(sha256 {str(before.get('sha256'))[:12]}) in its data_info.json, {now['examples']} "
            f"(sha256 {now['sha256'][:12]}) now (another file, tokenizer or vocabulary); {fix}"
        )
    return True
