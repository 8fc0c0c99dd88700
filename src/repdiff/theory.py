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

from repdiff.dae.denoising_checks import (
    check_dsm_minimiser,
    check_linear_dae_fit,
    check_linear_dae_minimum,
    check_monte_carlo,
    check_no_lower_loss,
    check_not_affine,
    check_tweedie,
)
from repdiff.dae.generalization_checks import (
    check_blocks,
    check_convergence_rates,
    check_mode_maps,
    check_printed_bound_low,
    check_residual_grows,
    check_same_blocks,
    check_test_loss,
    check_train_test_agree,
)
from repdiff.dae.linear_solutions import (
    linear_dae_loss,
    linear_dae_min_loss,
    linear_dae_solution,
    shrinkage_factors,
)
from repdiff.dae.memorization_checks import (
    check_all_memorize,
    check_local_minimum,
    check_memorizer,
    check_separable,
    memorization_errors,
    storage_shares,
)
from repdiff.dae.optimal_denoiser import (
    empirical_denoiser,
    empirical_log_density,
    linearity_defect,
    posterior_mean_monte_carlo,
    tweedie_denoiser,
    wiener_denoiser,
)
from repdiff.dae.population_limits import (
    block_residual,
    limit_block,
    linear_map_population_loss,
    printed_test_loss_bound,
    subspace_angles_deg,
    wiener_block_test_loss,
)
from repdiff.dae.relu_losses import (
    gated_loss_hessian,
    memorization_loss,
    relu_dae_loss_gated,
    relu_dae_loss_mc,
)
from repdiff.dae.relu_solutions import (
    cluster_block,
    generalization_solution,
    memorization_solution,
)

__all__ = [
    # Chapter 1: optimal denoisers
    "empirical_denoiser",
    "empirical_log_density",
    "wiener_denoiser",
    "tweedie_denoiser",
    "posterior_mean_monte_carlo",
    "linearity_defect",
    # Chapter 2: the linear DAE
    "shrinkage_factors",
    "linear_dae_solution",
    "linear_dae_loss",
    "linear_dae_min_loss",
    # Chapters 3-5: closed-form minimisers of the ReLU DAE and its loss
    "cluster_block",
    "memorization_solution",
    "generalization_solution",
    "relu_dae_loss_mc",
    "relu_dae_loss_gated",
    "memorization_loss",
    "gated_loss_hessian",
    # Chapter 4: population limits and test losses
    "linear_map_population_loss",
    "wiener_block_test_loss",
    "printed_test_loss_bound",
    "limit_block",
    "block_residual",
    "subspace_angles_deg",
    # the checks of Chapters 1-4
    "check_tweedie",
    "check_dsm_minimiser",
    "check_not_affine",
    "check_monte_carlo",
    "check_linear_dae_minimum",
    "check_linear_dae_fit",
    "check_no_lower_loss",
    "check_separable",
    "check_local_minimum",
    "storage_shares",
    "check_memorizer",
    "memorization_errors",
    "check_all_memorize",
    "check_blocks",
    "check_mode_maps",
    "check_test_loss",
    "check_printed_bound_low",
    "check_train_test_agree",
    "check_convergence_rates",
    "check_same_blocks",
    "check_residual_grows",
]
