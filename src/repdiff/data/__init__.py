"""Data sets of the course, all generated or bundled (no downloads at build time).

- :mod:`repdiff.data.synthetic`  Gaussian mixtures, separable clusters, scikit-learn's digits (Parts I-II)
- :mod:`repdiff.data.images`  real images for the DAE chapters: digits offline, CelebA in Colab (Chapter 6)
- :mod:`repdiff.data.real`  MNIST/CIFAR-10 (checksummed downloads) and JSON dataset specs (Part III)
- :mod:`repdiff.data.procedural`  offline procedural images (Part III)
- :mod:`repdiff.data.captioned`  captioned posters with planted duplicates (Part IV)
"""

import importlib
from typing import Any

__all__ = ["captioned", "images", "procedural", "real", "synthetic"]


def __getattr__(name: str) -> Any:
    """Import a submodule on first use (``repdiff.data.<name>``), so that importing the package stays cheap."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
