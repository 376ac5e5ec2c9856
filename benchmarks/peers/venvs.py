"""One virtual environment per peer, pinned, built once and reused while its pins hold.

A peer's packages never touch the project's .venv: its pins (a Ray, a BentoML, a
Triton wheel) would fight ours. Each venv carries a stamp of the interpreter and
the exact requirement list it was built from; a changed list rebuilds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from qosbatch.launch import tail

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qosbatch" / "peers"
INSTALL_TIMEOUT_S = 900.0
STAMP = ".peers-stamp.json"


def run_logged(
    argv: Sequence[str], log_path: Path, timeout_s: float, env: dict[str, str] | None = None
) -> int:
    """Run one install step with its noise in ``log_path`` and a hard time limit; its status."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        try:
            return subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=timeout_s,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            out.write(f"timed out after {timeout_s:.0f} s\n".encode())
            return 124
        except OSError as e:
            out.write(f"{e}\n".encode())
            return 127


def ensure_venv(
    name: str,
    requirements: Sequence[str],
    logs: Path,
    *,
    python: str = sys.executable,
    cache: Path = CACHE,
    check_import: str | None = None,
) -> Path:
    """The python of ``cache/name`` holding exactly ``requirements``; RuntimeError saying why not.

    ``check_import`` (a module name) is imported by the venv's python after a build
    and on every reuse, so a half-built venv is rebuilt rather than trusted.
    """
    venv = cache / name
    vpy = venv / "bin" / "python"
    want = {"python": os.path.realpath(python), "requirements": list(requirements)}
    ok = False
    with contextlib.suppress(OSError, ValueError):
        ok = json.loads((venv / STAMP).read_text()) == want
    log_path = logs / f"install-{name}.log"
    if ok and check_import:
        ok = run_logged([str(vpy), "-c", f"import {check_import}"], log_path, 300) == 0
    if ok:
        return vpy
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    pip = [str(vpy), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements]
    for step in ([python, "-m", "venv", str(venv)], pip):
        if run_logged(step, log_path, INSTALL_TIMEOUT_S) != 0:
            raise RuntimeError(f"`{shlex.join(step)}` failed; see {log_path}:\n{tail(log_path)}")
    if check_import and run_logged([str(vpy), "-c", f"import {check_import}"], log_path, 300):
        raise RuntimeError(f"{name}: `import {check_import}` fails after install; see {log_path}")
    (venv / STAMP).write_text(json.dumps(want))
    return vpy
