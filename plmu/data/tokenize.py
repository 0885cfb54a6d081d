"""Subword tokenizers for the text tasks: trained on the training split and cached, or a named pretrained one.

The trained tokenizer is byte-level BPE (GPT-2 / RoBERTa style): its base alphabet is the 256 bytes, so every text
encodes without [UNK] (IMDB reviews hold emoji, accents and stray HTML), and merges learned from the training split
give short sequences for frequent words. WordPiece would map unseen characters to [UNK] and needs a word-level
pre-tokenizer tuned to the language. Special tokens are [PAD] = 0 (so a zero-filled tensor is padding), [UNK],
[CLS], [SEP], [MASK]: reserved for later tasks, never inserted into sequences here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from plmu.data.splits import check_int
from plmu.errors import ConfigError, DataError, DataNotFoundError

if TYPE_CHECKING:  # transformers takes a second to import: only the loaders that need it pay for it
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MIN_VOCAB = len(SPECIAL_TOKENS) + 256  # the byte alphabet is always in the vocabulary
FORMAT = 1  # bump when the training recipe changes: old cached tokenizers are then not reused
KEEP = ("end", "start")


@dataclass(frozen=True)
class TokenizerSettings:
    """How the tokenizer is trained; all of it (with the data) keys the cache."""

    vocab_size: int = 16_000
    lowercase: bool = True
    min_frequency: int = 2
    # IMDB reviews hold "<br /><br />" between paragraphs: a normalizer step makes them spaces in training and
    # encoding alike (a pretrained tokenizer keeps its own normalizer).
    html_breaks_to_spaces: bool = False

    def __post_init__(self) -> None:
        check_int("task.data.vocab_size", self.vocab_size, MIN_VOCAB, f"{MIN_VOCAB} = 256 bytes + special tokens")
        check_int("task.data.min_frequency", self.min_frequency, 1, "how often a pair must occur to be merged")
        for name in ("lowercase", "html_breaks_to_spaces"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"task.data.{name} must be true or false, got {getattr(self, name)!r}")


def iter_texts(dataset: datasets.Dataset, columns: Sequence[str], batch_size: int = 10_000) -> Iterator[str]:
    """Every text of ``columns`` (row by row, column after column within a batch); None reads as ""."""
    for batch in dataset.select_columns(list(columns)).iter(batch_size=batch_size):
        for column in columns:
            yield from (text or "" for text in batch[column])


def texts_fingerprint(texts: Iterable[str]) -> str:
    """SHA-256 of the texts in order (each length-prefixed, so ["ab", "c"] and ["a", "bc"] differ)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def train_tokenizer(texts: Iterable[str], settings: TokenizerSettings, length: int | None = None) -> Tokenizer:
    """A byte-level BPE ``Tokenizer`` trained on ``texts`` (``length``: how many, for the trainer's bookkeeping).

    The vocabulary can come out smaller than ``settings.vocab_size`` on little text: read the size back from the
    tokenizer, never from the setting.
    """
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    # NFKC folds compatibility forms (ligatures, full-width letters) that would otherwise waste vocabulary.
    steps = [normalizers.Replace(Regex(r"(\s*<br\s*/?>)+\s*"), " ")] if settings.html_breaks_to_spaces else []
    steps += [normalizers.NFKC(), normalizers.Lowercase()] if settings.lowercase else [normalizers.NFKC()]
    tokenizer.normalizer = normalizers.Sequence(steps)
    # A prefix space makes a text's first word the same token as that word anywhere else.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.vocab_size,
        min_frequency=settings.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer, length=length)
    return tokenizer


def _wrap(tokenizer_file: Path) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file), pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip


def load_tokenizer_file(path: Path) -> PreTrainedTokenizerFast:
    """A cached tokenizer.json as ``PreTrainedTokenizerFast``; a DataError naming the file if it is unusable."""
    fix = "delete it and re-run: it is trained again from the training split"
    try:
        tokenizer = _wrap(path)
    except Exception as error:  # tokenizers raises a bare Exception ("EOF while parsing ...") for a bad file
        raise DataError(f"the tokenizer file {path} is corrupt ({' '.join(str(error).split())}): {fix}") from None
    if tokenizer.convert_tokens_to_ids("[PAD]") != 0:
        raise DataError(f"the tokenizer file {path} does not have [PAD] as token 0: {fix}")
    return tokenizer


def cache_path(cache_dir: Path, dataset: str, settings: TokenizerSettings, fingerprint: str) -> Path:
    """``cache_dir/tokenizers/<dataset>-bpe<vocab>-<lower|cased>-<key>/tokenizer.json``; the key hashes the settings,
    the dataset and the training texts' fingerprint, so any change trains a new tokenizer next to the old one."""
    payload = {"dataset": dataset, "settings": asdict(settings), "texts": fingerprint, "format": FORMAT}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    case = "lower" if settings.lowercase else "cased"
    slug = dataset.replace("/", "_")
    return cache_dir / "tokenizers" / f"{slug}-bpe{settings.vocab_size}-{case}-{key}" / "tokenizer.json"


def _save_atomically(tokenizer: Tokenizer, path: Path) -> bool:
    """Write ``path`` via a temp file of this process renamed over it: two runs at once never see half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".tokenizer.", suffix=".tmp", dir=path.parent)
        os.close(handle)
    except OSError as error:
        log.warning("cannot cache the tokenizer in %s (%s); using it uncached", path.parent, error)
        return False
    try:
        tokenizer.save(name)
        os.chmod(name, 0o644)
        os.replace(name, path)
        return True
    except Exception as error:  # OSError, or the Rust side's plain Exception
        log.warning("cannot write the tokenizer %s (%s); using it uncached", path, error)
        return False
    finally:
        with contextlib.suppress(OSError):
            Path(name).unlink(missing_ok=True)


def trained_tokenizer(
    train: datasets.Dataset, columns: Sequence[str], settings: TokenizerSettings, dataset: str, cache_dir: Path | None
) -> tuple[PreTrainedTokenizerFast, Path | None]:
    """The tokenizer trained on ``train``'s ``columns``: loaded from the cache when there, else trained and cached.

    Returns it and its file (None when not cached). Only the training split's texts are read: validation and
    test words stay unseen, as they would be for any model fitted on train alone.
    """
    length = len(train) * len(columns)
    path = None
    if cache_dir is not None:
        path = cache_path(Path(cache_dir), dataset, settings, texts_fingerprint(iter_texts(train, columns)))
        if path.exists():
            log.info("tokenizer: %s (cached)", path)
            return load_tokenizer_file(path), path
    log.info("training a %d-token BPE tokenizer on %d texts", settings.vocab_size, length)
    tokenizer = train_tokenizer(iter_texts(train, columns), settings, length)
    if path is not None and _save_atomically(tokenizer, path):
        return load_tokenizer_file(path), path
    with tempfile.TemporaryDirectory() as folder:  # uncached: the wrapper still needs a file to read
        tokenizer.save(str(Path(folder) / "tokenizer.json"))
        return _wrap(Path(folder) / "tokenizer.json"), None


def pretrained_tokenizer(name: str) -> PreTrainedTokenizerFast:
    """``AutoTokenizer.from_pretrained(name)`` (a hub id in the Hugging Face cache, or a local folder), fast only."""
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"task.data.tokenizer must be a tokenizer name or folder (or null to train one), got {name!r}"
        )
    from transformers import AutoTokenizer

    from plmu.data.folders import HUB, offline

    if not Path(name).expanduser().is_dir():
        offline(HUB)  # a hub id: no network, no minute of retries
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as error:
        offline = any(
            os.environ.get(k, "0").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "PLMU_OFFLINE")
        )
        reason = "offline (HF_HUB_OFFLINE is set)" if offline else f"it could not be loaded ({error})"
        raise DataNotFoundError(
            " ".join(
                f"the pretrained tokenizer {name!r} is not in the Hugging Face cache and {reason}: run once online "
                f"to cache it, set task.data.tokenizer to a local folder holding tokenizer.json, or to null to "
                f"train one on the training split".split()
            )
        ) from None
    if not hasattr(tokenizer, "backend_tokenizer"):
        raise ConfigError(f"the tokenizer {name!r} has no fast (Rust) version: use one that ships a tokenizer.json")
    return tokenizer


def pad_id(tokenizer: PreTrainedTokenizerFast) -> int:
    """The padding id: the tokenizer's [PAD], else 0 (a pretrained one without a pad token: GPT-2). Padding is
    masked, so any valid id would do."""
    return 0 if tokenizer.pad_token_id is None else int(tokenizer.pad_token_id)


def tokenizer_hash(tokenizer: PreTrainedTokenizerFast) -> str:
    """A digest of the tokenizer's full definition (vocabulary, merges, normalizer): part of the map cache key."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def _cores() -> int:
    """The cores this process may use (a container's CPU affinity, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Encoder:
    """The ``datasets.map`` function: text columns → id lists, truncated to ``max_length`` keeping ``keep``.

    Calls the Rust tokenizer directly (a copy with its own truncation and padding switched off, as a pretrained
    tokenizer.json may set them), without special tokens. An empty encoding becomes [UNK] (length 0 has no last
    state). Adds ``truncated`` (bool) and, with ``label``, ``target``.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerFast,
        columns: dict[str, str],
        label: str | None,
        max_length: int,
        keep: str,
    ) -> None:
        self.backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self.backend.no_truncation()
        self.backend.no_padding()
        self.columns, self.label, self.max_length, self.keep = dict(columns), label, max_length, keep
        unk = tokenizer.unk_token_id
        self.unk = pad_id(tokenizer) if unk is None else int(unk)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        n = len(next(iter(batch.values())))
        truncated = np.zeros(n, dtype=bool)
        out: dict[str, list] = {}
        for column, key in self.columns.items():
            encodings = self.backend.encode_batch_fast([text or "" for text in batch[column]], add_special_tokens=False)
            ids = []
            for row, encoding in enumerate(encodings):
                sequence = encoding.ids
                if len(sequence) > self.max_length:
                    truncated[row] = True
                    sequence = sequence[-self.max_length :] if self.keep == "end" else sequence[: self.max_length]
                ids.append(sequence or [self.unk])
            out[key] = ids
        out["truncated"] = truncated.tolist()
        if self.label is not None:
            out["target"] = batch[self.label]
        return out


def encode(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerFast,
    columns: dict[str, str],
    label: str | None,
    max_length: int,
    keep: str = "end",
    num_proc: int | None = None,
) -> datasets.Dataset:
    """``dataset`` tokenised: ``columns`` maps text column → ids key (``inputs``, ``inputs_a``, ...); the result
    holds those keys (int32 lists), ``truncated`` and, with ``label``, ``target`` (int64).

    Cached by ``datasets`` next to the source's cache files under a fingerprint of (the source, the tokenizer's
    full definition, columns, max_length, keep): a second run reads the arrow file instead of tokenising.
    ``num_proc`` None: one worker process per core (at most 8) from 20,000 rows up, else none. The Rust encoder
    already uses every core within one process; workers also spread the Python truncation and the arrow writing
    (on 2 cores: no measurable gain, 27,000 SNLI-like pairs took ~2 s either way), and smaller data would spend
    more on starting them.
    """
    check_int("task.data.max_length", max_length, 1, "tokens kept per text")
    if keep not in KEEP:
        raise ConfigError(f"task.data.truncation must be one of {KEEP} (the part of a long text kept), got {keep!r}")
    if num_proc is None:
        num_proc = min(8, _cores()) if len(dataset) >= 20_000 else None
    num_proc = None if num_proc is not None and num_proc <= 1 else num_proc
    key = {"parent": dataset._fingerprint, "tokenizer": tokenizer_hash(tokenizer), "columns": columns}
    key |= {"label": label, "max_length": max_length, "keep": keep, "format": FORMAT}
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    features = {name: datasets.List(datasets.Value("int32")) for name in columns.values()}
    features["truncated"] = datasets.Value("bool")
    if label is not None:
        features["target"] = datasets.Value("int64")
    return dataset.map(
        Encoder(tokenizer, columns, label, max_length, keep),
        batched=True,
        batch_size=1_000,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        features=datasets.Features(features),
        new_fingerprint=fingerprint,
        desc="tokenising",
    )
