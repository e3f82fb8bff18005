"""Figures of circuit topology across training (from every seed's topology / layers tables).

- entropy:     edge entropy vs epoch; rows tasks, columns frequency groups, K_compl vs K_rel;
- jaccard:     node / edge Jaccard to the final and to the previous circuit (mean over tasks);
- layers:      layer x checkpoint heatmap of the edge activation ratio (one panel per task, or one cell);
- mean-layer:  score-weighted mean layer vs epoch, pooled with its fitted trend, and per frequency group.

Curves are the mean over seeds with a 95% bootstrap interval (seaborn, fixed seed: same bytes on a
rerun); with one seed the band is absent. Averages over tasks are taken within each seed first, so
the interval is over seeds only. Only the headline (first) edge budget is drawn.
"""
from __future__ import annotations

import pandas as pd

from ..vocabulary import at_budget, parse_cell_key
from .style import KNOWLEDGE, PALETTE, progress_axis, pyplot, save_figure
from .style import SEED_BAND as CI


def _with_knowledge(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(knowledge=frame["type"].map(KNOWLEDGE))


def _over_tasks(topo: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean over tasks within each seed x checkpoint x type x group (so a CI is over seeds only)."""
    keys = ["seed", "order", "epoch", "type", "freq_group"]
    return _with_knowledge(topo.groupby(keys, as_index=False)[columns].mean())


def _legend(fig, plt) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color, marker="o", label=label) for label, color in PALETTE.items()]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1.02), frameon=False)


def plot_entropy(topo: pd.DataFrame, groups: list[str], budget: str, pdf, png) -> None:
    plt, sns = pyplot()
    data = _with_knowledge(at_budget(topo, budget))
    tasks = sorted(data["task"].unique())
    fig, axes = plt.subplots(len(tasks), len(groups), figsize=(3.2 * len(groups), 2.3 * len(tasks)),
                             sharex=True, sharey=True, squeeze=False)
    for r, task in enumerate(tasks):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            cell = data[(data["task"] == task) & (data["freq_group"] == group)]
            sns.lineplot(data=cell, x="epoch", y="edge_entropy", hue="knowledge", hue_order=list(KNOWLEDGE.values()),
                         palette=PALETTE, marker="o", markersize=3, ax=ax, legend=False, **CI)
            ax.set_title(f"{group} frequency" if r == 0 else "")
            ax.set_ylabel(f"{task}\nedge entropy (nats)" if c == 0 else "")
            progress_axis(ax, data["epoch"])
    _legend(fig, plt)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save_figure(fig, pdf, png)
    plt.close(fig)


JACCARD = {"node_jaccard_final": "nodes, to final", "edge_jaccard_final": "edges, to final",
           "node_jaccard_prev": "nodes, to previous", "edge_jaccard_prev": "edges, to previous"}


def plot_jaccard(topo: pd.DataFrame, groups: list[str], budget: str, pdf, png) -> None:
    plt, sns = pyplot()
    data = _over_tasks(at_budget(topo, budget), list(JACCARD))
    fig, axes = plt.subplots(len(JACCARD), len(groups), figsize=(3.2 * len(groups), 2.1 * len(JACCARD)),
                             sharex=True, sharey=True, squeeze=False)
    for r, (metric, title) in enumerate(JACCARD.items()):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            sns.lineplot(data=data[data["freq_group"] == group], x="epoch", y=metric, hue="knowledge",
                         hue_order=list(KNOWLEDGE.values()), palette=PALETTE, marker="o", markersize=3, ax=ax,
                         legend=False, **CI)
            ax.set_title(f"{group} frequency" if r == 0 else "")
            ax.set_ylabel(f"Jaccard\n{title}" if c == 0 else "")
            ax.set_ylim(-0.02, 1.02)
            progress_axis(ax, data["epoch"])
    _legend(fig, plt)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save_figure(fig, pdf, png)
    plt.close(fig)


def layer_matrix(layers: pd.DataFrame) -> pd.DataFrame:
    """Layers (deepest first) x epochs: mean edge activation ratio over the rows given (seeds, cells)."""
    matrix = layers.pivot_table(index="layer", columns="epoch", values="ratio", aggfunc="mean")
    return matrix.sort_index(ascending=False).sort_index(axis=1)


def plot_layer_heatmap(layers: pd.DataFrame, budget: str, cell: str | None, pdf, png) -> None:
    """One panel per task (mean over types, groups, seeds), or only `cell` ("task/type/freq_group")."""
    plt, sns = pyplot()
    data = at_budget(layers, budget)
    if cell:
        task, etype, group = parse_cell_key(cell)
        data = data[(data["task"] == task) & (data["type"] == etype) & (data["freq_group"] == group)]
        if data.empty:
            raise ValueError(f"analysis.topology.heatmap_cell {cell!r}: no such circuit cell")
        panels = {f"{task}, {KNOWLEDGE.get(etype, etype)}, {group} frequency": data}
    else:
        panels = {f"{t} (mean over types and groups)": p for t, p in data.groupby("task", sort=True)}
    matrices = {title: layer_matrix(p) for title, p in panels.items()}
    vmax = max(float(m.max().max()) for m in matrices.values()) or 1.0
    n_cols = next(iter(matrices.values())).shape[1]
    fig, axes = plt.subplots(1, len(matrices), figsize=(min(2 + 0.3 * n_cols, 9) * len(matrices), 3.6),
                             squeeze=False)
    for ax, (title, m) in zip(axes[0], matrices.items()):
        sns.heatmap(m, ax=ax, cmap="magma", vmin=0, vmax=vmax, xticklabels=[f"{e:g}" for e in m.columns],
                    yticklabels=["input" if layer < 0 else f"layer {layer}" for layer in m.index],
                    cbar_kws={"label": "edge activation ratio"})
        ax.set_title(title)
        ax.set_xlabel("checkpoint (epoch)")
        ax.set_ylabel("parent layer")
    fig.tight_layout()
    save_figure(fig, pdf, png)
    plt.close(fig)


def plot_mean_layer(topo: pd.DataFrame, groups: list[str], budget: str, trend: dict, pdf, png) -> None:
    """Pooled mean layer (mean over cells within each seed) with the fitted trend; then per group."""
    plt, sns = pyplot()
    data = at_budget(topo, budget)
    pooled = data.groupby(["seed", "order", "epoch"], as_index=False)["mean_layer"].mean()
    per_group = _over_tasks(data, ["mean_layer"])
    fig, axes = plt.subplots(1, 1 + len(groups), figsize=(3.4 * (1 + len(groups)), 3.0), sharey=True, squeeze=False)
    ax = axes[0, 0]
    sns.lineplot(data=pooled, x="epoch", y="mean_layer", color="black", marker="o", markersize=3, ax=ax,
                 label="mean over cells", **CI)
    if trend.get("slope") is not None:
        xs = pd.Series([pooled["epoch"].min(), pooled["epoch"].max()])
        lo, hi = trend.get("ci_low"), trend.get("ci_high")
        ax.plot(xs, trend["intercept"] + trend["slope"] * xs, color="#2ca02c", ls="--",
                label=f"trend {trend['slope']:+.3f}/epoch\n95% [{lo:+.3f}, {hi:+.3f}]" if lo is not None
                else f"trend {trend['slope']:+.3f}/epoch")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("all cells")
    ax.set_ylabel("mean layer of circuit edges\n(|score|-weighted, parent layer)")
    progress_axis(ax, pooled["epoch"])
    for c, group in enumerate(groups, start=1):
        ax = axes[0, c]
        sns.lineplot(data=per_group[per_group["freq_group"] == group], x="epoch", y="mean_layer", hue="knowledge",
                     hue_order=list(KNOWLEDGE.values()), palette=PALETTE, marker="o", markersize=3, ax=ax,
                     legend=c == len(groups), **CI)
        ax.set_title(f"{group} frequency")
        progress_axis(ax, per_group["epoch"])
    fig.tight_layout()
    save_figure(fig, pdf, png)
    plt.close(fig)


__all__ = ["plot_entropy", "plot_jaccard", "plot_layer_heatmap", "plot_mean_layer", "layer_matrix"]
