#!/usr/bin/env bash
# Everything CI checks, on a fresh machine: set up .venv, run the unit tests and every chapter notebook
# (nbval, both cores), build the website (executing every chapter), and open it in headless Chromium.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Chromium (Debian package) for the browser check"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export TQDM_DISABLE=1 HF_HUB_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
NOTEBOOKS=$(.venv/bin/python -c "
import sys; sys.path.insert(0, 'tools'); import stamp_notebooks
print(' '.join(str(p.relative_to(stamp_notebooks.ROOT)) for p in stamp_notebooks.toc_notebooks()))")
echo "== unit tests and notebooks (nbval) on $(nproc) cores: $NOTEBOOKS"
# one thread per worker: two workers on two cores, no oversubscription
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python -m pytest -n "$(nproc)" --dist loadscope \
  --nbval-lax --nbval-cell-timeout=600 -p no:cacheprovider --ignore=tests/site tests $NOTEBOOKS
echo "== website"
SKIP_SETUP=1 bash scripts/build_book.sh
echo "== browser check of the website"
REPDIFF_REQUIRE_SITE=1 .venv/bin/python -m pytest -p no:cacheprovider tests/site
