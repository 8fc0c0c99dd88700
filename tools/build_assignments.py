"""Build the autograded assignments of Part V with otter-grader: student notebooks and self-contained autograders.

Not part of the course package (students never need it); instructors and CI run it from the repository root::

    python tools/build_assignments.py               # rebuild every assignment, refresh assignments/student/
    python tools/build_assignments.py --check       # exit 1 if assignments/student/ is out of date
    python tools/build_assignments.py --dist DIR    # also write DIR/<name>-autograder.zip (Gradescope, otter run)
                                                    # and DIR/<name>-solutions.ipynb (to test an autograder)
    bash scripts/build_assignments.sh DIR           # the same as --dist DIR, with the course environment

Every build runs ``otter assign --no-pdfs`` on a scratch copy of a master notebook
``assignments/source/<name>/<name>.ipynb``. The copy gets what the master's ``autograder_files`` name:

- ``wheels/``: a wheel of the course package built from this checkout (``repdiff-<version>-py3-none-any.whl``);
- ``data/``: the data folders the assignment's tests need (:data:`DATA_FOLDERS`, e.g. A3's ``data/tiny_sd``,
  taken as the checkout holds it at build time);

and a ``requirements.txt`` (:func:`autograder_requirements`) that pins every package of the grading
environment to the version installed here (the versions the course is tested with), torch as its CPU build,
and installs the course package from ``wheels/`` by a ``--find-links`` line. No git URL, no network access to the
repository: the zip is all the grading image needs besides a package index.
"""

from __future__ import annotations

import argparse
import email.parser
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "assignments"

#: Where Gradescope (and ``otter run``) unpack an autograder zip; ``files/`` of the zip lands under it.
AUTOGRADER_SOURCE = "/autograder/source"
#: What grading runs on besides the course package: otter-grader (the version the masters are written for) and
#: the Jupyter kernel it executes submissions in (otter's ``[grading]`` extra, less the PDF reader ``pypdf``).
GRADER_REQUIREMENTS = ("otter-grader==7.0.0", "ipykernel", "jupyter_client")
#: The PyTorch index that serves CPU-only wheels (a plain ``torch`` from PyPI pulls GBs of CUDA libraries).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: data/ folders each assignment's tests load (copied into its autograder as ``files/data/<folder>``).
DATA_FOLDERS: dict[str, tuple[str, ...]] = {"a3_detection": ("tiny_sd",)}
#: The course package's extras each assignment needs (A3 runs a diffusers pipeline).
EXTRAS: dict[str, tuple[str, ...]] = {"a3_detection": ("diffusers",)}


def master_notebooks() -> list[Path]:
    """The master notebooks ``assignments/source/<name>/<name>.ipynb``, in name order."""
    return sorted(p for p in (ASSIGNMENTS / "source").glob("*/*.ipynb") if p.stem == p.parent.name)


def repository() -> dict[str, str]:
    """The repository URL and branch from ``_config.yml`` (the one place the course writes them).

    Returns:
        dict with ``url`` (no trailing slash), ``branch`` and ``colab`` (the Colab prefix of a notebook link,
        ending in ``/blob/<branch>/``).
    """
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = cfg["repository"]["url"].rstrip("/")
    branch = cfg["repository"].get("branch", "main")
    colab = cfg["launch_buttons"]["colab_url"].rstrip("/")
    org_repo = url.split("github.com/")[1]
    return {"url": url, "branch": branch, "colab": f"{colab}/github/{org_repo}/blob/{branch}/"}


def assignment_config(master: Path) -> dict:
    """The ``# ASSIGNMENT CONFIG`` raw cell of a master notebook, parsed."""
    for cell in json.loads(Path(master).read_text())["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "raw" and src.lstrip().startswith("# ASSIGNMENT CONFIG"):
            return yaml.safe_load(src)
    raise ValueError(f"{master} has no '# ASSIGNMENT CONFIG' raw cell")


# ---------------------------------------------------------------------------------------------------------
# The course wheel and the pinned requirements
# ---------------------------------------------------------------------------------------------------------


def build_wheel(out_dir: Path) -> Path:
    """Build ``repdiff-<version>-py3-none-any.whl`` from this checkout into ``out_dir`` (offline, a few seconds).

    The sources are copied to a scratch folder first, so the build leaves no ``build/`` or ``*.egg-info`` in
    the checkout.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="repdiff-wheel-") as tmp:
        src = Path(tmp) / "repdiff"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (ROOT / name).is_file():
                shutil.copy2(ROOT / name, src / name)
        shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
               "-w", str(out_dir), str(src)]
        result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(out_dir.glob("repdiff-*-py3-none-any.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(f"building the repdiff wheel failed:\n{result.stdout}\n{result.stderr}")
    return wheels[-1]


def _wheel_requires(wheel: Path) -> list[str]:
    """``Requires-Dist`` lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(zf.read(name).decode())
    return msg.get_all("Requires-Dist") or []


def _wanted(req: Requirement, extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": e}) for e in ("", *extras))


def pinned_closure(roots: Iterable[str], *, extra_requires: Iterable[str] = ()) -> dict[str, str]:
    """Every distribution ``roots`` need, transitively, pinned to the version installed in this environment.

    Args:
        roots: requirement strings of installed distributions (extras followed).
        extra_requires: requirement strings that are not installed here themselves but whose
            dependencies are (the course wheel's ``Requires-Dist`` with its extras).

    Returns:
        canonical name -> installed version, in name order.

    Raises:
        metadata.PackageNotFoundError: a needed distribution is not installed here.
    """
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in (*roots, *extra_requires)]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(req.name)
        pins[key[0]] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            if _wanted(sub, req.extras):
                sub.marker = None
                todo.append(sub)
    return dict(sorted(pins.items()))


def autograder_requirements(wheel: Path, extras: Iterable[str] = ()) -> str:
    """The ``requirements.txt`` of an autograder: the course wheel from ``files/wheels/``, everything pinned.

    Otter puts these lines into the zip's ``environment.yml`` (pip section, with ``overwrite_requirements``
    so that otter adds no unpinned ``otter-grader[grading,plugins]`` of its own: the Google plugins and
    ``pypdf`` are not needed); the grading image's
    ``setup.sh`` installs them. Torch is the CPU build from the PyTorch CPU index.
    """
    extras = tuple(extras)
    name = wheel.name.split("-")[0]
    version = wheel.name.split("-")[1]
    own = [r for r in _wheel_requires(wheel) if _wanted(Requirement(r), extras)]
    own = [str(Requirement(r).name) + (f"[{','.join(sorted(Requirement(r).extras))}]" if Requirement(r).extras
                                       else "") for r in own]
    pins = pinned_closure(GRADER_REQUIREMENTS, extra_requires=own)
    pins.pop(canonicalize_name(name), None)
    extra = f"[{','.join(extras)}]" if extras else ""
    lines = [
        "# Written by tools/build_assignments.py: every package pinned to the version the course is tested with.",
        f"--extra-index-url {TORCH_CPU_INDEX}",
        f"--find-links {AUTOGRADER_SOURCE}/files/wheels",
        f"{name}{extra}=={version}",
    ]
    if "torch" in pins:  # the CPU build, whichever build this environment has
        pins["torch"] = Version(pins["torch"]).public + "+cpu"
    lines += [f"{n}=={v}" for n, v in pins.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# otter assign
# ---------------------------------------------------------------------------------------------------------


def build(master: Path, out_dir: Path, *, wheel: Path, run_tests: bool = True,
          timeout: float = 3600) -> dict[str, Path]:
    """Run ``otter assign --no-pdfs`` on one master notebook, from a scratch copy of its folder.

    The copy gets the course wheel under ``wheels/``, the data folders of :data:`DATA_FOLDERS` under ``data/``
    and the pinned ``requirements.txt``; the master's config names them (``autograder_files``), so otter
    puts them into the autograder zip. With ``run_tests`` otter executes the solutions here and fails if any
    test, public or hidden, fails on them.

    Args:
        master: ``assignments/source/<name>/<name>.ipynb``. out_dir: where otter writes ``student/`` and
            ``autograder/`` (created). wheel: the course wheel (:func:`build_wheel`). run_tests: let otter
            check the solutions. timeout: seconds, a safety net for a hung kernel, never a benchmark
            (A3's first run on a machine also generates the shared screening).

    Returns:
        dict with ``student`` (the student notebook), ``tests`` (its public tests folder), ``autograder``
        (the autograder folder, with the solutions notebook) and ``zip`` (the autograder zip).

    Raises:
        FileNotFoundError: no such master or data folder. RuntimeError: otter failed (its output is in the
            message).
    """
    master = Path(master).resolve()
    if not master.is_file():
        raise FileNotFoundError(f"no master notebook at {master}")
    out_dir = Path(out_dir).resolve()
    name = master.stem
    config = assignment_config(master)
    wanted = set(config.get("autograder_files") or [])
    expected = {"wheels"} | ({"data"} if name in DATA_FOLDERS else set())
    if wanted != expected:
        raise ValueError(f"{master.name}: the config's autograder_files should be {sorted(expected)}, got "
                         f"{sorted(wanted)}")
    with tempfile.TemporaryDirectory(prefix="otter-src-") as tmp:
        work = Path(tmp) / name
        shutil.copytree(master.parent, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__",
                                                                           ".OTTER_LOG"))
        (work / "wheels").mkdir()
        shutil.copy2(wheel, work / "wheels" / wheel.name)
        for folder in DATA_FOLDERS.get(name, ()):
            src = ROOT / "data" / folder
            if not src.is_dir():
                raise FileNotFoundError(f"{src} is missing: {name}'s autograder needs it")
            shutil.copytree(src, work / "data" / folder, ignore=shutil.ignore_patterns("__pycache__"))
        (work / "requirements.txt").write_text(autograder_requirements(wheel, EXTRAS.get(name, ())))
        cmd = [sys.executable, "-m", "otter", "assign", "--no-pdfs"]
        if not run_tests:
            cmd.append("--no-run-tests")
        cmd += [str(work / master.name), str(out_dir)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=work)
    if result.returncode != 0:
        raise RuntimeError(
            f"otter assign failed on {master.name} (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    zips = sorted((out_dir / "autograder").glob("*-autograder_*.zip"))
    student = out_dir / "student" / master.name
    if not student.is_file() or not zips:
        raise RuntimeError(f"otter assign produced no student notebook or autograder zip in {out_dir}")
    return {"student": student, "tests": out_dir / "student" / "tests", "autograder": out_dir / "autograder",
            "zip": zips[-1]}


def _normalised_notebook(path: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """What matters in a student notebook: each cell's type, source and tags (cell ids are random)."""
    nb = json.loads(path.read_text())
    return [
        (c["cell_type"], "".join(c["source"]), tuple(c.get("metadata", {}).get("tags", []))) for c in nb["cells"]
    ]


def _strip_notebook(path: Path) -> None:
    """Clear outputs and execution counts (the repository commits notebooks without outputs)."""
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def differences(built: dict[str, Path], committed: Path) -> list[str]:
    """How the committed ``assignments/student/<name>/`` differs from a fresh build (empty: up to date)."""
    name = built["student"].name
    problems = []
    nb = committed / name
    if not nb.is_file():
        return [f"{nb} is missing"]
    if _normalised_notebook(nb) != _normalised_notebook(built["student"]):
        problems.append(f"{nb} differs from what otter assign builds from its master")
    want = {p.name for p in built["tests"].glob("*.py")}
    have = {p.name for p in (committed / "tests").glob("*.py")}
    if want != have:
        problems.append(f"{committed / 'tests'} holds {sorted(have)}, otter builds {sorted(want)}")
    for f in sorted(want & have):
        if not filecmp.cmp(built["tests"] / f, committed / "tests" / f, shallow=False):
            problems.append(f"{committed / 'tests' / f} differs from the built public test")
    return problems


def sync_students(
    *, check: bool = False, run_tests: bool = True, dist: Path | None = None, students: bool = True,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Build every master; refresh (or, with ``check``, compare) ``assignments/student/<name>/``.

    The student folder holds exactly the student notebook (outputs stripped) and its public ``tests/``:
    what a student needs, in Colab or a clone. Hidden tests and solutions never go there. With ``dist``,
    ``dist/<name>-autograder.zip`` and ``dist/<name>-solutions.ipynb`` are written too; ``students=False``
    leaves ``assignments/student/`` alone.

    Returns:
        the list of problems found (``check=True``); empty when everything is up to date or was written.
    """
    problems: list[str] = []
    student_root = ASSIGNMENTS / "student"
    with tempfile.TemporaryDirectory(prefix="otter-dist-") as tmp:
        wheel = build_wheel(Path(tmp) / "wheel")
        for master in master_notebooks():
            out = Path(tmp) / master.stem
            built = build(master, out, wheel=wheel, run_tests=run_tests)
            if dist is not None:
                Path(dist).mkdir(parents=True, exist_ok=True)
                target_zip = Path(dist) / f"{master.stem}-autograder.zip"
                shutil.copy2(built["zip"], target_zip)
                # the solutions, to test an uploaded autograder with (private, like the zip)
                shutil.copy2(built["autograder"] / master.name, Path(dist) / f"{master.stem}-solutions.ipynb")
                log(f"{master.stem}: wrote {target_zip} ({target_zip.stat().st_size / 1e6:.1f} MB) and "
                    f"{master.stem}-solutions.ipynb")
            if not students and not check:
                continue
            _strip_notebook(built["student"])
            target = student_root / master.stem
            if check:
                found = differences(built, target)
                problems += found
                log(f"{master.stem}: {'out of date' if found else 'up to date'}")
            elif target.exists() and not differences(built, target):
                # otter draws new random cell ids on every build: leave an up-to-date folder untouched
                log(f"{master.stem}: up to date, {target.relative_to(ROOT)} left as it is")
            else:
                nb = target / built["student"].name
                keep = nb.is_file() and _normalised_notebook(nb) == _normalised_notebook(built["student"])
                if target.exists():
                    for old in [*target.glob("tests/*.py"), *([] if keep else [nb])]:
                        old.unlink()
                (target / "tests").mkdir(parents=True, exist_ok=True)
                if not keep:  # otter draws new random cell ids on every build: keep a notebook that is the same
                    shutil.copy2(built["student"], nb)
                for f in sorted(built["tests"].glob("*.py")):
                    shutil.copy2(f, target / "tests" / f.name)
                log(f"{master.stem}: wrote {target.relative_to(ROOT)}")
    return problems


def zip_requirements(zip_path: Path) -> list[str]:
    """The pip lines of an autograder zip's ``environment.yml`` (what the grading image installs)."""
    with zipfile.ZipFile(zip_path) as zf:
        env = yaml.safe_load(zf.read("environment.yml"))
    for dep in env["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            return list(dep["pip"])
    raise ValueError(f"{zip_path}: environment.yml has no pip section")


def pins_of(lines: Iterable[str]) -> list[str]:
    """The requirement lines (``name==version``), without pip options (``--find-links``, ``--extra-index-url``)."""
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith(("-", "#"))]


# ---------------------------------------------------------------------------------------------------------
# A clean grading environment, offline (what CI does with each zip; Gradescope's setup.sh does the same online)
# ---------------------------------------------------------------------------------------------------------


def default_wheelhouse() -> Path:
    """``$REPDIFF_WHEELHOUSE``, else ``~/.cache/repdiff/wheelhouse``: wheels of every pinned package, kept
    between runs so that only the first run needs the package index."""
    env = os.environ.get("REPDIFF_WHEELHOUSE")
    return Path(env) if env else Path.home() / ".cache" / "repdiff" / "wheelhouse"


def _have_wheel(folder: Path, pin: str) -> bool:
    req = Requirement(pin)
    want = canonicalize_name(req.name)
    for f in folder.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(f.name)
        if name == want and req.specifier.contains(version, prereleases=True):
            return True
    return False


def fill_wheelhouse(pins: Iterable[str], wheelhouse: Path, log: Callable[[str], None] = print) -> list[str]:
    """Put a wheel of every pin into ``wheelhouse``: ``pip wheel --no-deps`` for those not there yet.

    ``pip wheel`` uses the package index and find-links of pip's configuration (and builds a wheel from a
    source-only release), once; later calls find every wheel in place and touch no index.

    Returns:
        the pins that had to be fetched.
    """
    wheelhouse = Path(wheelhouse)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pins if not _have_wheel(wheelhouse, p)]
    if missing:
        log(f"wheelhouse {wheelhouse}: fetching {len(missing)} wheels")
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheelhouse), *missing]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip wheel failed:\n{result.stdout}\n{result.stderr}")
    return missing


def uv_binary() -> str | None:
    """The ``uv`` executable (the ``uv`` package of requirements.txt, or one on PATH), or None."""
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def clean_env() -> dict[str, str]:
    """The environment for commands in a grading venv: no PYTHONPATH (the checkout's ``src/`` must not leak
    in) and no user-level Jupyter kernels (the venv's own ``python3`` kernel runs the submissions)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUPYTER_PATH", "VIRTUAL_ENV")}
    env["JUPYTER_DATA_DIR"] = tempfile.mkdtemp(prefix="jupyter-data-")
    env["PYTHONNOUSERSITE"] = "1"
    return env


def grading_venv(zip_path: Path, venv: Path, wheelhouse: Path | None = None) -> Path:
    """A fresh venv at ``venv`` with exactly the requirements of an autograder zip, installed offline.

    The zip's pip lines are installed with ``--no-index`` from ``wheelhouse`` (:func:`fill_wheelhouse`) and
    the zip's own ``files/wheels/`` (the course wheel): nothing comes from the network or from this
    checkout. With ``uv`` (``uv pip install --offline``, hard links from its cache) this takes seconds;
    without it, pip.

    Returns:
        the venv's python.
    """
    zip_path, venv = Path(zip_path), Path(venv)
    wheelhouse = Path(wheelhouse) if wheelhouse is not None else default_wheelhouse()
    lines = zip_requirements(zip_path)
    own = next(p for p in pins_of(lines) if p.startswith("repdiff"))
    pins = [p for p in pins_of(lines) if p != own]
    fill_wheelhouse(pins, wheelhouse)
    with tempfile.TemporaryDirectory(prefix="autograder-") as tmp:
        with zipfile.ZipFile(zip_path) as zf:
            for n in zf.namelist():
                if n.startswith("files/wheels/"):
                    zf.extract(n, tmp)
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("\n".join([own, *pins]) + "\n")
        links = ["--find-links", str(wheelhouse), "--find-links", str(Path(tmp) / "files" / "wheels")]
        uv, env = uv_binary(), clean_env()
        if uv:
            cmds = [[uv, "venv", "-q", "--python", sys.executable, str(venv)],
                    [uv, "pip", "install", "-q", "--offline", "--no-index", *links,
                     "--python", str(venv / "bin" / "python"), "-r", str(reqs)]]
        else:
            cmds = [[sys.executable, "-m", "venv", str(venv)],
                    [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", *links, "-r",
                     str(reqs)]]
        for cmd in cmds:
            result = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{result.stdout}\n{result.stderr}")
    return venv / "bin" / "python"


def otter_run(python: Path, zip_path: Path, submission: Path, out_dir: Path, timeout: float = 3600) -> dict:
    """``otter run -a ZIP SUBMISSION`` with the grading venv's python; return its ``results.json``.

    ``timeout`` (seconds) only stops a hung run: a slow machine that generates A3's screening itself (no shared
    ``$REPDIFF_CACHE``) may take many minutes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(python), "-m", "otter", "run", "--no-logo", "-a", str(zip_path), "-o", str(out_dir), str(submission)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=out_dir)
    if result.returncode != 0 or not (out_dir / "results.json").is_file():
        raise RuntimeError(f"otter run failed on {submission} (exit {result.returncode}):\n{result.stdout}\n"
                           f"{result.stderr}")
    return json.loads((out_dir / "results.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare assignments/student/ with a fresh build")
    parser.add_argument("--no-run-tests", action="store_true", help="skip otter's run of the tests on the solutions")
    parser.add_argument("--dist", type=Path, default=None, help="write <name>-autograder.zip files into this folder")
    parser.add_argument("--no-students", action="store_true", help="only write the zips (with --dist)")
    args = parser.parse_args(argv)
    problems = sync_students(check=args.check, run_tests=not args.no_run_tests, dist=args.dist,
                             students=not args.no_students)
    for p in problems:
        print(p)
    if problems:
        print("run `python tools/build_assignments.py` to rebuild assignments/student/")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
