"""Stable Diffusion (Part IV): the tiny SD the course ships, SD v1.4 from the hub, detection and steering.

- :mod:`repdiff.sd.tiny_sd`  the tiny SD-architecture model and its training (``python -m repdiff.sd.tiny_sd``)
- :mod:`repdiff.sd.hub`  SD v1.4 in Colab (downloads, dtype, T4 batch sizes, cached generations)
- :mod:`repdiff.sd.detection`  the prompt-free detector and Wen et al.'s baseline (Chapter 13)
- :mod:`repdiff.sd.screening`  labelled generations shared by Chapters 12-14
- :mod:`repdiff.sd.steering`  representation steering (Chapter 14)
- :mod:`repdiff.sd.gpu_check`  the SD v1.4 architecture on a GPU (``scripts/gpu_check.sh``)
"""

from repdiff._lazy import lazy_submodules, submodule_names

__all__ = submodule_names(__path__)
__getattr__, __dir__ = lazy_submodules(__name__, __all__)
