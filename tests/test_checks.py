"""plmu.checks: the argument checks every constructor uses; the message starts with the argument's name."""

import pytest

from plmu.checks import flag, one_of, optional_positive_int, positive_int, positive_number, probability


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (positive_int, 1),
        (positive_int, 784),
        (optional_positive_int, None),
        (optional_positive_int, 3),
        (positive_number, 1),
        (positive_number, 0.5),
        (probability, 0),
        (probability, 0.0),
        (probability, 0.99),
        (flag, True),
        (flag, False),
    ],
)
def test_accepted_values_are_returned_unchanged(check, value):
    returned = check("x", value)
    assert returned is value


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (positive_int, 0, "x must be a positive int, got 0"),
        (positive_int, -1, "x must be a positive int, got -1"),
        (positive_int, True, "x must be a positive int, got True"),  # a bool is no size
        (positive_int, 3.0, "x must be a positive int, got 3.0"),
        (positive_int, "4", "x must be a positive int, got '4'"),
        (positive_int, None, "x must be a positive int, got None"),
        (optional_positive_int, 0, "x must be a positive int, got 0"),
        (optional_positive_int, False, "x must be a positive int, got False"),
        (positive_number, 0, "x must be a positive number, got 0"),
        (positive_number, -0.5, "x must be a positive number, got -0.5"),
        (positive_number, float("inf"), "x must be a positive number, got inf"),
        (positive_number, float("nan"), "x must be a positive number, got nan"),
        (positive_number, True, "x must be a positive number, got True"),
        (positive_number, "784", "x must be a positive number, got '784'"),
        (probability, 1, "x must be a number in [0, 1), got 1"),  # 1 would drop everything
        (probability, -0.1, "x must be a number in [0, 1), got -0.1"),
        (probability, float("nan"), "x must be a number in [0, 1), got nan"),
        (probability, False, "x must be a number in [0, 1), got False"),
        (probability, "abc", "x must be a number in [0, 1), got 'abc'"),
        (flag, "no", "x must be true or false, got 'no'"),  # a truthy string
        (flag, "off", "x must be true or false, got 'off'"),
        (flag, 1, "x must be true or false, got 1"),
        (flag, None, "x must be true or false, got None"),
    ],
)
def test_refused_values_name_the_argument_what_is_allowed_and_the_value(check, value, message):
    with pytest.raises(ValueError) as caught:
        check("x", value)
    assert str(caught.value) == message


def test_why_goes_in_parentheses_after_what_is_allowed():
    with pytest.raises(ValueError) as caught:
        positive_int("order", 0, "the number of Legendre coefficients")
    assert str(caught.value) == "order must be a positive int (the number of Legendre coefficients), got 0"
    with pytest.raises(ValueError) as caught:
        positive_number("theta", -3, "time steps")
    assert str(caught.value) == "theta must be a positive number (time steps), got -3"
    with pytest.raises(ValueError) as caught:
        optional_positive_int("dim_feedforward", 0, "or null")
    assert str(caught.value) == "dim_feedforward must be a positive int (or null), got 0"


def test_one_of_compares_type_and_value():
    assert one_of("init", "2019", ("2019", "psmnist")) == "2019"
    assert one_of("norm", None, (None, "layer")) is None
    with pytest.raises(ValueError) as caught:
        one_of("init", 2019, ("2019", "psmnist"))  # the int is not the string
    assert str(caught.value) == "init must be one of ['2019', 'psmnist'], got 2019"
    with pytest.raises(ValueError) as caught:
        one_of("norm", "batch", (None, "layer"))
    assert str(caught.value) == "norm must be one of [None, 'layer'], got 'batch'"
    with pytest.raises(ValueError, match=r"^mode must be one of \['a', 'b'\], got True$"):
        one_of("mode", True, iter(["a", "b"]))  # any iterable of choices
    with pytest.raises(ValueError, match=r"got 1$"):
        one_of("x", 1, (True, 2))  # 1 == True, but an int is not a bool


def test_a_refusal_carries_the_arguments_name_as_data():
    """Issue 17: plmu.models.build names the model.* key from ``argument``, not by parsing the message."""
    from plmu.checks import ArgumentError, positive_int

    with pytest.raises(ArgumentError) as refused:
        positive_int("order", 0, "the memory's size")
    assert isinstance(refused.value, ValueError)
    assert (refused.value.argument, refused.value.requirement) == (
        "order",
        "be a positive int (the memory's size), got 0",
    )
    assert str(refused.value) == "order must be a positive int (the memory's size), got 0"
