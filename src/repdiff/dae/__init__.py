"""The two-layer ReLU denoising autoencoder of the paper: model, training, sweeps and Jacobians (Parts I-II).

- :mod:`repdiff.dae.models`  the ReLU DAE and its activation statistics (Chapters 3-6)
- :mod:`repdiff.dae.training`  training on the paper's objective, Eq. 6 (Chapters 2-6)
- :mod:`repdiff.dae.phase`  batched sweeps for the phase diagram, ReLU-mask leakage (Chapters 5-6)
- :mod:`repdiff.dae.toy_diffusion`  a time-conditioned ReLU DAE sampled as a diffusion model (Chapter 7)
- :mod:`repdiff.dae.jacobians`  exact denoiser Jacobians against the theory (Chapter 8)

The closed forms live in :mod:`repdiff.theory` (their public import path).
"""

from repdiff._lazy import lazy_submodules

__all__ = ["jacobians", "models", "phase", "toy_diffusion", "training"]
__getattr__, __dir__ = lazy_submodules(__name__, __all__)
