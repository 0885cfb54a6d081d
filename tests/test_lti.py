import re

import numpy as np
import pytest
import torch
from scipy.signal import cont2discrete

from plmu.lti import discretize, impulse_response, krylov, legendre_delay_system, spectral_radius


def test_continuous_system_order_4_exactly():
    A, B = legendre_delay_system(4)
    assert A.dtype == torch.float64
    assert A.tolist() == [[-1, -1, -1, -1], [3, -3, -3, -3], [-5, 5, -5, -5], [7, -7, 7, -7]]
    assert B[:, 0].tolist() == [1, -3, 5, -7]


@pytest.mark.parametrize(
    ("order", "theta"), [(1, 1.0), (2, 5.0), (4, 4.0), (6, 10.5), (16, 3.0), (64, 100.0), (256, 784.0)]
)
def test_zoh_matches_scipy_cont2discrete(order, theta):
    A, B = legendre_delay_system(order)
    A_bar, B_bar = discretize(A, B, theta, "zoh")
    system = (A.numpy() / theta, B.numpy() / theta, np.eye(order), np.zeros((order, 1)))
    A_ref, B_ref, *_ = cont2discrete(system, dt=1, method="zoh")
    np.testing.assert_allclose(A_bar.numpy(), A_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(B_bar.numpy(), B_ref, rtol=0, atol=1e-12)


def test_euler_is_its_formula():
    A, B = legendre_delay_system(5)
    A_bar, B_bar = discretize(A, B, 40.0, "euler")
    torch.testing.assert_close(A_bar, torch.eye(5, dtype=torch.float64) + A / 40.0, rtol=0, atol=0)
    torch.testing.assert_close(B_bar, B / 40.0, rtol=0, atol=0)


def test_euler_instability_threshold_matches_the_facts():
    # Euler is unstable below θ ≈ 1.5·d at d = 4; ZOH never is.
    A, B = legendre_delay_system(4)
    assert spectral_radius(discretize(A, B, 5.0, "euler")[0]) > 1
    assert spectral_radius(discretize(A, B, 7.0, "euler")[0]) < 1
    assert spectral_radius(discretize(A, B, 0.5, "zoh")[0]) < 1


def test_discretize_rejects_unknown_method():
    A, B = legendre_delay_system(3)
    with pytest.raises(ValueError, match=r"^discretizer must be one of \['zoh', 'euler'\], got 'bilinear'$"):
        discretize(A, B, 3.0, "bilinear")


@pytest.mark.parametrize("theta", [0, -1.0, float("inf"), True, "3"])
def test_discretize_rejects_a_theta_that_is_not_a_positive_number(theta):
    A, B = legendre_delay_system(3)
    message = rf"^theta must be a positive number \(time steps: the memory window\), got {re.escape(repr(theta))}$"
    with pytest.raises(ValueError, match=message):
        discretize(A, B, theta)


@pytest.mark.parametrize("order", [0, -3, 2.5, True, "4"])
def test_order_must_be_a_positive_int(order):
    message = rf"^order must be a positive int \(the number of Legendre coefficients\), got {re.escape(repr(order))}$"
    with pytest.raises(ValueError, match=message):
        legendre_delay_system(order)


@pytest.mark.parametrize("length", [1, 2, 7, 16, 33])
def test_impulse_response_is_powers_of_A_times_B(length):
    A, B = legendre_delay_system(6)
    A_bar, B_bar = discretize(A, B, 7.0)
    H = impulse_response(A_bar, B_bar, length)
    expected = torch.stack([torch.linalg.matrix_power(A_bar, k) @ B_bar[:, 0] for k in range(length)])
    torch.testing.assert_close(H, expected, rtol=0, atol=1e-13)


def test_krylov_batch_of_start_vectors():
    A, B = legendre_delay_system(3)
    A_bar, _ = discretize(A, B, 2.0)
    x0 = torch.randn(4, 3, dtype=torch.float64)
    out = krylov(A_bar, x0, 9)
    assert out.shape == (4, 9, 3)
    for k in range(9):
        torch.testing.assert_close(out[:, k], x0 @ torch.linalg.matrix_power(A_bar, k).T, rtol=0, atol=1e-13)


def test_theta_gradient_flows_through_zoh():
    A, B = legendre_delay_system(4)
    theta = torch.tensor(6.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: discretize(A, B, t)[0], (theta,))
