#!/usr/bin/env bash
# Write one self-contained otter-grader autograder zip per assignment into DIR (default: dist/assignments),
# with the solutions notebook DIR/<name>-solutions.ipynb to test it with (both private):
# DIR/<name>-autograder.zip carries a wheel of the course package, the data its tests load, and pinned
# requirements (torch as its CPU build). Upload it to Gradescope, or grade with `otter run -a ZIP nb.ipynb`.
# Leaves assignments/student/ as it is (`python tools/build_assignments.py` refreshes it).
# Usage: bash scripts/build_assignments.sh [DIR] [--no-run-tests]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DIR="${1:-dist/assignments}"
shift || true
PY=".venv/bin/python"
[ -x "$PY" ] || PY="python3"
mkdir -p "$DIR"
"$PY" tools/build_assignments.py --dist "$DIR" --no-students "$@"
