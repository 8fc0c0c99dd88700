"""The course's small networks: the two-layer ReLU denoising autoencoder of the paper (Chapters 3-6).

    f(x) = W2 relu(W1ᵀ x),   W1, W2 ∈ R^{d×p},   no biases, no skip connection (paper Eq. 5).

Rows are samples: ``forward`` maps ``(m, d)`` to ``(m, d)`` and ``hidden`` gives the representation
h(x) = relu(W1ᵀ x) of shape ``(m, p)``. Helpers read off which units serve which inputs.
"""

from __future__ import annotations

import math

import torch

__all__ = ["ReLUDAE", "activation_frequency", "on_units_map"]


class ReLUDAE(torch.nn.Module):
    """Two-layer bias-free ReLU DAE f(x) = W2 relu(W1ᵀ x) (Chapters 3-6).

    Args:
        d: data dimension. p: hidden width (number of units).
        tied: if True, W2 *is* W1 (one shared Parameter), as in the paper's released code; the theory's
            minimisers have W1 = W2 anyway, untied training has to find that out.
        init_std: entries of W1 (and W2) start as N(0, init_std²); default 1/sqrt(d), so a random unit
            has norm ≈ 1. A small value (e.g. 1e-3) starts near the origin.
        seed: seed of the initialisation (its own generator: the global RNG is untouched).
        dtype: parameter dtype (float32 by default; the checks of Chapter 3 use float64).
    """

    def __init__(
        self,
        d: int,
        p: int,
        *,
        tied: bool = False,
        init_std: float | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if int(d) != d or d < 1 or int(p) != p or p < 1:
            raise ValueError(f"d and p must be positive integers, got d={d!r}, p={p!r}")
        std = 1.0 / math.sqrt(d) if init_std is None else float(init_std)
        if not math.isfinite(std) or std < 0:
            raise ValueError(f"init_std must be a finite number >= 0, got {init_std!r}")
        self.d, self.p, self.tied = int(d), int(p), bool(tied)
        gen = torch.Generator().manual_seed(int(seed))
        self._W1 = torch.nn.Parameter(std * torch.randn(self.d, self.p, generator=gen, dtype=torch.float64).to(dtype))
        if self.tied:
            self._W2 = self._W1
        else:
            self._W2 = torch.nn.Parameter(
                std * torch.randn(self.d, self.p, generator=gen, dtype=torch.float64).to(dtype)
            )

    @property
    def W1(self) -> torch.nn.Parameter:
        """Encoder weights ``(d, p)``; column j is unit j's input direction."""
        return self._W1

    @property
    def W2(self) -> torch.nn.Parameter:
        """Decoder weights ``(d, p)``; column j is what unit j writes back. Same Parameter as W1 when tied."""
        return self._W2

    def _check(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        single = x.ndim == 1
        x2 = x.unsqueeze(0) if single else x
        if x2.ndim != 2 or x2.shape[1] != self.d:
            raise ValueError(f"input must have shape (m, {self.d}) or ({self.d},), got {tuple(x.shape)}")
        return x2.to(self._W1.dtype), single

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The representation h(x) = relu(W1ᵀ x): ``(m, d)`` → ``(m, p)`` (``(d,)`` → ``(p,)``)."""
        x2, single = self._check(x)
        h = torch.relu(x2 @ self._W1)
        return h[0] if single else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The denoised output W2 h(x): ``(m, d)`` → ``(m, d)`` (``(d,)`` → ``(d,)``)."""
        x2, single = self._check(x)
        out = torch.relu(x2 @ self._W1) @ self._W2.T
        return out[0] if single else out

    def extra_repr(self) -> str:
        return f"d={self.d}, p={self.p}, tied={self.tied}"


@torch.no_grad()
def activation_frequency(
    model: ReLUDAE, X: torch.Tensor, *, sigma: float = 0.0, n_draws: int = 1, seed: int = 0
) -> torch.Tensor:
    """Fraction of the inputs x_i + σε (``n_draws`` noise draws each) for which each unit is on (Chapter 4).

    ``X``: ``(n, d)`` → ``(p,)`` in [0, 1]. Call it once per cluster to see which units serve which cluster.
    """
    X = torch.as_tensor(X, dtype=model.W1.dtype)
    if sigma < 0 or n_draws < 1:
        raise ValueError(f"need sigma >= 0 and n_draws >= 1, got sigma={sigma}, n_draws={n_draws}")
    gen = torch.Generator().manual_seed(int(seed))
    on = torch.zeros(model.p, dtype=torch.float64)
    for _ in range(int(n_draws)):
        noise = torch.randn(X.shape, generator=gen, dtype=torch.float64).to(X.dtype)
        on += (model.hidden(X + sigma * noise) > 0).double().mean(0)
    return on / n_draws


@torch.no_grad()
def on_units_map(model: ReLUDAE, units: torch.Tensor | list[int]) -> torch.Tensor:
    """The linear map the DAE applies when exactly ``units`` are on: W2[:, A] W1[:, A]ᵀ ``(d, d)`` (Ch. 4).

    For inputs of one cluster (whose ReLU pattern is fixed) this is the cluster's denoiser, to be
    compared with the Wiener-type block W_k W_kᵀ of Eq. 8.
    """
    idx = torch.as_tensor(units, dtype=torch.long)
    return (model.W2[:, idx] @ model.W1[:, idx].T).detach()
