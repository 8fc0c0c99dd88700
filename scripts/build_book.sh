#!/usr/bin/env bash
# Set up the environment (scripts/setup.sh), then build the website into _build/html, executing every
# chapter from scratch (execute_notebooks: force). Warnings are errors; a failing chapter stops the build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
export REPDIFF_BOOK_BUILD=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
# One BLAS/OpenMP thread, as in the nbval run: the chapters' tensors are small, a second thread only adds
# spin-waiting (on a loaded 2-core machine one chapter took 300 s instead of 10 s), and the same thread
# count in both runs gives the same floating-point reductions, so the website shows the numbers nbval checked.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
rm -rf _build/html _build/jupyter_execute _build/.doctrees
start=$(date +%s)
status=0
.venv/bin/jupyter-book build . -W -n --keep-going || status=$?
if [ "$status" -ne 0 ]; then
  echo "== website build FAILED (status $status). Execution reports:" >&2
  tail -n 60 _build/html/reports/*.log >&2 2>/dev/null || true
  exit "$status"
fi
echo "== website built in $(( $(date +%s) - start )) s: open _build/html/index.html"
