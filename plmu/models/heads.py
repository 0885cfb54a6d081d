"""Heads: what turns a backbone's features (batch, time, hidden) into a task's outputs.

    LastStepHead   (batch, time, hidden) → the last real step  → Linear → (batch, out)         psMNIST, IMDB
    MeanPoolHead   (batch, time, hidden) → mean of real steps  → Linear → (batch, out)         IMDB
    MaxPoolHead    (batch, time, hidden) → max over real steps → Linear → (batch, out)         IMDB
    PerStepHead    (batch, time, hidden) → Linear at every step          → (batch, time, out)   Mackey-Glass, LM
    PairHead       a, b (batch, hidden)  → [a, b, |a−b|, a·b]  → MLP    → (batch, out)         QQP, SNLI

``mask`` is the padding mask of :mod:`plmu.models.adapters`: bool (batch, time), True at real steps. Every head is
called ``head(h, mask)``; ``pool`` (with ``last_valid`` and ``masked_mean``) is public: a pair model pools each
sentence with it before ``PairHead``. Each head applies its dropout to what its readout reads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from plmu.checks import ArgumentError, positive_int, probability
from plmu.dropout import Dropout
from plmu.layers import activation
from plmu.memory import check_mask
from plmu.memory import last_valid as last_valid_step

POOLINGS = ("last", "mean", "max")


def last_valid(h: Tensor, mask: Tensor | None = None) -> Tensor:
    """h (batch, time, hidden) → the features at each row's last real step (batch, hidden); the last step if no mask.

    Left and right padding alike (plmu.memory.last_valid, the LMU core's own).
    """
    if mask is None:
        return h[:, -1]
    check_mask(mask, h.shape[0], h.shape[1])
    return last_valid_step(h, mask)


def masked_mean(h: Tensor, mask: Tensor | None = None) -> Tensor:
    """h (batch, time, hidden) → the mean over each row's real steps (batch, hidden); zeros for an all-padding row."""
    if mask is None:
        return h.mean(dim=1)
    check_mask(mask, h.shape[0], h.shape[1])
    # where, not a product: a padded step holding inf or NaN would leak into the sum through 0 · inf = NaN.
    total = torch.where(mask[..., None], h, 0).sum(dim=1)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)
    return total / count


def masked_max(h: Tensor, mask: Tensor | None = None) -> Tensor:
    """h (batch, time, hidden) → the feature-wise max over each row's real steps (batch, hidden); zeros for an
    all-padding row. Max pooling over time keeps the strongest evidence wherever it occurs in a long text."""
    if mask is None:
        return h.amax(dim=1)
    check_mask(mask, h.shape[0], h.shape[1])
    return _MaskedMax.apply(h, mask)


class _MaskedMax(torch.autograd.Function):
    """max over the real steps, by index: the backward pass scatters each (example, feature)'s gradient to the one
    step that held its maximum (the first, on a tie), one pass over (batch, time, hidden). ``amax`` shares it among
    ties and its backward makes five passes (an equality mask, its count, a division, a product, the padding mask):
    a tenth of the IMDB classifier's step (issue 25). Ties among real values are ReLU's zeros, whose gradient the
    ReLU drops either way."""

    @staticmethod
    def forward(ctx, h: Tensor, mask: Tensor) -> Tensor:
        pooled, index = h.masked_fill(~mask[..., None], torch.finfo(h.dtype).min).max(dim=1)
        real = mask.any(dim=1, keepdim=True)  # an all-padding row pools to zeros, with no gradient
        ctx.save_for_backward(index, real)
        ctx.shape = h.shape
        return torch.where(real, pooled, 0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        index, real = ctx.saved_tensors
        grad_h = grad.new_zeros(ctx.shape)
        grad_h.scatter_(1, index[:, None], torch.where(real, grad, 0)[:, None])
        return grad_h, None


def pool(h: Tensor, mask: Tensor | None, pooling: str) -> Tensor:
    """One vector per sequence: h (batch, time, hidden) → (batch, hidden) by ``pooling`` ("last" real step, "mean"
    or "max" over real steps); h (batch, hidden), from a backbone that returned its last step only, passes through."""
    if pooling not in POOLINGS:
        raise ArgumentError("pooling", f"be one of {list(POOLINGS)}, got {pooling!r}")
    if h.dim() == 2:
        return h
    if pooling == "last":
        return last_valid(h, mask)
    return masked_mean(h, mask) if pooling == "mean" else masked_max(h, mask)


# The heads subclass nn.Linear, so their parameters are named ``weight`` and ``bias`` like the plain linear head
# that came before them: checkpoints of earlier runs still load.


class _LinearHead(nn.Linear):
    def __init__(self, hidden: int, out: int, dropout: float = 0.0) -> None:
        super().__init__(positive_int("hidden", hidden), positive_int("out", out))
        self.dropout = Dropout(probability("dropout", dropout))


class LastStepHead(_LinearHead):
    """A linear readout of the last real step: h (batch, time, hidden) → (batch, out), dropout before the readout.

    Also takes h (batch, hidden), from a backbone that already returned only its last step
    (``return_sequences=False``: the parallel LMU then computes m_T alone); the mask is then not needed.
    """

    pooling = "last"

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        """h (batch, time, hidden) or (batch, hidden), mask (batch, time) or None → (batch, out)."""
        return super().forward(self.dropout(pool(h, mask, self.pooling)))


class MeanPoolHead(LastStepHead):
    """The mean over real steps, then a linear layer: h (batch, time, hidden) → (batch, out)."""

    pooling = "mean"


class MaxPoolHead(LastStepHead):
    """The feature-wise max over real steps, then a linear layer: h (batch, time, hidden) → (batch, out)."""

    pooling = "max"


class PerStepHead(_LinearHead):
    """A linear readout at every step: h (batch, time, hidden) → (batch, time, out).

    Outputs at padded steps are computed like any other and mean nothing: the loss must skip them by the mask.
    ``mask`` is accepted so every head is called alike.
    """

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        """h (batch, time, hidden) → (batch, time, out); also (batch, hidden) → (batch, out) for one streamed step."""
        return super().forward(self.dropout(h))


def pair_features(a: Tensor, b: Tensor) -> Tensor:
    """[a, b, |a − b|, a · b] (batch, 4·hidden) from two encodings a, b (batch, hidden).

    The usual matching features of sentence-pair classifiers (InferSent): |a − b| and a · b are symmetric in a, b,
    so a relation that is symmetric (QQP's duplicates) is easy to express; a and b keep the order for ones that are not
    (SNLI's entailment).
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"a and b must both be (batch, hidden), got {tuple(a.shape)} and {tuple(b.shape)}")
    return torch.cat([a, b, (a - b).abs(), a * b], dim=-1)


class PairHead(nn.Module):
    """Two sentence encodings a, b (batch, hidden) → logits (batch, out), through an MLP on ``pair_features``.

        [a, b, |a−b|, a·b] (batch, 4·hidden) → Linear → act → Dropout → Linear → (batch, out)

    Args:
        hidden: size of a and b (the shared encoder's output).
        out: number of classes.
        mlp_hidden: width of the MLP's hidden layer.
        act: its nonlinearity, a name from ``plmu.layers.ACTIVATIONS`` ("relu", "tanh", ...).
        dropout: dropout after the nonlinearity.
    """

    def __init__(self, hidden: int, out: int, mlp_hidden: int, act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        hidden, out, mlp_hidden = (
            positive_int(k, v) for k, v in (("hidden", hidden), ("out", out), ("mlp_hidden", mlp_hidden))
        )
        self.mlp = nn.Sequential(
            nn.Linear(4 * hidden, mlp_hidden),
            activation(act),
            Dropout(probability("dropout", dropout)),
            nn.Linear(mlp_hidden, out),
        )

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """a, b (batch, hidden) → (batch, out)."""
        return self.mlp(pair_features(a, b))
