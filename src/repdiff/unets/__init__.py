"""The image U-Nets of Part III (Chapters 9-11).

- :mod:`repdiff.unets.model`  the U-Net denoiser, its VE schedule, pipelines and generation
- :mod:`repdiff.unets.train`  the training command line (``python -m repdiff.unets.train``)
"""

from repdiff._lazy import lazy_submodules, submodule_names

__all__ = submodule_names(__path__)
__getattr__, __dir__ = lazy_submodules(__name__, __all__)
