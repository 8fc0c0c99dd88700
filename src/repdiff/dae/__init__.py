"""The two-layer ReLU denoising autoencoder of the paper: model, training, sweeps and Jacobians (Parts I-II).

- :mod:`repdiff.dae.models`  the ReLU DAE and its activation statistics (Chapters 3-6)
- :mod:`repdiff.dae.training`  training on the paper's objective, Eq. 6 (Chapters 2-6)
- :mod:`repdiff.dae.phase`  batched training sweeps for the phase diagram (Chapter 5)
- :mod:`repdiff.dae.measures`  measurements of one model: representation statistics, PSNR, cosines (Chapters 5-6)
- :mod:`repdiff.dae.leakage`  ReLU-mask leakage (Chapter 5)
- :mod:`repdiff.dae.phase_checks`, :mod:`repdiff.dae.image_checks`  the checks of Chapters 5 and 6
- :mod:`repdiff.dae.toy_diffusion`  a time-conditioned ReLU DAE sampled as a diffusion model (Chapter 7)
- :mod:`repdiff.dae.jacobians`  exact denoiser Jacobians against the theory (Chapter 8)

The closed forms live in :mod:`repdiff.theory` (their public import path).
"""

from repdiff._lazy import lazy_submodules, submodule_names

__all__ = submodule_names(__path__)
__getattr__, __dir__ = lazy_submodules(__name__, __all__)
