"""Models for the benchmark tasks: input adapter → backbone → head, trainable in parallel, runnable as an RNN.

Every backbone follows one protocol, so training, evaluation and streaming treat them alike:
``forward(x, state=None, return_state=None, mask=None)``, ``initial_state(batch)`` and
``step(x_t, state, mask_t=None)``;
``state_batch_dim`` says where the batch is in its state (``plmu.models.state`` detaches and reorders any of them).
Builders (``_target_`` of ``conf/model/*.yaml`` and ``conf/task_model/*.yaml``): ``plmu_model``,
``original_lmu_model``, ``lstm_model``, ``transformer_model``, ``sequence_model`` (any registered family,
:mod:`plmu.models.backbones`; real-valued sequences) and ``text_classifier`` (token ids, single texts or pairs).
Each builds a ``SequenceModel`` (adapter → backbone → head) or a ``PairModel``.
"""

from plmu.models.adapters import IdentityAdapter, LinearAdapter, TokenEmbedding, padding_mask
from plmu.models.encoders import LSTMEncoder
from plmu.models.heads import (
    LastStepHead,
    MaxPoolHead,
    MeanPoolHead,
    PairHead,
    PerStepHead,
    last_valid,
    masked_mean,
    pair_features,
    pool,
)
from plmu.models.seq2seq import translation_model
from plmu.models.sequence import (
    PairModel,
    SequenceModel,
    head_for,
    lstm_model,
    original_lmu_model,
    plmu_model,
    sequence_model,
    transformer_model,
)
from plmu.models.sizing import count_parameters, match_parameters
from plmu.models.state import detach_state, map_state, select_state, state_batch_dim, where_state
from plmu.models.text import language_model, text_classifier
from plmu.models.transformer import TransformerBackbone, TransformerState

__all__ = [
    "IdentityAdapter",
    "LSTMEncoder",
    "LastStepHead",
    "LinearAdapter",
    "MaxPoolHead",
    "MeanPoolHead",
    "PairHead",
    "PairModel",
    "PerStepHead",
    "SequenceModel",
    "TokenEmbedding",
    "TransformerBackbone",
    "TransformerState",
    "count_parameters",
    "detach_state",
    "head_for",
    "language_model",
    "last_valid",
    "lstm_model",
    "map_state",
    "masked_mean",
    "match_parameters",
    "original_lmu_model",
    "padding_mask",
    "pair_features",
    "plmu_model",
    "pool",
    "select_state",
    "sequence_model",
    "state_batch_dim",
    "text_classifier",
    "transformer_model",
    "translation_model",
    "where_state",
]
