"""IWSLT'15 en-vi files (Stanford layout, written here): vocabularies, batches, length limits, download, bad inputs."""

import io
import urllib.error

import numpy as np
import pytest
import torch

from plmu.data import translation
from plmu.data.synthetic_translation import synthetic_en_vi, write_synthetic
from plmu.data.translation import (
    IGNORE_INDEX,
    Vocabulary,
    iwslt15_en_vi,
)
from plmu.errors import ConfigError, DataError, DataNotFoundError

SPECIALS = ["<unk>", "<s>", "</s>"]
TRAIN = [
    ("the cat sat", "con mèo ngồi"),
    ("a dog &apos;s bone", "xương của chó"),
    ("", "dòng trống"),  # an empty side: dropped from training
    ("the cat sat on the very long mat today", "con mèo ngồi trên"),  # 9 source words
    ("hello", "xin chào"),
]
TEST = [("the dog", "con chó"), ("", ""), ("zebra cat", "ngựa vằn mèo")]


def write_corpus(folder, train=TRAIN, val=TEST, test=TEST, vocab_en=None, vocab_vi=None):
    """The eight files of the Stanford layout under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, pairs in (("train", train), ("tst2012", val), ("tst2013", test)):
        (folder / f"{name}.en").write_text("".join(s + "\n" for s, _ in pairs))
        (folder / f"{name}.vi").write_text("".join(t + "\n" for _, t in pairs))
    words_en = vocab_en or ["the", "cat", "sat", "a", "dog", "&apos;s", "bone", "on", "hello"]
    words_vi = vocab_vi or ["con", "mèo", "ngồi", "chó", "của", "xương", "xin", "chào"]
    (folder / "vocab.en").write_text("\n".join([*SPECIALS, *words_en]) + "\n")
    (folder / "vocab.vi").write_text("\n".join([*SPECIALS, *words_vi]) + "\n")
    return folder


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_vocabulary_ids_and_unknown_words(tmp_path):
    data = iwslt15_en_vi(tmp_path, path=write_corpus(tmp_path / "c"))
    source, target = data.source_vocab, data.target_vocab
    assert (source.pad_id, source.unk_id, source.bos_id, source.eos_id) == (0, 1, 2, 3)  # the files' order, after <pad>
    assert source.encode(["the", "zebra"]).tolist() == [4, 1]
    assert target.decode([2, 4, 5, 3, 6]) == ["con", "mèo"]  # <s> skipped, stops at </s>
    assert data.info["vocab_size"] == len(source) == 13 and data.info["num_classes"] == len(target) == 12
    assert data.info["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}


def test_batches_hold_source_decoder_inputs_and_shifted_targets(tmp_path):
    data = iwslt15_en_vi(tmp_path, path=write_corpus(tmp_path / "c"), pad_multiple=4)
    (batch,) = data.test.batches(8)
    assert set(batch) == {"source", "source_mask", "inputs", "mask", "target", "index"}
    assert batch["source"].dtype == batch["inputs"].dtype == batch["target"].dtype == torch.long
    assert batch["source"].shape[1] % 4 == 0 and batch["inputs"].shape == batch["target"].shape
    row = batch["index"].tolist().index(0)  # "the dog" → "con chó"
    assert batch["source"][row, :3].tolist() == [4, 8, 3] and batch["source_mask"][row].sum() == 3  # + </s>
    assert batch["inputs"][row, :3].tolist() == [2, 4, 7]  # <s> con chó
    assert batch["target"][row, :4].tolist() == [4, 7, 3, IGNORE_INDEX]  # con chó </s>, then ignored
    assert batch["mask"][row].tolist()[:4] == [True, True, True, False]
    empty = batch["index"].tolist().index(1)  # an empty test line is kept: its source is </s>, its target </s>
    assert batch["source"][empty, 0] == 3 and batch["target"][empty, 0] == 3
    assert data.test.references == ["con chó", "", "ngựa vằn mèo"] and data.test.sources[2] == "zebra cat"
    assert data.info["unknown_rate"]["test"]["source"] > 0  # zebra


def test_every_pair_once_per_epoch_and_resume_by_batch(tmp_path):
    data = iwslt15_en_vi(tmp_path, path=write_synthetic(tmp_path / "s", num_train=50, num_val=5, num_test=5))
    seen = torch.cat([b["index"] for b in data.train.batches(8, shuffle=True, seed=3)])
    assert sorted(seen.tolist()) == list(range(50)) and data.train.num_batches(8) == 7
    whole = [b["index"].tolist() for b in data.train.batches(8, shuffle=True, seed=3)]
    resumed = data.train.batches(8, shuffle=True, seed=3, start_batch=2, limit=4)
    assert [b["index"].tolist() for b in resumed] == whole[2:4]
    data.check_labels(data.info["num_classes"])
    with pytest.raises(DataError, match="target vocabulary"):
        data.train.check_labels(5, split="train")


def test_training_pairs_empty_or_too_long(tmp_path, caplog):
    folder = write_corpus(tmp_path / "c")
    dropped = iwslt15_en_vi(tmp_path, path=folder, max_source_length=8)
    assert "dropped 1 training pair(s) with an empty side" in caplog.text
    assert dropped.info["dropped_empty"] == 1 and dropped.info["long_training_pairs"] == 1
    assert len(dropped.train) == 3 and len(dropped.test) == 3  # test kept whole, its empty line too
    cut = iwslt15_en_vi(tmp_path, path=folder, max_source_length=8, long_pairs="truncate")
    assert len(cut.train) == 4 and cut.train.source.lengths().max() == 8 + 1  # 8 words + </s>
    assert len(iwslt15_en_vi(tmp_path, path=folder, max_train=2).train) == 2
    with pytest.raises(ConfigError, match=r"task.data.long_pairs must be one of \['drop', 'truncate'\]"):
        iwslt15_en_vi(tmp_path, path=folder, long_pairs="cut")
    with pytest.raises(ConfigError, match=r"task\.data\.max_source_length must be a positive integer"):
        iwslt15_en_vi(tmp_path, path=folder, max_source_length=0)


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda f: (f / "train.vi").write_text("con mèo\n"), DataError,
         r"train.en has 5 lines but .*train.vi has 1: the files of a split must be line-aligned \(train.vi looks cut"),
        (lambda f: (f / "tst2013.en").write_text("\n\n\n"), DataError, r"tst2013.en has no text \(3 empty lines\)"),
        (lambda f: (f / "vocab.vi").unlink(), DataNotFoundError, r"the vocabulary .*vocab.vi is missing: put vocab.vi"),
        (lambda f: (f / "vocab.en").write_text("the\ncat\n"), DataError, r"vocab.en has no <unk>, <s>, </s>"),
        (lambda f: (f / "tst2012.vi").unlink(), DataNotFoundError, r"tst2012.vi is missing: the folder must hold"),
        (lambda f: (f / "train.en").write_bytes(b"ok\n\xff\xfe bad\n\n\n\n"), DataError,
         r"train.en is not UTF-8 text \(byte 3, line 2\)"),
    ],
)  # fmt: skip
def test_bad_files_are_one_line(tmp_path, damage, error, message):
    folder = write_corpus(tmp_path / "c")
    damage(folder)
    with pytest.raises(error, match=message) as caught:
        iwslt15_en_vi(tmp_path, path=folder)
    one_line(caught)


def test_path_must_be_a_folder_of_the_layout(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"task.data.path='.*nowhere' is not a folder") as caught:
        iwslt15_en_vi(tmp_path, path=tmp_path / "nowhere")
    one_line(caught)


def test_offline_without_the_files_says_url_folder_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as caught:
        iwslt15_en_vi(tmp_path / "data")
    message = one_line(caught)
    assert translation.URL in message and str(tmp_path / "data" / "iwslt15_en_vi") in message
    assert "task.data.path" in message and not (tmp_path / "data").exists()  # nothing created


def _serve(monkeypatch, files: dict[str, bytes]):
    """urlopen answering from ``files`` (by file name); a missing name is a URLError (offline)."""

    def urlopen(url, timeout=None):
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise urllib.error.URLError("Name or service not known")
        return io.BytesIO(files[name])

    monkeypatch.setattr(translation.urllib.request, "urlopen", urlopen)


def test_download_checks_line_counts_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from plmu.data import folders

    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("PLMU_OFFLINE", raising=False)
    monkeypatch.setattr(folders, "reachable", lambda host, timeout=3.0: True)  # the server below answers
    source = write_corpus(tmp_path / "stanford")
    files = {name: (source / name).read_bytes() for name in translation.EXPECTED_LINES}
    monkeypatch.setattr(translation, "EXPECTED_LINES", {n: b.count(b"\n") for n, b in files.items()})
    folder = tmp_path / "data" / "iwslt15_en_vi"
    _serve(monkeypatch, {**files, "train.vi": files["train.vi"][:10]})  # a cut download
    with pytest.raises(DataError, match=r"the download of .*train.vi has 1 lines, expected 5: it was cut") as caught:
        iwslt15_en_vi(tmp_path / "data")
    one_line(caught)
    assert not (folder / "train.vi").exists() and not list(folder.glob(".*part"))  # never left looking complete
    _serve(monkeypatch, files)
    data = iwslt15_en_vi(tmp_path / "data")  # the missing file now, the others kept
    assert len(data.train) == 4 and data.info["dataset"] == "IWSLT'15 en-vi (Stanford NMT)"
    (folder / "tst2013.vi").write_text("con chó\n")  # a copy cut later, or put there by hand
    with pytest.raises(DataError, match=r"tst2013.vi has 1 lines, expected 3 \(the Stanford file\).*re-run") as caught:
        iwslt15_en_vi(tmp_path / "data")
    one_line(caught)
    (folder / "tst2013.vi").unlink()
    _serve(monkeypatch, {})
    with pytest.raises(DataNotFoundError, match=r"could not be downloaded from .*tst2013.vi \(Name or service"):
        iwslt15_en_vi(tmp_path / "data")


def test_synthetic_task_reorders_renamed_words(tmp_path):
    folder = write_synthetic(tmp_path / "s", num_train=20, num_val=3, num_test=3, vocab=6, min_length=5, max_length=5)
    source = (folder / "train.en").read_text().splitlines()[0].split()
    target = (folder / "train.vi").read_text().splitlines()[0].split()
    rename = {}
    for s, t in zip([source[1], source[0], source[3], source[2], source[4]], target, strict=True):
        assert rename.setdefault(s, t) == t  # swap: 1 0 3 2 4, each word always the same target word
    assert len(set(source)) == 5
    with pytest.raises(ValueError, match="order must be one of"):
        write_synthetic(tmp_path / "x", order="shuffle")


def test_synthetic_loader_writes_once_and_vocabularies_alone(tmp_path):
    settings = {"num_train": 30, "num_val": 4, "num_test": 4, "vocab": 10, "max_length": 6}
    data = synthetic_en_vi(tmp_path, **settings, pad_multiple=1)
    (folder,) = (tmp_path / "synthetic_en_vi").iterdir()
    stamp = (folder / "train.en").stat().st_mtime_ns
    again = synthetic_en_vi(tmp_path, **settings)
    assert (folder / "train.en").stat().st_mtime_ns == stamp and again.test.references == data.test.references
    with pytest.raises(ConfigError, match="need 1 <= min_length <= max_length <= vocab"):
        synthetic_en_vi(tmp_path, vocab=3)


def test_a_word_listed_twice_keeps_its_first_id():
    vocab = Vocabulary(["<unk>", "<s>", "</s>", "a", "b", "a"])
    assert len(vocab) == 7 and vocab.encode(["a", "b"]).tolist() == [4, 5]
    assert np.array_equal(vocab.encode([]), np.array([], dtype=np.int32))
