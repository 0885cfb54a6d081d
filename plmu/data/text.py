"""IMDB, QQP and SNLI: Hugging Face ``datasets`` (hub id, or local files in the hub's layout) → ``TextSplits``.
(Over 400 lines as one idea: the three text-classification data sets, read the same way.)

Splits. IMDB (``stanfordnlp/imdb``): train 25,000 / test 25,000 (+ 50,000 unlabelled ``unsupervised``); the hub's
train file is sorted by label, so validation is a seeded random 2,500 (10 %) of train. QQP (``nyu-mll/glue``,
``qqp``): the paper reports validation accuracy and GLUE's test labels are hidden (−1), so our test split is GLUE
validation (40,430) and validation is a seeded 10,000 of train (363,846; a standard error ≈ 0.3 % on accuracy, enough
to select models, and 97 % stays for training). SNLI (``stanfordnlp/snli``): its own validation and test; rows
labelled −1 (no gold label: 785 / 158 / 176) are dropped, as every SNLI paper does.

Texts that are empty or whitespace-only are dropped, with a warning and a count per split in ``info``: they carry
nothing to classify, a sequence of length 0 has no last state, and refusing a whole data set for a handful of such
rows would make it unusable. Texts longer than ``max_length`` tokens are truncated keeping their END by default: a
review's verdict tends to close it (Sun et al., 2019, "How to Fine-Tune BERT for Text Classification?", found
tail-only truncation beat head-only on IMDB), and the LMU's final state remembers the last steps best. Truncated
rows are counted in ``info``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plmu.data import tokenize
from plmu.data.batching import DictSplit, Ragged, TextSplits
from plmu.data.folders import HUB, data_folder, offline, relative_note
from plmu.data.splits import check_int, is_int
from plmu.data.text_tasks import DATASET_TASKS, TASKS, TextTask
from plmu.errors import ConfigError, DataError, DataNotFoundError, one_line

log = logging.getLogger(__name__)

FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def with_train_split(task: TextTask, train_split: object, val_size: object) -> TextTask:
    """``task`` training on ``train_split`` instead of its own training split (None: unchanged). A split that is the
    task's validation split stops validating: ``val_size`` rows of it are carved to select on instead."""
    if train_split is None or train_split == task.train:
        return task
    if not isinstance(train_split, str) or not train_split.strip():
        raise ConfigError(f"task.data.train_split must be null or a split name (e.g. validation), got {train_split!r}")
    if train_split == task.test:
        raise ConfigError(
            f"task.data.train_split={train_split} is {task.name}'s test split: a run never trains on the split it is "
            f"tested on; name another one (or null for {task.train!r})"
        )
    if val_size is None:
        raise ConfigError(
            f"task.data.train_split={train_split} needs task.data.val_size: the rows of it that validate (e.g. "
            f"task.data.val_size=1000)"
        )
    own_val = None if train_split == task.val else task.val
    return replace(task, train=train_split, val=own_val)


def resolve_task(dataset: object) -> TextTask:
    """The task named by ``dataset`` (``imdb``, ``qqp``, ``snli`` or a hub id of one), or a ConfigError."""
    name = DATASET_TASKS.get(dataset, dataset) if isinstance(dataset, str) else None
    if name not in TASKS:
        raise ConfigError(
            f"task.data.dataset must be one of {sorted(TASKS)} (or the hub ids stanfordnlp/imdb, stanfordnlp/snli), "
            f"got {dataset!r}"
        )
    return TASKS[name]


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def split_files(root: Path, task: TextTask, split: str) -> list[Path]:
    """The files of ``split`` under ``root``, in the first layout that has any: ``<config>/``, ``data/`` or the
    folder itself, each as ``<split>.<ext>``, ``<split>-*.<ext>`` (the hub's ``train-00000-of-00001.parquet``) or
    ``<split>/*.<ext>`` (the hub's parquet-converter branch). Every format's files of that folder: shards in two
    formats are refused by the caller, never half read."""
    for folder in (root / task.config, root / "data", root):
        if not folder.is_dir():
            continue
        patterns = [pattern for ext in FORMATS for pattern in (f"{split}{ext}", f"{split}-*{ext}", f"{split}/*{ext}")]
        files = sorted({file for pattern in patterns for file in folder.glob(pattern) if file.is_file()})
        if files:
            return files
    return []


def local_name(path: str | Path, hub_id: str) -> str:
    """What a record calls local files: their folder's name and the layout they are read in (plmu cannot tell
    whether they are that data set: a stand-in has the same layout). The path itself is recorded beside it."""
    return f"local files ({Path(path).expanduser().resolve().name}) in the {hub_id} layout"


def load_raw(
    dataset: str, cache_dir: str | Path, path: str | Path | None = None, splits: tuple[str, ...] | None = None
) -> dict[str, datasets.Dataset]:
    """The task's source splits, as the hub names them (e.g. IMDB ``train``, ``test``, ``unsupervised``), untouched.

    From the hub id (cached under ``cache_dir``), or from the local files of ``path`` in the hub's layout (parquet,
    jsonl or csv; see ``split_files``), read by ``load_dataset("parquet" | "json" | "csv")``. Offline with nothing
    cached, or no file for a split: one DataNotFoundError line that says what to do.
    """
    task = resolve_task(dataset)
    fix = "set data_dir (or task.data.cache_dir) to a folder; it is created if missing"
    cache = data_folder(cache_dir, "task.data.cache_dir", "a folder", fix)
    wanted = splits or tuple(dict.fromkeys(s for s in (task.train, task.val, task.test) if s))
    if path is None:
        offline(HUB)  # no network: the libraries answer from the cache at once, not after a minute of retries
        try:
            loaded = datasets.load_dataset(task.hub_id, task.config, cache_dir=str(cache))
        except OSError as error:  # ConnectionError (offline), DatasetNotFoundError, HTTP errors: all OSErrors
            raise DataNotFoundError(
                f"{task.hub_id} ({task.config}) is not cached in {cache} and could not be downloaded "
                f"({one_line(error)}): run once online with the same data_dir to fill the cache, or set "
                f"task.data.path to a folder of local files in the hub's layout (e.g. train.parquet, test.parquet)"
            ) from None
        missing = [split for split in wanted if split not in loaded]
        if missing:
            raise DataError(f"{task.hub_id} ({task.config}) has no split {missing[0]!r} (found: {sorted(loaded)})")
        return {split: loaded[split] for split in wanted}
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(
            f"task.data.path={str(path)!r}{relative_note(path)} is not a folder: point it at the folder of "
            f"{task.name}'s files"
        )
    raw = {}
    for split in wanted:
        files = split_files(root, task, split)
        if not files:
            instead = ""
            if split == task.train and task.val is not None:  # e.g. SNLI's validation and test pairs alone
                instead = (
                    f"; to train on another split of the folder instead (a small-data run, not the paper's protocol) "
                    f"name it: task.data.train_split={task.val} task.data.val_size=1000"
                )
            raise DataNotFoundError(
                f"task.data.path={str(path)!r} has no file for {task.name}'s {split!r} split: expected e.g. "
                f"{root / task.config / f'{split}-00000-of-00001.parquet'} or {root / f'{split}.parquet'} (parquet, "
                f"jsonl or csv){instead}"
            )
        builder = FORMATS[files[0].suffix]
        if any(FORMATS[file.suffix] != builder for file in files):
            found = ", ".join(file.name for file in files)
            raise DataError(
                f"{task.name}'s {split!r} files in {root} mix formats ({found}): keep one of parquet, jsonl, csv "
                f"(convert the others), so that no shard is left out"
            )
        raw[split] = load_local_files(builder, split, files, cache)
    return raw


def content_key(files: list[Path]) -> str:
    """A digest of the files' bytes (and names): the local-files cache's key. ``datasets`` keys its cache on each
    file's path and modification time, so a file edited in place with its mtime kept (``touch -r``, an archive that
    restores mtimes) would train on the stale cache, and the run's data fingerprint would describe that (issue 27)."""
    digest = hashlib.blake2b(digest_size=16)
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as f:
            digest.update(hashlib.file_digest(f, "blake2b").digest())
    return digest.hexdigest()


def load_local_files(builder: str, split: str, files: list[Path], cache: Path) -> datasets.Dataset:
    """``load_dataset(builder)`` over local ``files`` as ``split``, cached under a key of their content; a file that
    cannot be read is one DataError naming it and the parser's own reason (``datasets`` logs its own [ERROR] line
    and wraps the reason in "An error occurred while generating the dataset": both are kept quiet here)."""
    empty = next((file for file in files if file.stat().st_size == 0), None)
    if empty is not None:
        raise DataError(f"{empty} is empty (0 bytes): replace it with the split's {builder} file")
    if builder == "parquet" and _parquet_rows(files) == 0:  # datasets' reader fails on it with "BatchSize ... 0"
        raise DataError(f"{_named(files)}: no rows (an empty {split!r} split); give the split its examples")
    quiet, level = logging.getLogger("datasets"), logging.getLogger("datasets").level
    quiet.setLevel(logging.CRITICAL)
    try:
        keyed = cache / "local" / content_key(files)
        return datasets.load_dataset(
            builder, data_files={split: [str(f) for f in files]}, split=split, cache_dir=str(keyed)
        )
    except OSError as error:
        raise DataError(f"could not read {files[0]} ({_reason(error)}): check the file and its permissions") from None
    except Exception as error:  # pyarrow / pandas / json parse errors: the file is not what it claims
        reason = _reason(error)
        raise DataError(f"could not read {files[0]} ({reason}): replace it with a valid {builder} file") from None
    finally:
        quiet.setLevel(level)


def _parquet_rows(files: list[Path]) -> int | None:
    """The parquet files' rows from their footers, or None if a footer cannot be read (the reader then says why)."""
    import pyarrow.parquet as pq

    try:
        return sum(pq.read_metadata(file).num_rows for file in files)
    except Exception:
        return None


def _named(files: list[Path]) -> str:
    """A split's files in a message: the one, or the first and how many more."""
    return str(files[0]) if len(files) == 1 else f"{files[0]} and {len(files) - 1} more file(s)"


def _reason(error: BaseException) -> str:
    """The innermost cause's message (the parser's: "JSON parse error: ... in row 1"), on one line."""
    while (inner := error.__cause__ or error.__context__) is not None and str(inner).strip():
        error = inner
    return one_line(error)


def _check_columns(table: datasets.Dataset, task: TextTask, split: str, labelled: bool) -> None:
    """Each text column a string and the label an integer, or a DataError naming what was found."""
    found = table.column_names
    needed = [*task.texts, task.label] if labelled else list(task.texts)
    for column in needed:
        if column not in found:
            raise DataError(
                f"{task.name}'s {split!r} split has no column {column!r} (found: {', '.join(found)}): it needs "
                f"{', '.join(needed)}, as in {task.hub_id}"
            )
    for column in task.texts:
        kind = table.data.schema.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            raise DataError(f"{task.name}'s {split!r} column {column!r} holds {_kind(kind)}, not text")
    if labelled:
        kind = table.data.schema.field(task.label).type
        if not pa.types.is_integer(kind):
            raise DataError(
                f"{task.name}'s {split!r} column {task.label!r} holds {_kind(kind)}, not integer class ids 0 to "
                f"{task.num_classes - 1} (map class names to ids first)"
            )


def _kind(kind: pa.DataType) -> str:
    """A column's type in words: Arrow's JSON extension is what a column of mixed values (numbers and strings in one
    jsonl column) becomes."""
    if "json" in str(kind):
        return "mixed values (numbers and strings, or other JSON)"
    return {"int64": "integers", "double": "numbers", "bool": "booleans"}.get(str(kind), str(kind))


def clean(table: datasets.Dataset, task: TextTask, split: str, labelled: bool) -> tuple[datasets.Dataset, dict]:
    """``table`` without rows of ``task.drop_labels`` or with an empty text; labels checked in range.

    Returns the rows kept and the counts dropped. Computed on the arrow columns (no Python loop over rows).
    """
    _check_columns(table, task, split, labelled)
    data = table.with_format("arrow")[:]  # a pyarrow Table that honours any indices mapping, zero-copy otherwise
    empty = np.zeros(len(table), dtype=bool)
    for column in task.texts:
        texts = data.column(column)
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0) if texts.type != pa.null() else None
        empty |= (
            np.ones(len(table), bool) if blank is None else pc.fill_null(blank, True).to_numpy(zero_copy_only=False)
        )
    counts = {"empty": int(empty.sum()), "no_label": 0}
    keep = ~empty
    if labelled:
        column = data.column(task.label)
        if column.null_count:
            raise DataError(
                f"{task.name}'s {split!r} split has {column.null_count} row(s) without a {task.label!r}: fix the data"
            )
        labels = column.to_numpy()
        unlabelled = np.isin(labels, task.drop_labels)
        counts["no_label"] = int((unlabelled & keep).sum())
        keep &= ~unlabelled
        outside = keep & ((labels < 0) | (labels >= task.num_classes))
        if outside.any():
            raise DataError(
                f"{task.name}'s {split!r} split has {int(outside.sum())} label(s) outside 0 to {task.num_classes - 1}, "
                f"e.g. {int(labels[outside][0])} in row {int(np.flatnonzero(outside)[0])}: fix the data (the "
                f"{task.label!r} column holds class ids)"
            )
    if counts["empty"]:
        log.warning("%s %s: dropped %d row(s) with an empty text", task.name, split, counts["empty"])
    if not keep.any():  # nothing to train or score on: say so here, not as a missing column deep in batching
        raise DataError(
            f"{task.name}'s {split!r} split has no usable row: {len(table)} row(s), {counts['empty']} with an empty "
            f"text, {counts['no_label']} without a label: fix or replace its file(s)"
        )
    if keep.all():
        return table, counts
    kept = table.select(np.flatnonzero(keep), new_fingerprint=_digest(table._fingerprint, "clean", task.name))
    return kept, counts


def carve(
    train: datasets.Dataset, val_size: int, seed: int, max_train: int | None
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """(train, validation) from a seeded permutation of ``train``; ``val_size`` 0 carves none; ``max_train``
    caps the training rows (taken from the permuted rest, so a cap is still a random sample)."""
    order = np.random.default_rng(seed).permutation(len(train))
    rest = order[val_size:] if max_train is None else order[val_size : val_size + max_train]
    # Sorted indices read the arrow file in order; the batch order is shuffled later anyway.
    key = (train._fingerprint, seed, val_size, max_train)
    kept = train.select(np.sort(rest), new_fingerprint=_digest(*key, "train"))
    val = train.select(np.sort(order[:val_size]), new_fingerprint=_digest(*key, "val")) if val_size else None
    return kept, val


def to_split(table: datasets.Dataset, keys: list[str], pad_id: int, side: str, multiple: int) -> tuple[DictSplit, int]:
    """A tokenised ``table`` as a ``DictSplit`` (flat int32 arrays, no Python lists per row), and how many of its
    rows were truncated."""
    arrow = table.with_format("arrow")[:]
    columns = {}
    for key in keys:
        lists = arrow.column(key).combine_chunks()
        offsets = lists.offsets.to_numpy().astype(np.int64)
        values = lists.values.to_numpy()[offsets[0] : offsets[-1]]  # a sliced list array shares the full child
        columns[key] = Ragged(np.ascontiguousarray(values, dtype=np.int32), offsets - offsets[0])
    target = arrow.column("target").to_numpy() if "target" in arrow.column_names else None
    truncated = int(np.count_nonzero(arrow.column("truncated").to_numpy()))
    return DictSplit(columns, target, pad_id=pad_id, side=side, multiple=multiple), truncated


def fitting_val_size(task: TextTask, val_size: int, train_rows: int, given: bool) -> int:
    """The validation rows to carve from ``train_rows``: ``val_size`` when it leaves training rows. The task's
    default (``given`` False) shrinks to a tenth of a smaller local folder, with a warning; a size the user gave
    that does not fit is a ConfigError with the exact override that would."""
    if val_size < train_rows:
        return val_size
    fits = max(1, train_rows // 10)
    if train_rows < 2:
        raise DataError(
            f"{task.name}'s training split has {train_rows} usable row(s): a validation split cannot be carved from "
            f"it; add training rows"
        )
    if given:
        raise ConfigError(
            f"task.data.val_size must be below the {train_rows} training rows of {task.name}, got {val_size}: "
            f"set task.data.val_size={fits} (a tenth), or another value below {train_rows}"
        )
    log.warning(
        "%s: the default validation size (%d rows) is not below the %d training rows; carving %d (a tenth) instead "
        "(set task.data.val_size to choose)",
        task.name,
        val_size,
        train_rows,
        fits,
    )
    return fits


def _stats(lengths: np.ndarray) -> dict[str, float]:
    """Tokens per training example after truncation (summed over a pair): what max_length and batching see."""
    if len(lengths) == 0:
        return {}
    return {"mean": float(lengths.mean()), "p95": float(np.percentile(lengths, 95)), "max": int(lengths.max())}


def load_text_task(
    dataset: str,
    cache_dir: str | Path,
    path: str | Path | None = None,
    vocab_size: int = 16_000,
    lowercase: bool = True,
    tokenizer: str | None = None,
    max_length: int | None = None,
    truncation: str = "end",
    val_size: int | None = None,
    split_seed: int = 0,
    max_train: int | None = None,
    pad_side: str = "left",
    pad_multiple: int = 8,
    unsupervised: bool = False,
    num_proc: int | None = None,
    train_split: str | None = None,
) -> TextSplits:
    """Tokenised train / val / test ``DictSplit``s of ``dataset`` (``imdb``, ``qqp``, ``snli``) and their ``info``.

    ``tokenizer`` None trains byte-level BPE (``vocab_size``, ``lowercase``) on the training split, cached under
    ``cache_dir/tokenizers``; a name loads that pretrained tokenizer. ``max_length`` None is the task's default (IMDB
    512, QQP / SNLI 128); ``truncation`` keeps the ``end`` or the ``start`` of longer texts. ``val_size`` None is
    the task's default (SNLI has its own validation split and takes none). ``unsupervised`` (IMDB) adds the 50,000
    unlabelled reviews as ``extra["unsupervised"]``. ``train_split`` names the split that trains when it is not the
    task's own (e.g. ``validation`` for a folder that holds only SNLI's validation and test pairs): the validation
    rows (``val_size``, required then) are carved from it, and the test split is never one that trains. Every
    argument is checked before any data is read.
    """
    task = with_train_split(resolve_task(dataset), train_split, val_size)
    length = task.max_length if max_length is None else check_int("task.data.max_length", max_length, 1, "tokens")
    if truncation not in tokenize.KEEP:
        raise ConfigError(f"task.data.truncation must be one of {tokenize.KEEP} (the part kept), got {truncation!r}")
    if pad_side not in ("left", "right"):
        raise ConfigError(f"task.data.pad_side must be left or right, got {pad_side!r}")
    check_int("task.data.pad_multiple", pad_multiple, 1, "padded lengths are a multiple of it")
    check_int("task.data.split_seed", split_seed, 0, "the seed of the validation split")
    if max_train is not None and not (is_int(max_train) and max_train > 0):
        raise ConfigError(f"task.data.max_train must be null or a positive integer, got {max_train!r}")
    if task.val is not None and val_size is not None:
        raise ConfigError(f"task.data.val_size must be null for {task.name}: it has its own {task.val!r} split")
    carved = task.val_size if val_size is None else check_int("task.data.val_size", val_size, 1, "validation rows")
    if unsupervised and task.name != "imdb":
        raise ConfigError(f"task.data.unsupervised is for imdb only, not {task.name}")
    settings = tokenize.TokenizerSettings(vocab_size, lowercase, html_breaks_to_spaces=task.html_breaks)
    fix = "set data_dir (or task.data.cache_dir) to a folder; it is created if missing"
    cache = data_folder(cache_dir, "task.data.cache_dir", "a folder", fix)
    # A named tokenizer is loaded first: a missing one fails now, not after minutes of data loading.
    pretrained = None if tokenizer is None else tokenize.pretrained_tokenizer(tokenizer)
    extra_splits = ("unsupervised",) if unsupervised else ()
    wanted = tuple(dict.fromkeys(s for s in (task.train, task.val, task.test, *extra_splits) if s))
    raw = load_raw(task.name, cache, path, wanted)
    tables, dropped = {}, {}
    for role, source in (("train", task.train), ("val", task.val), ("test", task.test)):
        if source is not None:
            tables[role], dropped[role] = clean(raw[source], task, source, labelled=True)
    if task.val is None:
        carved = fitting_val_size(task, carved, len(tables["train"]), given=val_size is not None)
        tables["train"], tables["val"] = carve(tables["train"], carved, split_seed, max_train)
    elif max_train is not None:
        tables["train"], _ = carve(tables["train"], 0, split_seed, max_train)
    if unsupervised:
        tables["unsupervised"], dropped["unsupervised"] = clean(raw["unsupervised"], task, "unsupervised", False)
    if pretrained is None:
        fast, file = tokenize.trained_tokenizer(tables["train"], task.texts, settings, task.hub_id, cache)
    else:
        fast, file = pretrained, None
    pad = tokenize.pad_id(fast)
    keys = list(task.keys.values())
    splits, truncated = {}, {}
    for role in ("train", "val", "test", *extra_splits):
        label = task.label if role != "unsupervised" else None
        encoded = tokenize.encode(tables[role], fast, task.keys, label, length, truncation, num_proc)
        splits[role], truncated[role] = to_split(encoded, keys, pad, pad_side, pad_multiple)
    lengths = splits["train"].lengths
    info = {
        "task": task.name,
        "dataset": task.hub_id if path is None else local_name(path, task.hub_id),
        **({} if path is None else {"path": str(Path(path).expanduser().resolve())}),
        "config": task.config,
        "num_classes": task.num_classes,
        "vocab_size": len(fast),
        "pad_id": pad,
        "keys": keys,
        "max_length": length,
        "truncation": truncation,
        "pad_side": pad_side,
        "pad_multiple": pad_multiple,
        "tokenizer": tokenizer or (str(Path(file).resolve()) if file else "trained (not cached)"),
        "split_sizes": {role: len(split) for role, split in splits.items()},
        "sources": {
            "train": task.train,
            "val": task.val or f"{task.train} (seeded, seed={split_seed})",
            "test": task.test,
        },
        "truncated": truncated,
        "dropped_empty": {role: counts["empty"] for role, counts in dropped.items()},
        "dropped_no_label": {role: counts["no_label"] for role, counts in dropped.items()},
        "train_tokens": _stats(lengths),
    }
    extra = {"unsupervised": splits.pop("unsupervised")} if unsupervised else {}
    return TextSplits(splits["train"], splits["val"], splits["test"], info=info, extra=extra)
