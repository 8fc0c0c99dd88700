"""repdiff: the shared code of the course on memorization, generalization and representations in
diffusion models (Zhang et al., ICLR 2026, arXiv 2512.20963).

Modules (each small enough to read in one sitting):

- :mod:`repdiff.notebook`  device, seeds, visible numerical checks, glue (every chapter)
- :mod:`repdiff.plotting`  the book's figure style and image grids
- :mod:`repdiff.theory`    optimal denoisers and closed-form DAE minimisers (Part I)
- :mod:`repdiff.metrics`   spikiness, memorization and detection measures
- :mod:`repdiff.data`      bundled and generated data sets
- :mod:`repdiff.sampling`  VE diffusion samplers
- :mod:`repdiff.models`    the two-layer ReLU denoising autoencoder (Part I)
- :mod:`repdiff.training`  training it on the paper's objective, Eq. 6 (Part I)
- :mod:`repdiff.phase`     batched sweeps for the phase diagram, ReLU-mask leakage (Part I, Chapter 5)
- :mod:`repdiff.widgets`   ipywidgets explorers (each next to a static figure of the same thing)
- :mod:`repdiff.image_datasets`  real images: digits offline, CelebA from the hub in Colab (Chapter 6)
- :mod:`repdiff.toy_diffusion`  a time-conditioned ReLU DAE sampled as a diffusion model (Part II)
- :mod:`repdiff.jacobians` exact denoiser Jacobians and their comparison with the theory (Part II)
- :mod:`repdiff.procedural`, :mod:`repdiff.datasets`  offline images and real-data loaders (Part III)
- :mod:`repdiff.representations`  hooks that record any named module's activations (Parts III-IV)
- :mod:`repdiff.unet`, :mod:`repdiff.train`, :mod:`repdiff.bench`  U-Nets, their training and speed
  (Part III; imported on demand: ``from repdiff import unet``)
- :mod:`repdiff.captioned`, :mod:`repdiff.tiny_sd`  the course's captioned data with planted duplicates and
  a tiny Stable-Diffusion-architecture model trained on it (Part IV)
- :mod:`repdiff.screening`  generations of the tiny SD labelled one by one, shared by Chapters 12-14
- :mod:`repdiff.detection`, :mod:`repdiff.steering`, :mod:`repdiff.sd_hub`  the prompt-free detector and
  its baseline, representation steering, and the real SD v1.4 path for Colab (Part IV)
"""

from . import (
    captioned,
    data,
    datasets,
    detection,
    image_datasets,
    jacobians,
    metrics,
    models,
    paths,
    phase,
    plotting,
    procedural,
    representations,
    sampling,
    screening,
    sd_hub,
    steering,
    theory,
    tiny_sd,
    toy_diffusion,
    training,
    widgets,
)
from .notebook import (
    CheckFailed,
    check,
    check_range,
    fast_mode,
    get_device,
    glue,
    glue_all,
    in_colab,
    seed_everything,
    setup_notebook,
)

__version__ = "0.1.0"

__all__ = [
    "captioned",
    "check",
    "check_range",
    "CheckFailed",
    "data",
    "datasets",
    "detection",
    "fast_mode",
    "get_device",
    "glue",
    "glue_all",
    "image_datasets",
    "in_colab",
    "jacobians",
    "metrics",
    "models",
    "paths",
    "phase",
    "plotting",
    "procedural",
    "representations",
    "sampling",
    "screening",
    "sd_hub",
    "seed_everything",
    "setup_notebook",
    "steering",
    "theory",
    "tiny_sd",
    "toy_diffusion",
    "training",
    "widgets",
]
