"""The two-layer ReLU denoising autoencoder of the paper and its toy diffusion model (Parts I-II).

The closed forms (public import path :mod:`repdiff.theory`):

- :mod:`~repdiff.dae.optimal_denoiser`  optimal denoisers and Tweedie's formula (Chapter 1)
- :mod:`~repdiff.dae.linear_solutions`  the regularised linear DAE: exact loss and global minimiser (Chapter 2)
- :mod:`~repdiff.dae.relu_solutions`, :mod:`~repdiff.dae.relu_losses`  the ReLU DAE's closed-form minimisers and
  its loss, Eq. 6 (Chapters 3-5)
- :mod:`~repdiff.dae.population_limits`  n → ∞ quantities of the generalization regime (Chapter 4)
- :mod:`~repdiff.dae.closed_form_inputs`  input checks shared by the closed forms

The model, its training and measurements:

- :mod:`~repdiff.dae.models`  the ReLU DAE and its activation statistics (Chapters 3-6)
- :mod:`~repdiff.dae.training`  training on the paper's objective, Eq. 6 (Chapters 2-6)
- :mod:`~repdiff.dae.phase`  many DAEs trained at once for the phase diagram (Chapter 5)
- :mod:`~repdiff.dae.measures`, :mod:`~repdiff.dae.leakage`  measurements of one model; ReLU-mask leakage (5-6)

The toy diffusion model (Part II):

- :mod:`~repdiff.dae.toy_diffusion`  the time-conditioned ReLU DAE (Chapter 7)
- :mod:`~repdiff.dae.toy_recipes`, :mod:`~repdiff.dae.toy_training`, :mod:`~repdiff.dae.toy_measures`  its
  recipes, training (``python -m repdiff.dae.toy_training``) and measurements (Chapters 7-8)
- :mod:`~repdiff.dae.jacobians`, :mod:`~repdiff.dae.jacobian_experiments`  denoiser Jacobians (Chapter 8)

The checks that carry each chapter's claims (shared with the negative-control tests):
:mod:`~repdiff.dae.denoising_checks` (1-2), :mod:`~repdiff.dae.memorization_checks` (3),
:mod:`~repdiff.dae.generalization_checks` (4), :mod:`~repdiff.dae.phase_checks` (5),
:mod:`~repdiff.dae.image_checks` (6).
"""

from repdiff._lazy import lazy_submodules, submodule_names

__all__ = submodule_names(__path__)
__getattr__, __dir__ = lazy_submodules(__name__, __all__)
