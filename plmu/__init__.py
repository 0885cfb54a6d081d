"""plmu: parallel Legendre Memory Units (Chilkuri & Eliasmith, ICML 2021) in PyTorch.

The public names load on first use (PEP 562), so ``import plmu`` does not import torch: ``plmu-train --help`` and
shell completion stay fast. ``from plmu import ParallelLMU`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plmu.hub import PlmuModel
    from plmu.layers import ParallelLMU, ParallelLMUStack, SequenceStack
    from plmu.lti import discretize, impulse_response, legendre_delay_system
    from plmu.memory import LegendreMemory
    from plmu.original import OriginalLMU, OriginalLMUCell, OriginalLMUStack
    from plmu.runs import TrainedRun, load_run

from plmu.version import __version__ as __version__

__all__ = [
    "LegendreMemory",
    "OriginalLMU",
    "OriginalLMUCell",
    "OriginalLMUStack",
    "ParallelLMU",
    "ParallelLMUStack",
    "PlmuModel",
    "SequenceStack",
    "TrainedRun",
    "discretize",
    "impulse_response",
    "legendre_delay_system",
    "load_run",
]

# public name -> the module that defines it
_SOURCES = {
    "LegendreMemory": "plmu.memory",
    "OriginalLMU": "plmu.original",
    "OriginalLMUCell": "plmu.original",
    "OriginalLMUStack": "plmu.original",
    "ParallelLMU": "plmu.layers",
    "ParallelLMUStack": "plmu.layers",
    "SequenceStack": "plmu.layers",
    "discretize": "plmu.lti",
    "impulse_response": "plmu.lti",
    "legendre_delay_system": "plmu.lti",
    "TrainedRun": "plmu.runs",
    "load_run": "plmu.runs",  # a trained run folder: model, config, data info
    "PlmuModel": "plmu.hub",  # a trained run in the Hugging Face layout (save_pretrained, from_pretrained)
}


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
