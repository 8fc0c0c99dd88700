#!/usr/bin/env bash
# Everything CI checks, on a fresh machine, executing each chapter notebook once:
#  1. set up .venv (scripts/setup.sh); with scripts/colab_env.sh present, also .venv-colab with Google
#     Colab's package versions (that script fails if installing the course changes one of them);
#  2. the unit tests and every chapter with nbval, on all cores. Parts I-II and Chapter 13 run in .venv-colab
#     (when it exists) at the same time as the rest in .venv; the .venv run starts as soon as .venv is ready,
#     while .venv-colab is still being built. tools/nbval_record.py keeps each chapter's
#     outputs under _build/executed and reports run times (a table, _build/notebook_times.json): a time is
#     never a failure;
#  3. the website from those outputs (scripts/build_book.sh --executed: nothing is executed again);
#  4. the website in headless Chromium: every page renders, nothing is requested from another host.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Let Python keep the modules it compiles (__pycache__). The environments are installed with pip --no-compile,
# so the first import of a module compiles it; with PYTHONDONTWRITEBYTECODE=1 inherited from the machine, every
# Python process of the run (each notebook kernel, test worker and otter run) compiled torch, diffusers and the
# rest again: 13.5 s of imports instead of 6.1 s for each.
unset PYTHONDONTWRITEBYTECODE
start=$(date +%s) last=$(date +%s)
took() {  # how long the step just finished took (reported, never judged)
  local now; now=$(date +%s); echo "== $1 took $(( now - last )) s"; last=$now
}
# the two environments are built side by side (pip is mostly one core each); .venv-colab's log is shown after
colab_env_pid=""
if [ -f scripts/colab_env.sh ]; then
  mkdir -p _build
  ( set +e; bash scripts/colab_env.sh > _build/colab_env.log 2>&1; echo $? > _build/colab_env.rc ) &
  colab_env_pid=$!
fi
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Chromium (Debian package) for the browser check"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export TQDM_DISABLE=1 HF_HUB_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
# the cores, counted before OMP_NUM_THREADS is set (GNU nproc reports OMP_NUM_THREADS when it is set)
NCORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
# one BLAS/OpenMP thread per process: the workers share the cores, no oversubscription
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export PYTHONPATH="$PWD/tools${PYTHONPATH:+:$PYTHONPATH}"  # the pytest plugin nbval_record

# chapters run with Colab's versions: Parts I and II and Chapter 13 (detection on the tiny SD); the rest in .venv.
# Part II there too, so that .venv-colab still has chapters to run while Chapter 14 (in .venv) computes the
# screening that Chapter 13 and tests/test_generation.py read (with Part I alone, it waited ~30 s for it)
COLAB_CHAPTERS="$(echo chapters/part1/*.ipynb chapters/part2/*.ipynb) chapters/part4/13_detection.ipynb"
# the sampling loop under Colab's diffusers (the shared screening may come from .venv: whichever chapter asks
# first computes it); run in .venv instead when there is no .venv-colab
COLAB_TESTS=tests/test_generation.py
COLAB=0
[ -n "$colab_env_pid" ] && COLAB=1
took "setting up .venv"

# The order of the work. pytest-xdist (--dist loadscope) hands out each notebook and each test module as one
# unit, in the order given, to whichever core frees up. The tiny SD's screening (repdiff.sd.screening) is
# computed by the first chapter or test that asks for it; the others wait for it and read it.
#  .venv: the heaviest chapter first (Chapter 14: it computes the screening); then tests/test_assignments.py,
#    the longest test module (six otter runs, ~220 s of one core in sequence), on the other core from the start
#    (handed out after the chapters, it ran alone for its last ~110 s); then the other chapters, heaviest
#    first (later chapters take longer), those that read the screening last; then the other test modules.
#  .venv-colab: the chapters that read the screening after the rest, so that it works while Chapter 14
#    computes the screening instead of waiting for it.
read -r -a ALL <<< "$(.venv/bin/python -c "
import sys; sys.path.insert(0, 'tools'); import stamp_notebooks
print(' '.join(str(p.relative_to(stamp_notebooks.ROOT)) for p in reversed(stamp_notebooks.toc_notebooks())))")"
READ_SCREENING="chapters/part4/12_text_to_image.ipynb chapters/part4/13_detection.ipynb"
FIRST=() MAIN=() MAIN_LAST=() IN_COLAB=() COLAB_LAST=()
for nb in "${ALL[@]}"; do
  reads=0
  [[ " $READ_SCREENING " == *" $nb "* ]] && reads=1
  if [ "$COLAB" = 1 ] && [[ " $COLAB_CHAPTERS " == *" $nb "* ]]; then
    if [ "$reads" = 1 ]; then COLAB_LAST+=("$nb"); else IN_COLAB+=("$nb"); fi
  elif [ "${#FIRST[@]}" = 0 ]; then FIRST+=("$nb")
  elif [ "$reads" = 1 ]; then MAIN_LAST+=("$nb")
  else MAIN+=("$nb"); fi
done
# test modules, named one by one (a folder argument would put them all after the chapters); tests/site runs
# after the website is built
TESTS=(tests/test_assignments.py)
for t in $(find tests -name 'test_*.py' -not -path 'tests/site/*' | sort); do
  [ "$t" = tests/test_assignments.py ] && continue
  [ "$COLAB" = 1 ] && [ "$t" = "$COLAB_TESTS" ] && continue  # run in .venv-colab
  TESTS+=("$t")
done
ORDER=("${FIRST[@]}" "${TESTS[0]}" "${MAIN[@]}" "${MAIN_LAST[@]}" "${TESTS[@]:1}")
COLAB_ORDER=("${IN_COLAB[@]}" "$COLAB_TESTS" "${COLAB_LAST[@]}")

rm -rf _build/executed _build/notebook_times.json _build/cache _build/cache-colab _build/pytest_main.rc
# each run screens the tiny SD afresh (no result of an earlier run is reused), once: both environments (and the
# autograder venvs of tests/test_assignments.py) share this run's cache, and repdiff.sd.screening locks an entry
# while one process computes it, so the chapters and tests that need it (12, 13, 14, Assignment 3, the tiny SD's
# acceptance test) wait for the first one that asks (usually Chapter 14, the first job here) instead of
# generating the same images at the same time on the other core
export REPDIFF_CACHE="$PWD/_build/cache"
mkdir -p _build
# Timeouts are safety nets for a hung kernel, never benchmarks: a cell may take an hour on a slow machine.
NBVAL=(-p nbval_record --nbval-record _build/executed --nbval-lax --nbval-current-env
       --nbval-cell-timeout=3600 --nbval-kernel-startup-timeout=600 -p no:cacheprovider)
echo "== unit tests and notebooks (nbval) in .venv on $NCORES cores, in this order: ${ORDER[*]}"
# in the background, so that it runs while .venv-colab is still being built; in its own process group
# (setsid), so that a failure below stops it with all its workers
setsid bash -c '.venv/bin/python -m pytest "$@"; echo $? > _build/pytest_main.rc' pytest \
  -n "$NCORES" --dist loadscope --no-loadscope-reorder "${NBVAL[@]}" "${ORDER[@]}" &
main_pid=$!
stop_main() { kill -- "-$main_pid" 2>/dev/null || true; }
if [ -f scripts/colab_env.sh ]; then
  echo "== .venv-colab: Google Colab's package versions, the course installed as Colab's setup cell does"
  wait "$colab_env_pid" || true
  cat _build/colab_env.log
  [ "$(cat _build/colab_env.rc 2>/dev/null || echo 1)" = 0 ] || {
    echo "== FAILED: scripts/colab_env.sh (installing the course changed a Colab package, or .venv-colab" \
         "could not be built; see above)" >&2; stop_main; exit 1; }
  # nbval and what the recorder needs, where colab_env.sh did not install them; no Colab package may move
  .venv-colab/bin/python -m pip freeze --all | sort > _build/colab_freeze_before.txt
  missing=$(.venv-colab/bin/python -c "
import importlib.util as u
need = {'pytest': 'pytest', 'nbval': 'nbval', 'nbclient': 'nbclient', 'docutils': 'docutils', 'myst_nb': 'myst-nb'}
print(' '.join(p for m, p in need.items() if u.find_spec(m) is None))")
  for pkg in $missing; do
    pin=$(grep -i "^$pkg==" requirements.txt || echo "$pkg")
    # myst-nb only for myst_nb.glue (IPython, nbformat, docutils); its other dependencies build websites
    if [ "$pkg" = myst-nb ]; then nodeps="--no-deps"; else nodeps=""; fi
    echo "   installing $pin into .venv-colab for the test run $nodeps"
    .venv-colab/bin/python -m pip install -q $nodeps "$pin"
  done
  .venv-colab/bin/python -c "import nbval, nbclient, myst_nb.ext.glue" || {
    echo "== FAILED: .venv-colab cannot run nbval with tools/nbval_record.py (see above)" >&2; stop_main; exit 1; }
  .venv-colab/bin/python -m pip freeze --all | sort > _build/colab_freeze_after.txt
  changed=$(comm -23 _build/colab_freeze_before.txt _build/colab_freeze_after.txt)
  rm -f _build/colab_freeze_before.txt _build/colab_freeze_after.txt
  if [ -n "$changed" ]; then
    echo "== FAILED: installing the test tools changed Colab packages in .venv-colab:" >&2
    echo "$changed" >&2
    stop_main; exit 1
  fi
  echo "== .venv-colab ready ($(( $(date +%s) - start )) s after the start)"
fi
colab_pid=""
if [ "$COLAB" = 1 ]; then
  echo "== nbval in .venv-colab ($(.venv-colab/bin/python --version)): ${COLAB_ORDER[*]} (log: _build/nbval_colab.log)"
  ( set +e; .venv-colab/bin/python -m pytest "${NBVAL[@]}" "${COLAB_ORDER[@]}" \
      > _build/nbval_colab.log 2>&1
    echo $? > _build/nbval_colab.rc ) &
  colab_pid=$!
fi
wait "$main_pid" || true
status=$(cat _build/pytest_main.rc 2>/dev/null || echo 1)
if [ -n "$colab_pid" ]; then
  wait "$colab_pid" || true
  echo "== nbval in .venv-colab:"
  cat _build/nbval_colab.log
  colab_status=$(cat _build/nbval_colab.rc 2>/dev/null || echo 1)
  [ "$colab_status" = 0 ] || { echo "== FAILED: chapters in .venv-colab (status $colab_status)" >&2; status=1; }
fi
[ "$status" = 0 ] || { echo "== FAILED: unit tests or notebooks (see above)" >&2; exit "$status"; }
took "unit tests and notebooks"

echo "== website, from the notebooks nbval executed"
SKIP_SETUP=1 bash scripts/build_book.sh --executed _build/executed
took "the website"
echo "== browser check of the website"
# the two test modules (every page in Chromium; the layout harness and screenshots) side by side
REPDIFF_REQUIRE_SITE=1 .venv/bin/python -m pytest -p no:cacheprovider -n "$(( NCORES < 2 ? NCORES : 2 ))" \
  --dist loadscope tests/site
took "the browser check"
echo "== all checks passed in $(( $(date +%s) - start )) s; notebook times: _build/notebook_times.json"
