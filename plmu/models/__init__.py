"""Models for the benchmark tasks: a sequence encoder and a linear head, trainable in parallel, runnable as an RNN.

Every encoder here follows one protocol, so training, evaluation and streaming treat them alike:
``forward(x, state=None, return_state=None)``, ``initial_state(batch)`` and ``step(x_t, state)``.
The builders (``plmu_model``, ``original_lmu_model``, ``lstm_model``) are the ``_target_`` of ``conf/model/*.yaml``.
"""

from plmu.models.encoders import LSTMEncoder
from plmu.models.sequence import SequenceModel, lstm_model, original_lmu_model, plmu_model

__all__ = ["LSTMEncoder", "SequenceModel", "lstm_model", "original_lmu_model", "plmu_model"]
