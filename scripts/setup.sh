#!/usr/bin/env bash
# Create .venv (if needed) and install the pinned requirements and the course package into it.
# Safe to run again: pip skips what is already installed. Sourced by build_book.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "== installing requirements.txt (torch 2.13.0 CPU build where no GPU build is asked for)"
# --no-compile: Python compiles a module when it is first imported, not all ~40,000 files now (saves ~40 s)
.venv/bin/python -m pip install -q --no-compile -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
echo "== environment ready: $(.venv/bin/python -c 'import torch, repdiff; print("torch", torch.__version__, "| repdiff", repdiff.__version__)')"
