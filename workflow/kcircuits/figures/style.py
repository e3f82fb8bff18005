"""The figures' one style: pyplot with the project's theme, saving, grids, legends, colours and
the names every figure shares. Every figure module draws with these; none imports another's
private helpers.

Every figure is written as PDF and PNG, atomically and without timestamps (same data, same bytes).
"""
from __future__ import annotations

import os
from pathlib import Path

from .. import io

KNOWLEDGE = {"new": "K_compl (new)", "revised": "K_rel (revised)"}
TARGETS = {"current": "new value", "original": "original value"}
PALETTE = {KNOWLEDGE["new"]: "#1f77b4", KNOWLEDGE["revised"]: "#d62728"}
TARGET_PALETTE = {TARGETS["current"]: "#d62728", TARGETS["original"]: "#7f7f7f"}
RANDOM_COLOR = "#7f7f7f"  # a random / reference series beside configured ones
# Several training seeds give several rows per checkpoint and curve: seaborn draws their mean and a
# 95% bootstrap interval; a fixed bootstrap seed keeps the figure bytes reproducible.
SEED_BAND = {"errorbar": ("ci", 95), "n_boot": 1000, "seed": 0}


def pyplot():
    """(matplotlib.pyplot, seaborn) on the Agg backend with the project's theme."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    plt.rcParams["svg.hashsalt"] = "kcircuits"  # deterministic ids
    return plt, sns


def save_figure(fig, pdf: str | Path, png: str | Path, dpi: int = 150) -> None:
    """PDF and PNG, each renamed into place only once fully written; no creation dates."""
    with io.atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    with io.atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})


def finish(plt, fig, pdf, png) -> None:
    """Save the figure and close it."""
    save_figure(fig, pdf, png)
    plt.close(fig)


def grid(plt, n_rows: int, n_cols: int, width: float = 3.0, height: float = 2.2):
    """(fig, axes[n_rows][n_cols]) of panels sharing both axes, each width x height inches."""
    return plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows), sharex=True, sharey=True,
                        squeeze=False)


def legend(fig, handles, ncol: int | None = None, height: float | None = None) -> None:
    """One legend above the panels, in one row unless ncol says; the panels shrink to 95% of the figure,
    or, given the figure's height in inches, by a fixed 0.3 inch whatever the height."""
    fig.legend(handles=handles, loc="upper center", ncol=ncol or len(handles), bbox_to_anchor=(0.5, 1.0),
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95 if height is None else 1 - 0.3 / height))


def handle(color, label, **line):
    """A legend entry: a line of `color`."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, label=label, **line)


def progress_axis(ax, epochs) -> None:
    """The x axis of continual pre-training progress, in epochs."""
    ax.set_xlabel("continual pre-training (epochs)")
    ax.set_xlim(min(epochs), max(max(epochs), min(epochs) + 1e-9))


def group_colors(sns, groups: list[str]) -> dict[str, tuple]:
    """Frequency groups, low to high, on viridis."""
    return dict(zip(groups, sns.color_palette("viridis", len(groups))))


def name_order(names: list[str], present) -> list[str]:
    """The configured names (types, corpora, methods) that occur in `present`, in config order, then
    any others sorted."""
    present = set(present)
    return [t for t in names if t in present] + sorted(present - set(names))


def name_colors(sns, names: list[str]) -> dict[str, tuple]:
    """Configured names (types, allocations, methods) on tab10."""
    return dict(zip(names, sns.color_palette("tab10", max(len(names), 1))))


def value_colors(sns, values) -> dict:
    """Ordered values (replay shares, alphas) on viridis, low to high."""
    values = sorted(set(values))
    return dict(zip(values, sns.color_palette("viridis", max(len(values), 1))))
