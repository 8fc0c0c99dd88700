"""Data sets of the course, all generated or bundled (no downloads at build time).

- :mod:`repdiff.data.synthetic`  Gaussian mixtures, separable clusters, scikit-learn's digits (Parts I-II)
- :mod:`repdiff.data.images`  real images for the DAE chapters: digits offline, CelebA in Colab (Chapter 6)
- :mod:`repdiff.data.real`  MNIST/CIFAR-10 (checksummed downloads) and JSON dataset specs (Part III)
- :mod:`repdiff.data.procedural`  offline procedural images (Part III)
- :mod:`repdiff.data.captioned`, :mod:`repdiff.data.scenes`  the captioned mini-LAION with planted posters, and
  its scenes (Part IV)
"""

from repdiff._lazy import lazy_submodules, submodule_names

__all__ = submodule_names(__path__)
__getattr__, __dir__ = lazy_submodules(__name__, __all__)
