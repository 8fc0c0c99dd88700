"""repdiff: the shared code of the course on memorization, generalization and representations in
diffusion models (Zhang et al., ICLR 2026, arXiv 2512.20963).

The package follows the course. Subpackages, one per kind of model:

- :mod:`repdiff.data`   every data set: synthetic mixtures, digits, MNIST/CIFAR-10, procedural and captioned images
- :mod:`repdiff.dae`    the two-layer ReLU denoising autoencoder: model, training, phase sweeps, Jacobians (Parts I-II)
- :mod:`repdiff.unets`  the image U-Nets and their training command line (Part III)
- :mod:`repdiff.sd`     Stable Diffusion: the tiny SD, SD v1.4 in Colab, detection, screening, steering (Part IV)

Small modules that every Part shares:

- :mod:`repdiff.notebook`  device, seeds, visible numerical checks, glue (every chapter)
- :mod:`repdiff.theory`    optimal denoisers and closed-form DAE minimisers (Parts I-II)
- :mod:`repdiff.metrics`   spikiness, memorization and detection measures
- :mod:`repdiff.noise`     the variance-preserving noise algebra: ᾱ, σ, forward noising, x̂₀ ↔ ε̂, guidance
- :mod:`repdiff.sampling`  variance-exploding samplers (Parts II-III)
- :mod:`repdiff.representations`  hooks on named modules and pooling: features at a timestep (Parts III-IV)
- :mod:`repdiff.plotting`, :mod:`repdiff.widgets`  the book's figure style, and ipywidgets explorers
- :mod:`repdiff.bench`     speed measurements (``python -m repdiff.bench``)
- :mod:`repdiff.grading`   what the autograded assignments' tests import (Part V)

Submodules are imported on first use (``repdiff.sd.detection``), so ``import repdiff`` stays cheap.
"""

from repdiff._lazy import lazy_submodules
from repdiff.notebook import (
    CheckFailed,
    check,
    check_range,
    checks,
    fast_mode,
    get_device,
    glue,
    glue_all,
    glue_run_time,
    in_colab,
    seed_everything,
    setup_notebook,
)

__version__ = "0.1.0"

_SUBMODULES = ("bench", "dae", "data", "grading", "metrics", "noise", "notebook", "paths", "plotting",
               "representations", "sampling", "sd", "theory", "unets", "widgets")

__all__ = [*_SUBMODULES, "CheckFailed", "check", "check_range", "checks", "fast_mode", "get_device", "glue",
           "glue_all", "glue_run_time", "in_colab", "seed_everything", "setup_notebook"]

__getattr__ = lazy_submodules(__name__, _SUBMODULES)[0]


def __dir__() -> list[str]:
    return sorted(__all__)
