"""The knowledge-interplay figures' table (kcircuits.figures.table.Figure), drawn by `kcircuits figure
NAME`: how each reads its summary table and settings; the drawing is in plots.py."""
from __future__ import annotations

from ...figures.table import figure, first_budget, groups
from ...io import read_parquets
from . import STUDY

CATEGORY = STUDY.title  # the report's category of the study's figures


def _order_types(s: dict) -> list[str]:
    from .streams import knowledge_types

    return list(knowledge_types(s["order"]["types"]))


def _order_accuracy(args, s: dict) -> None:
    from .plots import plot_order_accuracy

    plot_order_accuracy(read_parquets(args.outcome), _order_types(s), args.pdf, args.png)


def _order_heatmap(args, s: dict) -> None:
    from .plots import plot_order_heatmap

    plot_order_heatmap(read_parquets(args.outcome), _order_types(s), args.pdf, args.png)


def _order_circuits(args, s: dict) -> None:
    from .plots import plot_order_circuits

    plot_order_circuits(read_parquets(args.overlap), _order_types(s), first_budget(s), args.pdf, args.png)


def _forgetting_recall(args, s: dict) -> None:
    from .plots import plot_forgetting_recall

    f = s["forgetting"]
    plot_forgetting_recall(read_parquets(args.recall), groups(args), f["corpora"], f["tolerance"], args.pdf, args.png)


def _forgetting_circuits(args, s: dict) -> None:
    from .plots import plot_forgetting_circuits

    plot_forgetting_circuits(read_parquets(args.circuits), s["forgetting"]["corpora"], first_budget(s),
                             s["circuits"]["hit_k"], args.pdf, args.png)


FIGURES = {
    "order_accuracy": figure(_order_accuracy, "knowledge order: B's final accuracy after A first vs random order",
                         "knowledge order: B's accuracy after A first", CATEGORY, "order",
                         outcome="order_outcome", enabled="order.enabled"),
    "order_heatmap": figure(_order_heatmap, "knowledge order: A x B accuracy difference",
                        "knowledge order: interference and synergy, A x B", CATEGORY, "order",
                        outcome="order_outcome", enabled="order.enabled"),
    "order_circuits": figure(_order_circuits, "knowledge order: Jaccard of B's circuits with vs without A first",
                         "knowledge order: B's circuits with vs without A first", CATEGORY, "order",
                         overlap="order_overlap", enabled="order.enabled"),
    "forgetting_recall": figure(_forgetting_recall, "forgetting: recall of learned facts per replay share",
                            "forgetting: recall per replay share", CATEGORY, "forgetting",
                            recall="forgetting_recall", enabled="forgetting.enabled"),
    "forgetting_circuits": figure(_forgetting_circuits,
                              "forgetting: circuit Hit@k and Jaccard to before, per replay share",
                              "forgetting: circuits per replay share", CATEGORY, "forgetting",
                              circuits="forgetting_circuits", enabled="forgetting.enabled"),
}
