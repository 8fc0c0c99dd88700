"""repdiff: the shared code of the course on memorization, generalization and representations in
diffusion models (Zhang et al., ICLR 2026, arXiv 2512.20963).

Modules (each small enough to read in one sitting):

- :mod:`repdiff.notebook`  device, seeds, visible numerical checks, glue (every chapter)
- :mod:`repdiff.plotting`  the book's figure style and image grids
- :mod:`repdiff.theory`    optimal denoisers and closed-form DAE minimisers (Part I)
- :mod:`repdiff.metrics`   spikiness, memorization and detection measures
- :mod:`repdiff.data`      bundled and generated data sets
- :mod:`repdiff.sampling`  VE diffusion samplers
"""

from . import data, metrics, paths, plotting, sampling, theory
from .notebook import (
    CheckFailed,
    check,
    check_range,
    fast_mode,
    get_device,
    glue,
    in_colab,
    seed_everything,
    setup_notebook,
)

__version__ = "0.1.0"

__all__ = [
    "CheckFailed",
    "check",
    "check_range",
    "data",
    "fast_mode",
    "get_device",
    "glue",
    "in_colab",
    "metrics",
    "paths",
    "plotting",
    "sampling",
    "seed_everything",
    "setup_notebook",
    "theory",
]
