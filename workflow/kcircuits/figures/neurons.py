"""Figures of knowledge neurons (Dai et al. 2022) across continual pre-training, from every training
seed's neuron tables (results/{run}/seed-{seed}/analysis/neuron_*.parquet, kcircuits.neurons.stage).

- layers:          share of knowledge neurons per layer at the last checkpoint, integrated gradients
                   up and the activation baseline down (the original's mirrored bar chart); value
                   target, attributes pooled; rows knowledge types, columns frequency groups;
- suppress:        relative change of P(target) when a fact's knowledge neurons are suppressed (x0)
                   or amplified (x2), on its own prompts and on an unrelated fact's, against as many
                   random neurons of the same layers; last checkpoint, one row per method;
- edit:            editing a fact through its IG neurons' value slots, across training: edited facts,
                   success@1 / @5 and changed share, intra- and inter-attribute PPL before vs after;
- erase:           zeroing an attribute's most frequent neurons' value slots: accuracy and PPL before
                   and after, on the erased attribute vs the others; last checkpoint;
- training:        neurons per fact, mean layer, Jaccard to the final and previous checkpoint's neurons,
                   and survival (share still selected) of the first checkpoint's neurons of revised
                   facts' original values, across training;
- circuit_overlap: share of a cell's knowledge neurons whose MLP is a node of the cell's circuit, across
                   training, one column per edge budget.

A value is the mean over training seeds of the per-seed frames of figures/neuron_tables.py, with a 95%
bootstrap interval over seeds (figures/seeds.py, fixed bootstrap seed: same tables, same bytes); with
one seed there is no interval. Inputs are read and checked by neuron_tables.read_tables (a TableError
naming the option and file); where a table is empty because nothing qualified, the figure says so
(plot_nothing, EMPTY_REASONS) instead of failing the workflow. `kcircuits figure neurons_* ...`
(figures/stage.py) reads the tables and draws them through this module.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import ATTRIBUTES, TYPES
from .circuits import budget_order
from .neuron_tables import (
    COLUMNS,
    EDIT_PPL,
    EDIT_SUCCESS,
    EMPTY_REASONS,
    ERASE,
    EVOLUTION,
    SURVIVAL,
    NoRows,
    TableError,
    edit_frame,
    erase_frame,
    evolution_frame,
    intervention_changes,
    last_checkpoint,
    layer_shares,
    overlap_frame,
    read_tables,
)
from .seeds import draw_curve, seed_summary
from .style import KNOWLEDGE, PALETTE, grid, group_colors, handle, progress_axis, pyplot, save_figure

METHODS = {"ig": "integrated gradients", "baseline": "activation baseline"}
METHOD_COLORS = {"ig": "#1f77b4", "baseline": "#ff7f0e"}
TYPE_STYLE = {"new": "-", "revised": "--"}


# ---- drawing helpers ---------------------------------------------------------------------------------
def plot_nothing(name: str, reason: str, pdf, png) -> None:
    """A figure that only says why there is nothing to draw."""
    import textwrap

    plt, _ = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 1.8))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{name}: nothing to draw\n\n" + textwrap.fill(reason, 90), ha="center", va="center",
            fontsize=9, transform=ax.transAxes)
    save_figure(fig, pdf, png)
    plt.close(fig)


def _known_first(present, known) -> list:
    """The distinct names in `present`: those of `known` in its order, then the others sorted."""
    present = set(present)
    return [k for k in known if k in present] + sorted(present - set(known))


def _checkpoint_label(table: pd.DataFrame) -> str:
    names = table.drop_duplicates(["seed", "checkpoint"])
    epochs = sorted(set(names["epoch"].round(3)))
    return f"{', '.join(sorted(set(names['checkpoint'])))} (epoch {', '.join(f'{e:g}' for e in epochs)})"


def _patch(color, label, **kw):
    from matplotlib.patches import Patch

    return Patch(facecolor=color, label=label, **kw)


def _below_legend(fig, inches: float) -> None:
    """tight_layout below a legend (or title) `inches` tall at the top of the figure."""
    fig.tight_layout(rect=(0, 0, 1, 1 - inches / fig.get_figheight()))


def _group_legend(fig, colors: dict) -> None:
    handles = [handle(col, f"{g} frequency", lw=2) for g, col in colors.items()]
    handles += [handle("black", KNOWLEDGE[t], ls=TYPE_STYLE[t]) for t in TYPES]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1.0), frameon=False)
    _below_legend(fig, 0.3)


def _log_axis(ax) -> None:
    """Log y axis with plain numbers (10, 15, 20) rather than 1.5 x 10^1 on short ranges."""
    from matplotlib.ticker import LogFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))  # a few minor labels on short ranges


def _progress(ax, epochs, bottom: bool) -> None:
    """The training-progress x axis (acquisition._progress_axis), its label in the bottom row only."""
    progress_axis(ax, epochs)
    if not bottom:
        ax.set_xlabel("")


def _bars(ax, x, rows: pd.DataFrame, width: float, color, sign: float = 1.0, **bar) -> None:
    """Bars at x of seed_summary rows (mean), with the 95% interval where there are several seeds."""
    x = np.asarray(x, dtype=float)
    mean, lo, hi = (rows[c].to_numpy(dtype=float) * sign for c in ("mean", "lo", "hi"))
    ax.bar(x, mean, width, color=color, **bar)
    several = rows["n_seeds"].to_numpy() > 1
    if several.any():
        low, high = np.minimum(lo, hi), np.maximum(lo, hi)
        ax.errorbar(x[several], mean[several], yerr=[(mean - low)[several], (high - mean)[several]], fmt="none",
                    ecolor="black", elinewidth=0.8, capsize=2)


def _group_curves(ax, rows: pd.DataFrame, colors: dict) -> None:
    """Of seed_summary rows across training, a curve per frequency group (colour) and knowledge type
    (TYPE_STYLE)."""
    for group, color in colors.items():
        for etype in TYPES:
            curve = rows[(rows["freq_group"] == group) & (rows["type"] == etype)]
            if len(curve):
                draw_curve(ax, curve, "epoch", color, ls=TYPE_STYLE[etype], marker="o", markersize=2.5)


# ---- figures ------------------------------------------------------------------------------------------
def plot_layers(layers: pd.DataFrame, groups: list[str], pdf, png) -> pd.DataFrame:
    """Rows: knowledge types; columns: frequency groups; per layer the share of knowledge neurons, IG
    up and the baseline down. Returns the plotted summary."""
    plt, sns = pyplot()
    from matplotlib.ticker import FuncFormatter

    summary = seed_summary(layer_shares(layers, groups), ["type", "freq_group", "method", "layer"])
    n_layers = int(layers["layer"].max()) + 1
    types = _known_first(summary["type"], TYPES)
    fig, axes = grid(plt, len(types), len(groups), width=max(2.6, 0.35 * n_layers + 1.2), height=2.6)
    top = max(float(summary["hi"].max()), float(summary["mean"].max()), 1.0) * 1.12
    for r, etype in enumerate(types):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            for method, sign in (("ig", 1.0), ("baseline", -1.0)):
                rows = summary[(summary["type"] == etype) & (summary["freq_group"] == group)
                               & (summary["method"] == method)].sort_values("layer")
                if len(rows):
                    _bars(ax, rows["layer"], rows, 0.75, METHOD_COLORS[method], sign)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_ylim(-top, top)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):g}"))
            ax.set_xticks(range(n_layers))
            ax.set_title(f"{KNOWLEDGE[etype]}, {group} frequency", fontsize=8)
            ax.set_ylabel("share of knowledge\nneurons (%)" if c == 0 else "")
            ax.set_xlabel("layer" if r == len(types) - 1 else "")
    handles = [_patch(METHOD_COLORS["ig"], f"{METHODS['ig']} (up)"),
               _patch(METHOD_COLORS["baseline"], f"{METHODS['baseline']} (down)")]
    fig.legend(handles=handles, loc="upper center", ncol=2, bbox_to_anchor=(0.5, 1.0), frameon=False,
               title=f"Knowledge neurons by layer at {_checkpoint_label(last_checkpoint(layers))}; value target, "
                     "attributes pooled")
    _below_legend(fig, 0.5)
    save_figure(fig, pdf, png)
    plt.close(fig)
    return summary


OPERATIONS = {"suppress": "suppress (activation x 0)", "amplify": "amplify (activation x 2)"}
PROMPTS = {"own": "own prompts", "unrelated": "unrelated prompts"}
NEURON_SETS = {"knowledge": "knowledge neurons", "random": "random neurons (same layers)"}


def plot_suppress(interventions: pd.DataFrame, groups: list[str], pdf, png) -> pd.DataFrame:
    """Rows: methods; columns: suppress, amplify; x: own vs unrelated prompts; bars: knowledge neurons
    (solid) and random neurons (hatched) of K_compl and K_rel facts."""
    plt, sns = pyplot()
    summary = seed_summary(intervention_changes(interventions, groups),
                           ["method", "operation", "prompts", "neurons", "type"])
    methods = _known_first(summary["method"], METHODS)
    operations = [o for o in OPERATIONS if o in set(summary["operation"])]
    series = [(n, t) for n in NEURON_SETS for t in TYPES]
    width = 0.8 / len(series)
    fig, axes = plt.subplots(len(methods), len(operations), figsize=(3.8 * len(operations), 2.8 * len(methods)),
                             sharex=True, squeeze=False)
    for r, method in enumerate(methods):
        for c, operation in enumerate(operations):
            ax = axes[r, c]
            for i, (neurons, etype) in enumerate(series):
                for p, prompts in enumerate(PROMPTS):
                    rows = summary[(summary["method"] == method) & (summary["operation"] == operation)
                                   & (summary["prompts"] == prompts) & (summary["neurons"] == neurons)
                                   & (summary["type"] == etype)]
                    if len(rows):
                        random = neurons == "random"
                        _bars(ax, [p - 0.4 + width * (i + 0.5)], rows, width, PALETTE[KNOWLEDGE[etype]],
                              alpha=0.45 if random else 1.0, hatch="//" if random else None, edgecolor="white",
                              linewidth=0)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(range(len(PROMPTS)), list(PROMPTS.values()))
            ax.set_title(f"{METHODS.get(method, method)}: {OPERATIONS[operation]}", fontsize=8)
            ax.set_ylabel("change of P(target) (%)" if c == 0 else "")
    handles = [_patch(PALETTE[KNOWLEDGE[t]], f"{KNOWLEDGE[t]}, {NEURON_SETS[n]}", alpha=0.45 if n == "random" else 1.0,
                      hatch="//" if n == "random" else None, edgecolor="white") for n, t in series]
    fig.legend(handles=handles, loc="upper center", ncol=2, bbox_to_anchor=(0.5, 1.0), frameon=False,
               title=f"Relative change of P(target) at {_checkpoint_label(last_checkpoint(interventions))}", fontsize=7)
    _below_legend(fig, 0.65)
    save_figure(fig, pdf, png)
    plt.close(fig)
    return summary


def plot_edit(edits: pd.DataFrame, groups: list[str], pdf, png) -> pd.DataFrame:
    """Rows: knowledge types; columns: edited facts, edit success (success@1, @5, changed), intra- and
    inter-attribute PPL before (dashed) and after (solid) the edit; x: training progress."""
    plt, sns = pyplot()
    summary = seed_summary(edit_frame(edits, groups), ["type", "measure", "epoch"])
    types = _known_first(summary["type"], TYPES)
    success_colors = dict(zip(EDIT_SUCCESS, sns.color_palette("Dark2", len(EDIT_SUCCESS))))
    columns = ["edited facts (n)", "edit success (share of edits)", *EDIT_PPL.values()]
    fig, axes = plt.subplots(len(types), len(columns), figsize=(3.0 * len(columns), 2.4 * len(types)), sharex=True,
                             squeeze=False)
    for r, etype in enumerate(types):
        cell = summary[summary["type"] == etype]
        color = PALETTE[KNOWLEDGE[etype]]
        draw_curve(axes[r, 0], cell[cell["measure"] == "n_edits"], "epoch", color, marker="o", markersize=3)
        axes[r, 0].set_ylim(bottom=0)
        for measure, col in success_colors.items():
            draw_curve(axes[r, 1], cell[cell["measure"] == measure], "epoch", col, marker="o", markersize=3)
        axes[r, 1].set_ylim(-0.02, 1.02)
        for c, kind in enumerate(EDIT_PPL, start=2):
            for when, ls in (("before", "--"), ("after", "-")):
                draw_curve(axes[r, c], cell[cell["measure"] == f"{kind}_{when}"], "epoch", color, ls=ls, marker="o",
                           markersize=3)
            _log_axis(axes[r, c])
        for c, title in enumerate(columns):
            ax = axes[r, c]
            ax.set_title(title if r == 0 else "", fontsize=8)
            _progress(ax, edits["epoch"], r == len(types) - 1)
        axes[r, 0].set_ylabel(KNOWLEDGE[etype])
    handles = [handle(col, EDIT_SUCCESS[m], marker="o") for m, col in success_colors.items()]
    handles += [handle("grey", "PPL before the edit", ls="--"), handle("grey", "PPL after the edit")]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1.0), frameon=False)
    _below_legend(fig, 0.3)
    save_figure(fig, pdf, png)
    plt.close(fig)
    return summary


SCOPES = {"erased": ("erased attribute", "#d62728"), "other": ("other attributes", "#7f7f7f")}


def plot_erase(erase: pd.DataFrame, groups: list[str], pdf, png) -> pd.DataFrame:
    """Columns: accuracy, PPL; x: erased attribute; bars: the erased attribute's prompts and the other
    attributes', before (light) and after (solid) the erase."""
    plt, sns = pyplot()
    summary = seed_summary(erase_frame(erase), ["attribute", "scope", "measure", "when"])
    attributes = _known_first(summary["attribute"], ATTRIBUTES)
    bars = [(scope, when) for scope in SCOPES for when in ("before", "after")]
    width = 0.8 / len(bars)
    fig, axes = plt.subplots(1, len(ERASE), figsize=(max(3.5, 1.1 * len(attributes) + 1) * len(ERASE), 3.2),
                             squeeze=False)
    for ax, (measure, title) in zip(axes[0], ERASE.items()):
        for i, (scope, when) in enumerate(bars):
            rows = summary[(summary["scope"] == scope) & (summary["measure"] == measure) & (summary["when"] == when)]
            rows = rows.set_index("attribute").reindex([a for a in attributes if a in set(rows["attribute"])])
            if len(rows):
                x = [attributes.index(a) - 0.4 + width * (i + 0.5) for a in rows.index]
                _bars(ax, x, rows, width, SCOPES[scope][1], alpha=0.4 if when == "before" else 1.0)
        ax.set_xticks(range(len(attributes)), attributes)
        ax.set_xlabel("erased attribute")
        ax.set_ylabel(title)
        if measure == "ppl":
            _log_axis(ax)
        else:
            ax.set_ylim(0, 1.05)
    last = last_checkpoint(erase)
    low, high = last["n_neurons"].min(), last["n_neurons"].max()
    count = f"{low:g}" if low == high else f"{low:g}–{high:g}"
    handles = [_patch(SCOPES[s][1], f"{SCOPES[s][0]}, {w}", alpha=0.4 if w == "before" else 1.0) for s, w in bars]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1.0), frameon=False,
               title=f"Erasing an attribute's {count} most frequent knowledge neurons, at {_checkpoint_label(last)}",
               fontsize=7)
    _below_legend(fig, 0.5)
    save_figure(fig, pdf, png)
    plt.close(fig)
    return summary


def plot_training(evolution: pd.DataFrame, groups: list[str], pdf, png) -> pd.DataFrame:
    """Rows: methods; columns: the EVOLUTION measures (value target) and the survival of revised facts'
    original-value neurons; colours: frequency groups; solid K_compl, dashed K_rel."""
    plt, sns = pyplot()
    summary = seed_summary(evolution_frame(evolution, groups), ["method", "type", "freq_group", "measure", "epoch"])
    methods = _known_first(summary["method"], METHODS)
    colors = group_colors(sns, groups)
    columns = {**EVOLUTION, SURVIVAL: "K_rel original values:\nshare of first checkpoint's neurons"}
    fig, axes = plt.subplots(len(methods), len(columns), figsize=(2.9 * len(columns), 2.4 * len(methods)),
                             sharex=True, squeeze=False)
    for r, method in enumerate(methods):
        for c, (measure, title) in enumerate(columns.items()):
            ax = axes[r, c]
            _group_curves(ax, summary[(summary["method"] == method) & (summary["measure"] == measure)], colors)
            if measure.startswith("jaccard") or measure == SURVIVAL:
                ax.set_ylim(-0.02, 1.02)
            ax.set_title(title if r == 0 else "", fontsize=8)
            ax.set_ylabel(METHODS.get(method, method) if c == 0 else "")
            _progress(ax, evolution["epoch"], r == len(methods) - 1)
    _group_legend(fig, colors)
    save_figure(fig, pdf, png)
    plt.close(fig)
    return summary


def plot_circuit_overlap(overlap: pd.DataFrame, groups: list[str], edge_budgets: list, pdf, png) -> pd.DataFrame:
    """Rows: methods; columns: edge budgets (config order first); colours: frequency groups; solid
    K_compl, dashed K_rel; y: share of the cell's knowledge neurons whose MLP is in its circuit."""
    plt, sns = pyplot()
    summary = seed_summary(overlap_frame(overlap, groups), ["method", "budget", "type", "freq_group", "epoch"])
    methods = _known_first(summary["method"], METHODS)
    budgets = budget_order(summary["budget"].unique(), edge_budgets)
    colors = group_colors(sns, groups)
    fig, axes = grid(plt, len(methods), len(budgets), width=3.2, height=2.4)
    for r, method in enumerate(methods):
        for c, budget in enumerate(budgets):
            ax = axes[r, c]
            _group_curves(ax, summary[(summary["method"] == method) & (summary["budget"] == budget)], colors)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"edge budget {budget}" if r == 0 else "", fontsize=8)
            ax.set_ylabel(f"{METHODS.get(method, method)}\nshare in circuit" if c == 0 else "")
            _progress(ax, overlap["epoch"], r == len(methods) - 1)
    _group_legend(fig, colors)
    save_figure(fig, pdf, png)
    plt.close(fig)
    return summary


# The table names are neuron_tables', here too for figures/stage.py (one module per figure family).
__all__ = ["COLUMNS", "EMPTY_REASONS", "TableError", "NoRows", "read_tables", "plot_nothing", "last_checkpoint",
           "layer_shares", "intervention_changes", "edit_frame", "erase_frame", "evolution_frame", "overlap_frame",
           "plot_layers", "plot_suppress", "plot_edit", "plot_erase", "plot_training", "plot_circuit_overlap"]
