"""The paper's pre-training architecture (plmu.models.pretrain): shapes, causality, streaming, weight transfer, size."""

import pytest
import torch
from conftest import compose_config

from plmu.models.build import build_model, model_args
from plmu.models.pretrain import (
    Highway,
    PretrainBackbone,
    pretrain_classifier,
    pretrain_language_model,
    pretrain_model,
)
from plmu.models.sizing import count_parameters
from plmu.train.checkpoint import load_matching

SMALL = {"hidden_size": 12, "num_layers": 3, "order": 4, "theta": 6.0, "memory_d": 2}
VOCAB = 40


def _ids(batch: int = 3, steps: int = 17, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, steps), generator=torch.Generator().manual_seed(seed))


def test_shapes_of_the_language_model_classifier_and_backbone():
    lm = pretrain_language_model(VOCAB, **SMALL)
    assert lm({"inputs": _ids()}).shape == (3, 17, VOCAB)
    for pooling in ("last", "mean", "max"):
        classifier = pretrain_classifier(VOCAB, 2, pooling=pooling, **SMALL)
        assert classifier({"inputs": _ids()}).shape == (3, 2)
    backbone = PretrainBackbone(12, 2, 4, 6.0, return_sequences=False)
    assert backbone(torch.randn(3, 9, 12)).shape == (3, 12)
    assert len(lm.backbone.blocks) == 3 and all(len(block.highways) == 3 for block in lm.backbone.blocks)
    assert len(lm.backbone.top) == 3 and torch.allclose(lm.backbone.mix_weights, torch.full((4,), 0.25))


def test_highway_gate_starts_mostly_closed():
    layer = Highway(5, gate_bias=-1.0)
    assert torch.equal(layer.linear.bias[5:], torch.full((5,), -1.0))
    with torch.no_grad():
        layer.linear.bias[5:] = -50.0  # gate shut: the input passes unchanged
    x = torch.randn(2, 5)
    assert torch.allclose(layer(x), x)


def test_the_language_model_is_causal():
    lm = pretrain_language_model(VOCAB, **SMALL).double()
    ids = _ids()
    changed = ids.clone()
    changed[:, 10:] = _ids(seed=1)[:, 10:]
    with torch.no_grad():
        a, b = lm({"inputs": ids}), lm({"inputs": changed})
    assert torch.equal(a[:, :10], b[:, :10]) and not torch.allclose(a[:, 10:], b[:, 10:])


def test_chunks_with_the_state_carried_equal_the_whole_stream():
    lm = pretrain_language_model(VOCAB, **SMALL).double()
    ids = _ids(steps=30)
    with torch.no_grad():
        whole = lm({"inputs": ids})
        state, parts = None, []
        for chunk in ids.split(7, dim=1):
            out, state = lm.forward_with_state({"inputs": chunk}, state)
            parts.append(out)
    assert len(state) == 3 and state[0].shape == (3, 2 * 4)
    assert (torch.cat(parts, dim=1) - whole).abs().max() < 1e-12


def test_recurrent_equals_parallel_for_the_language_model_and_a_padded_classifier():
    lm = pretrain_language_model(VOCAB, **SMALL).double()
    ids = _ids()
    with torch.no_grad():
        assert (lm.forward_recurrent({"inputs": ids}) - lm({"inputs": ids})).abs().max() < 1e-12
    classifier = pretrain_classifier(VOCAB, 2, **SMALL).double()
    mask = torch.ones(3, 17, dtype=torch.bool)
    mask[1, :5] = False  # left padding
    mask[2, :11] = False
    padded = torch.where(mask, ids, torch.zeros_like(ids))
    batch = {"inputs": padded, "mask": mask}
    with torch.no_grad():
        parallel = classifier(batch)
        assert (classifier.forward_recurrent(batch) - parallel).abs().max() < 1e-12
        alone = classifier({"inputs": ids[2:, 11:]})  # the padded example on its own
    assert (parallel[2:] - alone).abs().max() < 1e-12


def test_the_classifier_loads_everything_but_the_head_from_the_language_model():
    lm = pretrain_language_model(VOCAB, **SMALL)
    classifier = pretrain_classifier(VOCAB, 2, **SMALL)
    report = load_matching(classifier, {"model": lm.state_dict()}, "lm.pt")
    assert sorted(report.skipped) == ["head.bias", "head.weight"] and report.new == [] and report.unused == []
    assert len(report.loaded) == len(classifier.state_dict()) - 2
    for name, value in classifier.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(value, lm.state_dict()[name]), name
    ids = _ids()
    with torch.no_grad():  # the same features at the last token
        features = lm.backbone(lm.adapter(ids))[:, -1]
        assert torch.allclose(classifier.backbone(classifier.adapter(ids)), features, atol=1e-6)


def test_one_builder_for_both_and_its_refusals():
    assert pretrain_model(VOCAB, True, **SMALL).head.out_features == VOCAB
    assert pretrain_model(VOCAB, False, num_classes=3, **SMALL).head.out_features == 3
    with pytest.raises(ValueError, match="residual must be false"):
        pretrain_model(VOCAB, False, residual=True, **SMALL)
    with pytest.raises(ValueError, match="norm must be null"):
        pretrain_model(VOCAB, False, norm="layer", **SMALL)
    with pytest.raises(ValueError, match="pooling must be one of"):
        pretrain_model(VOCAB, False, pooling="min", **SMALL)
    with pytest.raises(ValueError, match="highway_layers must be a non-negative int"):
        pretrain_model(VOCAB, False, highway_layers=-1, **SMALL)


def test_the_paper_config_has_about_34m_parameters():
    """conf/task_model/imdb_lm_plmu_paper.yaml with IMDB's 16,000 tokens, counted on the meta device (no storage)."""
    counts = {}
    for experiment in ("imdb_finetune_paper", "imdb_lm_paper"):
        cfg = compose_config([f"experiment={experiment}"])
        args = {**model_args(cfg), "vocab_size": 16_000}
        with torch.device("meta"):
            counts[experiment] = count_parameters(build_model(cfg, args))
    assert counts == {"imdb_finetune_paper": 34_058_568, "imdb_lm_paper": 45_465_142}
    assert abs(counts["imdb_finetune_paper"] - 34e6) / 34e6 < 0.01  # the paper's "34M"
