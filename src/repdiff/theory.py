"""The closed forms of the course and the checks behind Part I's claims: the public import path.

The code lives in :mod:`repdiff.dae`, one module per job; this module gathers the names chapters, tests and
assignments import (COURSE.md §5). Where each result of the paper (arXiv 2512.20963) lives:

- Eq. 3, the empirical optimal denoiser f_emp; Tweedie's formula; the Wiener filter (Chapter 1):
  :mod:`repdiff.dae.optimal_denoiser`
- the linear DAE: exact loss, eigen-shrinkage a_j = (λ_j − nλ)/(λ_j + nσ²), global minimiser (Chapter 2):
  :mod:`repdiff.dae.linear_solutions`
- Theorem 3.1 / Eq. 8 (one cluster's block), Corollary 3.2 (memorization, p >= n), Corollaries 3.3 / 3.4
  (generalization and hybrid, blocks side by side) (Chapters 3-5): :mod:`repdiff.dae.relu_solutions`
- Eq. 6, the ReLU DAE loss: Monte Carlo, frozen gates, at the memorizer, gated Hessian (Chapters 3-5):
  :mod:`repdiff.dae.relu_losses`
- Corollary 3.3's population limit, the exact test loss and the printed bound (Chapter 4):
  :mod:`repdiff.dae.population_limits`
- the checks a chapter runs, and tests/test_negative_controls_part1a.py (Chapters 1-3) and
  tests/test_negative_controls_ch04.py run on named wrong answers:
  :mod:`repdiff.dae.denoising_checks` (Chapters 1-2), :mod:`repdiff.dae.memorization_checks` (Chapter 3),
  :mod:`repdiff.dae.generalization_checks` (Chapter 4)

Conventions: rows are samples, ``X`` has shape ``(n, d)``, weights ``(d, p)``; functions accept numpy
arrays or torch tensors and return the same kind.
"""

from repdiff.dae import (
    denoising_checks,
    generalization_checks,
    linear_solutions,
    memorization_checks,
    optimal_denoiser,
    population_limits,
    relu_losses,
    relu_solutions,
)
from repdiff.dae.denoising_checks import *  # noqa: F403 - the facade re-exports each module's __all__
from repdiff.dae.generalization_checks import *  # noqa: F403
from repdiff.dae.linear_solutions import *  # noqa: F403
from repdiff.dae.memorization_checks import *  # noqa: F403
from repdiff.dae.optimal_denoiser import *  # noqa: F403
from repdiff.dae.population_limits import *  # noqa: F403
from repdiff.dae.relu_losses import *  # noqa: F403
from repdiff.dae.relu_solutions import *  # noqa: F403

# every public name of the modules above, in the order of the docstring's list (each module's __all__ is the
# one list of what it offers)
__all__ = [
    *optimal_denoiser.__all__,
    *linear_solutions.__all__,
    *relu_solutions.__all__,
    *relu_losses.__all__,
    *population_limits.__all__,
    *denoising_checks.__all__,
    *memorization_checks.__all__,
    *generalization_checks.__all__,
]
