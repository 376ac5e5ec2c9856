"""Finding a shared-library CPython for PyTriton, and checking that its binaries will load.

PyTriton's wheel carries ``tritonserver`` and one Python backend stub per Python
version (3.8-3.13 in 0.7.0). The stub links ``libpythonX.Y.so.1.0`` dynamically and
has no rpath, so the venv PyTriton runs in must be built from a CPython whose
libpython is a *shared* library, and the server needs that library's folder on
``LD_LIBRARY_PATH``. Without it the model never loads and ``bind`` hangs, which is
why these helpers look for such an interpreter explicitly and ``ldd`` the binaries
before anything is started.

Only the standard library is used (plus ``venvs.run_logged``), so this module also
imports in a PyTriton venv.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.peers.venvs import run_logged

TRITON_PY = "3.12"
FALLBACK_PYS = ("3.13", "3.11", "3.10")  # python_backend_stubs/ in the 0.7.0 wheel has 3.8-3.13
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qosbatch"

_PROBE = (
    "import json,sys,sysconfig;v=sysconfig.get_config_var;print(json.dumps({"
    "'executable':sys.executable,'version':'%d.%d'%sys.version_info[:2],"
    "'full':sys.version.split()[0],'impl':sys.implementation.name,"
    "'shared':bool(v('Py_ENABLE_SHARED')),'libdir':v('LIBDIR') or '',"
    "'soname':v('INSTSONAME') or '','base_prefix':sys.base_prefix}))"
)


def _say(msg: str) -> None:
    print(f"[pythons] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class SharedPython:
    """A CPython with its libpython as a shared library: what the backend stub links."""

    executable: str
    version: str  # "3.12"
    full: str  # "3.12.1"
    libdir: str  # the folder holding libpython3.12.so.1.0: goes on LD_LIBRARY_PATH

    def ld_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: nothing) with ``libdir`` first on ``LD_LIBRARY_PATH``.

        First, so that the stub finds *this* libpython even where another one is on
        the system path (Debian's libpython3.12 would do, but need not match).
        """
        env = dict(base or {})
        old = env.get("LD_LIBRARY_PATH", os.environ.get("LD_LIBRARY_PATH", ""))
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (self.libdir, old) if p)
        return env


def probe_python(exe: str, want: str | None) -> SharedPython | None:
    """The interpreter's facts if it is a shared-library CPython (of version ``want``)."""
    try:
        out = subprocess.run(
            [exe, "-c", _PROBE], capture_output=True, timeout=20, check=True, text=True
        ).stdout
        info = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if info["impl"] != "cpython" or not info["shared"] or not info["soname"]:
        return None
    if want is not None and info["version"] != want:
        return None
    # python-build-standalone may report its build-time LIBDIR; base_prefix/lib is real.
    for libdir in (info["libdir"], str(Path(info["base_prefix"]) / "lib")):
        if libdir and (Path(libdir) / info["soname"]).exists():
            return SharedPython(info["executable"], info["version"], info["full"], libdir)
    return None


def _version_key(path: str) -> tuple[int, ...]:
    """Sort pyenv/uv folders by the version in their name, newest first."""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", path)
    return tuple(int(x) for x in m.groups()) if m else (0,)


def find_shared_python(override: str | None, version: str = TRITON_PY) -> SharedPython | None:
    """The newest shared-library CPython ``version`` among the places it is usually found.

    ``override`` (a path) is taken as it is, in any version the wheel has a stub for.
    """
    if override:
        return probe_python(override, None)
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    uv_dir = Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or Path.home() / ".local/share/uv/python")
    patterns = [
        pyenv_root / f"versions/{version}*/bin/python{version}",
        uv_dir / f"cpython-{version}*/bin/python{version}",
        CACHE / "python" / f"cpython-{version}*/bin/python{version}",
    ]
    candidates = [
        exe
        for pattern in patterns
        for exe in sorted(glob.glob(str(pattern)), key=_version_key, reverse=True)
    ]
    candidates += [p for p in (shutil.which(f"python{version}"),) if p]
    for exe in dict.fromkeys(candidates):
        found = probe_python(exe, version)
        if found:
            return found
    return None


def find_fallback_python() -> SharedPython | None:
    """Another shared CPython the wheel has a stub for (3.13, 3.11, 3.10), when 3.12 is absent.

    PyTriton picks the stub of the Python it runs on, so 3.12 is no must: Debian's own
    /usr/bin/python3.11 with its libpython3.11 package served here as well as 3.12.
    """
    for version in FALLBACK_PYS:
        found = find_shared_python(None, version)
        if found:
            return found
    return None


def uv_install_python(logs: Path) -> None:
    """Last resort: ``uv python install 3.12`` (a python-build-standalone, which is shared).

    uv comes from PyPI into a venv of its own; the Python itself comes from GitHub, so
    this fails where only package registries are reachable. Bounded by a timeout.
    """
    uv_venv = CACHE / "uv-venv"
    uv = uv_venv / "bin" / "uv"
    uv_log = logs / "install-uv-python.log"
    if not uv.exists():
        _say("no shared-library Python 3.12 found; trying uv (from PyPI)")
        run_logged([sys.executable, "-m", "venv", str(uv_venv)], uv_log, 120)
        run_logged([str(uv_venv / "bin/python"), "-m", "pip", "install", "-q", "uv"], uv_log, 300)
    if uv.exists():
        _say(f"uv python install {TRITON_PY} (downloads from GitHub)")
        env = {**os.environ, "UV_PYTHON_INSTALL_DIR": str(CACHE / "python")}
        run_logged([str(uv), "python", "install", TRITON_PY], uv_log, 300, env)


def check_pytriton_binaries(vpy: str, version: str, env: dict[str, str]) -> None:
    """ldd on tritonserver and the stub; RuntimeError naming what will not load.

    A missing library (libpython, a too-old glibc) otherwise shows up only as a model
    that never loads. ``env`` is the server's environment (its ``LD_LIBRARY_PATH``).
    """
    out = subprocess.run(
        [vpy, "-c", "import pytriton,os;print(os.path.dirname(pytriton.__file__))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{vpy} cannot import pytriton: {out.stderr.strip()[-300:]}")
    root = Path(out.stdout.strip()) / "tritonserver"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(
            f"this PyTriton has no Python backend stub for Python {version} ({stub})"
        )
    if shutil.which("ldd") is None:
        return
    for binary in (root / "bin" / "tritonserver", stub):
        res = subprocess.run(
            ["ldd", str(binary)], capture_output=True, text=True, env=env, timeout=30, check=False
        )
        missing = [x.strip() for x in (res.stdout + res.stderr).splitlines() if "not found" in x]
        if missing:
            raise RuntimeError(f"{binary.name} cannot load: {'; '.join(missing)}")


def no_python_reason() -> str:
    """Why no interpreter was found, and how to get one: the message of a failed install."""
    return (
        f"no CPython {TRITON_PY} (nor {', '.join(FALLBACK_PYS)}) with a shared libpython: "
        "PyTriton's Python backend stub links libpythonX.Y.so.1.0. Looked in "
        "~/.pyenv/versions, PATH and uv's Pythons. Build one with "
        "`PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install 3.12`, or use Debian's "
        "/usr/bin/python3.11 after `apt-get install libpython3.11 python3.11-venv`"
    )
