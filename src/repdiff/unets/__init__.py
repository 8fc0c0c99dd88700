"""The image U-Nets of Part III (Chapters 9-11).

- :mod:`repdiff.unets.model`  the U-Net denoiser, its VE schedule, pipelines and generation
- :mod:`repdiff.unets.train`  the training command line (``python -m repdiff.unets.train``)
"""

import importlib
from typing import Any

__all__ = ["model", "train"]


def __getattr__(name: str) -> Any:
    """Import a submodule on first use (``repdiff.unets.<name>``), so that importing the package stays cheap."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
