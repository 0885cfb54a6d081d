import json
import time

import datasets
import pytest
from text_fixtures import IMDB_FEATURES, imdb_columns, write_parquet

from plmu.data import tokenize
from plmu.data.tokenize import Encoder, TokenizerSettings, encode, train_tokenizer, trained_tokenizer
from plmu.errors import ConfigError, DataError, DataNotFoundError

TEXTS = ["A great film, truly great.", "An awful film; awful acting.", "Great music<br /><br />and a great cast!"] * 20


def small_dataset(tmp_path, n: int = 120) -> datasets.Dataset:
    """IMDB-like rows loaded from parquet (so the dataset has cache files, as a real one does)."""
    file = write_parquet(tmp_path / "data" / "train.parquet", imdb_columns(n, seed=0), IMDB_FEATURES)
    return datasets.load_dataset("parquet", data_files=str(file), split="train", cache_dir=str(tmp_path / "hf"))


def test_trained_tokenizer_has_pad_zero_and_never_unknown():
    tokenizer = train_tokenizer(TEXTS, TokenizerSettings(vocab_size=300))
    assert tokenizer.token_to_id("[PAD]") == 0
    assert [tokenizer.token_to_id(t) for t in tokenize.SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tokenizer.get_vocab_size() <= 300
    # Byte-level: characters never seen in training (emoji, CJK, accents) still encode without [UNK].
    ids = tokenizer.encode("Zebra 😀 映画 déjà vu", add_special_tokens=False).ids
    assert ids and tokenizer.token_to_id("[UNK]") not in ids
    assert tokenizer.decode(ids).strip() == "zebra 😀 映画 déjà vu"  # lowercased, otherwise lossless


def test_lowercase_and_html_breaks_options():
    lower = train_tokenizer(TEXTS, TokenizerSettings(vocab_size=300))
    cased = train_tokenizer(TEXTS, TokenizerSettings(vocab_size=300, lowercase=False))
    assert lower.encode("GREAT").ids == lower.encode("great").ids
    assert cased.encode("GREAT").ids != cased.encode("great").ids
    html = train_tokenizer(TEXTS, TokenizerSettings(vocab_size=300, html_breaks_to_spaces=True))
    assert html.encode("great<br /><br />film").ids == html.encode("great film").ids
    assert html.encode("great <br /><br /> film").ids == html.encode("great film").ids
    assert lower.encode("great<br /><br />film").ids != lower.encode("great film").ids


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"vocab_size": 100}, "vocab_size"), ({"vocab_size": "big"}, "vocab_size"), ({"lowercase": "yes"}, "lowercase")],
)
def test_settings_are_checked(kwargs, key):
    with pytest.raises(ConfigError, match=rf"task\.data\.{key}"):
        TokenizerSettings(**kwargs)


def test_cache_path_keys_on_settings_dataset_and_texts(tmp_path):
    settings = TokenizerSettings(vocab_size=300)
    base = tokenize.cache_path(tmp_path, "stanfordnlp/imdb", settings, "abc")
    assert base == tokenize.cache_path(tmp_path, "stanfordnlp/imdb", settings, "abc")
    assert base.name == "tokenizer.json" and base.parent.name.startswith("stanfordnlp_imdb-bpe300-lower-")
    others = [
        tokenize.cache_path(tmp_path, "stanfordnlp/imdb", settings, "abd"),
        tokenize.cache_path(tmp_path, "stanfordnlp/snli", settings, "abc"),
        tokenize.cache_path(tmp_path, "stanfordnlp/imdb", TokenizerSettings(vocab_size=301), "abc"),
        tokenize.cache_path(tmp_path, "stanfordnlp/imdb", TokenizerSettings(300, lowercase=False), "abc"),
    ]
    assert len({base, *others}) == 5


def test_texts_fingerprint_is_order_and_boundary_sensitive():
    fingerprint = tokenize.texts_fingerprint
    assert fingerprint(["ab", "c"]) != fingerprint(["a", "bc"])
    assert fingerprint(["a", "b"]) != fingerprint(["b", "a"])
    assert fingerprint(["a", "b"]) == fingerprint(iter(["a", "b"]))


def test_trained_tokenizer_is_cached_and_reused(tmp_path, monkeypatch):
    data = small_dataset(tmp_path)
    settings = TokenizerSettings(vocab_size=300)
    first, path = trained_tokenizer(data, ["text"], settings, "stanfordnlp/imdb", tmp_path / "hf")
    assert path.is_file() and path.is_relative_to(tmp_path / "hf" / "tokenizers")
    assert first.pad_token_id == 0 and first.unk_token == "[UNK]"
    stamp = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been loaded")

    monkeypatch.setattr(tokenize, "train_tokenizer", no_training)
    second, again = trained_tokenizer(data, ["text"], settings, "stanfordnlp/imdb", tmp_path / "hf")
    assert again == path and path.stat().st_mtime_ns == stamp
    assert second("a great film")["input_ids"] == first("a great film")["input_ids"]
    # Other training texts (here: fewer rows) are another key, so a new tokenizer is trained.
    with pytest.raises(AssertionError, match=r"cached tokenizer"):
        trained_tokenizer(data.select(range(50)), ["text"], settings, "stanfordnlp/imdb", tmp_path / "hf")


def test_uncached_training_still_returns_a_tokenizer(tmp_path):
    tokenizer, path = trained_tokenizer(small_dataset(tmp_path), ["text"], TokenizerSettings(300), "x", None)
    assert path is None and tokenizer.pad_token_id == 0


@pytest.mark.parametrize("content", ['{"version": "1.0", "trunc', "", "not json at all"])
def test_corrupt_tokenizer_file_is_a_clear_error_and_deleting_it_retrains(tmp_path, content):
    data = small_dataset(tmp_path)
    settings = TokenizerSettings(vocab_size=300)
    _, path = trained_tokenizer(data, ["text"], settings, "stanfordnlp/imdb", tmp_path / "hf")
    path.write_text(content)
    with pytest.raises(DataError, match=r"corrupt") as error:
        trained_tokenizer(data, ["text"], settings, "stanfordnlp/imdb", tmp_path / "hf")
    message = str(error.value)
    assert str(path) in message and "delete it" in message and "\n" not in message
    path.unlink()
    tokenizer, again = trained_tokenizer(data, ["text"], settings, "stanfordnlp/imdb", tmp_path / "hf")
    assert again == path and tokenizer.pad_token_id == 0


def test_tokenizer_file_without_pad_zero_is_refused(tmp_path):
    data = small_dataset(tmp_path)
    _, path = trained_tokenizer(data, ["text"], TokenizerSettings(300), "x", tmp_path / "hf")
    spec = json.loads(path.read_text())
    vocab = spec["model"]["vocab"]
    vocab["[PAD]"], vocab["[UNK]"] = vocab["[UNK]"], vocab["[PAD]"]
    for token in spec["added_tokens"]:
        token["id"] = vocab[token["content"]]
    path.write_text(json.dumps(spec))
    with pytest.raises(DataError, match=r"does not have \[PAD\] as token 0"):
        tokenize.load_tokenizer_file(path)


def test_pretrained_tokenizer_offline_and_uncached_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as error:
        tokenize.pretrained_tokenizer("plmu-test/no-such-tokenizer")
    message = str(error.value)
    assert "\n" not in message and "plmu-test/no-such-tokenizer" in message and "offline" in message
    with pytest.raises(ConfigError, match=r"task.data.tokenizer"):
        tokenize.pretrained_tokenizer("")


def test_pretrained_tokenizer_from_a_local_folder(tmp_path):
    tokenizer, _ = trained_tokenizer(small_dataset(tmp_path), ["text"], TokenizerSettings(300), "x", tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "saved")
    loaded = tokenize.pretrained_tokenizer(str(tmp_path / "saved"))
    assert loaded("a great film")["input_ids"] == tokenizer("a great film")["input_ids"]
    assert tokenize.pad_id(loaded) == 0


def test_encoder_truncates_keeping_the_chosen_end():
    tokenizer, _ = trained_tokenizer_in_memory()
    full = Encoder(tokenizer, {"text": "inputs"}, "label", 10_000, "end")({"text": TEXTS[:1], "label": [1]})
    ids = full["inputs"][0]
    assert len(ids) > 4 and full["truncated"] == [False] and full["target"] == [1]
    end = Encoder(tokenizer, {"text": "inputs"}, None, 4, "end")({"text": TEXTS[:1]})
    start = Encoder(tokenizer, {"text": "inputs"}, None, 4, "start")({"text": TEXTS[:1]})
    assert end["inputs"][0] == ids[-4:] and start["inputs"][0] == ids[:4]
    assert end["truncated"] == start["truncated"] == [True] and "target" not in end


def test_encoder_turns_an_empty_encoding_into_unknown():
    tokenizer, _ = trained_tokenizer_in_memory()
    out = Encoder(tokenizer, {"q1": "inputs_a", "q2": "inputs_b"}, None, 8, "end")({"q1": ["", None], "q2": ["x", "y"]})
    assert out["inputs_a"] == [[1], [1]] and len(out["inputs_b"]) == 2


def trained_tokenizer_in_memory():
    data = datasets.Dataset.from_dict({"text": TEXTS})
    return trained_tokenizer(data, ["text"], TokenizerSettings(300), "x", None)


def test_encode_is_cached_by_datasets(tmp_path, monkeypatch):
    data = small_dataset(tmp_path, n=400)
    tokenizer, _ = trained_tokenizer(data, ["text"], TokenizerSettings(300), "x", tmp_path / "hf")
    first = encode(data, tokenizer, {"text": "inputs"}, "label", 32, "end")
    assert first.column_names == ["inputs", "truncated", "target"]
    assert first.features["inputs"] == datasets.List(datasets.Value("int32"))
    assert max(map(len, first["inputs"])) <= 32 and any(first["truncated"])
    calls = []
    monkeypatch.setattr(Encoder, "__call__", lambda self, batch: calls.append(1))
    start = time.perf_counter()
    second = encode(data, tokenizer, {"text": "inputs"}, "label", 32, "end")
    assert calls == [] and second["inputs"] == first["inputs"]  # read from the arrow cache, not tokenised again
    assert second.cache_files == first.cache_files and time.perf_counter() - start < 5
    with pytest.raises(ConfigError, match=r"truncation"):
        encode(data, tokenizer, {"text": "inputs"}, "label", 32, "middle")
    with pytest.raises(ConfigError, match=r"max_length"):
        encode(data, tokenizer, {"text": "inputs"}, "label", 0, "end")
