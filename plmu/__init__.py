"""plmu: parallel Legendre Memory Units (Chilkuri & Eliasmith, ICML 2021) in PyTorch."""

from plmu.layers import ParallelLMU, ParallelLMUStack, SequenceStack
from plmu.lti import discretize, impulse_response, legendre_delay_system
from plmu.memory import LegendreMemory
from plmu.original import OriginalLMU, OriginalLMUCell, OriginalLMUStack

__all__ = [
    "LegendreMemory",
    "OriginalLMU",
    "OriginalLMUCell",
    "OriginalLMUStack",
    "ParallelLMU",
    "ParallelLMUStack",
    "SequenceStack",
    "discretize",
    "impulse_response",
    "legendre_delay_system",
]
__version__ = "0.1.0"
