"""`LegendreMemory`: the LMU's linear memory m_t = Ā m_{t−1} + B̄ u_t, in every form the library needs.

One module owns Ā and B̄ (from :mod:`plmu.lti`); each path below uses them:

- ``forward(u, mode=...)``: every step's memory, by the step loop (``recurrent``, the reference), in parallel as
  a causal convolution with H_k = Ā^k B̄ (``fft``, ``direct``), or as GEMMs over chunks of time (``chunked``,
  :mod:`plmu.chunked`); ``auto`` picks by length, order and device (:func:`choose_memory_path`);
- ``last_state(u)``: only m_T, one matmul against the reversed impulse response (the paper's eq. 25);
- ``initial_state`` / ``step``: O(1)-per-step inference as an RNN.

Every path takes and returns a carried state, so a sequence processed in chunks equals the one-shot result.
Shapes: u (batch, T, memory_d); m (batch, T, memory_d·order), channel-major (flat index c·order + k);
a state is (batch, memory_d·order).

Padding (``mask``, bool (batch, T), True at real steps): in every path a padded step is a step with u = 0, so the
memory keeps decaying through it (m_t = Ā m_{t−1}) and whatever the padding holds never reaches it. Left padding
(real steps last) from a zero state leaves m = 0 until the first real step, so every real step's memory is the
unpadded example's; with right padding (real steps first) causality gives the same at real steps, while the padded
steps after them hold the decaying m. "The last state" (``last_state``, ``return_state``) is m at each example's
last real step (:func:`last_valid`), for either layout. ``step(..., mask_t=...)`` instead holds the state where
mask_t is False: the same values at every real step from a zero state (see :meth:`LegendreMemory.step`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from plmu.checks import ArgumentError, flag, one_of, positive_int, positive_number
from plmu.chunked import choose_memory_path, chunk_length, chunk_operators, chunked_memory
from plmu.conv import CONV_MODES, causal_conv
from plmu.lti import DISCRETIZERS, discretize, impulse_response, krylov, legendre_delay_system, spectral_radius

MEMORY_MODES = ("auto", "recurrent", "chunked", *CONV_MODES)


def check_mask(mask: Tensor, batch: int, steps: int) -> None:
    """Raise unless ``mask`` is a bool (batch, steps) tensor: a float 0/1 mask is ambiguous about which is padding."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (batch, steps):
        got = f"{mask.dtype} of shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"mask must be a bool tensor (batch, time) = {(batch, steps)}, True at real steps and False at padding; "
            f"got {got}"
        )


def mask_input(u: Tensor, mask: Tensor) -> Tensor:
    """u (batch, T, C) with every padded step set to 0 (mask (batch, T), True = real).

    ``masked_fill``, not ``u * mask``: padding that holds inf or NaN would survive a product (0·inf = NaN) and an FFT
    would spread it over every step.
    """
    return u.masked_fill(~mask[..., None], 0)


def last_valid_index(mask: Tensor) -> Tensor:
    """The index of each row's last True step (batch,), long; T − 1 for a row with no True step."""
    # argmax returns the first maximum: the first True of the reversed row is the last True of the row.
    return mask.shape[1] - 1 - mask.flip(1).to(torch.uint8).argmax(1)


def last_valid(values: Tensor, mask: Tensor) -> Tensor:
    """values (batch, T, ...) at each example's last real step → (batch, ...), for left or right padding alike.

    mask (batch, T) is True at real steps. With left padding this is ``values[:, -1]``; with right padding it is the
    step before the padding starts. A row with no real step reads the last position, T − 1.
    """
    index = last_valid_index(mask)
    return values[torch.arange(values.shape[0], device=values.device), index]


def _roll_last_valid_to_end(u: Tensor, mask: Tensor) -> Tensor:
    """u (batch, T, C), padding already zeroed, rotated per example so that its last real step lands at T − 1.

    What rotates round to the front is the padding after the last real step, i.e. zeros: the rotated row is the
    example left-padded, whose m_T is the memory at its last real step. One gather, so the last state stays one
    matmul for any padding layout.
    """
    steps = u.shape[1]
    shift = steps - 1 - last_valid_index(mask)  # (batch,); 0 for every row of a left-padded batch
    index = (torch.arange(steps, device=u.device) - shift[:, None]) % steps  # (batch, T)
    return u.gather(1, index[..., None].expand_as(u))


class LegendreMemory(nn.Module):
    """The Legendre delay memory of ``order`` coefficients over a window of ``theta`` steps, per input channel.

    Args:
        order: d, the number of Legendre coefficients kept per channel.
        theta: θ, the window in time steps (> 0).
        memory_d: the number of input channels; each gets its own order-d memory with the same Ā, B̄.
        discretizer: ``"zoh"`` (exact for piecewise-constant input, always stable) or ``"euler"``.
        trainable_theta: learn θ (kept positive as exp of a parameter); Ā, B̄ are then rebuilt once per forward.
    """

    def __init__(
        self,
        order: int,
        theta: float,
        memory_d: int = 1,
        discretizer: str = "zoh",
        trainable_theta: bool = False,
    ) -> None:
        super().__init__()
        positive_int("order", order, "the number of Legendre coefficients")
        positive_number("theta", theta, "time steps: the memory window")
        positive_int("memory_d", memory_d, "the number of input channels")
        one_of("discretizer", discretizer, DISCRETIZERS)
        flag("trainable_theta", trainable_theta)
        A, B = legendre_delay_system(order)
        self.order, self.memory_d, self.discretizer = order, memory_d, discretizer
        self.trainable_theta = trainable_theta
        self.register_buffer("A_continuous", A, persistent=False)
        self.register_buffer("B_continuous", B, persistent=False)
        A_bar, B_bar = discretize(A, B, float(theta), discretizer)
        if discretizer == "euler" and (radius := spectral_radius(A_bar)) >= 1:
            raise ValueError(
                f"discretizer='euler' is unstable for order={order}, theta={theta}: the spectral radius of Ā is "
                f"{radius:.4f} ≥ 1, so the memory blows up. Use discretizer='zoh' (stable for every θ) or a larger "
                f"theta (Euler needs θ of several times the order)."
            )
        if trainable_theta:
            self.log_theta = nn.Parameter(torch.tensor(math.log(theta), dtype=torch.get_default_dtype()))
        else:
            self._theta = float(theta)
        # The float64 masters never change dtype; the buffers below are their casts to the module's dtype/device.
        self._A64, self._B64 = A_bar, B_bar
        self.register_buffer("_A", A_bar.to(torch.get_default_dtype()), persistent=False)
        self.register_buffer("_B", B_bar.to(torch.get_default_dtype()), persistent=False)
        # One impulse response per (dtype, device), as long as the longest sequence seen; shorter ones are slices.
        self._kernel_cache: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        self._chunk_cache: dict[tuple[torch.dtype, torch.device, int], tuple[Tensor, Tensor, Tensor]] = {}
        self._reversed_cache: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    # ------------------------------------------------------------------------------------------- the system
    @property
    def theta(self) -> Tensor | float:
        return self.log_theta.exp() if self.trainable_theta else self._theta

    def discrete_system(self, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """(Ā (d, d), B̄ (d, 1)) in ``dtype`` (default: the module's), discretised in float64 and cast late."""
        dtype = dtype or self._A.dtype
        if self.trainable_theta:
            A64, B64 = self._discretize_learned_theta()
            return A64.to(dtype), B64.to(dtype)
        if dtype == self._A.dtype:
            return self._A, self._B
        return self._A64.to(self._A.device, dtype), self._B64.to(self._A.device, dtype)

    def _discretize_learned_theta(self) -> tuple[Tensor, Tensor]:
        """Ā, B̄ in float64 from the current (trainable) θ, differentiable in it."""
        return discretize(self.A_continuous, self.B_continuous, self.log_theta.double().exp(), self.discretizer)

    @property
    def A(self) -> Tensor:
        """Ā (order, order), in the orientation m_t = Ā m_{t−1} + B̄ u_t."""
        return self.discrete_system()[0]

    @property
    def B(self) -> Tensor:
        """B̄ (order, 1)."""
        return self.discrete_system()[1]

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> LegendreMemory:
        # .to()/.double()/.cuda() cast buffers; re-cast Ā, B̄ from float64 so .double() gives exact values, not
        # float32 ones widened.
        super()._apply(fn, recurse)
        self._A64, self._B64 = self._A64.to(self._A.device), self._B64.to(self._A.device)
        self._A, self._B = self._A64.to(self._A.dtype), self._B64.to(self._A.dtype)
        self._kernel_cache.clear()
        self._chunk_cache.clear()
        self._reversed_cache.clear()
        return self

    def impulse_response(self, length: int, dtype: torch.dtype | None = None) -> Tensor:
        """H (length, order), H_k = Ā^k B̄, built in float64 and cast; cached while θ is fixed.

        H for T steps is a prefix of H for any longer T, so the cache holds one kernel per (dtype, device), grown to
        the longest length asked, and returns its first ``length`` rows: ragged lengths cannot grow it without bound.
        It is built to the next power of two: :func:`plmu.lti.krylov` doubles its way there anyway (so the rows are
        bit-identical to a build at exactly ``length``), and a slowly growing length rebuilds it only log2(T) times.
        """
        dtype = dtype or self._A.dtype
        if self.trainable_theta:
            A64, B64 = self._discretize_learned_theta()
            return impulse_response(A64, B64, length).to(dtype)
        if length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        key = (dtype, self._A.device)
        cached = self._kernel_cache.get(key)
        if cached is None or cached.shape[0] < length:
            capacity = 1 << (length - 1).bit_length()  # the next power of two ≥ length
            cached = self._kernel_cache[key] = impulse_response(self._A64, self._B64, capacity).to(dtype)
        return cached[:length]

    def chunk_operators(self, dtype: torch.dtype, steps: int = 1) -> tuple[Tensor, Tensor, Tensor]:
        """The chunked scan's fixed matrices (:func:`plmu.chunked.chunk_operators`) for ``steps`` steps of this memory,
        built in float64 from Ā, B̄ and cast to ``dtype``; cached per (dtype, device, chunk length: a power of two
        or the order, so a few). Needs a fixed θ."""
        if self.trainable_theta:
            raise ArgumentError("mode", "not be 'chunked' with trainable_theta=True (no gradient reaches θ there): "
                                "use mode auto, fft or direct")  # fmt: skip
        chunk = chunk_length(self.order, steps)
        key = (dtype, self._A.device, chunk)
        if key not in self._chunk_cache:
            operators = chunk_operators(self._A64, impulse_response(self._A64, self._B64, chunk), chunk)
            self._chunk_cache[key] = tuple(t.to(dtype) for t in operators)
        return self._chunk_cache[key]

    def choose_path(self, steps: int, device_type: str = "cpu") -> str:
        """What ``mode="auto"`` computes every step's memory with (:func:`choose_memory_path`)."""
        return choose_memory_path(steps, self.order, device_type, not self.trainable_theta)

    # ------------------------------------------------------------------------------------------- checks
    def _check_input(self, u: Tensor, state: Tensor | None) -> None:
        if u.dim() != 3 or u.shape[-1] != self.memory_d:
            raise ValueError(
                f"u must be (batch, time, memory_d={self.memory_d}), got shape {tuple(u.shape)}; "
                f"add a time axis with u.unsqueeze(1) for one step, or use step() for (batch, memory_d)"
            )
        if u.shape[1] == 0:
            raise ValueError("u has no time steps (shape[1] == 0)")
        expected = (u.shape[0], self.memory_d * self.order)
        if state is not None and tuple(state.shape) != expected:
            raise ValueError(f"state must be (batch, memory_d·order) = {expected}, got {tuple(state.shape)}")

    @staticmethod
    def _compute_dtype(u: Tensor) -> torch.dtype:
        # bf16/fp16 inputs (autocast) are promoted: the FFT and the recurrence run in float32.
        return u.dtype if u.dtype in (torch.float32, torch.float64) else torch.float32

    # ------------------------------------------------------------------------------------------- paths
    def forward(
        self,
        u: Tensor,
        state: Tensor | None = None,
        return_state: bool | None = None,
        mode: str = "auto",
        *,
        mask: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """u (batch, T, memory_d) → m (batch, T, memory_d·order); with a state, also the final state.

        Args:
            state: m_0, the state before the first step (batch, memory_d·order); zeros when None.
            return_state: also return m_T (defaults to True when a state is given).
            mode: ``"auto"``, ``"recurrent"``, ``"chunked"``, ``"fft"`` or ``"direct"``; all give the same values.
            mask: bool (batch, T), False at padding: those steps get u = 0, and the returned state is m at each
                example's last real step (see the module docstring).
        """
        if mode not in MEMORY_MODES:
            raise ArgumentError("mode", f"be one of {MEMORY_MODES}, got {mode!r}")
        self._check_input(u, state)
        return_state = state is not None if return_state is None else return_state
        batch, steps, channels = u.shape
        if mask is not None:
            check_mask(mask, batch, steps)
        dtype = self._compute_dtype(u)
        with torch.autocast(u.device.type, enabled=False):
            u = u.to(dtype)
            if mask is not None:
                u = mask_input(u, mask)
            mode = self.choose_path(steps, u.device.type) if mode == "auto" else mode
            if mode == "recurrent":
                m = self._recurrent(u, state)
            elif mode == "chunked":
                operators = self.chunk_operators(dtype, steps)
                m = chunked_memory(u, None if state is None else state.to(dtype), *operators)
            else:
                H = self.impulse_response(steps, dtype)  # (T, d)
                flat = u.transpose(1, 2).reshape(batch * channels, steps, 1)  # channels share H: fold into batch
                m = causal_conv(flat, H[:, None, :], mode)  # (batch·C, T, d)
                if state is not None:
                    m = m + self._free_response(state.to(dtype), steps)
                m = m.reshape(batch, channels, steps, self.order).transpose(1, 2).reshape(batch, steps, -1)
        if not return_state:
            return m
        return m, (m[:, -1] if mask is None else last_valid(m, mask))

    def _recurrent(self, u: Tensor, state: Tensor | None) -> Tensor:
        """The reference: the step loop, m (batch, T, C·d)."""
        state = self.initial_state(u.shape[0], u.dtype, u.device) if state is None else state.to(u.dtype)
        A, B = self.discrete_system(u.dtype)
        outputs = []
        for t in range(u.shape[1]):
            state = self._step(u[:, t], state, A, B)
            outputs.append(state)
        return torch.stack(outputs, dim=1)

    def _free_response(self, state: Tensor, steps: int) -> Tensor:
        """Ā^(t+1) m_0 for t < steps, the part of m_t due to a carried state: (batch·C, steps, d)."""
        A, _ = self.discrete_system(state.dtype)
        m0 = state.reshape(-1, self.order)  # (batch·C, d)
        return krylov(A, m0 @ A.transpose(0, 1), steps)

    def last_state(self, u: Tensor, state: Tensor | None = None, *, mask: Tensor | None = None) -> Tensor:
        """m_T only (batch, memory_d·order): m_T = Σ_j H_{T−1−j} u_j (+ Ā^T m_0), one matmul (paper eq. 25).

        With ``mask`` (bool (batch, T), False at padding) padded steps get u = 0 and the result is m at each
        example's last real step p: the rows are rotated so that p lands at T − 1 (an identity for left padding),
        then the same one matmul; a carried state contributes Ā^(p+1) m_0.
        """
        self._check_input(u, state)
        batch, steps, _ = u.shape
        if mask is not None:
            check_mask(mask, batch, steps)
        dtype = self._compute_dtype(u)
        # Eq. 25 stays float32 under bf16 autocast: at psMNIST's order 468 its 784 terms span several decades
        # (H_k decays), and bf16's 8-bit mantissa would lose the small ones; it is a small GEMM besides.
        with torch.autocast(u.device.type, enabled=False):
            u = u.to(dtype)
            if mask is not None:
                u = _roll_last_valid_to_end(mask_input(u, mask), mask)
            m = self.last_states_of(u)  # (batch, C, d)
            if state is not None and mask is not None:
                m = m + self._decay(state.to(dtype), last_valid_index(mask) + 1, steps)
            elif state is not None:
                A, _ = self.discrete_system(dtype)
                m = m + state.to(dtype).reshape(batch, self.memory_d, self.order) @ torch.linalg.matrix_power(
                    A, steps
                ).transpose(0, 1)
        return m.reshape(batch, -1)

    def last_states_of(self, signals: Tensor) -> Tensor:
        """Eq. 25 for any number of channels: signals (batch, T, K) → the memory of each channel at T (batch, K, d),
        from a zero state, in the signals' dtype (no autocast, no checks: :meth:`last_state` is the checked API).

        One 2-D GEMM, (batch·K, T) @ (T, d): the newest step meets H_0, the oldest H_{T−1}. (A 3-D matmul is not
        folded into one GEMM when its input needs a gradient: 25% slower at psMNIST's size.)"""
        batch, steps, channels = signals.shape
        rows = signals.transpose(1, 2).reshape(batch * channels, steps)
        return (rows @ self._reversed_response(steps, signals.dtype)).view(batch, channels, self.order)

    def _reversed_response(self, length: int, dtype: torch.dtype) -> Tensor:
        """H_{length−1−j} in row j (length, d): eq. 25's matrix, kept for the last length asked per (dtype, device)
        (psMNIST asks the same every step; a flip is a copy of T × d)."""
        if self.trainable_theta:
            return self.impulse_response(length, dtype).flip(0)
        key = (dtype, self._A.device)
        cached = self._reversed_cache.get(key)
        if cached is None or cached.shape[0] != length:
            cached = self._reversed_cache[key] = self.impulse_response(length, dtype).flip(0).contiguous()
        return cached

    def _decay(self, state: Tensor, exponents: Tensor, largest: int) -> Tensor:
        """Ā^(e_b) m_0 for a different e_b ≤ ``largest`` per example: state (batch, C·d) → (batch, C, d).

        Square-and-multiply over the bits of e, every example at once: log2(largest) small matmuls.
        """
        A, _ = self.discrete_system(state.dtype)
        m = state.reshape(state.shape[0], self.memory_d, self.order)
        power = A.transpose(0, 1)  # (Ā^(2^bit))ᵀ, as m is multiplied from the right
        for bit in range(largest.bit_length()):
            use = ((exponents >> bit) & 1).bool()[:, None, None]
            m = torch.where(use, m @ power, m)
            if bit + 1 < largest.bit_length():
                power = power @ power
        return m

    def initial_state(self, batch: int, dtype: torch.dtype | None = None, device: torch.device | None = None) -> Tensor:
        """m_0 = 0: (batch, memory_d·order)."""
        return torch.zeros(
            batch, self.memory_d * self.order, dtype=dtype or self._A.dtype, device=device or self._A.device
        )

    def step(self, u_t: Tensor, state: Tensor, *, mask_t: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step, O(d²): u_t (batch, memory_d), state (batch, memory_d·order) → (m_t, m_t).

        ``mask_t`` (bool (batch,), False = padding) holds the state of the padded examples unchanged, so a batch of
        streams can skip a step per example. Unlike the sequence paths' u = 0 (which decays a nonzero state), this
        gives the same real steps and the same last state from a zero state, for left and right padding.
        """
        if u_t.dim() != 2 or u_t.shape[-1] != self.memory_d:
            raise ValueError(f"u_t must be (batch, memory_d={self.memory_d}), got shape {tuple(u_t.shape)}")
        if mask_t is not None and (mask_t.dtype != torch.bool or tuple(mask_t.shape) != (u_t.shape[0],)):
            raise ValueError(
                f"mask_t must be a bool tensor (batch,) = ({u_t.shape[0]},), got {mask_t.dtype} {tuple(mask_t.shape)}"
            )
        dtype = self._compute_dtype(u_t)
        with torch.autocast(u_t.device.type, enabled=False):
            A, B = self.discrete_system(dtype)
            u_t, state = u_t.to(dtype), state.to(dtype)
            if mask_t is None:
                m = self._step(u_t, state, A, B)
            else:  # u is zeroed as well, so NaN padding cannot reach a gradient through B̄ u_t
                m = self._step(u_t.masked_fill(~mask_t[:, None], 0), state, A, B)
                m = torch.where(mask_t[:, None], m, state)
        return m, m

    def _step(self, u_t: Tensor, state: Tensor, A: Tensor, B: Tensor) -> Tensor:
        m = state.reshape(-1, self.memory_d, self.order) @ A.transpose(0, 1) + u_t[..., None] * B[:, 0]
        return m.reshape(state.shape[0], -1)

    def extra_repr(self) -> str:
        theta = float(torch.as_tensor(self.theta).detach())
        return (
            f"order={self.order}, theta={theta:g}, memory_d={self.memory_d}, discretizer={self.discretizer!r}, "
            f"trainable_theta={self.trainable_theta}"
        )
