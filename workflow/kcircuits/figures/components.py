"""Figures of specialised heads and the logit lens across training (from the components summaries).

- roles:  proportion of mover / relation / mixture heads among each circuit's nodes against
          training progress, by knowledge type (rows) and frequency group (columns);
- layers: per-layer count of in-circuit heads of each role, layer x checkpoint heatmaps;
- lens:   logit-lens rank of the target by layer against training progress, at the last position
          and at the subject (best subject token).
Circuits at the first edge budget (circuits.edge_budgets). Tasks are averaged within each training
seed first, so curves are the mean over seeds with a 95% bootstrap interval over seeds (fixed
bootstrap seed: same tables, same bytes); with a single seed there is no interval. PDF and PNG,
deterministic bytes (acquisition.save_figure).
"""
from __future__ import annotations

import pandas as pd

from ..vocabulary import at_budget
from .style import KNOWLEDGE, SEED_BAND, progress_axis, pyplot, save_figure

ROLE_PALETTE = {"mover": "#d62728", "relation": "#1f77b4", "mixture": "#7f7f7f"}
TYPES = list(KNOWLEDGE)


def _per_seed(table: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean over tasks (and whatever else is not a key) within each seed and checkpoint."""
    return table.groupby(["seed", "epoch", *keys], as_index=False)[value].mean()


def plot_head_roles(roles: pd.DataFrame, groups: list[str], budget: str, pdf, png) -> None:
    plt, sns = pyplot()
    data = _per_seed(at_budget(roles, budget), ["type", "freq_group", "role"], "proportion")
    fig, axes = plt.subplots(len(TYPES), len(groups), figsize=(3.2 * len(groups), 2.4 * len(TYPES)),
                             sharex=True, sharey=True, squeeze=False)
    for r, etype in enumerate(TYPES):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            cell = data[(data["type"] == etype) & (data["freq_group"] == group)]
            sns.lineplot(data=cell, x="epoch", y="proportion", hue="role", hue_order=list(ROLE_PALETTE),
                         palette=ROLE_PALETTE, marker="o", markersize=3, ax=ax, legend=False, **SEED_BAND)
            ax.set_title(f"{KNOWLEDGE[etype]}, {group} frequency", fontsize=8)
            ax.set_ylabel("share of circuit nodes" if c == 0 else "")
            progress_axis(ax, data["epoch"])
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=col, marker="o", label=f"{role} heads") for role, col in ROLE_PALETTE.items()]
    fig.legend(handles=handles, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 1.03), frameon=False)
    fig.suptitle(f"Specialised heads in circuits (edge budget {budget})", y=1.07, fontsize=9)
    fig.tight_layout()
    save_figure(fig, pdf, png)
    plt.close(fig)


def plot_head_layers(layers: pd.DataFrame, budget: str, pdf, png) -> None:
    """Rows: knowledge type; columns: role; cell (layer, checkpoint) = mean count per circuit over
    tasks, frequency groups and seeds. One colour scale for every panel."""
    plt, sns = pyplot()
    data = at_budget(layers, budget).groupby(["type", "role", "layer", "epoch"], as_index=False)["count"].mean()
    vmax = max(float(data["count"].max()), 1e-9)
    epochs = sorted(data["epoch"].unique())
    n_layers = data["layer"].nunique()
    step = max(1, len(epochs) // 8)  # at most ~8 tick labels per panel
    fig, axes = plt.subplots(len(TYPES), len(ROLE_PALETTE), squeeze=False, sharex=True, sharey=True,
                             figsize=(3 * (1.2 + min(0.12 * len(epochs), 2.8)) + 0.8,
                                      0.9 + (0.5 + 0.22 * n_layers) * len(TYPES)),
                             layout="constrained")
    for r, etype in enumerate(TYPES):
        for c, role in enumerate(ROLE_PALETTE):
            ax = axes[r, c]
            cell = data[(data["type"] == etype) & (data["role"] == role)]
            matrix = cell.pivot(index="layer", columns="epoch", values="count").reindex(columns=epochs)
            sns.heatmap(matrix.iloc[::-1], ax=ax, cmap="rocket_r", vmin=0, vmax=vmax, cbar=False,
                        xticklabels=[f"{e:g}" if i % step == 0 else "" for i, e in enumerate(epochs)])
            ax.set_title(f"{role} heads" if r == 0 else "", fontsize=8)
            ax.set_xlabel("")
            ax.set_ylabel(f"{KNOWLEDGE[etype]}\nlayer" if c == 0 else "", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.colorbar(axes[0, 0].collections[0], ax=axes, shrink=0.8, label="heads per circuit")
    fig.supxlabel("continual pre-training (epochs)", fontsize=8)
    fig.suptitle(f"In-circuit heads by layer and role (edge budget {budget}; mean over tasks, groups, seeds)",
                 fontsize=9)
    save_figure(fig, pdf, png)
    plt.close(fig)


LENS_MEASURES = {"rank": "rank at last position", "rank_at_subject": "rank at subject (best token)"}


def plot_logit_lens(lens: pd.DataFrame, groups: list[str], pdf, png) -> None:
    """Rows: knowledge type x (last position, subject); columns: frequency groups; a line per layer."""
    plt, sns = pyplot()
    data = lens.melt(id_vars=["seed", "epoch", "task", "type", "freq_group", "layer"],
                     value_vars=list(LENS_MEASURES), var_name="measure", value_name="value")
    data = _per_seed(data, ["type", "freq_group", "layer", "measure"], "value")
    layer_names = {layer: "embeddings" if layer < 0 else f"after layer {layer}"
                   for layer in sorted(data["layer"].unique())}
    data["read"] = data["layer"].map(layer_names)
    palette = dict(zip(layer_names.values(), sns.color_palette("viridis", len(layer_names))))
    rows = [(t, m) for t in TYPES for m in LENS_MEASURES]
    fig, axes = plt.subplots(len(rows), len(groups), figsize=(3.2 * len(groups), 2.2 * len(rows)),
                             sharex=True, sharey=True, squeeze=False)
    for r, (etype, measure) in enumerate(rows):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            cell = data[(data["type"] == etype) & (data["freq_group"] == group) & (data["measure"] == measure)]
            sns.lineplot(data=cell, x="epoch", y="value", hue="read", hue_order=list(palette), palette=palette,
                         marker="o", markersize=3, ax=ax, legend=False, **SEED_BAND)
            ax.set_yscale("log")
            ax.set_title(f"{group} frequency" if r == 0 else "", fontsize=8)
            ax.set_ylabel(f"{KNOWLEDGE[etype]}\n{LENS_MEASURES[measure]}" if c == 0 else "", fontsize=7)
            progress_axis(ax, data["epoch"])
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=col, marker="o", label=name) for name, col in palette.items()]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 7), bbox_to_anchor=(0.5, 1.02),
               frameon=False, title="residual stream read (final norm + unembedding); rank 1 = top")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save_figure(fig, pdf, png)
    plt.close(fig)


__all__ = ["plot_head_roles", "plot_head_layers", "plot_logit_lens", "ROLE_PALETTE"]
