"""Figure of the CounterFact-style generation probe (eval/generations.parquet of every training seed).

- generation_probe: a panel for all probed revised facts, then one per attribute; x: the checkpoints
  in training order at their continual-pre-training epoch; lines: the new value (red) and the
  original, base-world value (grey). Solid: success, the share of prompts with the target in at
  least one of the k samples; dashed: rate, the share of the k samples that contain it. With several
  training seeds, the mean over seeds and a 95% bootstrap band (figures/seeds.py).

Written as PDF and PNG without timestamps (same table, same bytes). `kcircuits figure generation_probe ...`.
"""
from __future__ import annotations

import pandas as pd

from .. import ATTRIBUTES
from ..stats import ALL
from .seeds import draw_curve, seed_summary
from .style import TARGET_PALETTE, TARGETS, progress_axis, pyplot, save_figure

# target_kind of the probe -> legend label and colour (the overwriting figure's)
KINDS = {"new": (f"revised, {TARGETS['current']}", TARGET_PALETTE[TARGETS["current"]]),
         "original": (f"revised, {TARGETS['original']}", TARGET_PALETTE[TARGETS["original"]])}
MEASURES = {"success": ("-", "success: target in ≥1 of k samples"), "rate": ("--", "rate: share of the k samples")}


def panels(summary: pd.DataFrame) -> list[str]:
    """"all", then the attributes present (ATTRIBUTES order)."""
    present = set(summary["attribute"])
    return [ALL, *[a for a in ATTRIBUTES if a in present]]


def plot_generation_probe(summary: pd.DataFrame, k: int, pdf, png) -> None:
    """summary: evaluate.generation.summarise_generations' table of one or more training seeds."""
    plt, _ = pyplot()
    if summary.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "generation probe: no revised facts were probed", ha="center", va="center")
        save_figure(fig, pdf, png)
        plt.close(fig)
        return
    names = panels(summary)
    curves = {m: seed_summary(summary, ["attribute", "target_kind", "epoch"], value=m) for m in MEASURES}
    fig, axes = plt.subplots(1, len(names), figsize=(2.8 * len(names), 2.9), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        for kind, (_, color) in KINDS.items():
            for measure, (ls, _) in MEASURES.items():
                table = curves[measure]
                curve = table[(table["attribute"] == name) & (table["target_kind"] == kind)]
                if len(curve):
                    draw_curve(ax, curve, "epoch", color, ls=ls, lw=1.8 if measure == "success" else 1.0,
                               marker="o" if measure == "success" else None, markersize=3)
        n = summary.loc[(summary["attribute"] == name) & (summary["target_kind"] == "new"), "n"]
        ax.set_title(f"{'all attributes' if name == ALL else name} ({int(n.max()) if len(n) else 0} prompts)")
        ax.set_ylim(-0.02, 1.02)
        progress_axis(ax, summary["epoch"])
    axes[0, 0].set_ylabel(f"generation probe: share of prompts\nwith the target in ≥1 of k={k} samples")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color, marker="o", label=label) for label, color in KINDS.values()]
    handles += [Line2D([], [], color="black", ls=ls, label=label) for ls, label in MEASURES.values()]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1.08), frameon=False)
    fig.tight_layout()
    save_figure(fig, pdf, png)
    plt.close(fig)


__all__ = ["plot_generation_probe", "panels"]
