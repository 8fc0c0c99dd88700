"""Run :mod:`repdiff.sd.gpu_check` (``scripts/gpu_check.sh``) without executing ``repdiff/__init__.py``.

The check needs only torch, numpy, tqdm, Pillow, transformers and diffusers, which is what a bare GPU image has
(diffusers from ``.whl/``). So ``repdiff`` is registered as a bare package over ``src/repdiff`` and only the
modules the check uses are imported (``repdiff.sd.gpu_check`` and what it imports: the SD pipeline stages,
detection, steering, hub, GPU memory, hooks, noise), never the package's notebook helpers. Arguments are those
of ``python -m repdiff.sd.gpu_check``.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "repdiff"


def light_import() -> None:
    """Register ``repdiff`` as a package over ``src/repdiff`` without running its ``__init__``."""
    if "repdiff" in sys.modules:
        return
    pkg = types.ModuleType("repdiff", "Course package, loaded without its __init__ (scripts/gpu_check.py)")
    pkg.__path__ = [str(SRC)]
    pkg.__file__ = str(SRC / "__init__.py")
    pkg.__package__ = "repdiff"
    sys.modules["repdiff"] = pkg


if __name__ == "__main__":
    light_import()
    from repdiff.sd import gpu_check as sd_gpu_check

    sys.exit(sd_gpu_check.main(sys.argv[1:]))
