"""Figures of knowledge interplay (summary.py's tables; Ou et al. 2025).

- order_accuracy:      per target type B, B's final top-1 after training all of A first (a bar per A)
                       and after the random order; whiskers: 95% bootstrap interval over facts and seeds;
- order_heatmap:       A x B: final-accuracy and AUC difference, A->B minus random, annotated (* where
                       the interval excludes 0: interference below, synergy above);
- order_circuits:      per B, Jaccard of B's circuits with A first against the random run's, vs steps;
- forgetting_recall:   recall of previously learned facts vs steps while training on another corpus,
                       a line per replay share, a panel per corpus and frequency group;
- forgetting_circuits: their circuits' Hit@k (zero ablation) and Jaccard to the circuit before
                       forgetting vs steps, a line per replay share.

Curves are the mean over training seeds with a 95% seeded bootstrap band (figures/seeds.py); means
over circuit cells are taken within each seed first. Every figure is written as PDF and PNG without
timestamps (same tables, same bytes). `kcircuits figure order_accuracy ...` (figures/stage.py).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...figures.seeds import draw_curve, seed_summary
from ...figures.style import RANDOM_COLOR, finish, handle, legend, name_colors, name_order, pyplot, value_colors
from ...stats import ALL

STEP_LABEL = "training step"
METRIC_TITLES = {"final": "final top-1", "auc": "AUC of top-1 over steps"}


def _pooled(outcome: pd.DataFrame, metric: str) -> pd.DataFrame:
    part = outcome[(outcome["metric"] == metric) & (outcome["freq_group"] == ALL)]
    if part.empty:
        raise ValueError(f"the order outcome has no {metric!r} rows pooled over frequency groups")
    return part


# ---- order -------------------------------------------------------------------------------------------
def _accuracy_panel(ax, part: pd.DataFrame, colors: dict) -> None:
    """One target B: a bar per A and the random order's bar, with 95% whiskers."""
    rand = part.iloc[0]
    labels = [f"{a} first" for a in part["first"]] + ["random order"]
    values = np.array([*part["value"], rand["random"]], dtype=float)
    low = np.array([*part["value_low"], rand["random_low"]], dtype=float)
    high = np.array([*part["value_high"], rand["random_high"]], dtype=float)
    x = np.arange(len(values))
    ax.bar(x, values, color=[colors[a] for a in part["first"]] + [RANDOM_COLOR], width=0.7,
           yerr=np.stack([values - low, high - values]), capsize=3, error_kw={"lw": 0.9})
    ax.axhline(rand["random"], color=RANDOM_COLOR, lw=0.8, ls=":")
    for i, row in enumerate(part.itertuples(index=False)):
        mark = "*" if row.verdict != "no difference" else ""
        ax.text(i, min(high[i] + 0.03, 1.08), f"{row.difference:+.2f}{mark}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x, labels=labels, rotation=30, ha="right")


def plot_order_accuracy(outcome: pd.DataFrame, types: list[str], pdf, png) -> None:
    """A panel per target type B: B's final top-1 after A-first training (a bar per A) and after
    the random order; text: the paired difference (* interval excludes 0)."""
    plt, sns = pyplot()
    data = _pooled(outcome, "final")
    seconds = name_order(types, data["second"])
    colors = name_colors(sns, name_order(types, set(data["first"]) | set(data["second"])))
    width = max(2.4, 0.55 * (data.groupby("second").size().max() + 1) + 0.8)
    fig, axes = plt.subplots(1, len(seconds), figsize=(width * len(seconds), 3.0), sharey=True, squeeze=False)
    for ax, b in zip(axes[0], seconds):
        part = data[data["second"] == b]
        part = part.set_index("first").loc[name_order(types, part["first"])].reset_index()
        _accuracy_panel(ax, part, colors)
        ax.set_title(f"B = {b}")
        ax.set_ylim(0, 1.12)
    axes[0, 0].set_ylabel("B's final top-1 accuracy")
    fig.suptitle("Knowledge order: B's facts after learning A first vs the random order")
    fig.tight_layout()
    finish(plt, fig, pdf, png)


def _difference_matrix(part: pd.DataFrame, order: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """A x B differences (NaN where no run) and their annotations."""
    index = part.set_index(["first", "second"])
    values = pd.DataFrame(np.nan, index=order, columns=order)
    text = np.full((len(order), len(order)), "", dtype=object)
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            if (a, b) in index.index:
                row = index.loc[(a, b)]
                values.iloc[i, j] = row["difference"]
                text[i, j] = f"{row['difference']:+.2f}" + ("*" if row["verdict"] != "no difference" else "")
    return values, text


def plot_order_heatmap(outcome: pd.DataFrame, types: list[str], pdf, png) -> None:
    """A (rows) x B (columns): B's final top-1 and AUC difference, A->B minus random order."""
    plt, sns = pyplot()
    parts = {m: _pooled(outcome, m) for m in ("final", "auc") if not outcome[outcome["metric"] == m].empty}
    order = name_order(types, set(outcome["first"]) | set(outcome["second"]))
    limit = max(0.05, float(np.nanmax(np.abs(outcome["difference"].to_numpy(dtype=float)))))
    n = len(order)
    fig, axes = plt.subplots(1, len(parts), figsize=((1.0 + 0.7 * n) * len(parts) + 1.0, 0.7 * n + 1.4),
                             squeeze=False)
    for ax, (metric, part) in zip(axes[0], parts.items()):
        values, text = _difference_matrix(part, order)
        sns.heatmap(values, ax=ax, cmap="RdBu", center=0, vmin=-limit, vmax=limit, annot=text, fmt="",
                    annot_kws={"fontsize": 7}, cbar_kws={"label": "A → B minus random"}, linewidths=0.5,
                    linecolor="white", square=True)
        ax.grid(False)  # no style grid through the blank diagonal
        ax.set_title(METRIC_TITLES[metric])
        ax.set_xlabel("B (learned second)")
        ax.set_ylabel("A (learned first)" if ax is axes[0, 0] else "")
    fig.suptitle("Knowledge order: B after A first minus random order (* 95% interval excludes 0)")
    fig.tight_layout()
    finish(plt, fig, pdf, png)


def order_circuit_curves(overlap: pd.DataFrame, budget: str) -> pd.DataFrame:
    """Jaccard with the random run's circuit per (first, second, step): mean over B's cells within
    each seed, then seed_summary over seeds (mean, lo, hi, n_seeds)."""
    part = overlap[overlap["budget"].astype(str) == budget]
    if part.empty:
        raise ValueError(f"no circuit overlap at edge budget {budget!r}; budgets present: "
                         f"{sorted(overlap['budget'].astype(str).unique())}")
    frame = part.groupby(["seed", "first", "second", "step"], as_index=False)["jaccard"].mean()
    return seed_summary(frame.rename(columns={"jaccard": "value"}), ["first", "second", "step"])


def plot_order_circuits(overlap: pd.DataFrame, types: list[str], budget: str, pdf, png) -> pd.DataFrame:
    """A panel per B: Jaccard of B's circuits (edge budget `budget`, mean over B's cells) with A
    first against the random order's, vs steps; a line per A. Returns the plotted curves."""
    plt, sns = pyplot()
    curves = order_circuit_curves(overlap, budget)
    seconds = name_order(types, curves["second"])
    order = name_order(types, set(curves["first"]) | set(curves["second"]))
    colors = name_colors(sns, order)
    fig, axes = plt.subplots(1, len(seconds), figsize=(3.2 * len(seconds), 2.8), sharey=True, squeeze=False)
    for ax, b in zip(axes[0], seconds):
        for a in name_order(types, curves.loc[curves["second"] == b, "first"]):
            draw_curve(ax, curves[(curves["first"] == a) & (curves["second"] == b)], "step", colors[a],
                       marker="o", markersize=2.5)
        ax.set_title(f"B = {b}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(STEP_LABEL)
    axes[0, 0].set_ylabel(f"Jaccard of B's circuit edges\nwith vs without A first (budget {budget})")
    legend(fig, [handle(colors[a], f"A = {a}", marker="o") for a in order if a in set(curves["first"])], height=2.8)
    finish(plt, fig, pdf, png)
    return curves


# ---- forgetting ----------------------------------------------------------------------------------------
def forgetting_recall_curves(recall: pd.DataFrame) -> pd.DataFrame:
    """Recall of the previously learned facts (types pooled) per (corpus, replay, freq_group, step):
    seed_summary over seeds of top1."""
    part = recall[recall["type"] == ALL][["seed", "corpus", "replay", "freq_group", "step", "top1"]]
    return seed_summary(part.rename(columns={"top1": "value"}), ["corpus", "replay", "freq_group", "step"])


def plot_forgetting_recall(recall: pd.DataFrame, groups: list[str], corpora: list[str], tolerance: float, pdf,
                           png) -> pd.DataFrame:
    """Columns: corpora (configured order first); rows: all facts, then each frequency group; a line per replay share.
    Dotted: the step-0 recall minus `tolerance` (the finding's limit). Returns the plotted curves."""
    plt, sns = pyplot()
    curves = forgetting_recall_curves(recall)
    corpora = name_order(corpora, curves["corpus"])
    rows = [g for g in [ALL, *groups] if g in set(curves["freq_group"])]
    colors = value_colors(sns, curves["replay"])
    fig, axes = plt.subplots(len(rows), len(corpora), figsize=(3.2 * len(corpora), 2.3 * len(rows)), sharex=True,
                             sharey=True, squeeze=False)
    for r, group in enumerate(rows):
        for c, corpus in enumerate(corpora):
            ax, cell = axes[r, c], curves[(curves["corpus"] == corpus) & (curves["freq_group"] == group)]
            for share, color in colors.items():
                if len(cell[cell["replay"] == share]):
                    draw_curve(ax, cell[cell["replay"] == share], "step", color, marker="o", markersize=2.5)
            start = cell.loc[cell["step"] == 0, "mean"]
            if len(start):
                ax.axhline(start.mean() - tolerance, color="black", lw=0.7, ls=":")
            ax.set_title(f"{corpus}" if r == 0 else "")
            name = "all facts" if group == ALL else f"{group} frequency"
            ax.set_ylabel("" if c else f"{name}\nrecall (top-1)")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(STEP_LABEL if r == len(rows) - 1 else "")
    handles = [handle(color, f"replay {share:g}", marker="o") for share, color in colors.items()]
    legend(fig, [*handles, handle("black", f"step 0 − {tolerance:g}", ls=":")], height=2.3 * len(rows))
    finish(plt, fig, pdf, png)
    return curves


def forgetting_circuit_curves(circuits: pd.DataFrame, budget: str) -> pd.DataFrame:
    """Per (corpus, replay, series, step), series "hit_at_k" / "full_model_hit_at_k" / "jaccard":
    mean over circuit cells within each seed, then seed_summary over seeds."""
    part = circuits[circuits["budget"].astype(str) == budget]
    if part.empty:
        raise ValueError(f"no forgetting circuits at edge budget {budget!r}; budgets present: "
                         f"{sorted(circuits['budget'].astype(str).unique())}")
    series = ["hit_at_k", "full_model_hit_at_k", "jaccard"]
    frame = part.groupby(["seed", "corpus", "replay", "step"], as_index=False)[series].mean()
    frame = frame.melt(["seed", "corpus", "replay", "step"], series, var_name="series", value_name="value")
    return seed_summary(frame, ["corpus", "replay", "series", "step"])


def plot_forgetting_circuits(circuits: pd.DataFrame, corpora: list[str], budget: str, hit_k: int, pdf,
                             png) -> pd.DataFrame:
    """Columns: corpora (configured order first). Top: circuit Hit@k (zero ablation; dashed: the full
    model); bottom: Jaccard of the circuit's edges with the circuit before forgetting; a line per
    replay share."""
    plt, sns = pyplot()
    curves = forgetting_circuit_curves(circuits, budget)
    corpora = name_order(corpora, curves["corpus"])
    colors = value_colors(sns, curves["replay"])
    rows = {f"circuit Hit@{hit_k}\n(zero ablation)": [("hit_at_k", {}),
                                                      ("full_model_hit_at_k", {"ls": "--", "lw": 0.9})],
            "Jaccard to the circuit\nbefore forgetting": [("jaccard", {})]}
    fig, axes = plt.subplots(2, len(corpora), figsize=(3.2 * len(corpora), 4.6), sharex=True, sharey=True,
                             squeeze=False)
    for r, (label, series) in enumerate(rows.items()):
        for c, corpus in enumerate(corpora):
            ax = axes[r, c]
            for share, color in colors.items():
                for name, line in series:
                    curve = curves[(curves["corpus"] == corpus) & (curves["replay"] == share)
                                   & (curves["series"] == name)].dropna(subset=["mean"])
                    if len(curve):
                        draw_curve(ax, curve, "step", color, **({"marker": "o", "markersize": 2.5} | line))
            ax.set_title(f"{corpus} (budget {budget})" if r == 0 else "")
            ax.set_ylabel(label if c == 0 else "")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(STEP_LABEL if r == 1 else "")
    handles = [handle(color, f"replay {share:g}", marker="o") for share, color in colors.items()]
    legend(fig, [*handles, handle("grey", "full model (dashed)", ls="--")], height=4.6)
    finish(plt, fig, pdf, png)
    return curves


__all__ = ["plot_order_accuracy", "plot_order_heatmap", "plot_order_circuits", "plot_forgetting_recall",
           "plot_forgetting_circuits", "order_circuit_curves", "forgetting_recall_curves", "forgetting_circuit_curves"]
