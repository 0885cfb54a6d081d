"""A GRU encoder: ``nn.GRU`` with the streaming protocol and the masking of :class:`RecurrentEncoder`.

The state is h (layers, batch, hidden). The family is registered in :mod:`plmu.models.backbones` (``gru``) and sized
per task in ``conf/sizes/gru.yaml``: the recipe's proof that a family needs its module, a registry line
and its configs.
"""

from __future__ import annotations

from torch import Tensor, nn

from plmu.models.encoders import RecurrentEncoder


class GRUEncoder(RecurrentEncoder):
    """``nn.GRU`` (batch first); the state is h (layers, batch, hidden)."""

    rnn_class = nn.GRU
    rnn_name = "gru"

    def top_hidden(self, state: Tensor) -> Tensor:
        return state[-1]

    def initial_state(self, batch: int) -> Tensor:
        return self.gru.weight_hh_l0.new_zeros(self.gru.num_layers, batch, self.gru.hidden_size)
