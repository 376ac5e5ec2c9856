"""The job runner's throughput against the in-process limit of the same (b, k), side by side.

The limit is a bare loop of ``backend.run`` over batches prepared in advance; the
job is ``qosbatch.jobs.runner.run_local`` over the same samples read from a
memory-mapped .npy, with its parts, manifest and outputs.npy. The two alternate
``--rounds`` times in one process (same model, same threads), so a neighbour's
load hits both; the ratio job/limit per round is printed.

    taskset -c 1 .venv/bin/python -m benchmarks.job_overhead --model alexnet --batch 16 \\
        --samples 320 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from qosbatch.jobs.inputs import open_input
from qosbatch.jobs.layout import open_output
from qosbatch.jobs.runner import QuietReporter, RunSettings, run_local
from qosbatch.models.backends import make_backend
from qosbatch.models.loading import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="alexnet")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--samples", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ref = resolve_model(args.model)
    backend = make_backend(ref, threads=args.cores)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.samples, *ref.input_shape), dtype=np.float32)
    batches = [x[i : i + args.batch] for i in range(0, len(x), args.batch)]
    backend.run(batches[0])  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        job_input = open_input(Path(tmp) / "x.npy")
        ratios = []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            for b in batches:
                backend.run(b)
            limit = args.samples / (time.perf_counter() - t0)
            out = open_output(Path(tmp) / f"out{r}", {"n": args.samples}, 4 * args.batch)
            settings = RunSettings(batch=args.batch, cores=args.cores, max_cores=args.cores)
            t0 = time.perf_counter()
            run_local(job_input, backend, out, settings, None, QuietReporter(), t0)
            job = args.samples / (time.perf_counter() - t0)
            ratios.append(job / limit)
            print(
                f"round {r}: limit {limit:.1f} samples/s, job {job:.1f} samples/s, "
                f"job/limit {job / limit:.3f}"
            )
        print(f"median job/limit {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
