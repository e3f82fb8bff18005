"""Figures of the document-memory study (summary.py's tables).

- memory_recall:   a column per hook layer (and number of documents, when several): top-1 recall of
                   the documents' facts (top) and interference, the sharing cost: partitioned's top-1
                   minus the allocation's at the same alpha, paired per fact (bottom; > 0: sharing
                   slots hurts; 0 at alpha 0, one plain model), against alpha (categorical), a line
                   per allocation; whiskers: 95% interval. Partitioned shares nothing: no line there;
- memory_layers:   the layer sweep at alpha = 0 (plain training, one model): per hook layer (x) the
                   share of the circuits' edges leaving it and of the knowledge neurons in it (dashed:
                   1 / layers); right: top-1 of the runs with alpha > 0 hooked at that layer, a line
                   per allocation (colour) and alpha (line style), grey dashed: plain training;
- memory_locality: a column per hook layer: the share of the hook layer's knowledge neurons inside
                   the fact's document's slots (top) and of the documents' activation energy inside
                   their slots (bottom) against alpha, a line per allocation; dashed: chance, slots /
                   MLP width (at alpha = 0 the allocation is a placebo: nothing put the documents there).

Every figure is written as PDF and PNG without timestamps (same tables, same bytes).
`kcircuits figure memory_recall ...` (the table: figures.py).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...figures.style import RANDOM_COLOR, finish, handle, legend, name_colors, name_order, pyplot
from ...vocabulary import at_budget

ALPHA_STYLES = ("-", ":", "-.", (0, (6, 1, 1, 1, 1, 1)))  # memory_layers: per alpha > 0 (plain: dashed)
PANEL = ["model", "documents", "hook_layer"]
ROW = ["model", "documents"]  # memory_layers: a row each


def _panels(table: pd.DataFrame) -> list[tuple]:
    if table.empty:
        raise ValueError("the memory summary table has no rows")
    return sorted(set(table[PANEL].itertuples(index=False, name=None)))


def _title(panel: tuple, panels: list) -> str:
    """"hook layer L", with the model and number of documents when the panels have several."""
    model, n, layer = panel
    several = [len({p[i] for p in panels}) > 1 for i in (0, 1)]
    return ", ".join([*[model] * several[0], *[f"{n} documents"] * several[1], f"hook layer {layer}"])


def _at(table: pd.DataFrame, keys: tuple, columns: list[str] = PANEL) -> pd.DataFrame:
    return table[(table[columns] == pd.Series(keys, index=columns)).all(axis=1)]


def _errors(part: pd.DataFrame, value: str) -> np.ndarray:
    """[2, n] whiskers from value_lo / value_hi (0 where missing)."""
    v = part[value].to_numpy(dtype=float)
    err = np.stack([v - part[f"{value}_lo"].to_numpy(dtype=float), part[f"{value}_hi"].to_numpy(dtype=float) - v])
    return np.clip(np.nan_to_num(err), 0, None)


def _alpha_lines(ax, part: pd.DataFrame, value: str, allocations: list[str], colors: dict, alphas: list) -> None:
    """A line per allocation against alpha (categorical x, allocations side by side), with whiskers."""
    for i, allocation in enumerate(allocations):
        line = part[part["allocation"] == allocation].sort_values("alpha")
        x = np.array([alphas.index(a) for a in line["alpha"]]) + (i - (len(allocations) - 1) / 2) * 0.06
        ax.errorbar(x, line[value].to_numpy(dtype=float), yerr=_errors(line, value), color=colors[allocation],
                    marker="o", markersize=3, capsize=2, lw=1.0, elinewidth=0.8)
    ax.set_xticks(range(len(alphas)), labels=[f"{a:g}" for a in alphas])
    ax.set_xlim(-0.5, len(alphas) - 0.5)


def _alpha_grid(plt, sns, rows: list[tuple[pd.DataFrame, str, str]], allocations: list[str], pdf, png,
                chance: str | None = None) -> None:
    """Rows of panels (table, value column, y label), a column per (model, documents, hook layer); dashed:
    the panel's mean `chance` column, when given."""
    panels = _panels(rows[0][0])
    order = name_order(allocations, rows[0][0]["allocation"])
    colors = name_colors(sns, order)
    alphas = sorted(float(a) for a in rows[0][0]["alpha"].unique())
    height = 2.4 * len(rows)
    fig, axes = plt.subplots(len(rows), len(panels), figsize=(3.0 * len(panels) + 0.6, height), sharex=True,
                             sharey="row", squeeze=False)
    for r, (table, value, label) in enumerate(rows):
        for c, panel in enumerate(panels):
            part = _at(table, panel)
            _alpha_lines(axes[r, c], part, value, order, colors, alphas)
            if part[value].isna().all():
                axes[r, c].text(0.5, 0.5, "no allocation\nshares slots",
                                transform=axes[r, c].transAxes, ha="center", va="center", fontsize=7, color="grey")
            if chance is not None and len(part):
                axes[r, c].axhline(float(part[chance].mean()), color="black", lw=0.8, ls="--")
            axes[0, c].set_title(_title(panel, panels))
            axes[-1, c].set_xlabel("alpha (weight of the inductive loss)")
        axes[r, 0].set_ylabel(label)
    handles = [handle(colors[a], a, marker="o") for a in order]
    legend(fig, handles + ([handle("black", "chance (slots / width)", ls="--")] if chance else []), height=height)
    finish(plt, fig, pdf, png)


def plot_memory_recall(recall: pd.DataFrame, interference: pd.DataFrame, allocations: list[str], pdf, png) -> None:
    """Top: top-1 recall against alpha; bottom: the sharing cost (partitioned's top-1 minus the
    allocation's; defined for every allocation that shares slots, unlike the within-run gap between
    shared and exclusive documents, which the default allocations leave with an empty group); a line
    per allocation, a column per hook layer."""
    plt, sns = pyplot()
    rows = [(recall, "top1", "top-1 recall of\nthe documents' facts"),
            (interference, "cost", "interference: top-1 lost\nagainst disjoint slots")]
    _alpha_grid(plt, sns, rows, allocations, pdf, png)


def plot_memory_locality(locality: pd.DataFrame, allocations: list[str], pdf, png) -> None:
    """Top: share of the hook layer's knowledge neurons inside the document's slots; bottom: share
    of the activation energy inside the slots; against alpha, a line per allocation; dashed: chance."""
    plt, sns = pyplot()
    rows = [(locality, "neurons_inside", "knowledge neurons of the\nhook layer inside the slots"),
            (locality, "slot_share", "activation energy of the\nhook layer inside the slots")]
    _alpha_grid(plt, sns, rows, allocations, pdf, png, chance="chance")


def _sweep_panel(ax, plain: pd.DataFrame, value: str, layers: list[int], **style) -> None:
    line = plain.set_index("hook_layer").reindex(layers).reset_index()
    ax.errorbar(layers, line[value].to_numpy(dtype=float), yerr=_errors(line, value), color="black",
                **{"marker": "o", "markersize": 3, "capsize": 2, "lw": 1.0, "elinewidth": 0.8, **style})
    ax.set_xticks(layers, labels=[str(v) for v in layers])
    ax.set_xlabel("hook layer")


def _recall_panel(ax, recall: pd.DataFrame, layers: list[int], allocations: list[str], colors: dict) -> list:
    """Top-1 against hook layer: a line per allocation and alpha > 0; grey dashed: alpha 0. -> legend handles
    for the alphas."""
    plain = recall[recall["alpha"] == 0].drop_duplicates("hook_layer").set_index("hook_layer").reindex(layers)
    ax.plot(layers, plain["top1"], color=RANDOM_COLOR, ls="--", marker="o", markersize=3)
    alphas = sorted(float(a) for a in recall.loc[recall["alpha"] > 0, "alpha"].unique())
    for allocation in allocations:
        for alpha, style in zip(alphas, ALPHA_STYLES * len(alphas)):
            line = recall[(recall["allocation"] == allocation) & (recall["alpha"] == alpha)]
            line = line.set_index("hook_layer").reindex(layers)
            ax.plot(layers, line["top1"], color=colors[allocation], ls=style, marker="o", markersize=3)
    ax.set_xticks(layers, labels=[str(v) for v in layers])
    ax.set_xlabel("hook layer")
    return [handle("grey", f"alpha {a:g}", ls=s) for a, s in zip(alphas, ALPHA_STYLES * len(alphas))]


def plot_memory_layers(layers: pd.DataFrame, recall: pd.DataFrame, allocations: list[str], budget: str,
                       pdf, png) -> None:
    """A row per model and number of documents: at alpha = 0, the hook layer's share of circuit edges (at the
    edge budget `budget`) and of knowledge neurons (dashed: 1 / layers) against the hook layer; right:
    top-1 of the alpha > 0 runs hooked there, a line per allocation and alpha, grey dashed: alpha 0."""
    plt, sns = pyplot()
    plain = at_budget(layers, budget)
    plain = plain[plain["alpha"] == 0].sort_values([*PANEL, "allocation"]).drop_duplicates(PANEL)  # one model
    if plain.empty:
        raise ValueError("the layers table has no alpha = 0 rows (plain training): no layer sweep to draw")
    counts = sorted(set(plain[ROW].itertuples(index=False, name=None)))
    order = name_order(allocations, recall["allocation"])
    colors = name_colors(sns, order)
    height = 2.6 * len(counts)
    fig, axes = plt.subplots(len(counts), 3, figsize=(10.0, height), squeeze=False)
    for r, (model, n) in enumerate(counts):
        mine, runs = _at(plain, (model, n), ROW), _at(recall, (model, n), ROW)
        hooks = sorted(int(h) for h in runs["hook_layer"].unique())
        _sweep_panel(axes[r, 0], mine, "edge_share", hooks)
        _sweep_panel(axes[r, 0], mine, "ratio", hooks, marker="s", ls="--")
        _sweep_panel(axes[r, 1], mine, "neurons_at_layer", hooks)
        axes[r, 1].axhline(float(mine["layer_chance"].mean()), color="black", lw=0.8, ls="--")
        styles = _recall_panel(axes[r, 2], runs, hooks, order, colors)
        prefix = f"{model}, {n} documents\n" if len(counts) > 1 else ""
        axes[r, 0].set_ylabel(f"{prefix}circuit edges leaving\nthe layer (budget {budget})")
        axes[r, 0].legend(handles=[handle("black", "share of the circuit's edges", marker="o"),
                                   handle("black", "share of the layer's edges", marker="s", ls="--")], fontsize=6)
        axes[r, 1].set_ylabel("knowledge neurons\nin the layer")
        axes[r, 2].set_ylabel("top-1 recall")
    for c, title in enumerate(("circuits, alpha 0", "knowledge neurons, alpha 0", "recall, runs hooked there")):
        axes[0, c].set_title(title)
    handles = [handle(colors[a], a, marker="o") for a in order] + styles
    handles += [handle(RANDOM_COLOR, "alpha 0 (plain)", ls="--", marker="o"), handle("black", "1 / layers", ls="--")]
    legend(fig, handles, height=height)
    finish(plt, fig, pdf, png)


__all__ = ["plot_memory_recall", "plot_memory_locality", "plot_memory_layers"]
