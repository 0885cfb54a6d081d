"""plmu.models.encoders.LSTMEncoder: its arguments (the masked forward is in test_lstm_mask.py)."""

import pytest
import torch

from plmu.models.encoders import LSTMEncoder


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(input_size=0), r"^input_size must be a positive int, got 0$"),
        (dict(hidden_size="abc"), r"^hidden_size must be a positive int, got 'abc'$"),
        (dict(hidden_size=3.0), r"^hidden_size must be a positive int, got 3.0$"),  # nn.LSTM's TypeError before
        (dict(hidden_size=True), r"^hidden_size must be a positive int, got True$"),
        (dict(num_layers=0), r"^num_layers must be a positive int, got 0$"),
        (dict(return_sequences="false"), r"^return_sequences must be true or false, got 'false'$"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    args = dict(input_size=2, hidden_size=3) | kwargs
    with pytest.raises(ValueError, match=message):
        LSTMEncoder(**args)


def test_good_arguments_build():
    encoder = LSTMEncoder(2, 3, 2, return_sequences=False)
    assert encoder(torch.randn(4, 5, 2)).shape == (4, 3)
