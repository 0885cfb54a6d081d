"""The IMDB pre-training corpus (plmu.data.imdb_lm): one [SEP]-joined stream in the IMDB classifier's tokens."""

import itertools
import json
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
from text_fixtures import imdb_columns, write_imdb, write_parquet

from plmu.data import tokenize
from plmu.data.imdb_lm import imdb_lm
from plmu.data.text import load_text_task
from plmu.errors import ConfigError, DataError, DataNotFoundError

SMALL = {"vocab_size": 300, "val_size": 20}


@pytest.fixture(scope="module")
def imdb(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return write_imdb(root / "imdb"), root / "hf"


def _documents(data, separator: int) -> list[list[int]]:
    stream = np.concatenate([data.val.tokens, data.test.tokens, data.train.tokens]).astype(np.int64)
    cuts = np.flatnonzero(stream == separator)
    return [stream[a + 1 : b].tolist() for a, b in itertools.pairwise(cuts) if b > a + 1]


def test_unsupervised_reviews_as_one_stream_in_the_classifiers_tokens(imdb):
    root, cache = imdb
    data = imdb_lm(cache, path=root, chunk_length=16, **SMALL)
    info = data.info
    classifier = load_text_task("imdb", cache, path=root, **SMALL)
    assert info["tokenizer"] == classifier.info["tokenizer"] and info["vocab_size"] == classifier.info["vocab_size"]
    assert info["documents"] == {"val": 1, "test": 1, "train": 38} and info["corpus"] == "unsupervised"
    separator = info["separator_id"]
    assert separator == 3  # [SEP]: reserved, never in a classifier's sequence
    for split in (data.train, data.val, data.test):
        assert split.tokens[0] == separator and split.tokens[-1] == separator
        assert split.tokens.max() < info["vocab_size"] and split.vocab_size == info["vocab_size"]
    assert sum(int((s.tokens == separator).sum()) for s in (data.train, data.val, data.test)) == 40 + 3
    # Every unlabelled review once, whole (no truncation), encoded exactly as the classifier's encoder does.
    tokenizer = tokenize.load_tokenizer_file(Path(info["tokenizer"]))
    texts = datasets.Dataset.from_dict(imdb_columns(40, 3, labelled=False, sort=False)).select_columns(["text"])
    expected = tokenize.encode(texts, tokenizer, {"text": "inputs"}, None, 10**6)["inputs"]
    assert sorted(map(tuple, _documents(data, separator))) == sorted(map(tuple, expected))
    batch = next(data.train.batches(4))
    assert batch["inputs"].shape == (4, 16) and (batch["target"][:, :-1] == batch["inputs"][:, 1:]).all()


def test_the_training_reviews_as_the_corpus_leave_the_validation_rows_out(imdb):
    root, cache = imdb
    data = imdb_lm(cache, path=root, corpus="train", chunk_length=8, **SMALL)
    assert sum(data.info["documents"].values()) == 180  # 200 train rows less the 20 the classifier validates on
    classifier = load_text_task("imdb", cache, path=root, **SMALL)
    documents = {tuple(d) for d in _documents(data, data.info["separator_id"])}
    validation = {tuple(row) for row in _rows(classifier.val)}
    assert not documents & validation and {tuple(row) for row in _rows(classifier.train)} == documents
    both = imdb_lm(cache, path=root, corpus="train+unsupervised", chunk_length=8, **SMALL)
    assert sum(both.info["documents"].values()) == 220


def _rows(split) -> list[list[int]]:
    """The token ids of every row of a classifier's DictSplit (one text column)."""
    column = split.columns["inputs"]
    return [column.values[a:b].tolist() for a, b in itertools.pairwise(column.offsets)]


def test_amazon_reviews_from_local_files_join_title_and_text(imdb, tmp_path):
    root, cache = imdb
    features = datasets.Features(
        {
            "label": datasets.ClassLabel(names=["negative", "positive"]),
            "title": datasets.Value("string"),
            "content": datasets.Value("string"),
        }
    )
    rows = {"label": [1, 0, 1] * 10, "title": ["Great CD", "Bad!", ""] * 10, "content": ["Lovely songs."] * 30}
    write_parquet(tmp_path / "amazon" / "amazon_polarity" / "train-00000-of-00001.parquet", rows, features)
    data = imdb_lm(cache, path=root, corpus="amazon_polarity", corpus_path=tmp_path / "amazon", **SMALL)
    assert sum(data.info["documents"].values()) == 30 and data.info["corpus"] == "fancyzhx/amazon_polarity (train)"
    tokenizer = tokenize.load_tokenizer_file(Path(data.info["tokenizer"]))
    texts = {tokenizer.decode(d).strip() for d in _documents(data, data.info["separator_id"])}
    assert texts == {"great cd. lovely songs.", "bad! lovely songs.", "lovely songs."}


def test_bad_arguments_are_one_line_before_reading(imdb, tmp_path):
    root, cache = imdb
    cases = [
        ({"corpus": "wikipedia"}, ConfigError, "task.data.corpus must be one of"),
        ({"split": [0.5, 0.5]}, ConfigError, "task.data.split must be three positive fractions"),
        ({"corpus_path": str(tmp_path)}, ConfigError, "corpus_path is for corpus=amazon_polarity"),
        ({"max_documents": 0}, ConfigError, "max_documents must be null or a positive integer"),
        ({"max_documents": 2}, DataError, "too few for train, val and test"),
        ({"corpus": "amazon_polarity", "corpus_path": str(tmp_path)}, DataNotFoundError, "amazon_polarity's 'train'"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            imdb_lm(cache, path=root, **{**SMALL, **kwargs})


def test_offline_without_a_cache_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError) as error:
        imdb_lm(tmp_path / "hf", **SMALL)
    assert time.perf_counter() - start < 30
    message = str(error.value)
    assert "\n" not in message and "stanfordnlp/imdb" in message and "task.data.path" in message
    assert "run once online" in message


def test_pretrain_then_fine_tune_through_plmu_train(imdb, tmp_path):
    """task=imdb_lm trains the language model with its state carried; experiment=imdb_finetune init_from=<that run>
    loads its embedding and backbone (all but the head) into the IMDB classifier, with the same tokenizer."""
    import torch
    from conftest import compose_config

    from plmu.train.run import train

    root, cache = imdb
    common = [
        f"task.data.path={root}",
        "task.data.vocab_size=300",
        "task.data.val_size=20",
        f"task.data.cache_dir={cache}",
        "model.hidden_size=8",
        "model.num_layers=2",
        "model.order=4",
        "model.memory_d=2",
        "trainer.max_epochs=1",
        "logger=none",
        "trainer.progress=false",
    ]
    lm = compose_config(["task=imdb_lm", *common, "task.data.chunk_length=32", "trainer.batch_size=8"])
    assert lm.trainer.state == "carry" and lm.task.objective.metric == "perplexity"
    pretrained = train(lm, tmp_path / "lm")
    assert pretrained["metric"] == "perplexity" and pretrained["test"] > 1
    fine_tuned = train(
        compose_config(["experiment=imdb_finetune", *common, f"init_from={tmp_path / 'lm'}"]), tmp_path / "ft"
    )
    assert fine_tuned["init_from"] == "../lm/checkpoints/best.pt"  # relative to the run folder
    log = (tmp_path / "ft" / "train.log").read_text()
    assert "0 new (not in the checkpoint), 2 skipped (shape differs: head.weight, head.bias)" in log
    infos = [json.loads((tmp_path / run / "data_info.json").read_text()) for run in ("lm", "ft")]
    assert infos[0]["tokenizer"] == infos[1]["tokenizer"] and infos[0]["vocab_size"] == infos[1]["vocab_size"]
    lm_weights = torch.load(tmp_path / "lm" / "checkpoints" / "best.pt", weights_only=False)["model"]
    assert lm_weights["adapter.embedding.weight"].shape == (infos[0]["vocab_size"], 8)
