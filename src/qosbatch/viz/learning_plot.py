"""The learning curve: each training episode's return against the step it ended at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qosbatch.viz import save_figure


def plot_learning_curve(
    returns: Sequence[tuple[int, float]], path: str | Path, title: str = ""
) -> Path:
    """Episode returns as dots, their running mean (10 episodes) as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    if returns:
        steps = np.array([s for s, _ in returns], dtype=float)
        values = np.array([r for _, r in returns], dtype=float)
        ax.plot(steps, values, ".", color="C0", alpha=0.4, ms=4, label="episode return")
        k = min(10, len(values))
        mean = np.convolve(values, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], mean, "-", color="C0", label=f"mean of {k}")
    ax.set(xlabel="environment steps", ylabel="return (utility per capacity)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
