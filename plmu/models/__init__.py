"""Models for the benchmark tasks: input adapter → backbone → head, trainable in parallel, runnable as an RNN.

Every backbone follows one protocol, so training, evaluation and streaming treat them alike:
``forward(x, state=None, return_state=None, mask=None)``, ``initial_state(batch)`` and
``step(x_t, state, mask_t=None)``;
``state_batch_dim`` says where the batch is in its state (``plmu.models.state`` detaches and reorders any of them).
Builders (the ``_target_`` a task config names, conf/task/*.yaml): ``sequence_model`` (real-valued sequences),
``text_classifier`` (token ids, single texts or pairs), ``language_model``, ``translation_model``, each around any
registered family (:mod:`plmu.models.backbones`; ``backbone=plmu|lstm|gru|transformer|s4d|...``). Each builds a
``SequenceModel`` (adapter → backbone → head), a ``PairModel`` or a ``Seq2Seq``.
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
    sequence_model,
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
    "map_state",
    "masked_mean",
    "match_parameters",
    "padding_mask",
    "pair_features",
    "pool",
    "select_state",
    "sequence_model",
    "state_batch_dim",
    "text_classifier",
    "translation_model",
    "where_state",
]
