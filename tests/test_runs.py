"""plmu.load_run: a trained run folder as a model, its config and its data record (issue 17's trained-run library)."""

import json

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, compose_config

import plmu
from plmu.errors import CheckpointError, ConfigError, PlmuError
from plmu.train import checkpoint
from plmu.train.run import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "mackey_glass"
    data = folder.parent / "data"
    train(compose_config([*TINY_MACKEY_GLASS, f"data_dir={data}", "trainer.max_epochs=2", "logger=none"]), folder)
    return folder


def test_load_run_gives_the_best_checkpoints_model_ready_to_use(run):
    loaded = plmu.load_run(run)
    assert isinstance(loaded, plmu.TrainedRun) and not loaded.model.training
    assert loaded.checkpoint == run / "checkpoints" / "best.pt"
    assert loaded.epoch == json.loads((run / "results.json").read_text())["best_epoch"]
    assert loaded.config.task.name == "mackey_glass" and loaded.data_info["fingerprint"]
    saved = checkpoint.load(loaded.checkpoint)["model"]
    assert all(torch.equal(value, saved[name]) for name, value in loaded.model.state_dict().items())
    x = torch.randn(2, 5, 1)
    with torch.no_grad():
        parallel = loaded.model(x)
        recurrent = loaded.model.forward_recurrent(x)
    assert parallel.shape == (2, 5, 1) and torch.allclose(parallel, recurrent, atol=1e-5)


def test_last_and_a_path_and_a_device(run):
    assert plmu.load_run(run, checkpoint="last").epoch == 2
    by_path = plmu.load_run(str(run), checkpoint=str(run / "checkpoints" / "last.pt"), device=torch.device("cpu"))
    assert by_path.checkpoint == run / "checkpoints" / "last.pt"
    assert next(by_path.model.parameters()).device.type == "cpu"


def test_what_is_not_a_run_is_one_clear_error(run, tmp_path):
    with pytest.raises(ConfigError, match="does not exist: give the folder plmu-train wrote"):
        plmu.load_run(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="is not a plmu-train run"):
        plmu.load_run(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        plmu.load_run(run, checkpoint="middle")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(PlmuError, match="is not a checkpoint"):  # not even a PyTorch file (issue 27)
        plmu.load_run(run, checkpoint=str(corrupt))
