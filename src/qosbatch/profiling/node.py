"""The node's compute power c: float32 GEMM throughput per core count, and what the node is.

c is measured with the same BLAS the models use (torch's matmul), in a child
process pinned to c cores, so it is comparable with the profile taken there and
can be measured alone on a node that was never profiled (`qosbatch node`).
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import time

from qosbatch.core.errors import UserError
from qosbatch.core.profile import NodeInfo
from qosbatch.profiling.pinning import available_cores, check_core_counts, pin_to_cores

GEMM_SIZE = 1024  # n of an n x n x n float32 matmul: 2.1 GFLOP, past the caches, like a conv layer


def gemm_gflops(threads: int, seconds: float = 0.5, size: int = GEMM_SIZE) -> float:
    """Best GFLOP/s of repeated n x n matmuls in this process, on ``threads`` threads.

    The best, not the median: a GEMM cannot run faster than the node allows, but
    it can be slowed by a neighbour on a shared machine, and c is a capability.
    """
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    for _ in range(3):
        torch.mm(a, b)
    rates = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(rates) < 5:
        t0 = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - t0) / 1e9)
    return max(rates)


def _pinned_gemm(cores: int, seconds: float, out: mp.Queue) -> None:
    pin_to_cores(cores)
    out.put(gemm_gflops(cores, seconds))


def measure_compute_power(core_counts: list[int], seconds: float = 0.5) -> dict[int, float]:
    """GFLOP/s at each core count, each in its own child process pinned to that many cores."""
    check_core_counts(core_counts)
    ctx = mp.get_context("spawn")
    result: dict[int, float] = {}
    for cores in core_counts:
        queue: mp.Queue = ctx.Queue()
        proc = ctx.Process(target=_pinned_gemm, args=(cores, seconds, queue), daemon=True)
        proc.start()
        try:
            result[cores] = float(queue.get(timeout=120))
        except Exception:
            raise UserError(f"the GEMM benchmark on {cores} cores did not finish") from None
        finally:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return result


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    import numpy
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    versions["numpy"] = numpy.__version__
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return versions


def describe_node(compute_gflops: dict[int, float], device: str = "cpu") -> NodeInfo:
    dev = device
    if device == "cuda":
        import torch

        dev = f"cuda ({torch.cuda.get_device_name(0)})"
    return NodeInfo(
        cpu_model=cpu_model(),
        logical_cores=len(available_cores()),
        compute_gflops=compute_gflops,
        platform=platform.platform(),
        versions=library_versions(),
        device=dev,
    )


def default_core_counts() -> list[int]:
    """1 .. every available core, halving down from the top: few runs, full range."""
    n = len(available_cores())
    counts = {n}
    while n > 1:
        n //= 2
        counts.add(n)
    return sorted(counts)
