import json
import logging
import time

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from text_fixtures import (
    IMDB_FEATURES,
    SNLI_FEATURES,
    imdb_columns,
    inference_pairs,
    write_imdb,
    write_parquet,
    write_qqp,
    write_snli,
)

from plmu.data import text
from plmu.data.text import carve, load_raw, load_text_task, resolve_task
from plmu.errors import ConfigError, DataError, DataNotFoundError

SMALL = {"vocab_size": 300}


def test_imdb_from_local_files_in_the_hub_layout(tmp_path):
    root = write_imdb(tmp_path / "imdb")
    data = load_text_task("imdb", tmp_path / "hf", path=root, val_size=20, unsupervised=True, **SMALL)
    info = data.info
    assert info["split_sizes"] == {"train": 180, "val": 20, "test": 80, "unsupervised": 40}
    assert info["num_classes"] == 2 and info["pad_id"] == 0 and info["keys"] == ["inputs"]
    assert 261 <= info["vocab_size"] <= 300 and info["max_length"] == 512 and info["truncation"] == "end"
    assert (
        info["tokenizer"].endswith("tokenizer.json")
        and info["dataset"] == "local files (imdb) in the stanfordnlp/imdb layout"
    )
    assert info["path"] == str(root.resolve())
    batch = next(data.train.batches(16, shuffle=True, seed=0))
    assert set(batch) == {"inputs", "mask", "target"}
    assert batch["inputs"].dtype == torch.long and batch["mask"].dtype == torch.bool
    assert batch["inputs"].shape[1] % 8 == 0 and batch["mask"][:, -1].all()  # left padding: last step is real
    assert (batch["inputs"][~batch["mask"]] == 0).all() and (batch["inputs"][batch["mask"]] < info["vocab_size"]).all()
    assert set(batch["target"].tolist()) <= {0, 1}
    # The hub's train file is sorted by label: a seeded split must still give both labels to validation.
    assert set(data.val.target.tolist()) == {0, 1}
    unsupervised = data.extra["unsupervised"]
    assert unsupervised.target is None and set(next(unsupervised.batches(4))) == {"inputs", "mask"}
    data.check_labels(2, key="task.output_size")


def test_qqp_tests_on_glue_validation_and_selects_on_train(tmp_path):
    root = write_qqp(tmp_path / "glue")
    data = load_text_task("qqp", tmp_path / "hf", path=root, val_size=30, **SMALL)
    assert data.info["split_sizes"] == {"train": 270, "val": 30, "test": 60}
    assert data.info["sources"]["test"] == "validation" and data.info["keys"] == ["inputs_a", "inputs_b"]
    batch = next(data.test.batches(8))
    assert set(batch) == {"inputs_a", "mask_a", "inputs_b", "mask_b", "target"}
    assert batch["mask_a"][:, -1].all() and batch["mask_b"][:, -1].all()
    assert set(data.test.target.tolist()) == {0, 1}  # GLUE validation is labelled; GLUE test (-1) is never read


def test_snli_drops_rows_without_a_gold_label(tmp_path):
    root = write_snli(tmp_path / "snli")
    data = load_text_task("snli", tmp_path / "hf", path=root, pad_side="right", pad_multiple=1, **SMALL)
    assert data.info["dropped_no_label"] == {"train": 30, "val": 5, "test": 4}
    assert data.info["split_sizes"] == {"train": 270, "val": 45, "test": 36}
    assert data.info["num_classes"] == 3 and set(data.train.target.tolist()) == {0, 1, 2}
    batch = next(data.val.batches(45))
    assert batch["mask_a"][:, 0].all()  # right padding: the first step is real
    assert batch["inputs_a"].shape[1] == int(batch["mask_a"].sum(1).max())  # multiple 1: no extra padding


def test_a_folder_without_a_training_split_is_refused_with_the_override_that_trains_on_another(tmp_path):
    root = write_snli(tmp_path / "snli")
    (root / "plain_text" / "train-00000-of-00001.parquet").unlink()  # as ../shared/data/snli: validation and test
    with pytest.raises(DataNotFoundError, match=r"no file for snli's 'train' split") as error:
        load_text_task("snli", tmp_path / "hf", path=root, **SMALL)
    message = str(error.value)
    assert "\n" not in message and "task.data.train_split=validation task.data.val_size=1000" in message


def test_snli_trains_on_its_validation_pairs_when_told_and_carves_its_own_validation(tmp_path):
    root = write_snli(tmp_path / "snli")
    (root / "plain_text" / "train-00000-of-00001.parquet").unlink()
    data = load_text_task("snli", tmp_path / "hf", path=root, train_split="validation", val_size=10, **SMALL)
    assert data.info["split_sizes"] == {"train": 35, "val": 10, "test": 36}  # 45 labelled validation pairs
    assert data.info["sources"] == {"train": "validation", "val": "validation (seeded, seed=0)", "test": "test"}
    assert data.info["dropped_no_label"] == {"train": 5, "test": 4}

    again = load_text_task("snli", tmp_path / "hf", path=root, train_split="validation", val_size=10, **SMALL)
    assert torch.equal(torch.as_tensor(again.val.target), torch.as_tensor(data.val.target))


@pytest.mark.parametrize(
    ("train_split", "val_size", "match"),
    [
        ("test", 10, r"train_split=test is snli's test split: a run never trains on the split it is tested on"),
        ("validation", None, r"train_split=validation needs task.data.val_size: .*val_size=1000"),
        ("", 10, r"train_split must be null or a split name"),
        (3, 10, r"train_split must be null or a split name"),
    ],
)
def test_bad_training_splits_are_refused_before_reading(tmp_path, train_split, val_size, match):
    with pytest.raises(ConfigError, match=match):
        load_text_task("snli", tmp_path / "hf", path=tmp_path / "nowhere", train_split=train_split, val_size=val_size)


def test_the_tasks_own_training_split_named_is_the_default(tmp_path):
    root = write_snli(tmp_path / "snli")
    named = load_text_task("snli", tmp_path / "hf", path=root, train_split="train", **SMALL)
    assert named.info["split_sizes"] == {"train": 270, "val": 45, "test": 36}


def test_split_and_tokenizer_are_deterministic_and_cached(tmp_path, monkeypatch):
    root = write_imdb(tmp_path / "imdb", n_train=300)
    first = load_text_task("imdb", tmp_path / "hf", path=root, val_size=30, **SMALL)
    calls = []
    monkeypatch.setattr(text.tokenize, "train_tokenizer", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(text.tokenize.Encoder, "__call__", lambda *a, **k: calls.append(1))
    start = time.perf_counter()
    second = load_text_task("imdb", tmp_path / "hf", path=root, val_size=30, **SMALL)
    assert calls == [] and time.perf_counter() - start < 10  # nothing trained or tokenised again
    for name in ("train", "val", "test"):
        a, b = getattr(first, name), getattr(second, name)
        assert np.array_equal(a.target, b.target) and np.array_equal(
            a.columns["inputs"].values, b.columns["inputs"].values
        )
    assert first.info == second.info


def test_carve_is_a_seeded_disjoint_split():
    table = datasets.Dataset.from_dict({"idx": list(range(100))})

    def rows(part: datasets.Dataset) -> list[int]:
        return list(part["idx"])

    train, val = carve(table, 10, seed=3, max_train=None)
    assert len(val) == 10 and sorted(rows(train) + rows(val)) == list(range(100))
    _, val_again = carve(table, 10, seed=3, max_train=None)
    assert rows(val_again) == rows(val) and rows(carve(table, 10, seed=4, max_train=None)[1]) != rows(val)
    capped, val_capped = carve(table, 10, seed=3, max_train=25)
    assert len(capped) == 25 and rows(val_capped) == rows(val) and set(rows(capped)) <= set(rows(train))


def test_max_train_caps_the_training_rows(tmp_path):
    data = load_text_task("snli", tmp_path / "hf", path=write_snli(tmp_path / "snli"), max_train=50, **SMALL)
    assert data.info["split_sizes"]["train"] == 50


def test_truncation_is_counted_and_keeps_the_chosen_end(tmp_path):
    root = write_imdb(tmp_path / "imdb")
    end = load_text_task("imdb", tmp_path / "hf", path=root, val_size=20, max_length=16, **SMALL)
    start = load_text_task("imdb", tmp_path / "hf", path=root, val_size=20, max_length=16, truncation="start", **SMALL)
    full = load_text_task("imdb", tmp_path / "hf", path=root, val_size=20, max_length=10_000, **SMALL)
    assert end.info["truncated"]["test"] > 40 and full.info["truncated"]["test"] == 0
    assert end.test.lengths.max() == 16
    row = int(np.argmax(full.test.lengths))
    ids = full.test.columns["inputs"][row].tolist()
    assert end.test.columns["inputs"][row].tolist() == ids[-16:]
    assert start.test.columns["inputs"][row].tolist() == ids[:16]


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_jsonl_and_csv_files_load_the_same_way(tmp_path, suffix):
    root = tmp_path / "flat"
    root.mkdir()
    for split, n, seed in (("train", 100, 1), ("test", 30, 2)):
        frame = pd.DataFrame(imdb_columns(n, seed))
        if suffix == "jsonl":
            frame.to_json(
                root / f"train.{suffix}" if split == "train" else root / f"test.{suffix}", orient="records", lines=True
            )
        else:
            frame.to_csv(root / f"{split}.{suffix}", index=False)
    data = load_text_task("imdb", tmp_path / "hf", path=root, val_size=10, **SMALL)
    assert data.info["split_sizes"] == {"train": 90, "val": 10, "test": 30}


def test_shards_in_two_formats_are_refused_not_half_read(tmp_path):
    """Issue 16: train.jsonl (120 rows) beside train-extra.csv (80) trained on 120 and said nothing."""
    root = tmp_path / "flat"
    root.mkdir()
    pd.DataFrame(imdb_columns(120, 1)).to_json(root / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(imdb_columns(80, 2)).to_csv(root / "train-extra.csv", index=False)
    pd.DataFrame(imdb_columns(30, 3)).to_json(root / "test.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match=r"'train' files in .* mix formats \(train-extra.csv, train.jsonl\)"):
        load_raw("imdb", tmp_path / "hf", path=root)


@pytest.mark.parametrize("task", ["imdb", "snli"])
def test_a_split_of_empty_texts_is_one_clear_line(task, tmp_path):
    """Issue 16: whitespace-only texts crashed with KeyError('Field "inputs" does not exist in schema')."""
    root = (write_imdb if task == "imdb" else write_snli)(tmp_path / task)
    test_file = next(root.rglob("test-*.parquet"))
    frame = pd.read_parquet(test_file)
    for column in ("text", "premise", "hypothesis"):
        if column in frame:
            frame[column] = "   "
    frame.to_parquet(test_file)
    with pytest.raises(DataError, match=rf"^{task}'s 'test' split has no usable row: {len(frame)} row\(s\), "):
        load_text_task(task, tmp_path / "hf", path=root, **({"val_size": 20} if task == "imdb" else {}), **SMALL)


def test_offline_without_a_cache_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError) as error:
        load_text_task("imdb", tmp_path / "hf", **SMALL)
    assert time.perf_counter() - start < 30
    message = str(error.value)
    assert "\n" not in message and "stanfordnlp/imdb" in message and str(tmp_path / "hf") in message
    assert "task.data.path" in message and "run once online" in message


def test_unknown_dataset_and_bad_arguments_fail_before_reading(tmp_path):
    with pytest.raises(ConfigError, match=r"task.data.dataset must be one of"):
        load_text_task("sst2", tmp_path / "hf")
    assert resolve_task("stanfordnlp/imdb").name == "imdb"
    bad = [
        ({"truncation": "middle"}, "truncation"),
        ({"pad_side": "up"}, "pad_side"),
        ({"max_length": 0}, "max_length"),
        ({"vocab_size": 10}, "vocab_size"),
        ({"max_train": 0}, "max_train"),
        ({"unsupervised": True}, "unsupervised"),
        ({"val_size": 5}, "val_size must be null for snli"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ConfigError, match=match):
            load_text_task("snli", tmp_path / "hf", path=tmp_path / "nowhere", **kwargs)


def test_val_size_must_leave_training_rows_and_the_error_gives_the_override(tmp_path):
    with pytest.raises(
        ConfigError, match=r"val_size must be below the 200 training rows .*: set task.data.val_size=20 "
    ):
        load_text_task("imdb", tmp_path / "hf", path=write_imdb(tmp_path / "imdb"), val_size=200)


@pytest.mark.parametrize(("task", "write", "rows"), [("imdb", write_imdb, 200), ("qqp", write_qqp, 300)])
def test_a_small_local_folder_gets_a_default_validation_split_that_fits(task, write, rows, tmp_path, caplog):
    """IMDB's default carves 2,500 and QQP's 10,000: a smaller folder gets a tenth, said in the log."""
    root = write(tmp_path / task, n_train=rows)
    with caplog.at_level(logging.WARNING):
        data = load_text_task(task, tmp_path / "hf", path=root, **SMALL)
    assert data.info["split_sizes"]["val"] == rows // 10 and len(data.train) + len(data.val) == rows
    assert "carving" in caplog.text and "task.data.val_size" in caplog.text


def test_missing_folder_or_split_file(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"is not a folder"):
        load_raw("imdb", tmp_path / "hf", path=tmp_path / "nowhere")
    root = write_imdb(tmp_path / "imdb")
    (root / "plain_text" / "test-00000-of-00001.parquet").unlink()
    with pytest.raises(DataNotFoundError, match=r"no file for imdb's 'test' split") as error:
        load_raw("imdb", tmp_path / "hf", path=root)
    assert "\n" not in str(error.value)


def test_wrong_columns_name_the_missing_one_and_those_found(tmp_path):
    root = write_snli(tmp_path / "snli")
    columns = inference_pairs(20, 0)
    columns["sentence2"] = columns.pop("hypothesis")
    features = datasets.Features({k: SNLI_FEATURES[k if k != "sentence2" else "hypothesis"] for k in columns})
    write_parquet(root / "plain_text" / "train-00000-of-00001.parquet", columns, features)
    with pytest.raises(DataError, match=r"no column 'hypothesis' \(found: premise, label, sentence2\)"):
        load_text_task("snli", tmp_path / "hf", path=root, **SMALL)


def test_string_labels_are_refused(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for split in ("train", "test"):
        pd.DataFrame({"text": ["good film", "bad film"] * 10, "label": ["pos", "neg"] * 10}).to_csv(
            root / f"{split}.csv"
        )
    with pytest.raises(DataError, match=r"'label' holds (large_)?string, not integer class ids 0 to 1"):
        load_text_task("imdb", tmp_path / "hf", path=root, val_size=2, **SMALL)


def test_labels_out_of_range_are_refused(tmp_path):
    root = write_imdb(tmp_path / "imdb")
    columns = imdb_columns(30, seed=5)
    columns["label"][7] = 3
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
    write_parquet(root / "plain_text" / "test-00000-of-00001.parquet", columns, features)
    with pytest.raises(DataError, match=r"'test' split has 1 label\(s\) outside 0 to 1, e.g. 3 in row 7"):
        load_text_task("imdb", tmp_path / "hf", path=root, val_size=20, **SMALL)


def test_empty_texts_are_dropped_and_counted(tmp_path, caplog):
    root = write_imdb(tmp_path / "imdb")
    columns = imdb_columns(30, seed=5)
    columns["text"][3], columns["text"][9], columns["text"][11] = "", "   \n ", None
    write_parquet(root / "plain_text" / "test-00000-of-00001.parquet", columns, IMDB_FEATURES)
    with caplog.at_level(logging.WARNING, logger="plmu.data.text"):
        data = load_text_task("imdb", tmp_path / "hf", path=root, val_size=20, **SMALL)
    assert data.info["dropped_empty"]["test"] == 3 and len(data.test) == 27
    assert "dropped 3 row(s) with an empty text" in caplog.text


def test_corrupt_tokenizer_file_names_the_file(tmp_path):
    root = write_imdb(tmp_path / "imdb")
    data = load_text_task("imdb", tmp_path / "hf", path=root, val_size=20, **SMALL)
    path = data.info["tokenizer"]
    with open(path, "w") as file:
        file.write(json.dumps({"version": "1.0"})[:-3])
    with pytest.raises(DataError, match=r"corrupt") as error:
        load_text_task("imdb", tmp_path / "hf", path=root, val_size=20, **SMALL)
    assert path in str(error.value) and "delete it" in str(error.value)


def test_corrupt_parquet_file_names_the_file(tmp_path):
    root = write_imdb(tmp_path / "imdb")
    (root / "plain_text" / "test-00000-of-00001.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"could not read .*test-00000-of-00001.parquet"):
        load_text_task("imdb", tmp_path / "hf", path=root, val_size=20, **SMALL)


def test_hub_route_asks_for_the_hub_id_and_config_and_takes_the_splits_it_needs(tmp_path, monkeypatch):
    local = load_raw("qqp", tmp_path / "hf", path=write_qqp(tmp_path / "glue"), splits=("train", "validation", "test"))
    calls = []

    def fake_load_dataset(name, config, cache_dir):
        calls.append((name, config, cache_dir))
        return datasets.DatasetDict(local)

    monkeypatch.setattr(text.datasets, "load_dataset", fake_load_dataset)
    data = load_text_task("qqp", tmp_path / "hf", val_size=30, **SMALL)
    assert calls == [("nyu-mll/glue", "qqp", str(tmp_path / "hf"))]
    assert data.info["dataset"] == "nyu-mll/glue" and data.info["split_sizes"]["test"] == 60
    monkeypatch.setattr(text.datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict({"train": local["train"]}))
    with pytest.raises(DataError, match=r"nyu-mll/glue \(qqp\) has no split 'validation'"):
        load_text_task("qqp", tmp_path / "hf", val_size=30, **SMALL)
