"""The backbone registry (issue 17): one entry per family, read by the builders, the model-key check, results.json's
``model`` and the report's labels."""

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, compose_config, task_model_pairs
from omegaconf import OmegaConf

from plmu.cli import eval as eval_cli
from plmu.errors import ConfigError
from plmu.models import language_model, text_classifier, translation_model
from plmu.models.backbones import BACKBONES, backbone, build_backbone, family_label, model_family
from plmu.models.build import build_model, model_args
from plmu.train.run import train

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


# each family's required options at a toy size
OPTIONS = {"plmu": {"order": 4, "theta": 4}, "original_lmu": {"order": 4, "theta": 4}, "transformer": {"num_heads": 2}}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_each_entry_resolves_and_builds_a_streaming_backbone(name):
    entry = BACKBONES[name]
    assert entry.name == name and entry.label and all(isinstance(cls, type) for cls in entry.option_classes())
    causal = {"causal": True} if entry.bidirectional else {}
    module = entry.builder()(8, 8, 1, return_sequences=True, **OPTIONS.get(name, {}), **causal)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        out = module(x)
        step, _ = module.step(x[:, 0], module.initial_state(2))
    assert out.shape == (2, 5, 8) and torch.allclose(step, out[:, 0], atol=1e-5)


@pytest.mark.parametrize("name", [name for name, entry in BACKBONES.items() if entry.masks])
def test_every_family_that_takes_a_mask_serves_every_token_model(name):
    options = OPTIONS.get(name, {})
    ids = torch.randint(1, 20, (2, 6))
    assert text_classifier(20, 3, backbone=name, embed_dim=8, hidden_size=8, **options)(ids).shape == (2, 3)
    assert language_model(20, backbone=name, embed_dim=8, hidden_size=8, **options)(ids).shape == (2, 6, 20)
    assert translation_model(20, 20, backbone=name, embed_dim=8, hidden_size=8, **options) is not None


def test_unknown_or_maskless_families_are_refused_naming_the_choices():
    masked = [name for name, entry in BACKBONES.items() if entry.masks]  # every family but the original LMU
    assert "original_lmu" not in masked and {"plmu", "lstm", "gru", "transformer", "s4d"} <= set(masked)
    with pytest.raises(ValueError, match=re.escape(f"backbone must be one of {masked}, got 'x'")):
        build_backbone("x", 8, 8, 1)
    with pytest.raises(ValueError, match="got 'original_lmu'"):
        backbone("original_lmu", masked=True)  # no padding mask: not for token sequences
    assert backbone("original_lmu").label == "original LMU"


@pytest.mark.parametrize(
    ("model", "family", "label"),
    [
        ({"_target_": "plmu.models.plmu_model"}, "plmu", "parallel LMU"),
        ({"_target_": "plmu.models.original_lmu_model"}, "original_lmu", "original LMU"),
        ({"_target_": "plmu.models.pretrain.pretrain_model"}, "pretrain", "parallel LMU"),
        ({"_target_": "plmu.models.text_classifier", "backbone": "lstm"}, "lstm", "LSTM"),
    ],
)
def test_one_derivation_of_a_models_family_and_label(model, family, label):
    assert model_family(model) == family and family_label(family) == label


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (["task=text8", "+model.ordr=8"], "unknown key model.ordr (did you mean model.order?)"),
        (["task=iwslt15_en_vi", "+model.thta=8"], "unknown key model.thta (did you mean model.theta?)"),
        (["task=imdb", "model=transformer", "+model.num_head=2"], "unknown key model.num_head (did you mean "),
    ],
)
def test_a_token_models_backbone_options_are_known_keys(overrides, line):
    """Issue 17: text8 and IWSLT listed only the builder's own keys (no order, no theta, no "did you mean")."""
    with pytest.raises(ConfigError) as error:
        build_model(compose_config(overrides))
    assert str(error.value).startswith(line)


def task_families(task: str) -> list[str]:
    """The registered families with sizes for ``task``."""
    return [family for name, family in task_model_pairs() if name == task and family in BACKBONES]


def committed_configs() -> list[Path]:
    return sorted(EXPERIMENTS.rglob("config.yaml"))


def test_there_are_committed_runs():
    assert len(committed_configs()) >= 40


@pytest.mark.parametrize("path", committed_configs(), ids=lambda p: str(p.parent.relative_to(EXPERIMENTS)))
def test_every_committed_run_still_builds(path):
    """Each run's config (with the vocabulary and classes its data_info.json recorded) builds the same model
    family; the tensors' names and shapes are the checkpoints' (plmu-eval and load_run rebuild this way)."""
    cfg = OmegaConf.load(path)
    info_path = path.parent / "data_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    model = build_model(cfg, model_args(cfg, info))
    count = sum(p.numel() for p in model.parameters())
    results = path.parent / "results.json"
    recorded = json.loads(results.read_text()).get("parameters") if results.exists() else None
    if info_path.exists() and recorded is not None:  # older runs lack data_info.json (their vocabulary size)
        assert count == recorded
    assert count > 0


@pytest.mark.parametrize("family", task_families("mackey_glass"))
def test_every_family_trains_records_itself_and_evaluates_as_an_rnn(family, tmp_path, capsys):
    """Each registered family with Mackey-Glass sizes (conf/sizes/<family>.yaml): a short run records its family,
    and plmu-eval, one step at a time, scores what the parallel forward scored."""
    run = tmp_path / family
    overrides = [*TINY_MACKEY_GLASS, f"model={family}", f"data_dir={tmp_path / 'data'}", "trainer.max_epochs=2"]
    results = train(compose_config(overrides), run)
    assert results["model"] == family and results["test"] > 0
    capsys.readouterr()
    assert eval_cli.main([str(run), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["value"] == pytest.approx(results["test"], rel=1e-5)  # as an RNN, one step at a time
    assert report["max_relative_difference_recurrent_vs_parallel"] < 1e-4
