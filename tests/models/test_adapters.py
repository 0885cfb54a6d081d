import pytest
import torch

from plmu.memory import check_mask
from plmu.models.adapters import IdentityAdapter, LinearAdapter, TokenEmbedding, padding_mask


def test_token_embedding_shapes_and_zero_padding_row():
    emb = TokenEmbedding(10, 4, padding_idx=0)
    ids = torch.tensor([[0, 0, 3, 7], [5, 1, 0, 0]])
    out = emb(ids)
    assert out.shape == (2, 4, 4) and emb.output_size == 4
    assert torch.equal(out[0, 0], torch.zeros(4))
    assert torch.equal(padding_mask(ids), ids != 0)


def test_linear_and_identity_adapters():
    x = torch.randn(2, 5, 3)
    assert LinearAdapter(3, 8)(x).shape == (2, 5, 8)
    identity = IdentityAdapter(3)
    assert identity(x) is x
    assert sum(p.numel() for p in identity.parameters()) == 0  # keeps psMNIST / Mackey-Glass counts


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: TokenEmbedding(0, 4), "vocab_size"),
        (lambda: TokenEmbedding(10, -1), "dim"),
        (lambda: TokenEmbedding(10, 4, padding_idx=10), "padding_idx"),
        (
            lambda: TokenEmbedding(10, 4, padding_idx=True),
            r"^padding_idx must be None or in \[0, vocab_size=10\), got True$",
        ),
        (lambda: TokenEmbedding(10, 4, padding_idx=1.0), r"^padding_idx must be None or in \[0, vocab_size=10\)"),
        (lambda: TokenEmbedding(True, 4), r"^vocab_size must be a positive int, got True$"),
        (lambda: TokenEmbedding(10, 4.0), r"^dim must be a positive int, got 4.0$"),
        (lambda: LinearAdapter("3", 4), r"^input_size must be a positive int, got '3'$"),
        (lambda: LinearAdapter(0, 4), "input_size"),
        (lambda: LinearAdapter(3, 0), "dim"),
        (lambda: IdentityAdapter(0), "input_size"),
    ],
)
def test_constructors_name_the_bad_argument(build, name):
    with pytest.raises(ValueError, match=name):
        build()


def test_forward_checks_inputs():
    with pytest.raises(ValueError, match="ids must be integer"):
        TokenEmbedding(10, 4)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="input_size=3"):
        LinearAdapter(3, 4)(torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match="input_size=3"):
        IdentityAdapter(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="mask must be"):
        check_mask(torch.ones(2, 3), 2, 3)
