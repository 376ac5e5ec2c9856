"""The same job on Ray Data: past one machine, with the same resumable output folder.

The dataset is the sample indices of the parts still missing (8 bytes a sample),
not the samples: ``map_batches`` hands each actor ``batch`` consecutive indices,
the actor reads those rows from the input itself (memory-mapped; on a cluster
the input must sit at the same path on every node, e.g. a shared file system)
and returns the outputs with their indices. Only outputs travel through Ray's
object store. The driver alone writes: it fills each part's buffer from the
batches as they come back (in any order) and writes a part, atomically, once
all its rows are in, so a killed driver resumes exactly as the local runner does.

The actor pool is sized from the plan (``actors``), each actor holding ``cores``
CPUs of Ray's and as many intra-op threads.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np

from qosbatch.jobs.inputs import open_input
from qosbatch.jobs.layout import JobOutput
from qosbatch.jobs.runner import Reporter, RunSettings, summarise
from qosbatch.models.backends import make_backend
from qosbatch.models.loading import ModelRef


class _Infer:
    """A Ray Data actor: the model on ``cores`` threads, reading its rows from the input."""

    def __init__(self, ref: ModelRef, backend: str, cores: int, input_path: str) -> None:
        self.backend = make_backend(ref, backend, threads=cores)
        self.input = open_input(input_path)
        self.cast = np.float32 if backend == "torch" else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        ids = np.asarray(batch["id"], dtype=np.int64)
        if len(ids) and ids[-1] - ids[0] + 1 == len(ids):  # consecutive: one slice
            x = self.input.read(int(ids[0]), int(ids[-1]) + 1)
        else:
            x = np.concatenate([self.input.read(int(i), int(i) + 1) for i in ids])
        x = np.array(x, dtype=self.cast or x.dtype, order="C")
        t0 = time.perf_counter()
        y = self.backend.run(x)
        seconds = time.perf_counter() - t0
        return {"id": ids, "out": list(y), "seconds": np.full(len(ids), seconds / len(ids))}


def run_ray(
    input_path: str,
    ref: ModelRef,
    backend: str,
    out: JobOutput,
    settings: RunSettings,
    actors: int | None,
    reporter: Reporter,
    started_at: float,
    address: str | None = None,
) -> dict[str, Any]:
    """Run the missing parts on Ray Data, write outputs.npy and job.json; returns the summary.

    Without ``address`` a local Ray is started on this process's cores; ``actors``
    None fills the cluster's CPUs with actors of ``settings.cores``.
    """
    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # the bar and summary are ours
    warnings.filterwarnings("ignore", category=UserWarning, module="ray.data")
    if not ray.is_initialized():
        local = {} if address else {"num_cpus": settings.max_cores}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // settings.cores)
    missing = out.missing()
    this_run = sum(out.bounds(i)[1] - out.bounds(i)[0] for i in missing)
    reporter.start(out.n, out.samples_done())
    t0 = time.perf_counter()
    compute = 0.0
    try:
        if missing:
            ds = _dataset(ray.data, out, missing, input_path, ref, backend, settings, actors)
            compute = _collect(ds, out, reporter, this_run, t0)
    finally:
        reporter.stop()
    out.assemble()
    end = time.perf_counter()
    summary = summarise(
        settings,
        samples=out.n,
        this_run=this_run,
        wall_s=end - started_at,
        loop_s=end - t0,
        compute_s=compute,
        core_s=actors * settings.cores * (end - started_at),
        final=(settings.batch, settings.cores),
        replans=[],
    )
    summary["actors"] = actors
    out.finish(summary)
    return summary


def _dataset(
    data: Any,
    out: JobOutput,
    missing: list[int],
    input_path: str,
    ref: ModelRef,
    backend: str,
    settings: RunSettings,
    actors: int,
) -> Any:
    """The missing parts' sample indices, mapped by an actor pool in batches of b."""
    ctx = data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True  # parts then complete in order
    # One block per group of whole parts, enough groups to keep every actor busy.
    groups = [g for g in np.array_split(np.array(missing), 4 * actors) if len(g)]
    blocks = [
        np.concatenate([np.arange(*out.bounds(int(i)), dtype=np.int64) for i in g]) for g in groups
    ]
    return (
        data.from_numpy(blocks)
        .rename_columns({"data": "id"})
        .map_batches(
            _Infer,
            fn_constructor_args=(ref, backend, settings.cores, input_path),
            batch_size=settings.batch,
            concurrency=actors,
            num_cpus=settings.cores,
            batch_format="numpy",
        )
    )


def _collect(ds: Any, out: JobOutput, reporter: Reporter, this_run: int, t0: float) -> float:
    """Fill and write parts from the batches as they come back; the model's total time."""
    filling: dict[int, tuple[np.ndarray, int]] = {}
    done = out.samples_done()
    compute = 0.0
    for result in ds.iter_batches(batch_size=None, batch_format="numpy"):
        compute += float(np.sum(result["seconds"]))
        rows = np.stack(result["out"])
        for i, (index, count) in _spans(result["id"], out.part_size):
            _fill(out, filling, index, rows[i : i + count], int(result["id"][i]))
        done += len(rows)
        rate = (done - (out.n - this_run)) / max(time.perf_counter() - t0, 1e-9)
        reporter.update(done, rate, (out.n - done) / rate if rate else None, "")
    return compute


def _spans(ids: np.ndarray, part_size: int) -> list[tuple[int, tuple[int, int]]]:
    """(offset in the batch, (part index, rows)) for each run of one part's consecutive ids."""
    parts = ids // part_size
    cuts = np.flatnonzero(np.diff(parts)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(ids)]])
    return [(int(s), (int(parts[s]), int(e - s))) for s, e in zip(starts, ends, strict=True)]


def _fill(
    out: JobOutput,
    filling: dict[int, tuple[np.ndarray, int]],
    index: int,
    rows: np.ndarray,
    first_id: int,
) -> None:
    start, end = out.bounds(index)
    buf, have = filling.get(index) or (np.empty((end - start, *rows.shape[1:]), rows.dtype), 0)
    buf[first_id - start : first_id - start + len(rows)] = rows
    have += len(rows)
    if have == end - start:
        filling.pop(index, None)
        out.write_part(index, buf)
    else:
        filling[index] = (buf, have)
