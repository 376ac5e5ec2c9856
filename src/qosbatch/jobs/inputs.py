"""What a job reads: one .npy file (memory-mapped) or a folder of .npy/.npz files.

A job's input is N samples of one shape, read a slice at a time, so a file
larger than memory is never loaded whole: a .npy is memory-mapped (only the
pages of the slice being read are touched), a folder's files are read in name
order as one sequence. A .npz member cannot be memory-mapped (it sits inside a
zip), so it is loaded when a slice first reaches it, one member at a time.

The fingerprint (each file's path, size, shape and dtype) is what the output
manifest records, so a resumed job is refused if its input changed.
"""

from __future__ import annotations

import bisect
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qosbatch.core.errors import UserError


@dataclass(frozen=True)
class Chunk:
    """One array of the input: a .npy file, or one member of a .npz."""

    path: Path
    member: str | None  # the .npz member, None for a .npy
    rows: int
    shape: tuple[int, ...]  # one sample's
    dtype: str
    size_bytes: int  # the file's size, for the fingerprint

    @property
    def label(self) -> str:
        return f"{self.path}[{self.member}]" if self.member else str(self.path)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "path": str(self.path.resolve()),
            "member": self.member,
            "size": self.size_bytes,
            "shape": [self.rows, *self.shape],
            "dtype": self.dtype,
        }


@dataclass
class JobInput:
    """N samples of one shape over one or more chunks, read as slices [start, end)."""

    chunks: list[Chunk]
    _starts: list[int] = field(default_factory=list)
    _loaded: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        total = 0
        self._starts = []
        for c in self.chunks:
            self._starts.append(total)
            total += c.rows
        self.n = total

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.chunks[0].shape

    @property
    def dtype(self) -> str:
        return self.chunks[0].dtype

    def fingerprint(self) -> list[dict[str, Any]]:
        return [c.fingerprint() for c in self.chunks]

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end) as one array (a view where they lie in one .npy)."""
        if not 0 <= start <= end <= self.n:
            raise ValueError(f"slice [{start}, {end}) outside 0..{self.n}")
        first = bisect.bisect_right(self._starts, start) - 1
        pieces = []
        i, pos = first, start
        while pos < end:
            offset = pos - self._starts[i]
            take = min(end - pos, self.chunks[i].rows - offset)
            pieces.append(self._array(i)[offset : offset + take])
            pos += take
            i += 1
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else np.empty((0, *self.sample_shape))

    def _array(self, i: int) -> np.ndarray:
        arr = self._loaded.get(i)
        if arr is None:
            c = self.chunks[i]
            if c.member is None:
                arr = np.load(c.path, mmap_mode="r", allow_pickle=False)
            else:
                self._loaded.clear()  # one .npz member in memory at a time
                with np.load(c.path, allow_pickle=False) as z:
                    arr = z[c.member]
            self._loaded[i] = arr
        return arr


def open_input(path: str | Path) -> JobInput:
    """The input at ``path``: a .npy file or a folder of .npy/.npz files (name order)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"input not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".npy", ".npz"))
        if not files:
            raise UserError(f"input folder {path} holds no .npy or .npz files")
    elif path.suffix.lower() in (".npy", ".npz"):
        files = [path]
    else:
        raise UserError(f"input {path}: expected a .npy or .npz file, or a folder of them")
    chunks = [c for f in files for c in _chunks(f)]
    if not chunks:
        raise UserError(f"input {path} holds no arrays")
    first = chunks[0]
    for c in chunks[1:]:
        if (c.shape, c.dtype) != (first.shape, first.dtype):
            raise UserError(
                f"input {c.label}: samples of shape {_shape(c.shape)} {c.dtype}, but "
                f"{first.label} has {_shape(first.shape)} {first.dtype}; all must match"
            )
    if np.dtype(first.dtype).kind not in "biuf":
        raise UserError(f"input {first.label}: dtype {first.dtype} is not numeric")
    return JobInput(chunks)


def _chunks(path: Path) -> list[Chunk]:
    size = path.stat().st_size
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            return [_chunk(path, None, arr.shape, arr.dtype, size)]
        with np.load(path, mmap_mode="r", allow_pickle=False) as z:
            # Shapes from each member's header, without decompressing the data.
            return [_npz_chunk(path, z.zip, name, size) for name in sorted(z.files)]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"input {path} is not a readable numpy file: {exc}") from None


def _npz_chunk(path: Path, zf: zipfile.ZipFile, name: str, size: int) -> Chunk:
    with zf.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(f)
    return _chunk(path, name, shape, dtype, size)


def _chunk(path: Path, member: str | None, shape: Any, dtype: Any, size: int) -> Chunk:
    label = f"{path}[{member}]" if member else str(path)
    if len(shape) < 2:
        raise UserError(
            f"input {label}: shape {_shape(shape)}; expected N samples x sample shape "
            "(at least 2 dimensions)"
        )
    return Chunk(path, member, int(shape[0]), tuple(int(d) for d in shape[1:]), str(dtype), size)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "()"


def check_shape(job_input: JobInput, model_shape: tuple[int, ...], model: str) -> None:
    """Refuse an input whose samples are not the model's input shape, before any work."""
    if tuple(job_input.sample_shape) != tuple(model_shape):
        raise UserError(
            f"input samples have shape {_shape(job_input.sample_shape)}, but {model} takes "
            f"{_shape(model_shape)} (the input must be N x {_shape(model_shape)})"
        )
