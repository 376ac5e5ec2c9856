"""Naming a model: a zoo name, an ONNX file, a torch.export or TorchScript file, or a factory.

A ``ModelRef`` is a small picklable description, so a child process (a profiler
run pinned to some cores, later a server worker) can rebuild the same model
without shipping weights through a pipe. Nothing here unpickles untrusted data:
``torch.export.load`` and ``torch.jit.load`` read their own archive formats, and
``torch.load`` is never used on a user's file.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qosbatch.core.errors import UserError

ONNX_SUFFIXES = (".onnx",)
EXPORT_SUFFIXES = (".pt2",)
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".jit", ".torchscript")


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from and the shape of one sample."""

    name: str  # what users and reports call it
    source: str  # "zoo", "onnx", "torch-export", "torchscript" or "factory"
    target: str  # the zoo name, the file's absolute path, or "package.module:factory"
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    seed: int = 0  # weights of zoo models


def parse_shape(text: str) -> tuple[int, ...]:
    """'3,224,224' or '3x224x224' -> (3, 224, 224), every dimension >= 1."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"--input-shape must be integers like 3,224,224, got {text!r}") from None
    if not shape or any(d < 1 for d in shape):
        raise UserError(f"--input-shape must be one or more dimensions >= 1, got {text!r}")
    return shape


def resolve_model(spec: str, input_shape: tuple[int, ...] | None = None, seed: int = 0) -> ModelRef:
    """Turn what the user typed into a ModelRef, checking that it exists and loads."""
    from qosbatch.models.zoo import ZOO

    if spec in ZOO:
        shape = input_shape or ZOO[spec].input_shape
        return ModelRef(spec, "zoo", spec, shape, seed)
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES + EXPORT_SUFFIXES + TORCHSCRIPT_SUFFIXES:
        if not path.is_file():
            raise UserError(f"model file not found: {spec}")
        source = (
            "onnx"
            if suffix in ONNX_SUFFIXES
            else "torch-export"
            if suffix in EXPORT_SUFFIXES
            else "torchscript"
        )
        ref = ModelRef(path.stem, source, str(path.resolve()), input_shape or (), seed)
        if source == "onnx":
            shape = input_shape or onnx_sample_shape(str(path.resolve()))
            ref = ModelRef(path.stem, source, ref.target, shape, seed)
            load_onnx_session(ref.target, threads=1)  # fails here, with a clear line, if broken
        else:
            load_torch_module(ref)
        if not ref.input_shape:
            raise UserError(
                f"{spec}: give the shape of one sample with --input-shape, e.g. 3,224,224"
            )
        return ref
    if ":" in spec and not path.exists():
        ref = ModelRef(spec.rsplit(":", 1)[1], "factory", spec, input_shape or (), seed)
        load_torch_module(ref)
        if not input_shape:
            raise UserError(
                f"{spec}: give the shape of one sample with --input-shape, e.g. 3,224,224"
            )
        return ref
    known = ", ".join(sorted(ZOO))
    raise UserError(
        f"unknown model {spec!r}: use a zoo name ({known}), a .onnx, .pt2 or TorchScript file, "
        "or package.module:factory"
    )


def load_torch_module(ref: ModelRef) -> Any:
    """The torch module behind a ref (not for ONNX files), in eval mode."""
    import torch

    from qosbatch.models.zoo import build_zoo_model

    try:
        if ref.source == "zoo":
            return build_zoo_model(ref.target, ref.seed)
        if ref.source == "torch-export":
            return torch.export.load(ref.target).module()
        if ref.source == "torchscript":
            return torch.jit.load(ref.target, map_location="cpu").eval()
        if ref.source == "factory":
            module_name, _, attr = ref.target.rpartition(":")
            if "" not in sys.path:
                sys.path.insert(0, "")  # as `python -m` does, so a local module can be named
            factory = getattr(importlib.import_module(module_name), attr)
            module = factory()
            if not isinstance(module, torch.nn.Module):
                raise UserError(
                    f"{ref.target} returned {type(module).__name__}, not a torch.nn.Module"
                )
            return module.eval()
    except UserError:
        raise
    except Exception as exc:  # any loader failure is the file's or the factory's fault
        raise UserError(
            f"cannot load {ref.source} model {ref.target}: {_first_line(exc)}"
        ) from None
    raise UserError(f"{ref.source} models have no torch module; use --backend onnx")


def load_onnx_session(path: str, threads: int, device: str = "cpu") -> Any:
    """An ONNX Runtime session using ``threads`` intra-op threads, one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UserError("--device cuda: this ONNX Runtime build has no CUDA provider")
    try:
        return ort.InferenceSession(path, sess_options=options, providers=providers)
    except Exception as exc:
        raise UserError(f"ONNX file {path} does not load: {_first_line(exc)}") from None


def onnx_sample_shape(path: str) -> tuple[int, ...]:
    """One sample's shape from the file's first input, when all but the batch are fixed."""
    session = load_onnx_session(path, threads=1)
    dims = session.get_inputs()[0].shape[1:]
    if all(isinstance(d, int) and d > 0 for d in dims):
        return tuple(dims)
    return ()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
