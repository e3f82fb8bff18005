"""Figures of knowledge circuits across training, from every seed's circuit summary tables
(results/{run}/seed-{seed}/circuits/summary_{hits,stats,transplant}.parquet).

- hits: Hit@k of each cell's own circuit (out-of-circuit edges ablated) vs training, K_compl vs K_rel,
  one column per frequency group, one row per task plus the mean over tasks; dashed: the full model;
- cross_group: circuit of cell A evaluated on the prompts of cell B of the same task, at the last
  checkpoint (source x target heatmap per task and over tasks);
- cross_group_training: the same across training, within a type: one line per source frequency group;
- transplant: circuits of the transplant sources (e.g. first / last checkpoint) on every checkpoint's
  model vs that checkpoint's own circuit;
- faithfulness: faithfulness across training, one column per edge budget.

Hit@k figures use one ablation and one edge budget (default: zero ablation, as the original study,
and the first budget of circuits.edge_budgets). Every curve is the mean over seeds with a 95%
bootstrap interval (figures/seeds.py); pooling over tasks happens within each seed first.
`kcircuits figure circuit_hits ...` (figures/stage.py) draws them.
"""
from __future__ import annotations

import pandas as pd

from .. import TYPES
from ..vocabulary import CELL, at_budget, budget_label, in_training_order
from .seeds import draw_curve, seed_summary
from .style import KNOWLEDGE, PALETTE, finish, grid, group_colors, handle, legend, pyplot

ALL_TASKS = "mean over tasks"
OWN, FULL = "own circuit", "full model"
SHORT = {"new": "K_compl", "revised": "K_rel"}
FAITHFULNESS_RANGE = (-1.0, 2.0)  # y axis cut here: near-equal clean/corrupted LDs make the ratio explode


# ---- tidy per-seed frames (what is plotted, before the mean over seeds) ----------------------------
def checkpoint_positions(table: pd.DataFrame) -> pd.Series:
    """Checkpoint -> x position (epoch progress, mean over seeds), in training order."""
    meta = table.groupby("checkpoint")[["epoch", "global_step"]].mean()
    return meta["epoch"].loc[in_training_order(meta.itertuples())]


def _at_ablation(table: pd.DataFrame, ablation: str) -> pd.DataFrame:
    if ablation not in set(table["ablation"]):
        raise ValueError(f"no ablation {ablation!r} in the circuit table (has {sorted(set(table['ablation']))})")
    return table[table["ablation"] == ablation]


def own_hits(hits: pd.DataFrame, ablation: str, budget: str) -> pd.DataFrame:
    """Rows where a circuit is evaluated on its own cell's prompts."""
    hits = at_budget(_at_ablation(hits, ablation), budget)
    return hits[(hits["type"] == hits["target_type"]) & (hits["freq_group"] == hits["target_freq_group"])]


def _with_task_mean(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Append rows task = ALL_TASKS: the mean over tasks within each seed and `keys`."""
    pooled = frame.groupby(["seed", *keys], sort=False, dropna=False)["value"].mean().reset_index()
    return pd.concat([frame, pooled.assign(task=ALL_TASKS)], ignore_index=True)


def _epochs(frame: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(epoch=frame["checkpoint"].map(checkpoint_positions(table)))


def hits_frame(hits: pd.DataFrame, ablation: str, budget: str) -> pd.DataFrame:
    """seed, checkpoint, epoch, task (incl. ALL_TASKS), type, freq_group, series (OWN / FULL), value."""
    own = own_hits(hits, ablation, budget)
    parts = [own.assign(series=OWN, value=own["hit_at_k"])]
    if "full_model_hit_at_k" in own.columns:
        parts.append(own.assign(series=FULL, value=own["full_model_hit_at_k"]))
    frame = pd.concat(parts, ignore_index=True)[["seed", "checkpoint", *CELL, "series", "value"]]
    return _epochs(_with_task_mean(frame, ["checkpoint", "type", "freq_group", "series"]), hits)


def cross_frame(hits: pd.DataFrame, ablation: str, budget: str) -> pd.DataFrame:
    """seed, checkpoint, epoch, task (incl. ALL_TASKS), source and target cells ('type/group'), value."""
    hits = at_budget(_at_ablation(hits, ablation), budget)
    frame = pd.DataFrame({"seed": hits["seed"], "checkpoint": hits["checkpoint"], "task": hits["task"],
                          "source_type": hits["type"], "source_group": hits["freq_group"],
                          "target_type": hits["target_type"], "target_group": hits["target_freq_group"],
                          "value": hits["hit_at_k"]})
    keys = ["checkpoint", "source_type", "source_group", "target_type", "target_group"]
    return _epochs(_with_task_mean(frame, keys), hits)


def transplant_frame(transplant: pd.DataFrame, hits: pd.DataFrame, ablation: str, budget: str) -> pd.DataFrame:
    """seed, checkpoint, epoch, task (incl. ALL_TASKS), type, freq_group, series, value; series: each
    transplant source ('circuit of SOURCE'), OWN and FULL (from the hits table)."""
    moved = at_budget(_at_ablation(transplant, ablation), budget)
    moved = moved.assign(series="circuit of " + moved["source_checkpoint"], value=moved["hit_at_k"])
    own = hits_frame(hits, ablation, budget)
    cols = ["seed", "checkpoint", *CELL, "series", "value"]
    frame = pd.concat([moved[cols], own[own["task"] != ALL_TASKS][cols]], ignore_index=True)
    return _epochs(_with_task_mean(frame, ["checkpoint", "type", "freq_group", "series"]),
                   pd.concat([hits, transplant]))


def faithfulness_frame(stats: pd.DataFrame) -> pd.DataFrame:
    """seed, checkpoint, epoch, task, type, freq_group, budget, n_edges, value (faithfulness)."""
    frame = stats[["seed", "checkpoint", *CELL, "budget", "n_edges"]].assign(value=stats["faithfulness"])
    return _epochs(frame, stats)


def budget_order(budgets, edge_budgets: list) -> list[str]:
    """Budgets as stored ('0.1', '30'), config order first, any others after."""
    config = [budget_label(b) for b in edge_budgets]
    present = set(budgets)
    return [b for b in config if b in present] + sorted(present - set(config))


# ---- drawing ----------------------------------------------------------------------------------------
def plot_hits(hits, groups, tasks, ablation, budget, hit_k, pdf, png) -> pd.DataFrame:
    """Rows: tasks + mean over tasks; columns: frequency groups; K_compl vs K_rel; dashed: full model.
    Returns the plotted summary (mean, lo, hi per curve point)."""
    plt, sns = pyplot()
    summary = seed_summary(hits_frame(hits, ablation, budget), ["task", "type", "freq_group", "series", "epoch"])
    rows = [*tasks, ALL_TASKS]
    fig, axes = grid(plt, len(rows), len(groups))
    for r, task in enumerate(rows):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            for etype in TYPES:
                for series, line in ((OWN, {"marker": "o", "markersize": 3}), (FULL, {"ls": "--", "lw": 0.9})):
                    curve = summary[(summary["task"] == task) & (summary["freq_group"] == group)
                                    & (summary["type"] == etype) & (summary["series"] == series)]
                    if len(curve):
                        draw_curve(ax, curve, "epoch", PALETTE[KNOWLEDGE[etype]], **line)
            ax.set_title(f"{group} frequency" if r == 0 else "")
            ax.set_ylabel(f"{task}\nHit@{hit_k}" if c == 0 else "")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("continual pre-training (epochs)" if r == len(rows) - 1 else "")
    handles = [handle(PALETTE[KNOWLEDGE[t]], f"{KNOWLEDGE[t]}, circuit", marker="o") for t in TYPES]
    handles.append(handle("grey", "full model (dashed, same colours)", ls="--"))
    legend(fig, handles)
    finish(plt, fig, pdf, png)
    return summary


def _cells(groups: list[str]) -> list[tuple[str, str]]:
    return [(t, g) for t in TYPES for g in groups]


def plot_cross_group(hits, groups, tasks, ablation, budget, hit_k, pdf, png) -> pd.DataFrame:
    """Last checkpoint: Hit@k of each source cell's circuit (rows) on each target cell (columns),
    one heatmap per task and over tasks; annotated mean (and +- half the interval with seeds)."""
    plt, sns = pyplot()
    frame = cross_frame(hits, ablation, budget)
    last = checkpoint_positions(hits).index[-1]
    keys = ["task", "source_type", "source_group", "target_type", "target_group"]
    summary = seed_summary(frame[frame["checkpoint"] == last], keys)
    cells = _cells(groups)
    labels = [f"{SHORT[t]} {g}" for t, g in cells]
    panels = [*tasks, ALL_TASKS]
    # a thin last column holds the colour bar, so every heatmap keeps the same size
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(0.7 * len(cells) * len(panels) + 1.5, 0.6 * len(cells) + 1.6),
                             squeeze=False, gridspec_kw={"width_ratios": [1] * len(panels) + [0.05]})
    cbar_ax = axes[0, -1]
    index = summary.set_index(keys)
    for ax, task in zip(axes[0], panels):
        mean = [[index["mean"].get((task, *s, *t), float("nan")) for t in cells] for s in cells]  # [source, target]
        text = [[_annotation(index, (task, *s, *t)) for t in cells] for s in cells]
        sns.heatmap(pd.DataFrame(mean, index=labels, columns=labels), ax=ax, vmin=0, vmax=1, cmap="viridis",
                    annot=pd.DataFrame(text).to_numpy(), fmt="", annot_kws={"fontsize": 6}, cbar=task == ALL_TASKS,
                    cbar_ax=cbar_ax if task == ALL_TASKS else None, cbar_kws={"label": f"Hit@{hit_k}"},
                    yticklabels=ax is axes[0, 0])
        ax.set_title(task)
        ax.set_xlabel("evaluated on (target cell)")
        ax.set_ylabel("circuit of (source cell)" if ax is axes[0, 0] else "")
    fig.suptitle(f"Cross-group Hit@{hit_k} at {last} ({ablation} ablation, edge budget {budget})")
    fig.tight_layout()
    finish(plt, fig, pdf, png)
    return summary


def _annotation(index: pd.DataFrame, key: tuple) -> str:
    if key not in index.index:
        return ""
    row = index.loc[key]
    half = (row["hi"] - row["lo"]) / 2
    return f"{row['mean']:.2f}" + (f"\n±{half:.2f}" if row["n_seeds"] > 1 else "")


def plot_cross_group_training(hits, groups, tasks, ablation, budget, hit_k, pdf, png) -> pd.DataFrame:
    """Within each type, over tasks: Hit@k on each target group (columns) of the circuits of every
    source group (colours); the target's own circuit is the thick line."""
    plt, sns = pyplot()
    frame = cross_frame(hits, ablation, budget)
    frame = frame[(frame["task"] == ALL_TASKS) & (frame["source_type"] == frame["target_type"])]
    summary = seed_summary(frame, ["source_type", "source_group", "target_group", "epoch"])
    colors = group_colors(sns, groups)
    fig, axes = grid(plt, len(TYPES), len(groups))
    for r, etype in enumerate(TYPES):
        for c, target in enumerate(groups):
            ax = axes[r, c]
            for source in groups:
                curve = summary[(summary["source_type"] == etype) & (summary["source_group"] == source)
                                & (summary["target_group"] == target)]
                if len(curve):
                    draw_curve(ax, curve, "epoch", colors[source], lw=2.2 if source == target else 1.0,
                               marker="o", markersize=2.5)
            ax.set_title(f"evaluated on {target} frequency" if r == 0 else "")
            ax.set_ylabel(f"{KNOWLEDGE[etype]}\nHit@{hit_k}" if c == 0 else "")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("continual pre-training (epochs)" if r == len(TYPES) - 1 else "")
    legend(fig, [handle(colors[g], f"circuit of {g} frequency", marker="o") for g in groups])
    finish(plt, fig, pdf, png)
    return summary


def plot_transplant(transplant, hits, groups, ablation, budget, hit_k, pdf, png) -> pd.DataFrame:
    """Rows: types; columns: frequency groups; mean over tasks. Lines: each transplant source's
    circuit on every checkpoint, the checkpoint's own circuit (black), the full model (dashed)."""
    plt, sns = pyplot()
    frame = transplant_frame(transplant, hits, ablation, budget)
    summary = seed_summary(frame[frame["task"] == ALL_TASKS], ["type", "freq_group", "series", "epoch"])
    epochs = checkpoint_positions(pd.concat([hits, transplant]))
    sources = sorted(transplant["source_checkpoint"].unique(), key=lambda s: epochs.get(s, float("inf")))
    colors = {OWN: "black", FULL: "grey",
              **{f"circuit of {s}": col for s, col in zip(sources, sns.color_palette("Set1", len(sources)))}}
    styles = {OWN: {"lw": 1.8, "marker": "o", "markersize": 3}, FULL: {"ls": "--", "lw": 0.9}}
    fig, axes = grid(plt, len(TYPES), len(groups))
    for r, etype in enumerate(TYPES):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            for series, color in colors.items():
                curve = summary[(summary["type"] == etype) & (summary["freq_group"] == group)
                                & (summary["series"] == series)]
                if len(curve):
                    draw_curve(ax, curve, "epoch", color, **styles.get(series, {"marker": "s", "markersize": 2.5}))
            for s in sources:  # where a source's circuit is the checkpoint's own
                if s in epochs.index:
                    ax.axvline(epochs[s], color=colors[f"circuit of {s}"], ls=":", lw=0.8)
            ax.set_title(f"{group} frequency" if r == 0 else "")
            ax.set_ylabel(f"{KNOWLEDGE[etype]}\nHit@{hit_k}" if c == 0 else "")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("continual pre-training (epochs)" if r == len(TYPES) - 1 else "")
    legend(fig, [handle(col, lab, ls="--" if lab == FULL else "-") for lab, col in colors.items()])
    finish(plt, fig, pdf, png)
    return summary


def plot_faithfulness(stats, tasks, edge_budgets, groups, pdf, png) -> pd.DataFrame:
    """Rows: tasks + mean over tasks; columns: edge budgets; colours: frequency groups; solid K_compl,
    dashed K_rel. Dotted lines at 0 (corrupted run) and 1 (full model)."""
    plt, sns = pyplot()
    frame = faithfulness_frame(stats)
    budgets = budget_order(frame["budget"], edge_budgets)
    edges = frame.groupby("budget")["n_edges"].mean()
    frame = _with_task_mean(frame.drop(columns=["n_edges", "epoch"]), ["checkpoint", "type", "freq_group", "budget"])
    summary = seed_summary(_epochs(frame, stats), ["task", "type", "freq_group", "budget", "epoch"])
    colors = group_colors(sns, groups)
    rows = [*tasks, ALL_TASKS]
    fig, axes = grid(plt, len(rows), len(budgets), width=3.4)
    for r, task in enumerate(rows):
        for c, budget in enumerate(budgets):
            ax = axes[r, c]
            for group in groups:
                for etype, ls in zip(TYPES, ("-", "--")):
                    curve = summary[(summary["task"] == task) & (summary["budget"] == budget)
                                    & (summary["freq_group"] == group) & (summary["type"] == etype)]
                    if len(curve):
                        draw_curve(ax, curve, "epoch", colors[group], ls=ls, marker="o", markersize=2.5)
            for level in (0, 1):
                ax.axhline(level, color="black", lw=0.6, ls=":")
            ax.set_title(f"budget {budget} (mean {edges[budget]:.0f} edges)" if r == 0 else "")
            ax.set_ylabel(f"{task}\nfaithfulness" if c == 0 else "")
            ax.set_xlabel("continual pre-training (epochs)" if r == len(rows) - 1 else "")
    low = max(FAITHFULNESS_RANGE[0], min(0.0, summary["lo"].min()))
    high = min(FAITHFULNESS_RANGE[1], max(1.0, summary["hi"].max()))
    axes[0, 0].set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))  # sharey: every panel
    handles = [handle(colors[g], f"{g} frequency") for g in groups]
    handles += [handle("black", KNOWLEDGE[t], ls=ls) for t, ls in zip(TYPES, ("-", "--"))]
    legend(fig, handles)
    finish(plt, fig, pdf, png)
    return summary


__all__ = ["hits_frame", "cross_frame", "transplant_frame", "faithfulness_frame", "plot_hits", "plot_cross_group",
           "plot_cross_group_training", "plot_transplant", "plot_faithfulness", "checkpoint_positions"]
