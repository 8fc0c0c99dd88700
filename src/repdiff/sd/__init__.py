"""Stable Diffusion (Part IV): the tiny SD the course ships, SD v1.4 from the hub, detection and steering.

- :mod:`repdiff.sd.pipeline`  a pipeline's stages: prompts, VAE, re-noising, the guided pass, the DDIM loop,
  features at t (Chapters 12-14)
- :mod:`repdiff.sd.tiny_sd`  the tiny SD-architecture model: recipe, components, loading, prompt lists
- :mod:`repdiff.sd.tiny_sd_train`  its training (``python -m repdiff.sd.tiny_sd RECIPE``)
- :mod:`repdiff.sd.hub`  SD v1.4 in Colab (downloads, dtype, memorized prompts, cached generations)
- :mod:`repdiff.sd.gpu_memory`  batch sizes that fit a free T4, run-time estimates
- :mod:`repdiff.sd.random_sd14`  SD v1.4's configurations and a random-weight SD v1.4 (no download)
- :mod:`repdiff.sd.detection`  the prompt-free detector and Wen et al.'s baseline (Chapter 13)
- :mod:`repdiff.sd.screening`  labelled generations shared by Chapters 12-14
- :mod:`repdiff.sd.steering`  representation steering (Chapter 14)
- :mod:`repdiff.sd.retention`  how much of a push one denoising pass keeps (Chapter 14)
- :mod:`repdiff.sd.gpu_check`, :mod:`repdiff.sd.stage_runner`  the SD v1.4 architecture on a GPU
  (``scripts/gpu_check.sh``)
"""

from repdiff._lazy import lazy_submodules, submodule_names

__all__ = submodule_names(__path__)
__getattr__, __dir__ = lazy_submodules(__name__, __all__)
