#!/usr/bin/env bash
# SD v1.4's architecture (random weights: nothing is downloaded) in fp16 at 512x512 through Part IV's GPU path:
# generation, the paper's detector, Wen et al.'s score and the authors' steering, with the batch sizes
# repdiff.sd.gpu_memory picks for a free 15 GB Colab T4. Prints seconds and peak GPU memory per stage and exits
# non-zero if a stage fails or needs more than a T4 has. About 2-3 minutes on one GPU.
#
#   bash scripts/gpu_check.sh                      # on a GPU machine
#   bash scripts/gpu_check.sh --json out.json      # also write the numbers to a file
#   bash scripts/gpu_check.sh --cpu-small          # the same stages, tiny, on a CPU (wiring only, < 1 min)
#
# Needs python with torch, numpy, tqdm and transformers (not the course's other packages: scripts/gpu_check.py
# imports only what the check uses). If diffusers or Pillow is missing, the wheels in .whl/ at the repository root
# are installed (no network, no dependencies) into .whl/site (nothing else is touched), then those in .whl/extra/
# if the imports still fail.
# PYTHON=/path/to/python picks the interpreter (default: .venv/bin/python if present, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python3 || command -v python); fi
fi
echo "== python: $PYTHON ($("$PYTHON" --version 2>&1))"
if [ -d .whl/site ]; then export PYTHONPATH="$PYTHONPATH:$PWD/.whl/site"; fi
# what the check imports (diffusers imports lazily: a missing dependency only shows on these imports)
NEEDS="import PIL; from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer"
install_wheels() {  # install_wheels DIR: the wheels in DIR into .whl/site, offline, without dependencies
  shopt -s nullglob
  local wheels=("$1"/*.whl)
  shopt -u nullglob
  if [ ${#wheels[@]} -eq 0 ]; then return 1; fi
  echo "== installing ${wheels[*]} into .whl/site (no index, no dependencies)"
  if "$PYTHON" -m pip --version >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet --no-index --no-deps --upgrade --target .whl/site "${wheels[@]}"
  else  # no pip: a wheel is a zip archive of the package
    "$PYTHON" -c "import sys, zipfile; [zipfile.ZipFile(w).extractall('.whl/site') for w in sys.argv[1:]]" "${wheels[@]}"
  fi
  case ":$PYTHONPATH:" in *":$PWD/.whl/site:"*) ;; *) export PYTHONPATH="$PYTHONPATH:$PWD/.whl/site" ;; esac
}
# .whl/*.whl first (diffusers, and Pillow if the image lacks it); .whl/extra/*.whl (e.g. a newer huggingface_hub)
# only if the imports still fail, so that the image's own packages are kept where they work
if ! "$PYTHON" -c "$NEEDS" 2>/dev/null; then
  if ! install_wheels .whl; then
    echo "gpu_check: diffusers (or Pillow) is missing and there are no wheels in .whl/ to install it from" >&2
    exit 2
  fi
  if ! "$PYTHON" -c "$NEEDS" 2>/dev/null && install_wheels .whl/extra; then :; fi
  "$PYTHON" -c "$NEEDS" || { echo "gpu_check: the imports above fail even with the wheels of .whl/" >&2; exit 2; }
fi
if [[ " $* " != *" --cpu-small "* ]] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader || true
fi
# scripts/gpu_check.py imports only the modules the check needs (not repdiff/__init__.py: no matplotlib etc.);
# its first line gives the versions of python, torch, transformers and diffusers
exec "$PYTHON" scripts/gpu_check.py "$@"
