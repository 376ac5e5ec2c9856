"""Predicted mean latency against arrival rate, with simulated points beside it when given."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qosbatch.queueing import QueueResult, ServiceTime, solve
from qosbatch.viz import save_figure


def plot_latency_vs_rate(
    service: ServiceTime,
    a: int,
    b: int,
    capacity: int,
    rate: float,
    path: str | Path,
    title: str = "",
    simulated: Sequence[tuple[float, float]] = (),
) -> Path:
    """Model curve from 5% to 120% of saturation; ``simulated``: (rate, mean latency s) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saturation = b / service.mean_s(b)
    rates = np.linspace(0.05, 1.2, 60) * saturation
    results = [solve(float(r), a, b, capacity, service) for r in rates]
    fig, (ax, ax_block) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.plot(rates, [r.mean_latency * 1e3 for r in results], label="M/G(a,b)/1/N model")
    if simulated:
        sim_r, sim_lat = zip(*simulated, strict=True)
        ax.scatter(
            sim_r, np.array(sim_lat) * 1e3, color="C1", zorder=3, label="simulator (same a, b, N)"
        )
    ax.axvline(rate, color="gray", ls=":", label=f"--rate {rate:g}/s")
    ax.set(xlabel="arrival rate (req/s)", ylabel="mean latency (ms)", yscale="log",
           title=f"a={a}, b={b}, N={capacity}")  # fmt: skip
    ax_block.plot(rates, [r.blocking_probability for r in results], color="C2")
    ax_block.set(xlabel="arrival rate (req/s)", ylabel="blocking probability", title="Blocking")
    for axis in (ax, ax_block):
        axis.axvline(saturation, color="C3", ls="--", alpha=0.5, label="saturation b/s(b)")
        axis.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_latency_memory_frontier(
    results: Sequence[QueueResult], chosen: QueueResult, path: str | Path, title: str = ""
) -> Path:
    """Every (a, b) the bounds allow as (mean memory, mean latency), its Pareto frontier,
    and the pair chosen for this omega: what BatOpt trades, in one look."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = sorted(
        (((r.mean_memory or 0.0) / 1e6, r.mean_latency * 1e3, r) for r in results),
        key=lambda p: (p[0], p[1]),
    )
    frontier, best = [], np.inf
    for mem, lat, r in pts:
        if lat < best:
            frontier.append((mem, lat, r))
            best = lat
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, color="C7", label="(a, b)")
    ax.plot([p[0] for p in frontier], [p[1] for p in frontier], "o-", color="C0",
            label="frontier")  # fmt: skip
    for mem, lat, r in frontier[:: max(1, len(frontier) // 8)]:
        ax.annotate(f"({r.a},{r.b})", (mem, lat), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip
    chosen_mb = (chosen.mean_memory or 0.0) / 1e6
    ax.scatter([chosen_mb], [chosen.mean_latency * 1e3], s=80, facecolors="none",
               edgecolors="C3", label=f"chosen ({chosen.a},{chosen.b})")  # fmt: skip
    ax.set(xlabel="mean memory of the batch in service (MB)", ylabel="mean latency (ms)",
           yscale="log", title=title)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
