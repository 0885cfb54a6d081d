import logging
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import plmu.data.mackey_glass as mackey_glass_module
from plmu.data.mackey_glass import MackeyGlassSpec, generate, load_series, mackey_glass
from plmu.errors import ConfigError

TINY = {"n_series": 8, "steps": 40, "horizon": 5, "n_train": 2, "n_val": 2}


def test_check_value_predict_y_equals_x_is_162_400_percent(tmp_path):
    data = mackey_glass(cache_dir=tmp_path)
    x, y = data.test.x.double(), data.test.y.double()
    nrmse = ((x - y).pow(2).mean().sqrt() / y.pow(2).mean().sqrt()).item()
    assert nrmse == pytest.approx(1.62400, abs=5e-6)
    assert data.info["mean_removed"] == pytest.approx(-0.065848, abs=5e-7)
    assert (data.train.x.shape, data.val.x.shape, data.test.x.shape) == ((32, 5000, 1), (32, 5000, 1), (64, 5000, 1))
    # the target is the input 15 steps later
    np.testing.assert_array_equal(data.train.y[0, :-15].numpy(), data.train.x[0, 15:].numpy())


def test_cache_returns_the_same_series(tmp_path):
    spec = MackeyGlassSpec(n_series=2, steps=50)
    first = load_series(spec, tmp_path)
    assert len(list(tmp_path.glob("mackey_glass_*.npy"))) == 1
    np.testing.assert_array_equal(load_series(spec, tmp_path), first)
    np.testing.assert_array_equal(generate(spec), first)


def test_series_continue_from_the_previous_one():
    # The quirk: series k > 0 starts from series k − 1's last value, so series 1 differs from a fresh start.
    two = generate(MackeyGlassSpec(n_series=2, steps=30, washout=0))
    assert not np.allclose(two[1], generate(MackeyGlassSpec(n_series=1, steps=30, washout=0, seed=1))[0])


def test_split_sizes_must_fit():
    with pytest.raises(ValueError, match="n_train \\+ n_val = 70 must fit in the first half of n_series = 128"):
        mackey_glass(n_train=40, n_val=30)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("n_train", 0, r"task.data.n_train must be a positive integer \(the number of training series\), got 0"),
        ("n_val", 0, r"task.data.n_val must be a positive integer \(the number of validation series\), got 0"),
        ("n_train", -2, r"task.data.n_train must be a positive integer .*, got -2"),
        ("n_val", True, r"task.data.n_val must be a positive integer .*, got True"),
        ("steps", 0, r"task.data.steps must be a positive integer \(the time steps of each sequence\), got 0"),
        ("steps", "40", r"task.data.steps must be a positive integer .*, got '40'"),
        ("horizon", -1, r"task.data.horizon must be an integer >= 0 \(how many steps ahead the target is\), got -1"),
        ("horizon", 1.5, r"task.data.horizon must be an integer >= 0 .*, got 1.5"),
        ("n_series", 7, r"task.data.n_series must be an even integer \(the number of series: the first half trains"),
        ("n_series", 2, r"task.data.n_series must be an integer >= 4 .*, got 2"),
        ("n_series", "8", r"task.data.n_series must be an integer >= 4 .*, got '8'"),
        ("seed", -1, r"task.data.seed must be an integer from 0 to 4294967295 \(a numpy RandomState seed\), got -1"),
        ("seed", "0", r"task.data.seed must be an integer from 0 to 4294967295 .*, got '0'"),
        ("cache_dir", "", r"task.data.cache_dir must be a folder or null \(no cache\), got ''"),
        ("cache_dir", 3, r"task.data.cache_dir must be a folder or null \(no cache\), got 3"),
    ],
)
def test_bad_arguments_fail_before_anything_is_generated(key, value, message, monkeypatch):
    monkeypatch.setattr(mackey_glass_module, "generate", lambda spec: pytest.fail("generated the series"))
    with pytest.raises(ConfigError, match=message):
        mackey_glass(**{**TINY, key: value})


def test_tiny_splits_are_non_empty_and_disjoint(tmp_path):
    data = mackey_glass(cache_dir=tmp_path, **TINY)
    assert (len(data.train), len(data.val), len(data.test)) == (2, 2, 4)
    rows = [tuple(x[:, 0].tolist()) for split in (data.train, data.val, data.test) for x in split.x]
    assert len(set(rows)) == 8  # eight different series, each in one split


def test_horizon_zero_is_allowed_the_target_is_the_input(tmp_path):
    data = mackey_glass(cache_dir=tmp_path, **{**TINY, "horizon": 0})
    np.testing.assert_array_equal(data.train.y.numpy(), data.train.x.numpy())


def test_a_cache_dir_that_is_a_file_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(mackey_glass_module, "generate", lambda spec: pytest.fail("generated the series"))
    (tmp_path / "afile").write_text("")
    for cache_dir in (tmp_path / "afile", tmp_path / "afile" / "below"):
        message = rf"task.data.cache_dir='{cache_dir}': {tmp_path / 'afile'} is a file, not a folder: set"
        with pytest.raises(ConfigError, match=message):
            mackey_glass(cache_dir=cache_dir, **TINY)


SPEC = MackeyGlassSpec(n_series=2, steps=20)


def cache_file(folder: Path) -> Path:
    return next(folder.glob("mackey_glass_*.npy"))


def npz(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"")


BAD_CACHES = {  # name: how to spoil the cache file, what the warning says
    "truncated": (lambda path: path.write_bytes(path.read_bytes()[:-8]), "is unreadable"),
    "empty": (lambda path: path.write_bytes(b""), "is unreadable"),
    "garbage": (lambda path: path.write_bytes(b"not an array"), "is unreadable"),
    "a folder": (lambda path: (path.unlink(), path.mkdir()), "is unreadable"),
    "wrong shape": (lambda path: np.save(path, np.zeros((2, 3))), r"holds float64 \(2, 3\), expected finite float64"),
    "wrong dtype": (lambda path: np.save(path, np.zeros((2, 35), np.float32)), "holds float32 \\(2, 35\\)"),
    "not finite": (lambda path: np.save(path, np.full((2, 35), np.nan)), "expected finite float64 \\(2, 35\\)"),
    "an npz": (npz, "is not a .npy array"),
}


@pytest.mark.parametrize("name", BAD_CACHES)
def test_a_bad_cache_is_named_generated_again_and_replaced(name, tmp_path, caplog):
    spoil, warning = BAD_CACHES[name]
    expected = load_series(SPEC, tmp_path)
    path = cache_file(tmp_path)
    spoil(path)
    with caplog.at_level(logging.WARNING, logger=mackey_glass_module.__name__):
        series = load_series(SPEC, tmp_path)
    np.testing.assert_array_equal(series, expected)
    # one warning, naming the file and what is wrong with it (and one more when it cannot be replaced)
    assert len(caplog.records) == (2 if name == "a folder" else 1)
    message = caplog.records[0].getMessage()
    assert message.startswith(f"Mackey-Glass cache {path} ") and re.search(warning, message)
    if name != "a folder":  # a folder in its place cannot be replaced: the series are used uncached
        np.testing.assert_array_equal(np.load(path), expected)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_the_temp_file_is_unique_per_process(tmp_path, monkeypatch):
    # The old fixed temp name, taken (here by a folder, as by another run writing it): the cache is still written.
    load_series(SPEC, tmp_path)
    path = cache_file(tmp_path)
    path.unlink()
    path.with_suffix(".tmp.npy").mkdir()
    calls = []
    real = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", lambda **kwargs: calls.append(kwargs) or real(**kwargs))
    load_series(SPEC, tmp_path)
    assert path.is_file() and calls[0]["dir"] == tmp_path


def test_a_failed_write_leaves_no_temp_file_and_the_series_are_used(tmp_path, monkeypatch, caplog):
    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with caplog.at_level(logging.WARNING):
        series = load_series(SPEC, tmp_path)
    np.testing.assert_array_equal(series, generate(SPEC))
    assert list(tmp_path.iterdir()) == []
    assert f"cannot write the Mackey-Glass cache {tmp_path}/mackey_glass_" in caplog.text


def test_a_cache_dir_that_cannot_be_written_costs_a_warning(tmp_path, monkeypatch, caplog):
    def denied(**kwargs):
        raise PermissionError(13, "Permission denied", str(kwargs["dir"]))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with caplog.at_level(logging.WARNING):
        series = load_series(SPEC, tmp_path / "cache")
    np.testing.assert_array_equal(series, generate(SPEC))
    assert f"cannot cache the Mackey-Glass series in {tmp_path / 'cache'}" in caplog.text
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_a_really_read_only_cache_dir(tmp_path, caplog):
    load_series(SPEC, tmp_path)
    tmp_path.chmod(0o555)
    try:
        np.testing.assert_array_equal(load_series(SPEC, tmp_path), generate(SPEC))  # read: fine
        with caplog.at_level(logging.WARNING):
            other = MackeyGlassSpec(n_series=2, steps=21)
            np.testing.assert_array_equal(load_series(other, tmp_path), generate(other))  # not writable: uncached
        assert "cannot cache the Mackey-Glass series" in caplog.text
    finally:
        tmp_path.chmod(0o755)
