import random

import numpy as np
import pytest
import torch

from plmu.errors import CheckpointError
from plmu.train import checkpoint


def test_save_is_atomic_and_loads_back(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    checkpoint.save_atomic({"model": {"w": torch.ones(3)}, "epoch": 1}, path)
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"epoch": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic({"epoch": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_corrupt_truncated_and_foreign_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.pt"
    checkpoint.save_atomic({"epoch": 1}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match=rf"checkpoint {path} is unreadable \(corrupt or truncated"):
            checkpoint.load(path)
    with pytest.raises(CheckpointError, match="is not a plmu checkpoint"):
        checkpoint.load(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "missing.pt")


def test_mismatched_model_names_the_difference(tmp_path):
    state = torch.nn.Linear(3, 4).state_dict()
    with pytest.raises(CheckpointError, match=r"made for a different model.*size mismatch"):
        checkpoint.load_model_state(torch.nn.Linear(3, 5), state, tmp_path / "x.pt")


def test_rng_state_round_trip_through_a_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    checkpoint.save_atomic({"rng": checkpoint.rng_state()}, tmp_path / "r.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "r.pt")["rng"])
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
