"""Dropout whose CPU mask costs a sixth of torch's: every plmu model's dropout (layers, embeddings, heads).

torch's CPU dropout draws one Bernoulli sample per element (``bernoulli_``: ~13 ns an element on this project's
CPU, 27 ms for the IMDB classifier's 32 × 512 × 128 embeddings, a tenth of its training step). Here one 64-bit
random integer gives four 16-bit draws, each kept when it is at or above a threshold: 4.6 ms for the same mask
(experiments/speed/cpu/text.md). The mask is drawn from torch's default generator, so ``torch.manual_seed`` and a
checkpoint's RNG state make it reproducible as before; the draws differ from ``nn.Dropout``'s.

The price: p is rounded to a multiple of 1/65,536 (p = 0.3 drops with probability 0.29999 …, off by < 8e-6) and the
kept values are scaled by 1 / (1 − that p), so the layer stays unbiased. On other devices, in eval mode and for
p = 0, this is ``nn.Dropout`` itself (CUDA's dropout is already one fused kernel).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LEVELS = 1 << 16  # the 16-bit draws: p is rounded to a multiple of 1 / LEVELS


def keep_mask(shape: tuple[int, ...], p: float, device: torch.device | str = "cpu") -> tuple[Tensor, float]:
    """(a bool mask of ``shape``, True where kept, each independently with probability 1 − p'; p') where p' is p
    rounded to a multiple of 1/65,536."""
    numel = 1
    for size in shape:
        numel *= size
    dropped = round(p * LEVELS)  # draws below -32,768 + dropped are dropped: probability dropped / LEVELS
    words = -(-numel // 4)
    # Four uniform int16 lanes per int64 (a full-range draw: every lane uniform, see tests/test_dropout.py).
    draws = torch.empty(words, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1).view(torch.int16)
    keep = draws[:numel].view(shape) >= dropped - LEVELS // 2
    return keep, dropped / LEVELS


class Dropout(nn.Dropout):
    """``nn.Dropout(p)`` with the cheaper CPU mask of this module (module docstring); same state (none) and
    attributes, so checkpoints and ``.p`` read as before."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        keep, p = keep_mask(x.shape, self.p, x.device)
        if p >= 1:
            return x * 0  # every element dropped (p rounded to 1): zeros that still carry a (zero) gradient
        scale = keep.to(x.dtype).mul_(1 / (1 - p))  # one float mask, read by the forward and the backward product
        return x * scale
