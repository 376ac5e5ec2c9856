"""Inference backends: PyTorch eager and ONNX Runtime behind one small interface.

The profiler and (later) the server's worker processes call only ``run`` and
``set_threads``: numpy in, numpy out, so nothing above this module needs torch,
and a worker can change its core count in place without being rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.models.loading import ModelRef, load_onnx_session, load_torch_module

BACKENDS: tuple[str, ...] = ("torch", "onnx")
DEVICES: tuple[str, ...] = ("cpu", "cuda")


class Backend(Protocol):
    name: str
    device: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Outputs of the model for a batch (first dimension), as a numpy array."""
        ...

    def set_threads(self, threads: int) -> None:
        """Use this many intra-op threads from the next call on."""
        ...

    def reset_peak_memory(self) -> None: ...

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory since the last reset, or None where the process RSS tells."""
        ...


class TorchBackend:
    name = "torch"

    def __init__(self, module: Any, device: str = "cpu", threads: int | None = None) -> None:
        import torch

        self._torch = torch
        self.device = device
        if device != "cpu":
            module = module.to(device)
        # A torch.export module is already traced for inference and refuses eval().
        with contextlib.suppress(NotImplementedError):
            module.eval()
        self.module = module
        if threads:
            self.set_threads(threads)

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(batch).to(self.device, non_blocking=True))
            if isinstance(out, tuple | list):
                out = out[0]
            return out.cpu().numpy()  # .cpu() waits for the GPU, so timings are complete

    def set_threads(self, threads: int) -> None:
        self._torch.set_num_threads(threads)

    def reset_peak_memory(self) -> None:
        if self.device == "cuda":
            self._torch.cuda.reset_peak_memory_stats()

    def peak_memory_bytes(self) -> int | None:
        if self.device == "cuda":
            return int(self._torch.cuda.max_memory_allocated())
        return None


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: str, device: str = "cpu", threads: int = 1) -> None:
        self.path = path
        self.device = device
        self.threads = threads
        self.session = load_onnx_session(path, threads, device)
        self._sessions = {threads: self.session}
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_dtype = _ORT_TYPES.get(first.type, np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        feed = {self.input_name: batch.astype(self.input_dtype, copy=False)}
        return self.session.run(None, feed)[0]

    def set_threads(self, threads: int) -> None:
        """ONNX Runtime fixes its thread pool per session: one session per thread count.

        Kept, not rebuilt: a server worker whose policy changes its cores per batch
        would otherwise rebuild a session (tens of ms to seconds) on every change.
        """
        if threads != self.threads:
            session = self._sessions.get(threads)
            if session is None:
                session = self._sessions[threads] = load_onnx_session(
                    self.path, threads, self.device
                )
            self.session = session
            self.threads = threads

    def reset_peak_memory(self) -> None:
        pass

    def peak_memory_bytes(self) -> int | None:
        return None


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
}


def check_backend(backend: str, device: str) -> None:
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible on this machine")


def export_onnx(ref: ModelRef, directory: str | Path) -> str:
    """Export a torch model to ONNX (batch dimension dynamic) once; returns the file's path.

    The file name carries a hash of the ref, so the profiler's child processes
    and a later run reuse the same export instead of repeating it.
    """
    if ref.source == "onnx":
        return ref.target
    import torch

    key = hashlib.sha256(repr(ref).encode()).hexdigest()[:12]
    path = Path(directory) / f"{ref.name}-{key}.onnx"
    if path.is_file():
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = load_torch_module(ref)
    example = torch.zeros((2, *ref.input_shape))
    tmp = path.with_suffix(".partial.onnx")
    try:
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot export {ref.name} to ONNX: {str(exc).splitlines()[0]}") from None
    tmp.replace(path)
    return str(path)


def make_backend(
    ref: ModelRef,
    backend: str = "torch",
    device: str = "cpu",
    threads: int = 1,
    onnx_dir: str | Path | None = None,
) -> Backend:
    """The backend that runs ``ref``: ONNX files only on ONNX Runtime, torch models on either."""
    check_backend(backend, device)
    if backend == "torch":
        if ref.source == "onnx":
            raise UserError(f"{ref.target} is an ONNX file: use --backend onnx")
        return TorchBackend(load_torch_module(ref), device, threads)
    if onnx_dir is None:
        onnx_dir = default_onnx_dir()
    return OnnxBackend(export_onnx(ref, onnx_dir), device, threads)


def default_onnx_dir() -> Path:
    return Path.home() / ".cache" / "qosbatch" / "onnx"


def sample_batch(ref: ModelRef, batch: int, seed: int = 0) -> np.ndarray:
    """A reproducible random input batch of the model's shape (float32)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *ref.input_shape), dtype=np.float32)
