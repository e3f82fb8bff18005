"""Figures of knowledge acquisition across checkpoints (from the evaluation summary tables).

- acquisition: accuracy vs continual-pre-training progress, K_compl (new) vs K_rel (revised), one
  column per frequency group, one row per metric;
- overwriting: revised entities' new vs original values, and base-world recall;
- heatmap: entity x checkpoint, how many attributes each probed entity's greedy answers get right.

Every figure is written as PDF and PNG, atomically and without timestamps (same data, same bytes).
"""
from __future__ import annotations

import pandas as pd

from .. import ATTRIBUTES, TYPES
from .style import KNOWLEDGE, PALETTE, SEED_BAND, TARGET_PALETTE, TARGETS, progress_axis, pyplot, save_figure


def acquisition_metrics(hit_k: int, full_value: bool = False) -> dict[str, str]:
    """Metric -> panel title, in row order; full_value adds the query's full-value top-1 (the
    evaluation's evaluate.full_value) after its first-token rows."""
    full = {"query_full_top1": "query, full-value top-1"} if full_value else {}
    return {"bio_first_token": "held-out paragraph, first token", "query_top1": "query, first-token top-1",
            f"query_hit@{hit_k}": f"query, first-token Hit@{hit_k}", **full,
            "query_exact_match": "query, greedy exact match",
            "paraphrase_top1": "paraphrased query,\nfirst-token top-1", "mc_accuracy": "multiple choice",
            "tf_accuracy": "true/false (paired)"}


def _require(table: pd.DataFrame, metrics: list[str]) -> None:
    missing = sorted(set(metrics) - set(table["metric"]))
    if missing:
        raise ValueError(f"summary lacks metrics {missing}; was it made by this version of the evaluation?")


def plot_acquisition(summary: pd.DataFrame, groups: list[str], hit_k: int, pdf, png) -> None:
    """Rows: metrics; columns: frequency groups; lines: K_compl vs K_rel (mean over attributes)."""
    plt, sns = pyplot()
    metrics = acquisition_metrics(hit_k, full_value="query_full_top1" in set(summary["metric"]))
    _require(summary, list(metrics))
    data = summary[(summary["target"] == "current") & (summary["attribute"] == "all") & summary["type"].isin(TYPES)
                   & summary["freq_group"].isin(groups) & summary["metric"].isin(list(metrics))].copy()
    data["knowledge"] = data["type"].map(KNOWLEDGE)
    fig, axes = plt.subplots(len(metrics), len(groups), figsize=(3.2 * len(groups), 2.1 * len(metrics)),
                             sharex=True, sharey=True, squeeze=False)
    for r, (metric, title) in enumerate(metrics.items()):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            cell = data[(data["metric"] == metric) & (data["freq_group"] == group)]
            sns.lineplot(data=cell, x="epoch", y="value", hue="knowledge", hue_order=list(KNOWLEDGE.values()),
                         palette=PALETTE, marker="o", markersize=3, ax=ax, legend=False, **SEED_BAND)
            chance = cell["chance"].dropna()
            if len(chance):
                ax.axhline(chance.iloc[0], color="black", lw=0.8, ls=":", label="chance")
            ax.set_title(f"{group} frequency" if r == 0 else "")
            ax.set_ylabel(title if c == 0 else "")
            ax.set_ylim(-0.02, 1.02)
            progress_axis(ax, data["epoch"])
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color, marker="o", label=label) for label, color in PALETTE.items()]
    handles.append(Line2D([], [], color="black", ls=":", label="chance"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1.01), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    save_figure(fig, pdf, png)
    plt.close(fig)


def plot_overwriting(summary: pd.DataFrame, groups: list[str], pdf, png) -> None:
    """Revised entities: recall of the new vs the original value, per frequency group; last column:
    the base world's own held-out paragraphs (revised originals; background entities dashed)."""
    plt, sns = pyplot()
    metrics = {"query_top1": "query, first-token top-1", "query_exact_match": "query, greedy exact match",
               "bio_first_token": "held-out paragraph, first token",
               "base_first_token": "base-world paragraph,\nfirst token (original)"}
    _require(summary, list(metrics))
    data = summary[(summary["type"] == "revised") & (summary["attribute"] == "all") & summary["freq_group"].isin(groups)
                   & summary["metric"].isin(list(metrics))].copy()
    data["asked for"] = data["target"].map(TARGETS)
    background = summary[(summary["type"] == "background") & (summary["metric"] == "base_first_token")
                         & (summary["freq_group"] == "all") & (summary["attribute"] == "all")]
    fig, axes = plt.subplots(len(groups), len(metrics), figsize=(3.2 * len(metrics), 2.3 * len(groups)),
                             sharex=True, sharey=True, squeeze=False)
    for r, group in enumerate(groups):
        for c, (metric, title) in enumerate(metrics.items()):
            ax = axes[r, c]
            cell = data[(data["metric"] == metric) & (data["freq_group"] == group)]
            sns.lineplot(data=cell, x="epoch", y="value", hue="asked for", hue_order=list(TARGETS.values()),
                         palette=TARGET_PALETTE, marker="o", markersize=3, ax=ax, legend=False, **SEED_BAND)
            if metric == "base_first_token" and len(background):
                sns.lineplot(data=background, x="epoch", y="value", color="black", linestyle="--", lw=1,
                             ax=ax, label="background entities", legend=False, **SEED_BAND)
            ax.set_title(title if r == 0 else "")
            ax.set_ylabel(f"{group} frequency\naccuracy" if c == 0 else "")
            ax.set_ylim(-0.02, 1.02)
            progress_axis(ax, summary["epoch"])
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=col, marker="o", label=f"revised, {lab}") for lab, col in TARGET_PALETTE.items()]
    handles.append(Line2D([], [], color="black", ls="--", label="background entities (base world only)"))
    fig.legend(handles=handles, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 1.02), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save_figure(fig, pdf, png)
    plt.close(fig)


def recall_matrix(entity_table: pd.DataFrame, groups: list[str], metric: str = "query_exact_match"):
    """Entities x checkpoints: attributes recalled (sum over attributes of the per-entity metric).

    Rows are grouped by type then frequency group; within a block, entities with the most recalled
    attributes summed over checkpoints come first (ties: lower entity id). Returns (matrix [E, C], row labels DataFrame,
    checkpoint labels DataFrame in training order).
    """
    table = entity_table[entity_table["target"] == "current"]
    recalled = table.pivot_table(index=["type", "freq_group", "entity_id"], columns="order", values=metric,
                                 aggfunc="sum", fill_value=0.0)  # [E, C]
    checkpoints = (table.drop_duplicates("order").set_index("order")[["checkpoint", "epoch"]]
                   .loc[recalled.columns].reset_index())
    rows = recalled.reset_index()[["type", "freq_group", "entity_id"]]
    rows["total"] = recalled.to_numpy().sum(axis=1)
    rows["type_rank"] = rows["type"].map({t: i for i, t in enumerate(TYPES)})
    rows["group_rank"] = rows["freq_group"].map({g: i for i, g in enumerate(groups)})
    order = rows.sort_values(["type_rank", "group_rank", "total", "entity_id"],
                             ascending=[True, True, False, True]).index
    return recalled.to_numpy()[order], rows.loc[order].reset_index(drop=True), checkpoints


def plot_heatmap(entity_table: pd.DataFrame, groups: list[str], pdf, png) -> None:
    plt, sns = pyplot()
    matrix, rows, checkpoints = recall_matrix(entity_table, groups)
    fig, ax = plt.subplots(figsize=(min(2 + 0.35 * matrix.shape[1], 14), 8))
    sns.heatmap(matrix, ax=ax, cmap="viridis", vmin=0, vmax=len(ATTRIBUTES), rasterized=True, yticklabels=False,
                xticklabels=[f"{e:g}" for e in checkpoints["epoch"]],
                cbar_kws={"label": f"attributes recalled (greedy exact match, of {len(ATTRIBUTES)})"})
    blocks = rows.groupby(["type_rank", "group_rank"], sort=True).size()
    edge = 0
    for (t, g), size in blocks.items():
        ax.axhline(edge, color="white", lw=1.5)
        ax.text(-0.3, edge + size / 2, f"{KNOWLEDGE[TYPES[t]]}\n{groups[g]} freq. (n={size})", ha="right",
                va="center", fontsize=7)
        edge += size
    ax.set_xlabel("checkpoint (continual pre-training epoch)")
    ax.set_ylabel("")
    ax.set_title("Probed entities x checkpoints: attributes whose full value greedy decoding reproduces")
    fig.tight_layout()
    save_figure(fig, pdf, png)
    plt.close(fig)


__all__ = ["plot_acquisition", "plot_overwriting", "plot_heatmap", "recall_matrix"]
