#!/usr/bin/env bash
# Set up the environment (scripts/setup.sh), then build the website into _build/html.
#
#   bash scripts/build_book.sh                    executes every chapter (one at a time) and builds the site
#   bash scripts/build_book.sh --executed DIR     uses the notebooks nbval just executed under DIR
#                                                 (scripts/test.sh; tools/nbval_record.py) and executes
#                                                 only a chapter that has no complete, current copy there
#
# The execution cache (_build/.jupyter_cache) is emptied first, every time: no output survives from an
# earlier build, and a chapter whose copy is missing or whose code changed since is executed here. Warnings
# are errors; a failing chapter stops the build with its traceback.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
unset PYTHONDONTWRITEBYTECODE  # keep compiled modules: each chapter's kernel imports torch (scripts/test.sh)
EXECUTED=""
while [ $# -gt 0 ]; do
  case "$1" in
    --executed) EXECUTED="$2"; shift 2 ;;
    *) echo "usage: $0 [--executed DIR]" >&2; exit 2 ;;
  esac
done
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
export REPDIFF_BOOK_BUILD=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
# One BLAS/OpenMP thread, as in the nbval run: the chapters' tensors are small, a second thread only adds
# spin-waiting (on a loaded 2-core machine one chapter took 300 s instead of 10 s), and the same thread
# count in both runs gives the same floating-point reductions.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
rm -rf _build/html _build/jupyter_execute _build/.doctrees _build/.jupyter_cache
start=$(date +%s)
if [ -n "$EXECUTED" ]; then
  NOTEBOOKS=$(.venv/bin/python -c "
import sys; sys.path.insert(0, 'tools'); import stamp_notebooks
print(' '.join(str(p) for p in stamp_notebooks.toc_notebooks()))")
  # shellcheck disable=SC2086
  .venv/bin/python tools/nbval_record.py seed-cache "$EXECUTED" _build/.jupyter_cache $NOTEBOOKS
fi
status=0
.venv/bin/jupyter-book build . -W -n --keep-going || status=$?
if [ "$status" -ne 0 ]; then
  echo "== website build FAILED (status $status). Execution reports:" >&2
  tail -n 60 _build/html/reports/*.log >&2 2>/dev/null || true
  exit "$status"
fi
echo "== website built in $(( $(date +%s) - start )) s: open _build/html/index.html"
