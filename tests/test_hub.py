"""plmu.hub: a trained run saved in the Hugging Face layout and loaded back in one call, offline (issue 18)."""

import json

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, compose_config

from plmu.errors import CheckpointError
from plmu.hub import PlmuModel
from plmu.runs import load_run
from plmu.train.run import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    cfg = compose_config([*TINY_MACKEY_GLASS, "trainer.max_epochs=2", f"data_dir={root / 'data'}"])
    train(cfg, root / "run")
    return root / "run"


def test_a_run_round_trips_through_a_local_folder(trained, tmp_path):
    saved = PlmuModel.from_run(trained)
    saved.save_pretrained(tmp_path / "hf")
    names = {path.name for path in (tmp_path / "hf").iterdir()}
    assert {"model.safetensors", "run_config.yaml", "model_args.json", "results.json", "README.md"} <= names
    brief = json.loads((tmp_path / "hf" / "config.json").read_text())  # the mixin's config: the model in brief
    assert brief == {
        "library": "plmu",
        "task": "mackey_glass",
        "model": "plmu",
        "builder": "plmu.models.sequence_model",
    }
    loaded = PlmuModel.from_pretrained(str(tmp_path / "hf"))
    reference = load_run(trained).model
    x = torch.randn(2, 30, 1)
    assert torch.equal(loaded.model({"inputs": x}), reference({"inputs": x}))  # the same weights, exactly
    state = loaded.model.initial_state(2)
    step, _ = loaded.model.step(x[:, 0], state)  # and it streams as an RNN
    assert step.shape == (2, 1)
    results = json.loads((trained / "results.json").read_text())
    assert loaded.results == results and loaded.config["task"]["name"] == "mackey_glass"
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "library_name: plmu" in card and f"nrmse {results['test']:.6g}" in card and results["command"] in card
    assert "# mackey_glass: parallel LMU (`model=plmu`)" in card and f"validation: {results['best_val']:.6g} " in card
    assert "http" not in card  # no link to a home the project does not have


def test_a_folder_that_is_not_a_saved_model_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match=r"is not a plmu model in the Hugging Face layout \(model.safetensors"):
        PlmuModel.from_pretrained(str(tmp_path))


def test_a_truncated_weights_file_is_one_line(trained, tmp_path):
    PlmuModel.from_run(trained).save_pretrained(tmp_path / "hf")
    weights = tmp_path / "hf" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"model.safetensors cannot be loaded into the model") as caught:
        PlmuModel.from_pretrained(str(tmp_path / "hf"))
    assert "\n" not in str(caught.value)


def test_a_mistyped_path_or_an_unreachable_repository_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model_id in (str(tmp_path / "no-such-folder"), "someone/no-such-plmu-model"):
        with pytest.raises(CheckpointError, match=r"is neither a folder here nor a Hub repository") as caught:
            PlmuModel.from_pretrained(model_id)
        assert str(caught.value).startswith(model_id) and "\n" not in str(caught.value)


def test_a_torn_config_file_is_one_line(trained, tmp_path):
    PlmuModel.from_run(trained).save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "model_args.json").write_text('{"input_size": ')
    with pytest.raises(CheckpointError, match=r"run_config.yaml or model_args.json cannot be read"):
        PlmuModel.from_pretrained(str(tmp_path / "hf"))
