"""Stable Diffusion (Part IV): the tiny SD the course ships, SD v1.4 from the hub, detection and steering.

- :mod:`~repdiff.sd.pipeline`  the pipeline's stages as in diffusers: prompts, VAE, renoise, guided pass, the DDIM
  loop, features at a timestep (Chapters 12-14)
- :mod:`~repdiff.sd.tiny_sd`, :mod:`~repdiff.sd.tiny_sd_train`  the tiny SD: loading, prompts, recipe; its training
  (``python -m repdiff.sd.tiny_sd RECIPE``)
- :mod:`~repdiff.sd.screening`  labelled generations shared by Chapters 12-14
- :mod:`~repdiff.sd.cache`  results kept on disk, keyed by the pipeline, the arguments and the code, so that a build
  computes each once (the screening, steering sweeps)
- :mod:`~repdiff.sd.detection`  the prompt-free detector and Wen et al.'s baseline (Chapter 13)
- :mod:`~repdiff.sd.steering`, :mod:`~repdiff.sd.retention`  representation steering, and how much of a push a
  denoising pass keeps (Chapter 14)
- :mod:`~repdiff.sd.hub`  SD v1.4 in Colab (downloads, dtype, cached generations)
- :mod:`~repdiff.sd.random_sd14`, :mod:`~repdiff.sd.gpu_memory`, :mod:`~repdiff.sd.stage_runner`,
  :mod:`~repdiff.sd.gpu_check`  SD v1.4's architecture with random weights on a GPU: batch sizes for a T4 and
  ``scripts/gpu_check.sh``
"""

from repdiff._lazy import lazy_submodules, submodule_names

__all__ = submodule_names(__path__)
__getattr__, __dir__ = lazy_submodules(__name__, __all__)
