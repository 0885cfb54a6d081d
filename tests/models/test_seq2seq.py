"""The translation model: shapes, padding, the decoder as an RNN equal to teacher forcing, builders and sizes."""

import pytest
import torch
from conftest import assert_close_to, compose_config

from plmu.models.build import build_model, model_args
from plmu.models.seq2seq import Seq2Seq, translation_model

BACKBONES = {
    "plmu": {"order": 4, "theta": 6.0, "memory_d": 3},
    "lstm": {},
    "transformer": {"num_heads": 2, "dim_feedforward": 16},
    "s4d": {"state_size": 4},
}
SOURCE_VOCAB, TARGET_VOCAB = 11, 9


def tiny(backbone: str, **options) -> Seq2Seq:
    return translation_model(SOURCE_VOCAB, TARGET_VOCAB, backbone, 8, 8, 2, **BACKBONES[backbone], **options)


def batch(rows: int = 3) -> dict[str, torch.Tensor]:
    """Right-padded sources (ending in </s> = 3) and decoder inputs (<s> = 2 + target), as the data module makes."""
    source_lengths, target_lengths = [5, 2, 4][:rows], [4, 6, 1][:rows]
    source = torch.zeros(rows, 6, dtype=torch.long)
    inputs = torch.zeros(rows, 7, dtype=torch.long)
    for row, (s, t) in enumerate(zip(source_lengths, target_lengths, strict=True)):
        source[row, : s - 1] = torch.randint(4, SOURCE_VOCAB, (s - 1,))
        source[row, s - 1] = 3
        inputs[row, 0] = 2
        inputs[row, 1:t] = torch.randint(4, TARGET_VOCAB, (t - 1,))
    return {
        "source": source,
        "source_mask": source != 0,
        "inputs": inputs,
        "mask": torch.arange(7) < torch.tensor(target_lengths)[:, None],
    }


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_decoder_as_an_rnn_gives_the_teacher_forced_logits(backbone):
    model = tiny(backbone).double().eval()
    data = batch()
    with torch.no_grad():
        parallel = model(data)
        recurrent = model.forward_recurrent(data)  # the encoder stepped too, where it is causal
        memory = model.encode(data)
        state, steps = model.initial_state(memory), []
        for t in range(data["inputs"].shape[1]):  # decode_step on the reference prefix
            logits, state = model.decode_step(data["inputs"][:, t], state, memory)
            steps.append(logits)
    assert parallel.shape == (3, 7, TARGET_VOCAB)
    assert_close_to(recurrent, parallel, atol=1e-10)
    stepped = torch.stack(steps, dim=1)
    mask = data["mask"]
    assert_close_to(stepped[mask], parallel[mask], atol=1e-10)  # real steps; padded logits are zero
    assert parallel[~mask].abs().max() == 0 and recurrent[~mask].abs().max() == 0


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_float32_rounding_only_and_padding_changes_nothing(backbone):
    model = tiny(backbone).eval()
    data = batch()
    with torch.no_grad():
        parallel = model(data)
        assert_close_to(model.forward_recurrent(data), parallel, rtol=1e-5)
        source_length, target_length = int(data["source_mask"][1].sum()), int(data["mask"][1].sum())
        lengths = {key: source_length if key.startswith("source") else target_length for key in data}
        alone = model({key: value[1:2, : lengths[key]] for key, value in data.items()})  # without the batch's padding
    assert_close_to(alone[0], parallel[1, :target_length], rtol=1e-5)


def test_trains_in_parallel_and_the_lstm_state_has_its_batch_at_dim_1():
    model = tiny("plmu")
    logits = model(batch())
    logits.sum().backward()
    assert all(p.grad is not None for name, p in model.named_parameters() if "embedding" not in name)
    assert tiny("lstm").state_batch_dim == 1 and model.state_batch_dim == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backbone": "mamba"}, r"backbone must be one of \[.*'lstm'.*\], got 'mamba'"),
        ({"causal": True}, "causal must be null for a translation model"),
        ({"pooling": "mean"}, "pooling must be null for a translation model"),
        ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\)"),
        ({"decoder_layers": 0}, "decoder_layers must be a positive int"),
    ],
)
def test_builder_refuses_bad_options(options, message):
    settings = {"backbone": "lstm", **options}
    with pytest.raises(ValueError, match=message):
        translation_model(SOURCE_VOCAB, TARGET_VOCAB, embed_dim=8, hidden_size=8, num_layers=1, **settings)


def test_config_errors_name_the_model_key():
    from plmu.errors import ConfigError

    cfg = compose_config(["task=iwslt15_en_vi", "model=transformer", "model.causal=true"])
    with pytest.raises(ConfigError, match=r"^model.causal must be null for a translation model"):
        build_model(cfg)


def _backbone_parameters(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if name.startswith(("encoder.", "decoder.")))


def test_the_three_families_have_the_same_size_from_the_data():
    shapes = {"vocab_size": 17_192, "num_classes": 7_710}  # the Stanford vocabularies and <pad>
    built = {
        family: build_model(cfg, model_args(cfg, shapes))
        for family in ("plmu", "lstm", "transformer")
        for cfg in [compose_config(["task=iwslt15_en_vi", f"model={family}"])]
    }
    lmu = _backbone_parameters(built["plmu"])
    assert lmu == 2_108_840 and built["plmu"].num_parameters == 10_662_086  # the numbers in the config headers
    assert _backbone_parameters(built["lstm"]) == 2_105_344 and _backbone_parameters(built["transformer"]) == 2_109_440
    assert built["plmu"].source_embedding.vocab_size == 17_192 and built["plmu"].output.out_features == 7_710
