"""Input adapters: what turns a batch's inputs into the (batch, time, dim) features every backbone reads.

    token ids (batch, time) long      → TokenEmbedding  → (batch, time, dim)     IMDB, QQP, SNLI, language models
    features  (batch, time, features) → LinearAdapter   → (batch, time, dim)     real-valued inputs into a wide backbone
    features  (batch, time, features) → IdentityAdapter → (batch, time, features) psMNIST, Mackey-Glass

The identity exists because the LMU's first layer already projects its input (U_x, W_x): a linear adapter in front
would be a second, redundant projection and would change the paper's parameter counts.

The padding mask is defined here too, once for every module of plmu.models: a bool tensor (batch, time), True at a
real step, False at padding. Each row's real steps form one block (left or right padding both occur: left padding
keeps the last real token at the end, which decoders like).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from plmu.checks import positive_int, probability
from plmu.dropout import Dropout


def padding_mask(ids: Tensor, padding_idx: int = 0) -> Tensor:
    """The mask of a batch of token ids (batch, time): True where the id is not ``padding_idx``."""
    return ids != padding_idx


class TokenEmbedding(nn.Module):
    """Token ids (batch, time) long → embeddings (batch, time, dim).

    The row of ``padding_idx`` is zero and gets no gradient (``nn.Embedding``'s rule), so padding adds nothing even to a
    backbone that is not told about the mask. ``dropout`` drops embedding features in training (a regulariser for
    text classifiers trained from scratch, whose embedding holds most of their parameters).
    """

    def __init__(self, vocab_size: int, dim: int, padding_idx: int | None = 0, dropout: float = 0.0) -> None:
        super().__init__()
        positive_int("vocab_size", vocab_size)
        positive_int("dim", dim)
        self.dropout = Dropout(probability("embed_dropout", dropout))
        index_ok = isinstance(padding_idx, int) and not isinstance(padding_idx, bool) and 0 <= padding_idx < vocab_size
        if padding_idx is not None and not index_ok:
            raise ValueError(f"padding_idx must be None or in [0, vocab_size={vocab_size}), got {padding_idx!r}")
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)
        self.vocab_size, self.output_size, self.padding_idx = vocab_size, dim, padding_idx

    def forward(self, ids: Tensor) -> Tensor:
        """ids (batch, time) long → (batch, time, dim)."""
        if ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"ids must be integer token ids (batch, time), got {ids.dtype} {tuple(ids.shape)}")
        return self.dropout(self.embedding(ids))


class LinearAdapter(nn.Module):
    """Real-valued features (batch, time, input_size) → (batch, time, dim), one ``nn.Linear`` at every step."""

    def __init__(self, input_size: int, dim: int) -> None:
        super().__init__()
        positive_int("input_size", input_size)
        positive_int("dim", dim)
        self.linear = nn.Linear(input_size, dim)
        self.input_size, self.output_size = input_size, dim

    def forward(self, x: Tensor) -> Tensor:
        """x (batch, time, input_size) → (batch, time, dim)."""
        _check_features(x, self.input_size)
        return self.linear(x)


class IdentityAdapter(nn.Module):
    """Features (batch, time, input_size) passed through unchanged, for backbones that project their own input.

    No parameters: psMNIST and Mackey-Glass keep the paper's exact parameter counts. ``input_size`` is only checked.
    """

    def __init__(self, input_size: int) -> None:
        super().__init__()
        positive_int("input_size", input_size)
        self.input_size = self.output_size = input_size

    def forward(self, x: Tensor) -> Tensor:
        """x (batch, time, input_size) → the same tensor."""
        _check_features(x, self.input_size)
        return x


def _check_features(x: Tensor, input_size: int) -> None:
    if x.dim() != 3 or x.shape[-1] != input_size:
        raise ValueError(f"x must be (batch, time, input_size={input_size}), got shape {tuple(x.shape)}")
