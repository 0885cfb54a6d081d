"""Language-model pre-training text for IMDB: reviews joined into one token stream, in the IMDB classifier's tokens.

The paper pre-trained its IMDB model as a language model (on Amazon reviews) before classifying IMDB. Here the
corpus is (``task.data.corpus``):

- ``unsupervised`` (default): IMDB's 50,000 unlabelled reviews (``stanfordnlp/imdb``, split ``unsupervised``);
- ``train``: the classifier's own training reviews, labels dropped (its carved validation rows left out), for data
  without an unlabelled split (the Rotten Tomatoes stand-in of ``scripts/rotten_tomatoes_as_imdb.py``);
- ``train+unsupervised``: both;
- ``amazon_polarity``: the paper's corpus, ``fancyzhx/amazon_polarity``'s train split (3.6M reviews; title and
  text joined; ``task.data.max_documents`` caps it), or local files of its hub layout (``task.data.corpus_path``).

Tokens: the SAME byte-level BPE tokenizer the IMDB classifier task trains (``plmu.data.text.load_text_task``): on
IMDB's train split less the seeded validation rows, with the same ``vocab_size``, ``lowercase``, ``val_size``,
``split_seed`` and ``max_train``, and cached in the same place, so token i means the same in pre-training and in
fine-tuning (``init_from`` then carries the embedding over row by row). Keep those keys equal to ``task=imdb``'s.

Stream: documents are shuffled (seeded), split by document into train / val / test (``task.data.split``), and each
part is one stream ``[SEP] doc₁ [SEP] doc₂ [SEP] … docₙ [SEP]``: [SEP] (a special token the classifier never sees)
ends every review and starts the next, so the model learns where a review begins. No truncation. The result is
:class:`~plmu.data.stream.StreamSplits` (B streams × chunks of ``chunk_length`` tokens, the state carried across
chunks: ``trainer.state=carry``), ``info["vocab_size"]`` the tokenizer's size.
"""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import numpy as np

from plmu.data import tokenize
from plmu.data.folders import data_folder
from plmu.data.splits import check_int, is_int, split_fractions
from plmu.data.stream import StreamSplit, StreamSplits
from plmu.data.text import (
    FORMATS,
    TextTask,
    carve,
    clean,
    load_local_files,
    load_raw,
    local_name,
    resolve_task,
    split_files,
)
from plmu.errors import ConfigError, DataError, DataNotFoundError, one_line

log = logging.getLogger(__name__)

CORPORA = ("unsupervised", "train", "train+unsupervised", "amazon_polarity")
SEPARATOR = "[SEP]"
NO_TRUNCATION = 2**31 - 1
# The paper's pre-training corpus: title, content, label (unused); train 3.6M, test 400k.
AMAZON = TextTask("amazon_polarity", "fancyzhx/amazon_polarity", "amazon_polarity", ("content",), 2, "train", "test",
                  None, 0, NO_TRUNCATION)  # fmt: skip


def _amazon_text(batch: dict[str, list]) -> dict[str, list]:
    """title + content as one review: "Great CD. My lovely Pat has ..." (no full stop added after ! or ?)."""
    texts = []
    for title, content in zip(batch.get("title") or [""] * len(batch["content"]), batch["content"], strict=True):
        title = (title or "").strip()
        joined = f"{title} {content}" if title.endswith((".", "!", "?")) else f"{title}. {content}"
        texts.append(joined if title else content)
    return {"text": texts}


def load_amazon(cache: Path, corpus_path: str | Path | None) -> datasets.Dataset:
    """``fancyzhx/amazon_polarity``'s train split (hub, cached under ``cache``; or local files in its layout) as
    one ``text`` column; offline with nothing cached, one DataNotFoundError line."""
    if corpus_path is None:
        try:
            table = datasets.load_dataset(AMAZON.hub_id, AMAZON.config, split="train", cache_dir=str(cache))
        except OSError as error:  # offline (ConnectionError), not found, HTTP: all OSErrors
            raise DataNotFoundError(
                f"{AMAZON.hub_id} ({AMAZON.config}) is not cached in {cache} and could not be downloaded "
                f"({one_line(error)}): run once online with the same data_dir to fill the cache, or set "
                f"task.data.corpus_path to a folder of its files (e.g. amazon_polarity/train-00000-of-00004.parquet)"
            ) from None
    else:
        root = Path(corpus_path).expanduser()
        files = split_files(root, AMAZON, "train") if root.is_dir() else []
        if not files:
            raise DataNotFoundError(
                f"task.data.corpus_path={str(corpus_path)!r} has no file of amazon_polarity's 'train' split: expected "
                f"e.g. {root / AMAZON.config / 'train-00000-of-00004.parquet'} (parquet, jsonl or csv)"
            )
        table = load_local_files(FORMATS[files[0].suffix], "train", files, cache)
    table, _ = clean(table, AMAZON, "train", labelled=False)
    return table.map(_amazon_text, batched=True, remove_columns=table.column_names, desc="joining title and text")


def _stream(encoded: datasets.Dataset, separator: int) -> tuple[np.ndarray, int]:
    """Token lists → one stream ``[SEP] doc₁ [SEP] … docₙ [SEP]`` (int32), and the number of documents."""
    lists = encoded.with_format("arrow")[:].column("inputs").combine_chunks()
    offsets = lists.offsets.to_numpy().astype(np.int64)
    values = lists.values.to_numpy()[offsets[0] : offsets[-1]].astype(np.int32)
    joined = np.insert(values, offsets[1:] - offsets[0], separator)  # [SEP] after every document
    return np.concatenate([np.array([separator], dtype=np.int32), joined]), len(offsets) - 1


def imdb_lm(
    cache_dir: str | Path,
    path: str | Path | None = None,
    corpus: str = "unsupervised",
    corpus_path: str | Path | None = None,
    vocab_size: int = 16_000,
    lowercase: bool = True,
    tokenizer: str | None = None,
    val_size: int | None = None,
    split_seed: int = 0,
    max_train: int | None = None,
    chunk_length: int = 256,
    split: tuple[float, float, float] | list[float] = (0.96, 0.02, 0.02),
    max_documents: int | None = None,
    num_proc: int | None = None,
) -> StreamSplits:
    """The pre-training corpus as train / val / test token streams of ``chunk_length`` steps (module docstring).

    ``path``: IMDB's local files in the hub layout (as ``task=imdb``'s ``task.data.path``); ``corpus`` one of
    ``CORPORA``; ``corpus_path``: amazon_polarity's local files. ``vocab_size``, ``lowercase``, ``tokenizer``,
    ``val_size``, ``split_seed`` and ``max_train`` choose the tokenizer exactly as ``load_text_task("imdb", ...)``
    does (and are its defaults). ``split``: fractions of the documents (seeded by ``split_seed``);
    ``max_documents``: a seeded sample of the corpus (quick runs, or a slice of Amazon's 3.6M).
    """
    if corpus not in CORPORA:
        raise ConfigError(f"task.data.corpus must be one of {list(CORPORA)}, got {corpus!r}")
    if corpus_path is not None and corpus != "amazon_polarity":
        raise ConfigError(f"task.data.corpus_path is for corpus=amazon_polarity, not {corpus!r}: set it to null")
    fractions = split_fractions(split, "of the documents", "e.g. [0.96, 0.02, 0.02]")
    check_int("task.data.chunk_length", chunk_length, 1, "tokens per training chunk")
    check_int("task.data.split_seed", split_seed, 0, "the seed of the validation rows and the document order")
    for key, value in (("max_train", max_train), ("max_documents", max_documents)):
        if value is not None and not (is_int(value) and value > 0):
            raise ConfigError(f"task.data.{key} must be null or a positive integer, got {value!r}")
    task = resolve_task("imdb")
    settings = tokenize.TokenizerSettings(vocab_size, lowercase, html_breaks_to_spaces=task.html_breaks)
    carved = task.val_size if val_size is None else check_int("task.data.val_size", val_size, 1, "validation rows")
    fix = "set data_dir (or task.data.cache_dir) to a folder; it is created if missing"
    cache = data_folder(cache_dir, "task.data.cache_dir", "a folder", fix)
    pretrained = None if tokenizer is None else tokenize.pretrained_tokenizer(tokenizer)

    # The classifier's training rows, exactly as load_text_task carves them: they train the shared tokenizer.
    wanted = ("train", "unsupervised") if "unsupervised" in corpus else ("train",)
    raw = load_raw(task.name, cache, path, wanted)
    labelled, _ = clean(raw["train"], task, "train", labelled=True)
    if not carved < len(labelled):
        raise ConfigError(
            f"task.data.val_size must be below the {len(labelled)} training rows of imdb, got {carved}: lower "
            f"task.data.val_size (keep it equal to task=imdb's)"
        )
    train_rows, _ = carve(labelled, carved, split_seed, max_train)
    if pretrained is None:
        fast, file = tokenize.trained_tokenizer(train_rows, task.texts, settings, task.hub_id, cache)
    else:
        fast, file = pretrained, None
    separator = fast.convert_tokens_to_ids(SEPARATOR) if SEPARATOR in fast.get_vocab() else fast.sep_token_id
    separator = fast.eos_token_id if separator is None else separator
    if separator is None:
        raise ConfigError(f"the tokenizer {tokenizer!r} has neither [SEP] nor an end-of-text token to join reviews")

    parts = []
    if corpus in ("train", "train+unsupervised"):
        parts.append(train_rows.select_columns(list(task.texts)))
    if "unsupervised" in corpus:
        unsupervised, _ = clean(raw["unsupervised"], task, "unsupervised", labelled=False)
        parts.append(unsupervised.select_columns(list(task.texts)))
    if corpus == "amazon_polarity":
        parts.append(load_amazon(cache, corpus_path))
    documents = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    order = np.random.default_rng(split_seed).permutation(len(documents))
    if max_documents is not None:
        order = order[:max_documents]
    n_val, n_test = (max(1, round(len(order) * f)) for f in fractions[1:])
    if len(order) - n_val - n_test < 1:
        raise DataError(
            f"the {corpus} corpus has {len(order)} documents: too few for train, val and test (task.data.split "
            f"{list(fractions)}); use more documents"
        )
    pieces = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
    streams, counts = {}, {}
    for name, rows in pieces.items():
        # Document order within a split is the seeded shuffle's (select keeps the given order).
        table = documents.select(rows)
        encoded = tokenize.encode(table, fast, {"text": "inputs"}, None, NO_TRUNCATION, "end", num_proc)
        streams[name], counts[name] = _stream(encoded, int(separator))
    vocab = len(fast)
    info = {
        "task": "imdb_lm",
        "dataset": task.hub_id if path is None else local_name(path, task.hub_id),
        **({} if path is None else {"path": str(Path(path).expanduser().resolve())}),
        "corpus": corpus if corpus != "amazon_polarity" else f"{AMAZON.hub_id} (train)",
        "vocab_size": vocab,
        "separator_id": int(separator),
        "tokenizer": tokenizer or (str(Path(file).resolve()) if file else "trained (not cached)"),
        "tokenizer_trained_on": f"imdb train less {carved} validation rows (split_seed={split_seed}, "
        f"max_train={max_train})",
        "documents": counts,
        "tokens": {name: len(stream) for name, stream in streams.items()},
        "chunk_length": chunk_length,
        "split": list(fractions),
    }
    log.info("imdb_lm: %s documents, %s tokens (with separators)", counts, info["tokens"])
    splits = (StreamSplit(streams[name], chunk_length, vocab) for name in ("train", "val", "test"))
    return StreamSplits(*splits, info=info)
