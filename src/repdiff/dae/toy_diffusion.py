"""A time-conditioned two-layer ReLU DAE trained across noise levels: the course's toy diffusion model.

Chapters 7 and 8 use it. The network is the DAE of Part I, f(x) = W2 relu(W1ᵀ x), made to work at every
noise level of a diffusion model by a per-unit gain that depends on σ (and optionally a skip term):

    h(x)      = relu(W1ᵀ (x − c))                      (p,)   the representation (before the gain)
    a(σ)      = exp(MLP(log σ))                        (p,)   a positive gain per hidden unit
    x̂0(x, σ)  = c + W2 (a(σ) ⊙ h(x)) + s · (x − c)     (d,)

with W1, W2 of shape ``(d, p)`` (COURSE.md §5 convention), tied (W2 = W1) by default, no biases, a
learnable scalar skip ``s`` (initialised at 0) that can be switched off, and a fixed centre ``c`` (the mean
of the training set when the recipe centres the data, else 0). The MLP is Linear(1, m) – ReLU –
Linear(m, p) with its last layer at zero, so a(σ) = 1 at the start.

This follows the paper's public toy code (``DAECond``: tied weights, gain exp(MLP(log σ)), scalar skip,
x0-prediction, σ log-uniform); the course's version differs in stated ways: the data are centred (raw
digits in [−1, 1] are all positively correlated, so bias-free units could not single out one image), the
skip can be disabled (so the Jacobian is exactly the DAE's W2 diag(a ⊙ 1[W1ᵀ(x − c) > 0]) W1ᵀ of
Chapter 8), and an optional σ-dependent bias b(σ) inside the ReLU (``bias=True``, an exercise of
Chapter 7) makes the network non-homogeneous.

The rest of the toy diffusion model lives beside this module:

- :mod:`repdiff.dae.toy_recipes`  what a trained model is made from (:class:`~repdiff.dae.toy_recipes.Recipe`,
  the training data, the course's three configurations);
- :mod:`repdiff.dae.toy_training`  training, saving, loading (``python -m repdiff.dae.toy_training``);
- :mod:`repdiff.dae.toy_measures`  what Chapter 7 measures on the samples and representations.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["TimeConditionedReLUDAE"]


class TimeConditionedReLUDAE(nn.Module):
    """x̂0(x, σ) = W2 (exp(MLP(log σ)) ⊙ relu(W1ᵀ x)) + s·x, with W1, W2 of shape ``(d, p)``.

    Args:
        d: data dimension.
        p: number of hidden units (the width of the representation).
        tied: use one matrix for both layers (W2 = W1), as in the paper's constructed minimisers.
        skip: include the learnable scalar skip ``s`` (initialised at 0).
        gain_hidden: hidden width of the gain MLP a(σ) = exp(MLP(log σ)).
        init_scale: the columns of W1 (and W2) start as Gaussian vectors of norm about ``init_scale``.
        seed: seed of the initialisation (the module's own generator: global RNG state is not touched).

    Used in Chapter 7 (training and sampling) and Chapter 8 (Jacobians).
    """

    def __init__(
        self,
        d: int,
        p: int,
        *,
        tied: bool = True,
        skip: bool = True,
        gain_hidden: int = 64,
        init_scale: float = 0.5,
        seed: int = 0,
        center: torch.Tensor | np.ndarray | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if d < 1 or p < 1 or gain_hidden < 1:
            raise ValueError(f"d, p and gain_hidden must be >= 1, got d={d}, p={p}, gain_hidden={gain_hidden}")
        self.d, self.p, self.tied, self.has_skip = int(d), int(p), bool(tied), bool(skip)
        g = torch.Generator().manual_seed(int(seed))
        self.W1 = nn.Parameter(torch.randn(d, p, generator=g) * (init_scale / math.sqrt(d)))
        self.W2_free = None if tied else nn.Parameter(torch.randn(d, p, generator=g) * (init_scale / math.sqrt(d)))
        self.gain_in = nn.Linear(1, gain_hidden)
        self.has_bias = bool(bias)
        self.gain_out = nn.Linear(gain_hidden, 2 * p if bias else p)
        with torch.no_grad():
            bound = 1.0  # fan_in = 1: uniform init of the first gain layer from the module's generator
            self.gain_in.weight.copy_(torch.empty(gain_hidden, 1).uniform_(-bound, bound, generator=g))
            self.gain_in.bias.copy_(torch.empty(gain_hidden).uniform_(-bound, bound, generator=g))
            self.gain_out.weight.zero_()
            self.gain_out.bias.zero_()
        self.s = nn.Parameter(torch.zeros(())) if skip else None
        mu = torch.zeros(d) if center is None else torch.as_tensor(center, dtype=torch.float32).flatten()
        if mu.shape != (d,):
            raise ValueError(f"center must have shape ({d},), got {tuple(mu.shape)}")
        self.register_buffer("center", mu.clone())

    # -- pieces -------------------------------------------------------------------------------------------
    @property
    def W2(self) -> torch.Tensor:
        """The decoder matrix ``(d, p)`` (the same tensor as ``W1`` when tied)."""
        return self.W1 if self.W2_free is None else self.W2_free

    @property
    def skip_value(self) -> float:
        """The learned skip s (0.0 for a model without skip)."""
        return 0.0 if self.s is None else float(self.s.detach())

    def _sigma_tensor(self, sigma: float | torch.Tensor, n: int) -> torch.Tensor:
        dev, dt = self.W1.device, self.W1.dtype
        sig = torch.as_tensor(sigma, dtype=dt, device=dev)
        if sig.ndim == 0:
            sig = sig.expand(n)
        if sig.shape != (n,):
            raise ValueError(f"sigma must be a number or have shape ({n},), got shape {tuple(sig.shape)}")
        if not torch.isfinite(sig).all() or (sig <= 0).any():
            raise ValueError("sigma must be finite and > 0 (the gain is a function of log σ)")
        return sig

    def _time_terms(self, sig: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gain a(σ) ``(N, p)`` and, for a model with biases, the pre-activation bias b(σ) ``(N, p)``."""
        z = self.gain_out(torch.relu(self.gain_in(torch.log(sig)[:, None])))
        if self.has_bias:
            return torch.exp(z[:, : self.p]), z[:, self.p :]
        return torch.exp(z), None

    def gain(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """a(σ) = exp(MLP(log σ)) > 0: shape ``(p,)`` for a number σ, ``(N, p)`` for σ of shape ``(N,)``."""
        single = not (isinstance(sigma, torch.Tensor) and sigma.ndim > 0)
        sig = self._sigma_tensor(sigma, 1) if single else self._sigma_tensor(sigma, len(sigma))
        a, _ = self._time_terms(sig)
        return a[0] if single else a

    def preactivation(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """W1ᵀ(x − c) (+ b(σ) for a model with biases): ``(N, d)`` → ``(N, p)``; its sign pattern is the mask."""
        x = self._check_x(x)
        z = (x - self.center) @ self.W1
        if self.has_bias:
            if sigma is None:
                raise ValueError("this model has σ-dependent biases: pass sigma")
            _, b = self._time_terms(self._sigma_tensor(sigma, x.shape[0]))
            z = z + b
        return z

    def representation(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """h(x) = relu(W1ᵀ(x − c)), the representation before the gain: ``(N, d)`` → ``(N, p)``.

        ``c`` is the stored centre (zero unless the recipe centres the data); ``sigma`` is needed only by
        a model with biases.
        """
        return torch.relu(self.preactivation(x, sigma))

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape (N, {self.d}), got {tuple(x.shape)}")
        if x.device != self.W1.device:
            raise RuntimeError(f"x is on {x.device} but the model is on {self.W1.device}; move one of them")
        return x.to(self.W1.dtype)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """x̂0 for noisy inputs ``x`` ``(N, d)`` at level ``sigma`` (a number or ``(N,)``) → ``(N, d)``."""
        x = self._check_x(x)
        a, b = self._time_terms(self._sigma_tensor(sigma, x.shape[0]))
        xc = x - self.center
        z = xc @ self.W1 if b is None else xc @ self.W1 + b
        out = self.center + (a * torch.relu(z)) @ self.W2.T
        if self.s is not None:
            out = out + self.s * xc
        return out
