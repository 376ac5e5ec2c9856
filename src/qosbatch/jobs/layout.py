"""The job's output folder: atomic parts, a manifest, and the assembled outputs.

    OUT/manifest.json   what the job is (model, backend, input fingerprint, part
                        layout) and which parts are done
    OUT/parts/part-000042.npy   outputs of samples [42 * part_size, 43 * part_size)
    OUT/outputs.npy     all N rows in input order, written once every part is done
    OUT/job.json        the summary of the run that finished the job

A part is written to a temporary file and renamed into place, and only then
listed in the manifest (itself replaced atomically), so after a kill -9 at any
moment every listed part is whole: a rerun redoes only unlisted parts, and a
part written but not yet listed is simply written again. The part layout is
fixed when the folder is created, independent of the batch size, so a resumed
run may batch differently. A folder this module did not create, or whose
manifest names another job, is refused with the reason, never overwritten.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.core.profile import check_schema, write_json_atomic

JOB_SCHEMA = "qosbatch.job"
JOB_VERSION = 1
MANIFEST = "manifest.json"
OUTPUTS = "outputs.npy"
SUMMARY = "job.json"
PARTS = "parts"
_TMP = ".tmp-"


class JobOutput:
    """An output folder being filled: which parts are done, and how to add one."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest
        self.done: set[int] = set(manifest["parts_done"])

    @property
    def n(self) -> int:
        return int(self.manifest["n"])

    @property
    def part_size(self) -> int:
        return int(self.manifest["part_size"])

    @property
    def part_count(self) -> int:
        return -(-self.n // self.part_size)

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete")) and (self.root / OUTPUTS).is_file()

    def bounds(self, index: int) -> tuple[int, int]:
        start = index * self.part_size
        return start, min(start + self.part_size, self.n)

    def missing(self) -> list[int]:
        return [i for i in range(self.part_count) if i not in self.done]

    def samples_done(self) -> int:
        return sum(self.bounds(i)[1] - self.bounds(i)[0] for i in self.done)

    def part_path(self, index: int) -> Path:
        return self.root / PARTS / f"part-{index:06d}.npy"

    def write_part(self, index: int, outputs: np.ndarray) -> None:
        """Write part ``index`` atomically, then list it in the manifest."""
        start, end = self.bounds(index)
        if len(outputs) != end - start:
            raise ValueError(f"part {index} needs {end - start} rows, got {len(outputs)}")
        layout = {"shape": list(outputs.shape[1:]), "dtype": str(outputs.dtype)}
        known = self.manifest.get("output")
        if known is not None and known != layout:
            raise UserError(
                f"the model's outputs changed shape: {layout}, earlier parts in {self.root} "
                f"have {known}"
            )
        with self._disk_errors(f"part {index}"):
            _save_atomic(self.part_path(index), outputs)
            self.done.add(index)
            self.manifest["output"] = layout
            self.manifest["parts_done"] = sorted(self.done)
            write_json_atomic(self.root / MANIFEST, self.manifest)

    def assemble(self) -> Path:
        """OUT/outputs.npy from the parts, in input order, through a memory map."""
        layout = self.manifest.get("output")
        if self.missing() or layout is None:
            raise ValueError("assemble() before every part is done")
        final = self.root / OUTPUTS
        tmp = final.with_name(_TMP + OUTPUTS)
        with self._disk_errors("outputs.npy"):
            out = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.dtype(layout["dtype"]), shape=(self.n, *layout["shape"])
            )
            for i in range(self.part_count):
                start, end = self.bounds(i)
                out[start:end] = np.load(self.part_path(i), mmap_mode="r")
            out.flush()
            del out
            os.replace(tmp, final)
        return final

    def finish(self, summary: dict[str, Any]) -> None:
        with self._disk_errors("job.json"):
            write_json_atomic(self.root / SUMMARY, summary)
            self.manifest["complete"] = True
            write_json_atomic(self.root / MANIFEST, self.manifest)

    def summary(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / SUMMARY).read_text())
        except (OSError, ValueError):
            return None

    @contextmanager
    def _disk_errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise
            raise UserError(
                f"cannot write {what} in {self.root}: {exc.strerror}; {len(self.done)} of "
                f"{self.part_count} parts ({self.samples_done()} samples) are done and kept: "
                "free space and rerun the same command to resume"
            ) from None


def _save_atomic(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_TMP, suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_output(root: str | Path, identity: dict[str, Any], part_size: int) -> JobOutput:
    """The job's folder: created, or reopened to resume when it holds this very job.

    ``identity`` (model, backend, input fingerprint, N) must equal the manifest's;
    ``part_size`` is used only for a new folder (a resumed job keeps its layout).
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"output {root} is a file, not a folder")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        if root.is_dir() and any(root.iterdir()):
            raise UserError(
                f"output folder {root} already holds files and is not a qosbatch job "
                f"(no {MANIFEST}); refusing to write into it: choose another -o"
            )
        manifest = {
            "schema": JOB_SCHEMA,
            "version": JOB_VERSION,
            **identity,
            "part_size": int(part_size),
            "parts_done": [],
            "output": None,
            "complete": False,
        }
        (root / PARTS).mkdir(parents=True, exist_ok=True)
        write_json_atomic(manifest_path, manifest)
        return JobOutput(root, manifest)
    manifest = _read_manifest(manifest_path)
    _check_identity(root, manifest, identity)
    out = JobOutput(root, manifest)
    _check_parts(out)
    for stale in (root / PARTS).glob(_TMP + "*"):
        stale.unlink(missing_ok=True)  # ours, left by a killed run
    (root / (_TMP + OUTPUTS)).unlink(missing_ok=True)
    return out


def _read_manifest(path: Path) -> dict[str, Any]:
    refuse = f"refusing to touch {path.parent}: move it away or choose another -o"
    try:
        data = json.loads(path.read_text())
        check_schema(data, JOB_SCHEMA, JOB_VERSION)
        for key in ("n", "part_size", "parts_done", "model", "backend", "input"):
            if key not in data:
                raise ValueError(f"no {key!r} field")
        if int(data["part_size"]) < 1 or not all(isinstance(i, int) for i in data["parts_done"]):
            raise ValueError("bad part layout")
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{path} is corrupt ({exc}); {refuse}") from None
    return data


def _check_identity(root: Path, manifest: dict[str, Any], identity: dict[str, Any]) -> None:
    for key, value in identity.items():
        if manifest.get(key) != value:
            raise UserError(
                f"output folder {root} holds another job: its {key} is "
                f"{_brief(manifest.get(key))}, this one's is {_brief(value)}; choose another -o "
                "(or remove the folder)"
            )


def _check_parts(out: JobOutput) -> None:
    for i in sorted(out.done):
        start, end = out.bounds(i)
        try:
            rows = np.load(out.part_path(i), mmap_mode="r").shape[0] if end > start else 0
        except (OSError, ValueError, IndexError) as exc:
            raise UserError(
                f"{out.root}: part {i} is listed as done but unreadable ({exc}); the folder "
                "is corrupt: move it away or choose another -o"
            ) from None
        if rows != end - start:
            raise UserError(
                f"{out.root}: part {i} holds {rows} rows, the manifest says {end - start}; "
                "the folder is corrupt: move it away or choose another -o"
            )


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
