"""Attainment against load, one line per policy: where each policy falls off the SLO."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from qosbatch.viz import save_figure


def plot_attainment(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    target: float = 0.99,
    capacities: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """``curves``: policy -> [(mean arrival rate, attainment)]; capacities marked if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, (name, points) in enumerate(curves.items()):
        pts = sorted(points)
        color = f"C{i}"
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o-", ms=3, color=color, label=name)
        if capacities and capacities.get(name, 0) > 0:
            ax.axvline(capacities[name], color=color, ls=":", lw=1)
    ax.axhline(100 * target, color="gray", ls="--", lw=1, label=f"{100 * target:g}% target")
    ax.set(xlabel="mean arrival rate (requests/s)", ylabel="SLO attainment (%)", title=title)
    ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]), top=100.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
