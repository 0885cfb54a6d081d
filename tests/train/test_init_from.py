"""``init_from=<run folder or checkpoint>``: a new run starts from another run's weights where names and shapes
match; bad paths fail before any data is read; a resumed run does not read it again."""

import json
import os
import shutil

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, compose_config

from plmu.errors import CheckpointError, ConfigError
from plmu.train import checkpoint
from plmu.train import run as run_module
from plmu.train.run import train
from plmu.train.trainer import Trainer


def config(tmp_path, *extra):
    return compose_config([*TINY_MACKEY_GLASS, f"data_dir={tmp_path / 'data'}", "trainer.max_epochs=1", *extra])


@pytest.fixture
def source(tmp_path):
    """A finished run to start from."""
    train(config(tmp_path), tmp_path / "source")
    return tmp_path / "source"


def starting_weights(monkeypatch) -> dict:
    """Capture the model's weights when training would start (fit is skipped)."""
    captured = {}

    def fit(self):  # on the CPU, to compare with the checkpoint's tensors (the model may be on a GPU)
        captured.update({k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()})
        return float("nan")

    monkeypatch.setattr(Trainer, "fit", fit)
    return captured


def test_a_run_starts_from_the_weights_of_another_runs_best_checkpoint(tmp_path, source, monkeypatch):
    weights = starting_weights(monkeypatch)
    results = train(config(tmp_path, f"init_from={source}"), tmp_path / "run")
    best = checkpoint.load(source / "checkpoints" / "best.pt")["model"]
    assert weights.keys() == best.keys()
    assert all(torch.equal(weights[k], best[k]) for k in best)
    assert results["init_from"] == os.path.relpath(source / "checkpoints" / "best.pt", tmp_path / "run")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["init_from"] == results["init_from"]
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"init_from {source / 'checkpoints' / 'best.pt'}: loaded {len(best)} tensors; 0 new" in log


def test_training_from_init_from_is_a_new_run_not_a_resume(tmp_path, source):
    results = train(config(tmp_path, f"init_from={source}/checkpoints/last.pt", "trainer.max_epochs=2"), tmp_path / "b")
    assert results["epochs"] == 2 and results["resumed_from"] is None
    assert [json.loads(line)["epoch"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    optimizer = checkpoint.load(tmp_path / "b" / "checkpoints" / "last.pt")["optimizer"]
    assert all(state["step"] == 2 for state in optimizer["state"].values())  # Adam started afresh: 2 steps, not 3


def test_a_model_of_another_size_takes_what_fits(tmp_path, source, monkeypatch):
    weights = starting_weights(monkeypatch)
    train(config(tmp_path, f"init_from={source}", "model.hidden_size=9"), tmp_path / "run")
    best = checkpoint.load(source / "checkpoints" / "best.pt")["model"]
    same = [k for k in best if best[k].shape == weights[k].shape]
    assert same and len(same) < len(best)
    assert all(torch.equal(weights[k], best[k]) for k in same)
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"loaded {len(same)} tensors; 0 new (not in the checkpoint), {len(best) - len(same)} skipped" in log


def test_a_checkpoint_with_nothing_that_fits_is_refused(tmp_path):
    foreign = tmp_path / "foreign.pt"
    model = {"encoder.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(2)}
    checkpoint.save_atomic({"model": model, "config": {"model": {"_target_": "some.other_model"}}}, foreign)
    with pytest.raises(ConfigError) as caught:
        train(config(tmp_path, f"init_from={foreign}"), tmp_path / "run")
    assert str(caught.value) == (
        f"init_from='{foreign}': none of its 2 tensors fits this model by name and shape (it holds a "
        f"some.other_model model: encoder.weight (3, 3), decoder.bias (2,)); give a checkpoint of a model that "
        f"shares layers with this one, or init_from=null"
    )
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize("kind", ["missing", "corrupt", "empty folder"])
def test_a_bad_init_from_fails_before_data_in_one_line(tmp_path, monkeypatch, kind):
    path = tmp_path / "given"
    if kind == "corrupt":
        path.write_bytes(b"not a checkpoint")
    elif kind == "empty folder":
        path.mkdir()
    monkeypatch.setattr(run_module, "load_data", lambda cfg: pytest.fail("data was loaded"))
    message = {
        "missing": rf"^init_from='{path}': no checkpoint at {path}",
        "corrupt": rf"^init_from='{path}': {path} is not a checkpoint",
        "empty folder": rf"^init_from='{path}': {path} is a folder without checkpoints/best.pt",
    }[kind]
    with pytest.raises(CheckpointError, match=message) as caught:
        train(config(tmp_path, f"init_from={path}"), tmp_path / "run")
    assert "\n" not in str(caught.value)


def test_a_resumed_run_does_not_read_init_from_again(tmp_path, source, monkeypatch):
    cfg = config(tmp_path, f"init_from={source}", "trainer.max_epochs=2")
    original = Trainer._train_epoch

    def killed_in_epoch_2(self, epoch, bar):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, bar)

    monkeypatch.setattr(Trainer, "_train_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run")
    monkeypatch.undo()
    shutil.rmtree(source)  # gone: the resume needs only the run's own last.pt
    results = train(cfg, tmp_path / "run")
    assert results["epochs"] == 2
    first = os.path.relpath(source / "checkpoints" / "best.pt", tmp_path / "run")
    assert results["init_from"] == first  # recorded by the first attempt
    assert "is not read again" in (tmp_path / "run" / "train.log").read_text()


def test_a_source_of_another_vocabulary_is_refused_before_its_rows_load(tmp_path, source, monkeypatch):
    info = json.loads((source / "data_info.json").read_text())
    (source / "data_info.json").write_text(json.dumps({**info, "alphabet": " abc"}))
    real_load_data = run_module.load_data

    def load_data(cfg):  # this run's data: the same shapes, another alphabet
        data = real_load_data(cfg)
        data.info["alphabet"] = " abd"
        return data

    monkeypatch.setattr(run_module, "load_data", load_data)
    monkeypatch.setattr(checkpoint, "load_matching", lambda *a: pytest.fail("weights were loaded"))
    with pytest.raises(ConfigError, match=r"was trained with another alphabet \(' abc', this run: ' abd'\)"):
        train(config(tmp_path, f"init_from={source}"), tmp_path / "run")


def test_one_tokenizer_cached_in_two_places_is_the_same_vocabulary(tmp_path):
    first, second, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    first.write_text('{"vocab": {"a": 0}}')
    second.write_text('{"vocab": {"a": 0}}')
    other.write_text('{"vocab": {"b": 0}}')
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "data_info.json").write_text(json.dumps({"tokenizer": str(first)}))
    run_module.check_same_vocabulary(run / "checkpoints" / "best.pt", {"tokenizer": str(second)})
    with pytest.raises(ConfigError, match=r"another tokenizer"):
        run_module.check_same_vocabulary(run / "checkpoints" / "best.pt", {"tokenizer": str(other)})
    run_module.check_same_vocabulary(tmp_path / "bare.pt", {"tokenizer": str(other)})  # nothing to compare: logged
