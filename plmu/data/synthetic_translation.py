"""A synthetic translation task in the Stanford NMT layout: :func:`write_synthetic` writes it,
:func:`synthetic_en_vi` (``task=iwslt15_en_vi experiment=iwslt15_en_vi_synthetic``) writes it once into the data
folder and loads it as IWSLT is loaded. It learns in minutes on a CPU: a check that the translation model, its
decoding and BLEU work end to end, without the 133k-pair download.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plmu.data.folders import data_folder
from plmu.data.seq2seq import BOS, EOS, UNK, TranslationSplits
from plmu.data.translation import iwslt15_en_vi
from plmu.errors import ConfigError

SYNTHETIC_ORDERS = ("swap", "monotone", "reverse")


def _reorder(words: Sequence[int], order: str) -> list[int]:
    """The target's word order: ``swap`` each pair (1 0 3 2 …: English adjective-noun → Vietnamese noun-adjective),
    ``monotone``, or ``reverse``."""
    words = list(words)
    if order == "monotone":
        return words
    if order == "reverse":
        return words[::-1]
    if order == "swap":
        return [words[i ^ 1] if (i ^ 1) < len(words) else words[i] for i in range(len(words))]
    raise ValueError(f"order must be one of {list(SYNTHETIC_ORDERS)}, got {order!r}")


def write_synthetic(
    folder: str | Path,
    num_train: int = 4000,
    num_val: int = 200,
    num_test: int = 200,
    vocab: int = 40,
    min_length: int = 3,
    max_length: int = 10,
    order: str = "swap",
    seed: int = 0,
) -> Path:
    """A synthetic translation task in the Stanford layout (train/tst2012/tst2013 .en/.vi, vocab.en/.vi).

    A source is ``min_length`` to ``max_length`` distinct random words ``w<i>`` of ``vocab``; its target renames
    every word ``v<π(i)>`` (π a permutation drawn from ``seed``) and reorders them by ``order``: ``swap`` (each pair
    exchanged, a local reordering like English adjective-noun → Vietnamese noun-adjective; the default), ``monotone``
    or ``reverse``. Returns ``folder``.
    """
    if order not in SYNTHETIC_ORDERS:
        raise ValueError(f"order must be one of {list(SYNTHETIC_ORDERS)}, got {order!r}")
    if not (isinstance(vocab, int) and isinstance(min_length, int) and isinstance(max_length, int)):
        raise ValueError(
            f"vocab, min_length and max_length must be integers, got {vocab!r}, {min_length!r}, {max_length!r}"
        )
    if not 1 <= min_length <= max_length <= vocab:
        raise ValueError(f"need 1 <= min_length <= max_length <= vocab, got {min_length}, {max_length}, {vocab}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rename = rng.permutation(vocab)
    specials = [UNK, BOS, EOS]
    (folder / "vocab.en").write_text("\n".join([*specials, *(f"w{i}" for i in range(vocab))]) + "\n")
    (folder / "vocab.vi").write_text("\n".join([*specials, *(f"v{i}" for i in range(vocab))]) + "\n")
    for split, count in (("train", num_train), ("tst2012", num_val), ("tst2013", num_test)):
        sources, targets = [], []
        for _ in range(count):
            words = rng.choice(vocab, size=int(rng.integers(min_length, max_length + 1)), replace=False)
            sources.append(" ".join(f"w{i}" for i in words))
            targets.append(" ".join(f"v{rename[i]}" for i in _reorder(words, order)))
        (folder / f"{split}.en").write_text("\n".join(sources) + "\n")
        (folder / f"{split}.vi").write_text("\n".join(targets) + "\n")
    return folder


def _synthetic_folder(data_dir: object, settings: Mapping[str, Any]) -> Path:
    """``<data_dir>/synthetic_en_vi/<settings>``: one folder per setting of the task."""
    fix = "set data_dir=<folder> (or PLMU_DATA_DIR); it is created if missing"
    name = "-".join(f"{key}{value}" for key, value in settings.items())
    return data_folder(data_dir, "data_dir", "a folder", fix) / "synthetic_en_vi" / name


def synthetic_en_vi(
    data_dir: str | Path,
    path: str | Path | None = None,
    num_train: int = 4000,
    num_val: int = 200,
    num_test: int = 200,
    vocab: int = 40,
    min_length: int = 3,
    max_length: int = 10,
    order: str = "swap",
    seed: int = 0,
    **options: Any,
) -> TranslationSplits:
    """The synthetic task of :func:`write_synthetic`, loaded as :func:`iwslt15_en_vi` loads IWSLT (``options``: its
    arguments, e.g. ``max_source_length``). Written once into ``<data_dir>/synthetic_en_vi/<settings>/``; ``path``
    reads a folder ``scripts/synthetic_translation.py`` wrote instead (the settings here are then not used)."""
    settings = {"num_train": num_train, "num_val": num_val, "num_test": num_test, "vocab": vocab,
                "min_length": min_length, "max_length": max_length, "order": order, "seed": seed}  # fmt: skip
    generated = path is None
    if generated:
        folder = _synthetic_folder(data_dir, settings)
        if not (folder / "vocab.vi").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            temp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
            try:
                write_synthetic(temp, **settings)
                temp.rename(folder)  # a folder is complete or absent
            except ValueError as error:
                raise ConfigError(f"task.data: {error}") from None
            except OSError:  # another process wrote it first
                pass
            finally:
                shutil.rmtree(temp, ignore_errors=True)
        path = folder
    data = iwslt15_en_vi(data_dir, path=path, **options)
    data.info["dataset"] = f"synthetic en-vi ({order if generated else 'from task.data.path'}; {Path(path).name})"
    data.info["synthetic"] = settings if generated else "read from task.data.path"
    if generated:  # plmu-translate --data-root finds the vocabularies there
        data.info["folder_in_data_dir"] = f"{folder.parent.name}/{folder.name}"
    return data
