"""text8: files of its form read, checked and split; no download offline."""

import zipfile

import numpy as np
import pytest

from plmu.data.text8 import ALPHABET, decode, encode, text8
from plmu.errors import ConfigError, DataError

TEXT = ("the quick brown fox jumps over the lazy dog " * 50).strip()


def test_encode_decode_round_trip_and_ids():
    ids = encode(TEXT)
    assert ids.dtype == np.uint8 and ids.max() < 27 and decode(ids) == TEXT
    assert encode(" az").tolist() == [0, 1, 26] and len(ALPHABET) == 27


def test_a_foreign_character_is_named_with_its_position():
    with pytest.raises(DataError, match=r"character 4 is b'Q'.*wikipedia_as_text8"):
        encode("abc Qdef")


@pytest.mark.parametrize("as_zip", [False, True])
def test_reads_text_or_zip_and_splits_by_fraction(tmp_path, as_zip):
    path = tmp_path / "text8.txt"
    path.write_text(TEXT)
    if as_zip:
        path = tmp_path / "text8.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("text8", TEXT)
    data = text8(tmp_path, path=str(path), chunk_length=16, expected_characters=None)
    n = len(TEXT)
    sizes = data.info["characters"]
    assert sizes["train"] == round(0.9 * n) and sum(sizes.values()) == n
    assert data.info["vocab_size"] == 27 and data.info["alphabet"] == ALPHABET
    joined = np.concatenate([data.train.tokens, data.val.tokens, data.test.tokens])
    assert decode(joined) == TEXT  # contiguous, in order, nothing lost


def test_wrong_size_truncated_zip_and_bad_split_are_one_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    with pytest.raises(DataError, match=r"holds 2,199 characters, expected 100,000,000") as caught:
        text8(tmp_path, path=str(path))
    # a user's own file: not "delete it" (issue 18) but how to train on it
    assert str(caught.value).endswith(
        "another text than text8: set task.data.expected_characters=null to train on it as it is"
    )
    broken = tmp_path / "text8.zip"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="re-run to download it again"):
        text8(tmp_path, path=str(broken), expected_characters=None)
    with pytest.raises(ConfigError, match=r"task\.data\.split must be three positive fractions"):
        text8(tmp_path, path=str(path), split=[0.5, 0.5], expected_characters=None)


def test_offline_without_the_file_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"text8 is not in .*text8 and this run is offline.*text8.zip"):
        text8(tmp_path)
    assert not (tmp_path / "text8").exists()  # nothing created


def test_a_negative_character_limit_is_refused_not_sliced(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    with pytest.raises(ValueError, match="max_characters"):
        text8(tmp_path, path=str(path), expected_characters=None, max_characters=-5)
