#!/usr/bin/env bash
# A test environment with Google Colab's package versions (scripts/colab-versions.txt), into which the course is
# installed EXACTLY as the chapters' setup cell does in Colab (`pip install -e <repo>[diffusers]`), then checked:
# installing the course must change the version of no package that was there before (Colab's ones included).
#
#   bash scripts/colab_env.sh                       # create or reuse .venv-colab, install, check
#   bash scripts/colab_env.sh -- PYTEST_ARGS...     # the same, then run pytest in .venv-colab with those arguments
#   e.g. bash scripts/colab_env.sh -- --nbval-lax -p no:cacheprovider chapters/part1/01_denoising.ipynb
#
# Here the env runs Python 3.11 with the CPU build of torch that pip finds on this machine (Colab: Python 3.13,
# torch 2.11 with CUDA; the setup cell never installs torch). An existing .venv-colab whose versions already
# match the pins is reused (only the course is reinstalled). Exit status 1 with a message naming every changed
# package if the course's install moved any of them. Env: PYTHON (default python3.11), COLAB_VENV (.venv-colab).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${COLAB_VENV:-.venv-colab}"
PYTHON="${PYTHON:-python3.11}"
PINS=scripts/colab-versions.txt
# test tools only (Colab's own ipykernel is pinned in $PINS)
TOOLS=(pytest==9.2.0 nbval==0.11.0)
PY="$VENV/bin/python"

# pip prints a warning per package for the machine's optional local index folders that do not exist: drop those
quiet_pip() { "$PY" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; }

# exit 0 iff every pin (and test tool) is installed at exactly its version
pins_match() {
  "$PY" - "$PINS" "${TOOLS[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

reqs = [ln.split("#")[0].strip() for ln in open(sys.argv[1])] + sys.argv[2:]
bad = []
for req in filter(None, reqs):
    name, want = req.split("==")
    try:
        got = version(name).split("+")[0]
    except PackageNotFoundError:
        got = None
    if got != want:
        bad.append(f"{name} {got or 'missing'} (want {want})")
if bad:
    print("   not yet at Colab's versions: " + ", ".join(bad))
sys.exit(1 if bad else 0)
EOF
}

start=$(date +%s)
if [ ! -x "$PY" ]; then
  echo "== creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
if pins_match; then
  echo "== $VENV already has Colab's versions: reusing it"
else
  echo "== installing Colab's versions ($PINS) and the test tools into $VENV"
  # --no-compile: modules are compiled when first imported (Colab's own packages are there already)
  quiet_pip install -q --no-compile -r "$PINS" "${TOOLS[@]}"
  pins_match
fi

# Colab has no repdiff before the setup cell runs: start from there
quiet_pip uninstall -q -y repdiff
"$PY" -m pip list --format=json >"$VENV/colab-before.json"
echo "== installing the course as the setup cell does: pip install -q -e $PWD[diffusers]"
quiet_pip install -q -e "$PWD[diffusers]"
"$PY" -m pip list --format=json >"$VENV/colab-after.json"

"$PY" - "$VENV/colab-before.json" "$VENV/colab-after.json" "$PINS" <<'EOF'
import json
import sys

before, after = ({p["name"].lower(): p["version"] for p in json.load(open(f))} for f in sys.argv[1:3])
pinned = {ln.split("#")[0].split("==")[0].strip().lower() for ln in open(sys.argv[3])} - {""}
changed = [f"{n} {v} -> {after.get(n, 'removed')}" + (" (Colab-pinned)" if n in pinned else "")
           for n, v in sorted(before.items()) if after.get(n) != v]
added = sorted(set(after) - set(before) - {"repdiff"})
if "repdiff" not in after:
    sys.exit("FAIL: `pip install -e .[diffusers]` did not install repdiff")
if changed:
    sys.exit("FAIL: installing the course as Colab's setup cell does changed Colab's packages:\n  "
             + "\n  ".join(changed) + "\nLoosen the lower bounds in pyproject.toml so that these versions "
             "satisfy them (scripts/colab-versions.txt lists Colab's versions).")
print(f"== OK: the course's install changed none of the {len(before)} packages "
      f"({len(pinned)} pinned to Colab's versions); added: {', '.join(added) or 'nothing'} and repdiff")
print("   " + ", ".join(f"{n} {after[n]}" for n in sorted(pinned)))
EOF
echo "== $VENV ready in $(( $(date +%s) - start )) s"

if [ "${1:-}" = "--" ]; then
  shift
  export TQDM_DISABLE=1 HF_HUB_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
  "$PY" -m pytest "$@"
fi
