"""The document-memory figures' table (kcircuits.figures.table.Figure), drawn by `kcircuits figure
NAME`: how each reads its summary tables and settings; the drawing is in plots.py."""
from __future__ import annotations

from ...figures.table import figure, first_budget
from ...io import read_parquets
from . import STUDY

CATEGORY = STUDY.title  # the report's category of the study's figures
# every figure reads the allocations' order and the first edge budget
SECTIONS = {"memory": ["allocations"], "circuits": ["edge_budgets"]}


def _allocations(s: dict) -> list[str]:
    return list(s["memory"]["allocations"])


def _memory_recall(args, s: dict) -> None:
    from .plots import plot_memory_recall

    plot_memory_recall(read_parquets(args.recall), read_parquets(args.interference), _allocations(s),
                       args.pdf, args.png)


def _memory_layers(args, s: dict) -> None:
    from .plots import plot_memory_layers

    plot_memory_layers(read_parquets(args.layers), read_parquets(args.recall), _allocations(s),
                       first_budget(s), args.pdf, args.png)


def _memory_locality(args, s: dict) -> None:
    from .plots import plot_memory_locality

    plot_memory_locality(read_parquets(args.locality), _allocations(s), args.pdf, args.png)


FIGURES = {
    "memory_recall": figure(_memory_recall,
                            "document memory: recall and interference (sharing cost) against alpha, per allocation",
                            "document memory: recall and interference against alpha", CATEGORY, "memory",
                            recall="memory_summary_recall", interference="memory_summary_interference",
                            sections=SECTIONS, enabled="memory.enabled"),
    "memory_layers": figure(_memory_layers,
                            "document memory: the layer sweep at alpha 0 (circuit edges, knowledge neurons)",
                            "document memory: layer sweep at alpha 0", CATEGORY, "memory",
                            layers="memory_summary_layers", recall="memory_summary_recall",
                            sections=SECTIONS, enabled="memory.enabled"),
    "memory_locality": figure(_memory_locality,
                              "document memory: knowledge neurons and activation inside the slots against alpha",
                              "document memory: knowledge neurons and activation inside the slots", CATEGORY,
                              "memory", locality="memory_summary_locality",
                              sections=SECTIONS, enabled="memory.enabled"),
}
