"""Sizing a baseline to the same parameter count as another model (the paper compares models at equal size).

    target = count_parameters(plmu_backbone)
    d_model = match_parameters(lambda d: TransformerBackbone(d, num_layers=2, num_heads=4), target, range(8, 513, 4))

The widths tried must all be valid for the builder (here multiples of num_heads). Models are built on the meta device
by default: their parameters have shapes but no storage, so trying hundreds of widths costs no memory and no
initialisation time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


def count_parameters(module: nn.Module) -> int:
    """The number of parameters (trainable or not; buffers such as the LMU's Ā, B̄ excluded)."""
    return sum(p.numel() for p in module.parameters())


def match_parameters(
    build: Callable[[int], nn.Module],
    target: int,
    widths: Iterable[int],
    device: torch.device | str = "meta",
) -> int:
    """The width in ``widths`` whose ``build(width)`` has the parameter count closest to ``target``.

    Ties go to the first width tried. ``device``: where the models are built ("meta": shapes only, see above).
    """
    widths = list(widths)
    if not widths:
        raise ValueError("widths must not be empty")
    if target <= 0:
        raise ValueError(f"target must be a positive parameter count, got {target}")
    with torch.device(device):
        counts = [count_parameters(build(width)) for width in widths]
    best = min(range(len(widths)), key=lambda i: abs(counts[i] - target))
    return widths[best]
