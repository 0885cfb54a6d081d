import numpy as np
import pytest

from plmu.data.mackey_glass import MackeyGlassSpec, generate, load_series, mackey_glass


def test_check_value_predict_y_equals_x_is_162_400_percent(tmp_path):
    data = mackey_glass(cache_dir=tmp_path)
    x, y = data.test.x.double(), data.test.y.double()
    nrmse = ((x - y).pow(2).mean().sqrt() / y.pow(2).mean().sqrt()).item()
    assert nrmse == pytest.approx(1.62400, abs=5e-6)
    assert data.info["mean_removed"] == pytest.approx(-0.065848, abs=5e-7)
    assert (data.train.x.shape, data.val.x.shape, data.test.x.shape) == ((32, 5000, 1), (32, 5000, 1), (64, 5000, 1))
    # the target is the input 15 steps later
    np.testing.assert_array_equal(data.train.y[0, :-15].numpy(), data.train.x[0, 15:].numpy())


def test_cache_returns_the_same_series(tmp_path):
    spec = MackeyGlassSpec(n_series=2, steps=50)
    first = load_series(spec, tmp_path)
    assert len(list(tmp_path.glob("mackey_glass_*.npy"))) == 1
    np.testing.assert_array_equal(load_series(spec, tmp_path), first)
    np.testing.assert_array_equal(generate(spec), first)


def test_series_continue_from_the_previous_one():
    # The quirk: series k > 0 starts from series k − 1's last value, so series 1 differs from a fresh start.
    two = generate(MackeyGlassSpec(n_series=2, steps=30, washout=0))
    assert not np.allclose(two[1], generate(MackeyGlassSpec(n_series=1, steps=30, washout=0, seed=1))[0])


def test_split_sizes_must_fit():
    with pytest.raises(ValueError, match="n_train \\+ n_val = 70 must fit in the first half of n_series = 128"):
        mackey_glass(n_train=40, n_val=30)
