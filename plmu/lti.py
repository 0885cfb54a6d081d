"""The Legendre delay system as plain functions of tensors: the single source of Ā and B̄.

Continuous system (Voelker et al., 2019), order d, window θ in time steps:

    θ ṁ(t) = A m(t) + B u(t),  A[i, j] = (2i+1)·(−1 if i < j else (−1)^(i−j+1)),  B[i] = (2i+1)·(−1)^i

Discretised with dt = 1 this becomes m_t = Ā m_{t−1} + B̄ u_t, whose impulse response H_k = Ā^k B̄ turns the
memory into a causal convolution (Chilkuri & Eliasmith, 2021). Everything here runs in float64: the callers cast
late, because a float32 ZOH is already off by ~4e-6.
"""

from __future__ import annotations

import torch
from torch import Tensor

from plmu.checks import one_of, positive_int, positive_number

DISCRETIZERS = ("zoh", "euler")


def legendre_delay_system(order: int) -> tuple[Tensor, Tensor]:
    """The continuous (A, B) for θ = 1, float64: A (order, order), B (order, 1)."""
    positive_int("order", order, "the number of Legendre coefficients")
    i = torch.arange(order, dtype=torch.float64)
    rows, cols = i[:, None], i[None, :]
    scale = 2 * rows + 1
    alternating = torch.where((rows - cols) % 2 == 0, -1.0, 1.0).to(torch.float64)  # (−1)^(i−j+1)
    A = scale * torch.where(rows < cols, torch.tensor(-1.0, dtype=torch.float64), alternating)
    B = (2 * i + 1) * torch.where(i % 2 == 0, 1.0, -1.0).to(torch.float64)
    return A, B[:, None]


def discretize(A: Tensor, B: Tensor, theta: float | Tensor, method: str = "zoh") -> tuple[Tensor, Tensor]:
    """Discrete (Ā, B̄) of θ ṁ = A m + B u with dt = 1, in float64 and differentiable in θ.

    ``zoh``: expm([[A/θ, B/θ], [0, 0]]) = [[Ā, B̄], [0, I]], identical to
    ``scipy.signal.cont2discrete((A/θ, B/θ, C, D), dt=1, method="zoh")``; stable for every θ > 0.
    ``euler``: Ā = I + A/θ, B̄ = B/θ; unstable unless θ ≫ order (see :func:`spectral_radius`).
    θ may be a tensor (a learned one, kept positive by its parametrisation); a number must be positive.
    """
    one_of("discretizer", method, DISCRETIZERS)
    if not isinstance(theta, Tensor):
        positive_number("theta", theta, "time steps: the memory window")
    theta = torch.as_tensor(theta, dtype=torch.float64, device=A.device)
    A, B = A.to(torch.float64) / theta, B.to(torch.float64) / theta
    if method == "zoh":
        order = A.shape[0]
        top = torch.cat([A, B], dim=1)
        augmented = torch.cat([top, torch.zeros(1, order + 1, dtype=torch.float64, device=A.device)], dim=0)
        expm = torch.linalg.matrix_exp(augmented)
        return expm[:order, :order], expm[:order, order:]
    return torch.eye(A.shape[0], dtype=torch.float64, device=A.device) + A, B


def spectral_radius(A_bar: Tensor) -> float:
    """max |eigenvalue| of Ā: the state decays iff it is < 1."""
    return float(torch.linalg.eigvals(A_bar.detach().to(torch.float64).cpu()).abs().max())


def krylov(A_bar: Tensor, x0: Tensor, length: int) -> Tensor:
    """Ā^k x0 for k = 0 .. length−1, for a batch of start vectors: x0 (n, d) → (n, length, d).

    Built by doubling, X[:, s:2s] = X[:, :s] Ā^sᵀ with Ā^s squared each round: log2(length) products, never a
    power per step. ``krylov(Ā, B̄ᵀ, T)[0]`` is the impulse response H (T, d); ``krylov(Ā, m0 Āᵀ, T)`` is the
    zero-input response Ā^(t+1) m0 of a carried state.
    """
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    out = x0[:, None, :]
    power = A_bar  # Ā^s where s = out.shape[1]
    while out.shape[1] < length:
        out = torch.cat([out, out @ power.transpose(0, 1)], dim=1)
        if out.shape[1] < length:
            power = power @ power
    return out[:, :length]


def impulse_response(A_bar: Tensor, B_bar: Tensor, length: int) -> Tensor:
    """H (length, d) with H_k = Ā^k B̄, so that m_t = Σ_{j≤t} H_{t−j} u_j."""
    return krylov(A_bar, B_bar.transpose(0, 1), length)[0]
