"""Figures of the RECKONING study (summary.py's tables; Chen et al. 2023).

- reckoning_accuracy:   a panel per hop count: exact-match accuracy per distractor count (x), a bar per
                        method (settings order), whiskers: 95% interval; no_facts (grey) is the floor;
- reckoning_steps:      the ENCODED methods' accuracy against the inner steps used at test time, a line
                        per distractor count, a row per method and a column per hop count; dotted: the
                        trained number of steps N;
- reckoning_recitation: exact match of the facts regenerated under theta' (after N steps; methods
                        without inner steps at 0), a bar per method per distractor count, a panel per
                        kind of fact (all kinds pooled first);
- reckoning_timing:     seconds to answer k questions about one context against k (log-log), a line
                        per method, solid: encode once, dashed: in context;
- reckoning_circuits:   a column per circuit task; top: layer profile (in-circuit edges leaving a layer
                        over the graph's) of theta''s circuit, a line per encoded method, against the
                        pre-trained circuits (grey: mean over cells, band: min..max over cells), the
                        mean Jaccard with them in the title; bottom: Hit@k under zero ablation, a bar
                        per encoded method (marker: theta''s full-model Hit@k) and per pre-trained cell.

Every figure is written as PDF and PNG without timestamps (same tables, same bytes).
`kcircuits figure reckoning_accuracy ...` (figures.py: the study's figure table).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...figures.style import RANDOM_COLOR, finish, handle, legend, name_colors, name_order, pyplot
from ...stats import ALL
from . import ENCODED
from .circuit_summary import reckoning_circuit_finding
from .summary import ALL_HOPS, at_trained_steps

FLOOR = "no_facts"  # the method without facts: the accuracy any method gets from the question alone
MODES = {"encode once": "-", "in context": "--"}
HOPS_TITLE = {1: "one-hop questions", 2: "two-hop questions"}
PRETRAINED = "pre-trained"  # the continual circuits' series (the checkpoint the methods started from)


def method_colors(sns, methods: list[str]) -> dict[str, tuple]:
    """A colour per method; the floor (no_facts) grey."""
    colors = name_colors(sns, [m for m in methods if m != FLOOR])
    return colors | ({FLOOR: RANDOM_COLOR} if FLOOR in methods else {})


def _hops(table: pd.DataFrame) -> list[int]:
    """The hop counts with their own rows (ALL_HOPS, the pooled rows, left out)."""
    hops = sorted(int(h) for h in table["hops"].unique() if h != ALL_HOPS)
    if not hops:
        raise ValueError("the table has no rows per hop count")
    return hops


def _method_handles(methods: list[str], colors: dict) -> list:
    return [handle(colors[m], f"{m} (floor, dotted)" if m == FLOOR else m, lw=6) for m in methods]


def _bars(ax, table: pd.DataFrame, methods: list[str], colors: dict, value: str) -> None:
    """Grouped bars: x = distractor count, a bar per method, whiskers from value_low / value_high."""
    counts = sorted(int(d) for d in table["distractors"].unique())
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        part = table[table["method"] == method].set_index("distractors").reindex(counts)
        values = part[value].to_numpy(dtype=float)
        errors = np.stack([values - part[f"{value}_low"].to_numpy(dtype=float),
                           part[f"{value}_high"].to_numpy(dtype=float) - values])
        x = np.arange(len(counts)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(x, values, width=width * 0.95, color=colors[method], yerr=errors, capsize=2, error_kw={"lw": 0.8})
        if method == FLOOR:  # the floor across its group, and its value above its bar: visible even at 0
            ax.hlines(values, np.arange(len(counts)) - 0.4, np.arange(len(counts)) + 0.4, color=colors[method],
                      lw=1.0, ls=":")
            for xi, v, top in zip(x, values, part[f"{value}_high"].to_numpy(dtype=float)):
                if np.isfinite(v):
                    ax.text(xi, max(v, top) + 0.02, f"floor {v:.2f}", ha="center", va="bottom", rotation=90,
                            fontsize=6, color=colors[method])
    ax.set_xticks(np.arange(len(counts)), labels=[str(c) for c in counts])
    ax.set_xlabel("distractor facts in the context")
    ax.set_ylim(0, 1.05)


# ---- accuracy and inner steps --------------------------------------------------------------------------
def plot_reckoning_accuracy(accuracy: pd.DataFrame, methods: list[str], pdf, png) -> None:
    """A panel per hop count: accuracy per distractor count, a bar per method (settings order first)."""
    plt, sns = pyplot()
    order = name_order(methods, accuracy["method"])
    colors = method_colors(sns, order)
    hops = _hops(accuracy)
    n_counts = accuracy["distractors"].nunique()
    fig, axes = plt.subplots(1, len(hops), figsize=(max(3.0, 0.35 * len(order) * n_counts + 1.2) * len(hops), 3.2),
                             sharey=True, squeeze=False)
    for ax, h in zip(axes[0], hops):
        _bars(ax, accuracy[accuracy["hops"] == h], order, colors, "accuracy")
        ax.set_title(HOPS_TITLE.get(h, f"{h}-hop questions"))
    axes[0, 0].set_ylabel("exact-match accuracy")
    legend(fig, _method_handles(order, colors), height=3.2)
    finish(plt, fig, pdf, png)


def plot_reckoning_steps(steps_table: pd.DataFrame, trained_steps: int, pdf, png) -> None:
    """Rows: ENCODED methods; columns: hop counts; accuracy against test-time inner steps, a line per
    distractor count with its 95% band; dotted: the trained N."""
    plt, sns = pyplot()
    rows = [m for m in ENCODED if m in set(steps_table["method"])]
    if not rows:
        raise ValueError(f"the steps table has none of the encoded methods {list(ENCODED)}")
    hops = _hops(steps_table)
    counts = sorted(int(d) for d in steps_table["distractors"].unique())
    colors = dict(zip(counts, sns.color_palette("viridis", max(len(counts), 1))))
    fig, axes = plt.subplots(len(rows), len(hops), figsize=(3.2 * len(hops), 2.6 * len(rows)), sharex=True,
                             sharey=True, squeeze=False)
    for r, method in enumerate(rows):
        for c, h in enumerate(hops):
            ax = axes[r, c]
            for d in counts:
                curve = steps_table[(steps_table["method"] == method) & (steps_table["hops"] == h)
                                    & (steps_table["distractors"] == d)].sort_values("steps")
                ax.plot(curve["steps"], curve["accuracy"], color=colors[d], marker="o", markersize=3)
                ax.fill_between(curve["steps"], curve["accuracy_low"], curve["accuracy_high"], color=colors[d],
                                alpha=0.2, linewidth=0)
            ax.axvline(trained_steps, color="black", lw=0.8, ls=":")
            ax.set_title(f"{method}, {HOPS_TITLE.get(h, f'{h}-hop questions')}", fontsize=8)
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("exact-match accuracy" if c == 0 else "")
            ax.set_xlabel("inner steps at test time" if r == len(rows) - 1 else "")
    handles = [handle(colors[d], f"{d} distractors", marker="o") for d in counts]
    legend(fig, [*handles, handle("black", f"trained: {trained_steps} steps", ls=":")], height=2.6 * len(rows))
    finish(plt, fig, pdf, png)


# ---- recitation and time ---------------------------------------------------------------------------------
def plot_reckoning_recitation(recitation: pd.DataFrame, methods: list[str], trained_steps: int, pdf, png) -> None:
    """A panel per kind of fact (ALL first): exact match per distractor count, a bar per method, at the
    trained inner steps (at_trained_steps: ENCODED methods at N, the others, e.g. base, at 0)."""
    plt, sns = pyplot()
    data = at_trained_steps(recitation, trained_steps)
    if data.empty:
        raise ValueError(f"the recitation table has no rows at {trained_steps} inner steps "
                         "(or at 0 for methods without an inner loop)")
    order = name_order(methods, data["method"])
    colors = method_colors(sns, order)
    kinds = [ALL, *sorted(k for k in data["kind"].unique() if k != ALL)]
    kinds = kinds if len(kinds) > 2 else [ALL]  # one kind: its panel is the pooled one
    n_counts = data["distractors"].nunique()
    fig, axes = plt.subplots(1, len(kinds), figsize=(max(3.0, 0.35 * len(order) * n_counts + 1.2) * len(kinds), 3.2),
                             sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        _bars(ax, data[data["kind"] == kind], order, colors, "exact")
        ax.set_title("all facts" if kind == ALL else f"{kind} facts")
    axes[0, 0].set_ylabel(f"facts recited exactly\n(after {trained_steps} inner steps)")
    legend(fig, _method_handles(order, colors), height=3.2)
    finish(plt, fig, pdf, png)


def plot_reckoning_timing(timing: pd.DataFrame, methods: list[str], pdf, png) -> None:
    """Seconds to answer k questions about one context against k, log-log; a line per method and mode."""
    plt, sns = pyplot()
    from matplotlib.ticker import FuncFormatter, NullLocator

    order = name_order(methods, timing["method"])
    colors = method_colors(sns, order)
    modes = name_order(list(MODES), timing["mode"])
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for method in order:
        for mode in modes:
            curve = timing[(timing["method"] == method) & (timing["mode"] == mode)].sort_values("questions")
            if len(curve):
                ax.plot(curve["questions"], curve["seconds"], color=colors[method], ls=MODES.get(mode, ":"),
                        marker="o", markersize=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ks = sorted(int(k) for k in timing["questions"].unique())
    ax.set_xticks(ks, labels=[str(k) for k in ks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=6)
    ax.set_xlabel("questions about one context (k)")
    ax.set_ylabel("seconds to answer them")
    handles = [handle(colors[m], m, marker="o") for m in order]
    handles += [handle("grey", mode, ls=MODES.get(mode, ":")) for mode in modes]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=7)
    fig.tight_layout()
    finish(plt, fig, pdf, png)



# ---- circuits of theta' ------------------------------------------------------------------------------------
def _at_budget(table: pd.DataFrame, budget: str, name: str) -> pd.DataFrame:
    part = table[table["budget"].astype(str) == budget]
    if part.empty:
        raise ValueError(f"no {name} at edge budget {budget!r}; budgets present: "
                         f"{sorted(table['budget'].astype(str).unique())}")
    return part


def circuit_layer_curves(layers: pd.DataFrame, budget: str) -> pd.DataFrame:
    """Per task, series (an encoded method, or PRETRAINED) and layer: ratio, low, high. A method: the
    mean over seeds (low = high = ratio); PRETRAINED: each continual cell's mean over seeds (and over
    its identical copies under each method), then the mean, min and max over the cells."""
    part = _at_budget(layers, budget, "circuit layer profiles")
    per_seed = part[part["source"] == "encoded"].groupby(["task", "method", "layer", "seed"], sort=True)["ratio"].mean()
    mine = per_seed.groupby(["task", "method", "layer"], sort=True).mean().reset_index()
    mine = mine.rename(columns={"method": "series"}).assign(low=mine["ratio"], high=mine["ratio"])
    cells = part[part["source"] == "continual"].groupby(["task", "type", "freq_group", "layer"], sort=True)["ratio"]
    theirs = cells.mean().groupby(["task", "layer"], sort=True).agg(ratio="mean", low="min", high="max").reset_index()
    curves = pd.concat([mine, theirs.assign(series=PRETRAINED)], ignore_index=True)
    return curves[["task", "series", "layer", "ratio", "low", "high"]]


def circuit_hit_bars(hits: pd.DataFrame, budget: str, groups: list[str], ablation: str = "zero") -> pd.DataFrame:
    """Per task, a bar per encoded method (hit_at_k and full_model_hit_at_k: means over seeds) and per
    continual cell "type/freq_group" (types sorted, groups in `groups` order, others after; hit_at_k:
    mean over seeds, full model NaN). -> task, bar, source, hit_at_k, full_model_hit_at_k."""
    part = _at_budget(hits, budget, "circuit Hit@k rows")
    part = part[part["ablation"] == ablation]
    values = ["hit_at_k", "full_model_hit_at_k"]
    mine = part[part["source"] == "encoded"].groupby(["task", "method", "seed"], sort=True)[values].mean()
    mine = mine.groupby(["task", "method"], sort=True).mean().reset_index().rename(columns={"method": "bar"})
    theirs = part[part["source"] == "continual"].groupby(["task", "type", "freq_group"], sort=True)["hit_at_k"]
    theirs = theirs.mean().reset_index()
    rank = theirs["freq_group"].map(lambda g: groups.index(g) if g in groups else len(groups))
    theirs = theirs.assign(_rank=rank).sort_values(["task", "type", "_rank", "freq_group"], kind="stable")
    theirs = theirs.assign(bar=theirs["type"] + "/" + theirs["freq_group"], full_model_hit_at_k=np.nan)
    bars = pd.concat([mine.assign(source="encoded"), theirs.assign(source="continual")], ignore_index=True)
    return bars[["task", "bar", "source", "hit_at_k", "full_model_hit_at_k"]]


def _layer_panel(ax, curves: pd.DataFrame, methods: list[str], colors: dict) -> None:
    pre = curves[curves["series"] == PRETRAINED].sort_values("layer")
    ax.fill_between(pre["layer"], pre["low"], pre["high"], color=RANDOM_COLOR, alpha=0.25, linewidth=0)
    ax.plot(pre["layer"], pre["ratio"], color=RANDOM_COLOR, marker="o", markersize=3)
    for method in methods:
        curve = curves[curves["series"] == method].sort_values("layer")
        ax.plot(curve["layer"], curve["ratio"], color=colors[method], marker="o", markersize=3)
    layers = sorted(int(v) for v in curves["layer"].unique())
    ax.set_xticks(layers, labels=["in" if v < 0 else str(v) for v in layers])
    ax.set_xlabel("layer the edges leave (in: the input)")


def _hit_panel(ax, bars: pd.DataFrame, methods: list[str], colors: dict) -> None:
    mine = bars[bars["source"] == "encoded"].set_index("bar").reindex(methods)
    theirs = bars[bars["source"] == "continual"]
    x = np.arange(len(methods) + len(theirs))
    ax.bar(x, [*mine["hit_at_k"], *theirs["hit_at_k"]], width=0.7,
           color=[colors[m] for m in methods] + [RANDOM_COLOR] * len(theirs))
    ax.scatter(x[:len(methods)], mine["full_model_hit_at_k"], marker="D", s=16, color="black", zorder=3)
    ax.set_xticks(x, labels=[*methods, *theirs["bar"]], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)


def _jaccard_note(found: dict, methods: list[str]) -> str:
    """"reckoning 0.25, reckoning_mt 0.31": each method's mean Jaccard with the pre-trained circuits."""
    means = {m: found[m]["jaccard"]["mean"] for m in methods if m in found}
    return ", ".join(f"{m} {'n/a' if j is None else f'{j:.2f}'}" for m, j in means.items())


def plot_reckoning_circuits(layers: pd.DataFrame, hits: pd.DataFrame, compare: pd.DataFrame, methods: list[str],
                            tasks: list[str], groups: list[str], budget: str, hit_k: int, pdf, png) -> None:
    """Columns: circuit tasks (settings order first). Top: layer profile of theta''s circuit, a line per
    encoded method, against the pre-trained circuits (grey: mean over cells, band: min..max over
    cells), the mean Jaccard with them (reckoning_circuit_finding) in the title; bottom: Hit@k under
    zero ablation, a bar per encoded method (diamond: theta''s full-model Hit@k), then per pre-trained cell."""
    plt, sns = pyplot()
    curves, bars = circuit_layer_curves(layers, budget), circuit_hit_bars(hits, budget, groups)
    by_task = reckoning_circuit_finding(compare, hits, budget, hit_k)["by_task"]
    present = set(curves["series"]) | set(bars.loc[bars["source"] == "encoded", "bar"])
    order = name_order(methods, present & set(ENCODED))
    colors = method_colors(sns, order)
    tasks = name_order(tasks, set(curves["task"]) | set(bars["task"]))
    width = max(3.4, 0.32 * int(bars.groupby("task").size().max()) + 1.0)
    fig, axes = plt.subplots(2, len(tasks), figsize=(width * len(tasks), 5.4), sharey="row", squeeze=False)
    for c, task in enumerate(tasks):
        _layer_panel(axes[0, c], curves[curves["task"] == task], order, colors)
        _hit_panel(axes[1, c], bars[bars["task"] == task], order, colors)
        axes[0, c].set_title(f"{task} (budget {budget})\nJaccard with the pre-trained circuits:\n"
                             f"{_jaccard_note(by_task.get(task, {}), order)}", fontsize=7)
    axes[0, 0].set_ylabel("in-circuit share of\nthe layer's edges")
    axes[1, 0].set_ylabel(f"circuit Hit@{hit_k}\n(zero ablation)")
    handles = [handle(colors[m], f"{m} (theta')", marker="o") for m in order]
    handles += [handle(RANDOM_COLOR, "pre-trained circuits\n(mean; band: min-max over cells)", marker="o"),
                handle("black", "theta' full model", marker="D", ls="")]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=7)
    fig.tight_layout()
    finish(plt, fig, pdf, png)

__all__ = ["plot_reckoning_accuracy", "plot_reckoning_steps", "plot_reckoning_recitation", "plot_reckoning_timing",
           "plot_reckoning_circuits", "circuit_layer_curves", "circuit_hit_bars", "method_colors"]
