import pytest
import torch
from conftest import assert_close_to

from plmu.models import PairModel, SequenceModel, text_classifier

LMU = {"order": 4, "theta": 6.0, "memory_d": 2}


def _batch(vocab: int = 30) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(1, vocab, (3, 9), generator=g), torch.randint(1, vocab, (3, 6), generator=g)
    a[0, :4], b[1, :2] = 0, 0  # left padding
    return {"inputs": a, "mask": a != 0, "inputs_a": a, "mask_a": a != 0, "inputs_b": b, "mask_b": b != 0}


@pytest.mark.parametrize("backbone", ["plmu", "lstm"])
@pytest.mark.parametrize("pair", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean"])
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
    with pytest.raises(ValueError, match=r"pooling must be one of \['last', 'mean'\], got 'max'"):
        text_classifier(30, 2, "plmu", pooling="max", **LMU)
    with pytest.raises(ValueError, match="backbone must be one of"):
        text_classifier(30, 2, "gru")
    with pytest.raises(ValueError, match="embed_dim must equal hidden_size=16 for a transformer"):
        text_classifier(30, 2, "transformer", embed_dim=8, hidden_size=16)
    with pytest.raises(ValueError, match="pair must be true or false, got 'yes'"):
        text_classifier(30, 2, "lstm", pair="yes")
