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

Means are taken within each seed first (over facts, or attributes pooled by summing counts), so a
value is the mean over training seeds with a 95% bootstrap interval over seeds (figures/seeds.py,
fixed bootstrap seed: same tables, same bytes); with one seed there is no interval. "Last checkpoint":
each seed's highest `order`. Inputs are read by read_tables: a missing or unreadable table, or one
without a column a figure needs, is a TableError naming the option and file (`kcircuits figure` prints
it on one line), and so is an empty erase or evolution table (they have a row per attribute / cell
whatever the neurons). The other tables are empty when nothing qualified (no fact with knowledge
neurons, none the model answers at top-1 to edit, no neuron in a cell with a circuit): then the figure
says so (plot_nothing, EMPTY_REASONS) instead of failing the workflow. `kcircuits figure neurons_* ...`
(figures/stage.py) draws them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import ATTRIBUTES, TYPES
from ..config import ConfigError
from .acquisition import KNOWLEDGE, PALETTE, _progress_axis, _pyplot, save_figure
from .seeds import draw_curve, path_seed, seed_summary

METHODS = {"ig": "integrated gradients", "baseline": "activation baseline"}
METHOD_COLORS = {"ig": "#1f77b4", "baseline": "#ff7f0e"}
TYPE_STYLE = {"new": "-", "revised": "--"}
SHORT = {"new": "K_compl", "revised": "K_rel"}
PROGRESS = "continual pre-training (epochs)"
CHECKPOINT = ["order", "checkpoint", "epoch"]
FACT = ["type", "freq_group"]

# The columns each figure reads, by input option (the rest of a table is ignored).
COLUMNS = {
    "layers": [*CHECKPOINT, *FACT, "attribute", "method", "target_kind", "layer", "count"],
    "interventions": [*CHECKPOINT, *FACT, "fact", "method", "neurons", "operation", "prompts", "p_before", "p_after"],
    "edits": [*CHECKPOINT, *FACT, "fact", "success_at_1", "success_at_5", "changed", "ppl_intra_before",
              "ppl_intra_after", "ppl_inter_before", "ppl_inter_after"],
    "erase": [*CHECKPOINT, "attribute", "scope", "n_neurons", "accuracy_before", "accuracy_after", "ppl_before",
              "ppl_after"],
    "evolution": [*CHECKPOINT, *FACT, "attribute", "method", "target_kind", "n_facts", "neurons_per_fact",
                  "mean_layer", "jaccard_prev", "jaccard_final", "share_of_first"],
    "overlap": [*CHECKPOINT, *FACT, "attribute", "method", "budget", "n_neurons", "n_in_circuit"],
}


# Tables that are empty when nothing qualified, and why (the others always have rows).
EMPTY_REASONS = {
    "layers": "no knowledge neurons of a current value",
    "interventions": "no sampled fact has knowledge neurons",
    "edits": "no fact could be edited (none with knowledge neurons beyond the relation-level ones that the "
             "model answers at top-1, or neurons.edit.facts_per_attribute is 0)",
    "overlap": "no knowledge neurons in a cell with a circuit",
}


class TableError(ConfigError):
    """A figure's input table is missing, unreadable, empty or lacks columns; the message names the file."""


class NoRows(ValueError):
    """The tables hold no rows of what a figure draws (figures/stage.py names the files)."""


# ---- reading ------------------------------------------------------------------------------------------
def read_tables(paths, option: str) -> pd.DataFrame:
    """Every seed's table given to --OPTION in one, with an int `seed` column (from the path's `seed-N`
    where a table has none); each checked for the columns COLUMNS[option] and for rows."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise TableError(f"--{option}: no tables given")
    frames = []
    for i, path in enumerate(paths):
        try:
            table = pd.read_parquet(path)
        except FileNotFoundError:
            raise TableError(f"--{option} {path}: no such file") from None
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TableError(f"--{option} {path}: not a readable parquet table ({first})") from None
        missing = sorted(set(COLUMNS[option]) - set(table.columns))
        if missing:
            raise TableError(f"--{option} {path}: lacks columns {missing} (made by another version of "
                             "`kcircuits neurons summary`?)")
        if table.empty and option not in EMPTY_REASONS:
            raise TableError(f"--{option} {path}: the table has no rows")
        if "seed" not in table.columns:
            table.insert(0, "seed", path_seed(path, i))
        frames.append(table)
    out = pd.concat(frames, ignore_index=True)
    out["seed"] = out["seed"].astype(int)
    return out


def last_checkpoint(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each seed's last checkpoint (highest `order`)."""
    return table[table["order"] == table.groupby("seed")["order"].transform("max")]


def _checkpoint_label(table: pd.DataFrame) -> str:
    names = table.drop_duplicates(["seed", "checkpoint"])
    epochs = sorted(set(names["epoch"].round(3)))
    return f"{', '.join(sorted(set(names['checkpoint'])))} (epoch {', '.join(f'{e:g}' for e in epochs)})"


def _probed(table: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    return table[table["type"].isin(TYPES) & table["freq_group"].isin(groups)]


def _require(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    if frame.empty:
        raise NoRows(f"no rows of {what}")
    return frame


def _methods(table: pd.DataFrame) -> list[str]:
    present = set(table["method"])
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


def _pooled(frame: pd.DataFrame, keys: list[str], numerator: str, denominator: str, scale: float = 1.0) -> pd.DataFrame:
    """keys + value = scale x sum(numerator) / sum(denominator) per group (NaN where the sum is 0)."""
    sums = frame.groupby(keys, as_index=False, dropna=False)[[numerator, denominator]].sum()
    return sums.assign(value=scale * sums[numerator] / sums[denominator].where(sums[denominator] > 0))[[*keys, "value"]]


# ---- tidy per-seed frames (what is plotted, before the mean over seeds) ------------------------------
def layer_shares(layers: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """seed, type, freq_group, method, layer, value: the layer's share (%) of the cell's knowledge neurons
    at the last checkpoint, value target, attributes pooled (counts summed, then divided); layers
    without neurons are 0, a cell without any neuron is left out."""
    data = _require(_probed(last_checkpoint(layers[layers["target_kind"] == "value"]), groups),
                    "the value target for the probed types and frequency groups")
    keys = ["seed", "type", "freq_group", "method"]
    counts = data.groupby([*keys, "layer"])["count"].sum()
    cells = data[keys].drop_duplicates()
    grid = pd.MultiIndex.from_frame(cells.merge(pd.DataFrame({"layer": range(int(layers["layer"].max()) + 1)}),
                                                how="cross"))
    counts = counts.reindex(grid, fill_value=0).astype(float)
    totals = counts.groupby(level=keys).transform("sum")
    share = (100 * counts / totals.where(totals > 0)).rename("value").reset_index()
    return share.dropna(subset=["value"])


def intervention_changes(interventions: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """seed, method, operation, prompts, neurons, type, value: relative change (%) of P(target) at the
    last checkpoint, as the original: 100 x (mean P after - mean P before) / mean P before, means over
    the facts (each already the mean over its prompts) of a knowledge type."""
    data = _require(_probed(last_checkpoint(interventions), groups), "the probed types and frequency groups")
    keys = ["seed", "method", "operation", "prompts", "neurons", "type"]
    means = data.groupby(keys, as_index=False)[["p_before", "p_after"]].mean()
    before = means["p_before"].where(means["p_before"] > 0)
    return means.assign(value=100 * (means["p_after"] - means["p_before"]) / before)[[*keys, "value"]]


EDIT_SUCCESS = {"success_at_1": "success@1", "success_at_5": "success@5", "changed": "prediction changed"}
EDIT_PPL = {"intra": "intra-attribute PPL", "inter": "inter-attribute PPL"}


def edit_frame(edits: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """seed, order, epoch, type, measure, value across training: `n_edits` (edited facts), the share of
    edits per EDIT_SUCCESS measure and the mean PPL `{intra,inter}_{before,after}` over edited facts."""
    data = _require(_probed(edits, groups), "the probed types and frequency groups")
    keys = ["seed", "order", "epoch", "type"]
    columns = [*EDIT_SUCCESS, *(f"ppl_{k}_{w}" for k in EDIT_PPL for w in ("before", "after"))]
    means = data.assign(**{c: data[c].astype(float) for c in columns}).groupby(keys)[columns].mean()
    means = means.rename(columns=lambda c: c.removeprefix("ppl_"))
    means["n_edits"] = data.groupby(keys).size()
    return means.reset_index().melt(id_vars=keys, var_name="measure", value_name="value")


ERASE = {"accuracy": "top-1 accuracy", "ppl": "PPL"}


def erase_frame(erase: pd.DataFrame) -> pd.DataFrame:
    """seed, attribute, scope, measure (accuracy | ppl), when (before | after), value at the last checkpoint."""
    data = last_checkpoint(erase)
    long = data.melt(id_vars=["seed", "attribute", "scope"], value_vars=[f"{m}_{w}" for m in ERASE
                                                                         for w in ("before", "after")])
    parts = long["variable"].str.rsplit("_", n=1, expand=True)
    return long.assign(measure=parts[0], when=parts[1])[["seed", "attribute", "scope", "measure", "when", "value"]]


EVOLUTION = {"neurons_per_fact": "knowledge neurons per fact", "mean_layer": "mean layer of the neurons",
             "jaccard_final": "Jaccard to final checkpoint", "jaccard_prev": "Jaccard to previous checkpoint"}
SURVIVAL = "share_of_first"


def _weighted(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """keys, measure, value: per group the weighted mean of each column over the rest (attributes): by
    their facts, the mean layer by their (fact, neuron) pairs (n_facts x neurons_per_fact), so counts
    and layers are those of the attributes pooled; NaN values and rows of weight 0 left out."""
    parts = []
    for column in columns:
        weight = frame["n_facts"] * (frame["neurons_per_fact"] if column == "mean_layer" else 1)
        part = frame.assign(weight=weight)[frame[column].notna() & (weight > 0)]
        part = part.assign(weighted=part[column] * part["weight"])
        parts.append(_pooled(part, keys, "weighted", "weight").assign(measure=column))
    return pd.concat(parts, ignore_index=True)[[*keys, "measure", "value"]]


def evolution_frame(evolution: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """seed, order, epoch, method, type, freq_group, measure, value across training: the EVOLUTION
    measures of the value target and `share_of_first` of revised facts' original values, each the
    mean over attributes (_weighted)."""
    data = _probed(evolution, groups)
    keys = ["seed", "order", "epoch", "method", "type", "freq_group"]
    value = _require(data[data["target_kind"] == "value"], "the value target for the probed types and groups")
    original = data[(data["target_kind"] == "original") & (data["type"] == "revised")]
    parts = [_weighted(value, keys, list(EVOLUTION))]
    if len(original):
        parts.append(_weighted(original, keys, [SURVIVAL]))
    return pd.concat(parts, ignore_index=True)


def overlap_frame(overlap: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """seed, order, epoch, method, budget, type, freq_group, value across training: share of the cell's
    knowledge neurons in its circuit, attributes (circuit tasks) pooled: sum in circuit / sum of neurons."""
    data = _require(_probed(overlap, groups), "the probed types and frequency groups")
    data = data.assign(budget=data["budget"].astype(str))
    return _pooled(data, ["seed", "order", "epoch", "method", "budget", "type", "freq_group"], "n_in_circuit",
                   "n_neurons")


# ---- drawing ----------------------------------------------------------------------------------------
def plot_nothing(name: str, reason: str, pdf, png) -> None:
    """A figure that only says why there is nothing to draw."""
    import textwrap

    plt, _ = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 1.8))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{name}: nothing to draw\n\n" + textwrap.fill(reason, 90), ha="center", va="center",
            fontsize=9, transform=ax.transAxes)
    _finish(plt, fig, pdf, png)


def _handle(color, label, **line):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, label=label, **line)


def _patch(color, label, **kw):
    from matplotlib.patches import Patch

    return Patch(facecolor=color, label=label, **kw)


def _group_colors(sns, groups: list[str]) -> dict:
    return dict(zip(groups, sns.color_palette("viridis", len(groups))))


def _below_legend(fig, inches: float) -> None:
    """tight_layout below a legend (or title) `inches` tall at the top of the figure."""
    fig.tight_layout(rect=(0, 0, 1, 1 - inches / fig.get_figheight()))


def _group_legend(fig, colors: dict, types=TYPES) -> None:
    handles = [_handle(col, f"{g} frequency", lw=2) for g, col in colors.items()]
    handles += [_handle("black", KNOWLEDGE[t], ls=TYPE_STYLE[t]) for t in types]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1.0), frameon=False)
    _below_legend(fig, 0.3)


def _finish(plt, fig, pdf, png) -> None:
    save_figure(fig, pdf, png)
    plt.close(fig)


def _log_axis(ax) -> None:
    """Log y axis with plain numbers (10, 15, 20) rather than 1.5 x 10^1 on short ranges."""
    from matplotlib.ticker import LogFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))  # a few minor labels on short ranges


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


def plot_layers(layers: pd.DataFrame, groups: list[str], pdf, png) -> pd.DataFrame:
    """Rows: knowledge types; columns: frequency groups; per layer the share of knowledge neurons, IG
    up and the baseline down. Returns the plotted summary."""
    plt, sns = _pyplot()
    from matplotlib.ticker import FuncFormatter

    summary = seed_summary(layer_shares(layers, groups), ["type", "freq_group", "method", "layer"])
    n_layers = int(layers["layer"].max()) + 1
    types = [t for t in TYPES if t in set(summary["type"])]
    fig, axes = plt.subplots(len(types), len(groups), figsize=(max(2.6, 0.35 * n_layers + 1.2) * len(groups),
                                                                2.6 * len(types)),
                             sharex=True, sharey=True, squeeze=False)
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
    _finish(plt, fig, pdf, png)
    return summary


OPERATIONS = {"suppress": "suppress (activation x 0)", "amplify": "amplify (activation x 2)"}
PROMPTS = {"own": "own prompts", "unrelated": "unrelated prompts"}
NEURON_SETS = {"knowledge": "knowledge neurons", "random": "random neurons (same layers)"}


def plot_suppress(interventions: pd.DataFrame, groups: list[str], pdf, png) -> pd.DataFrame:
    """Rows: methods; columns: suppress, amplify; x: own vs unrelated prompts; bars: knowledge neurons
    (solid) and random neurons (hatched) of K_compl and K_rel facts."""
    plt, sns = _pyplot()
    summary = seed_summary(intervention_changes(interventions, groups),
                           ["method", "operation", "prompts", "neurons", "type"])
    methods = _methods(summary)
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
    _finish(plt, fig, pdf, png)
    return summary


def plot_edit(edits: pd.DataFrame, groups: list[str], pdf, png) -> pd.DataFrame:
    """Rows: knowledge types; columns: edited facts, edit success (success@1, @5, changed), intra- and
    inter-attribute PPL before (dashed) and after (solid) the edit; x: training progress."""
    plt, sns = _pyplot()
    summary = seed_summary(edit_frame(edits, groups), ["type", "measure", "epoch"])
    types = [t for t in TYPES if t in set(summary["type"])]
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
            _progress_axis(ax, edits["epoch"])
            if r < len(types) - 1:
                ax.set_xlabel("")
        axes[r, 0].set_ylabel(KNOWLEDGE[etype])
    handles = [_handle(col, EDIT_SUCCESS[m], marker="o") for m, col in success_colors.items()]
    handles += [_handle("grey", "PPL before the edit", ls="--"), _handle("grey", "PPL after the edit")]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1.0), frameon=False)
    _below_legend(fig, 0.3)
    _finish(plt, fig, pdf, png)
    return summary


SCOPES = {"erased": ("erased attribute", "#d62728"), "other": ("other attributes", "#7f7f7f")}


def plot_erase(erase: pd.DataFrame, groups: list[str], pdf, png) -> pd.DataFrame:
    """Columns: accuracy, PPL; x: erased attribute; bars: the erased attribute's prompts and the other
    attributes', before (light) and after (solid) the erase."""
    plt, sns = _pyplot()
    summary = seed_summary(erase_frame(erase), ["attribute", "scope", "measure", "when"])
    present = set(summary["attribute"])
    attributes = [a for a in ATTRIBUTES if a in present] + sorted(present - set(ATTRIBUTES))
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
    _finish(plt, fig, pdf, png)
    return summary


def plot_training(evolution: pd.DataFrame, groups: list[str], pdf, png) -> pd.DataFrame:
    """Rows: methods; columns: the EVOLUTION measures (value target) and the survival of revised facts'
    original-value neurons; colours: frequency groups; solid K_compl, dashed K_rel."""
    plt, sns = _pyplot()
    summary = seed_summary(evolution_frame(evolution, groups), ["method", "type", "freq_group", "measure", "epoch"])
    methods = _methods(summary)
    colors = _group_colors(sns, groups)
    columns = {**EVOLUTION, SURVIVAL: "K_rel original values:\nshare of first checkpoint's neurons"}
    fig, axes = plt.subplots(len(methods), len(columns), figsize=(2.9 * len(columns), 2.4 * len(methods)),
                             sharex=True, squeeze=False)
    for r, method in enumerate(methods):
        for c, (measure, title) in enumerate(columns.items()):
            ax = axes[r, c]
            for group, color in colors.items():
                for etype in TYPES:
                    curve = summary[(summary["method"] == method) & (summary["measure"] == measure)
                                    & (summary["freq_group"] == group) & (summary["type"] == etype)]
                    if len(curve):
                        draw_curve(ax, curve, "epoch", color, ls=TYPE_STYLE[etype], marker="o", markersize=2.5)
            if measure.startswith("jaccard") or measure == SURVIVAL:
                ax.set_ylim(-0.02, 1.02)
            ax.set_title(title if r == 0 else "", fontsize=8)
            ax.set_ylabel(METHODS.get(method, method) if c == 0 else "")
            _progress_axis(ax, evolution["epoch"])
            if r < len(methods) - 1:
                ax.set_xlabel("")
    _group_legend(fig, colors)
    _finish(plt, fig, pdf, png)
    return summary


def plot_circuit_overlap(overlap: pd.DataFrame, groups: list[str], edge_budgets: list, pdf, png) -> pd.DataFrame:
    """Rows: methods; columns: edge budgets (config order first); colours: frequency groups; solid
    K_compl, dashed K_rel; y: share of the cell's knowledge neurons whose MLP is in its circuit."""
    from .circuits import budget_order

    plt, sns = _pyplot()
    summary = seed_summary(overlap_frame(overlap, groups), ["method", "budget", "type", "freq_group", "epoch"])
    methods = _methods(summary)
    budgets = budget_order(summary["budget"].unique(), edge_budgets)
    colors = _group_colors(sns, groups)
    fig, axes = plt.subplots(len(methods), len(budgets), figsize=(3.2 * len(budgets), 2.4 * len(methods)),
                             sharex=True, sharey=True, squeeze=False)
    for r, method in enumerate(methods):
        for c, budget in enumerate(budgets):
            ax = axes[r, c]
            for group, color in colors.items():
                for etype in TYPES:
                    curve = summary[(summary["method"] == method) & (summary["budget"] == budget)
                                    & (summary["freq_group"] == group) & (summary["type"] == etype)]
                    if len(curve):
                        draw_curve(ax, curve, "epoch", color, ls=TYPE_STYLE[etype], marker="o", markersize=2.5)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"edge budget {budget}" if r == 0 else "", fontsize=8)
            ax.set_ylabel(f"{METHODS.get(method, method)}\nshare in circuit" if c == 0 else "")
            _progress_axis(ax, overlap["epoch"])
            if r < len(methods) - 1:
                ax.set_xlabel("")
    _group_legend(fig, colors)
    _finish(plt, fig, pdf, png)
    return summary


__all__ = ["COLUMNS", "EMPTY_REASONS", "TableError", "NoRows", "read_tables", "plot_nothing", "last_checkpoint", "layer_shares", "intervention_changes",
           "edit_frame", "erase_frame", "evolution_frame", "overlap_frame", "plot_layers", "plot_suppress", "plot_edit",
           "plot_erase", "plot_training", "plot_circuit_overlap"]
