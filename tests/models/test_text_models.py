import pytest
import torch
from conftest import assert_close_to

from plmu.errors import ConfigError
from plmu.models import PairModel, SequenceModel, language_model, text_classifier

LMU = {"order": 4, "theta": 6.0, "memory_d": 2}


def _batch(vocab: int = 30) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(1, vocab, (3, 9), generator=g), torch.randint(1, vocab, (3, 6), generator=g)
    a[0, :4], b[1, :2] = 0, 0  # left padding
    return {"inputs": a, "mask": a != 0, "inputs_a": a, "mask_a": a != 0, "inputs_b": b, "mask_b": b != 0}


@pytest.mark.parametrize("backbone", ["plmu", "lstm"])
@pytest.mark.parametrize("pair", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_text_models_run_as_rnns_with_the_parallel_outputs(backbone, pair, pooling):
    options = LMU if backbone == "plmu" else {}
    model = text_classifier(30, 3, backbone, embed_dim=8, hidden_size=6, pooling=pooling, pair=pair, **options)
    model = model.double().eval()
    assert isinstance(model, PairModel if pair else SequenceModel)
    batch = _batch()
    out = model(batch)
    assert out.shape == (3, 3)
    assert_close_to(model.forward_recurrent(batch), out, atol=1e-10)


def test_pair_model_shares_one_encoder_and_pads_exactly():
    model = text_classifier(30, 3, "plmu", embed_dim=8, hidden_size=6, pair=True, **LMU).double().eval()
    batch = _batch()
    alone = {key: value[1:2] for key, value in batch.items()}  # example 1 unbatched: b loses its padding
    alone["inputs_b"], alone["mask_b"] = alone["inputs_b"][:, 2:], alone["mask_b"][:, 2:]
    assert_close_to(model(batch)[1:2], model(alone), atol=1e-10)
    names = [name for name, _ in model.named_parameters()]
    assert not any("_b" in name for name in names)  # one encoder for a and b


def test_text_classifier_refuses_bad_choices_by_name():
    with pytest.raises(ValueError, match=r"pooling must be one of \['last', 'mean', 'max'\], got 'min'"):
        text_classifier(30, 2, "plmu", pooling="min", **LMU)
    with pytest.raises(ValueError, match="backbone must be one of"):
        text_classifier(30, 2, "mamba")
    with pytest.raises(ValueError, match="embed_dim must equal hidden_size=16 for a transformer"):
        text_classifier(30, 2, "transformer", embed_dim=8, hidden_size=16)
    with pytest.raises(ValueError, match="pair must be true or false, got 'yes'"):
        text_classifier(30, 2, "lstm", pair="yes")


# ----------------------------------------------------------------------------------------------- language models
LM_BACKBONES = {
    "plmu": {"order": 8, "theta": 16.0, "memory_d": 4},
    "lstm": {},
    "transformer": {"num_heads": 2},
    "s4d": {"state_size": 4},
}


@pytest.mark.parametrize("backbone", sorted(LM_BACKBONES))
def test_language_model_predicts_every_step_and_runs_as_an_rnn(backbone):
    torch.manual_seed(0)
    model = language_model(27, backbone, embed_dim=16, hidden_size=16, num_layers=2, **LM_BACKBONES[backbone])
    model = model.double().eval()
    ids = torch.randint(0, 27, (3, 33))
    logits = model({"inputs": ids})
    assert logits.shape == (3, 33, 27)
    torch.testing.assert_close(model.forward_recurrent({"inputs": ids}), logits, rtol=0, atol=1e-10)
    changed = ids.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % 27
    # causal: the future changes nothing (to float64 rounding: an FFT convolution mixes every step's bits)
    torch.testing.assert_close(model({"inputs": changed})[:, :20], logits[:, :20], rtol=0, atol=1e-12)


@pytest.mark.parametrize("backbone", ["plmu", "lstm"])
def test_chunks_with_the_state_carried_equal_one_long_forward(backbone):
    torch.manual_seed(0)
    model = language_model(27, backbone, embed_dim=8, hidden_size=12, num_layers=2, **LM_BACKBONES[backbone])
    model = model.double()
    ids = torch.randint(0, 27, (2, 50))
    state, chunks = None, []
    for start in range(0, 50, 7):
        out, state = model.forward_with_state({"inputs": ids[:, start : start + 7]}, state)
        chunks.append(out)
    torch.testing.assert_close(torch.cat(chunks, dim=1), model({"inputs": ids}), rtol=0, atol=1e-12)


def test_language_model_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="pooling must be null"):
        language_model(27, "lstm", pooling="mean")
    with pytest.raises(ValueError, match="causal must be true"):
        language_model(27, "transformer", embed_dim=8, hidden_size=8, num_heads=2, causal=False)
    transformer = language_model(27, "transformer", embed_dim=8, hidden_size=8, num_heads=2)
    with pytest.raises(ConfigError, match=r"trainer\.state=reset"):
        transformer.forward_with_state({"inputs": torch.zeros(1, 4, dtype=torch.long)})
