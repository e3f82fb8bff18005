"""The RECKONING figures' table (kcircuits.figures.table.Figure), drawn by `kcircuits figure NAME`:
how each reads its summary table and settings; the drawing is in plots.py."""
from __future__ import annotations

from ...figures.table import figure, first_budget, groups
from ...io import read_parquets
from . import STUDY

CATEGORY = STUDY.title  # the report's category of the study's figures


def _reckoning_methods(s: dict) -> list[str]:
    return list(s["reckoning"]["methods"])


def _reckoning_accuracy(args, s: dict) -> None:
    from .plots import plot_reckoning_accuracy

    plot_reckoning_accuracy(read_parquets(args.accuracy), _reckoning_methods(s), args.pdf, args.png)


def _reckoning_steps(args, s: dict) -> None:
    from .plots import plot_reckoning_steps

    plot_reckoning_steps(read_parquets(args.steps), s["reckoning"]["inner"]["steps"], args.pdf, args.png)


def _reckoning_recitation(args, s: dict) -> None:
    from .plots import plot_reckoning_recitation

    plot_reckoning_recitation(read_parquets(args.recitation), _reckoning_methods(s), s["reckoning"]["inner"]["steps"],
                              args.pdf, args.png)


def _reckoning_timing(args, s: dict) -> None:
    from .plots import plot_reckoning_timing

    plot_reckoning_timing(read_parquets(args.timing), _reckoning_methods(s), args.pdf, args.png)


def _reckoning_circuits(args, s: dict) -> None:
    from .plots import plot_reckoning_circuits

    layers, hits, compare = (read_parquets(getattr(args, name)) for name in ("layers", "hits", "compare"))
    plot_reckoning_circuits(layers, hits, compare, _reckoning_methods(s), list(s["circuit_pairs"]["tasks"]),
                            groups(args), first_budget(s), s["circuits"]["hit_k"], args.pdf, args.png)


FIGURES = {
    "reckoning_accuracy": figure(_reckoning_accuracy, "RECKONING: accuracy per method, hop count and distractor count",
                                 "RECKONING: label accuracy by hops and distractors", CATEGORY, "reckoning",
                                 accuracy="reckoning_summary_accuracy", enabled="reckoning.enabled"),
    "reckoning_steps": figure(_reckoning_steps, "RECKONING: accuracy against the inner steps at test time",
                              "RECKONING: accuracy against test-time inner steps", CATEGORY, "reckoning",
                              steps="reckoning_summary_steps", enabled="reckoning.enabled"),
    "reckoning_recitation": figure(_reckoning_recitation, "RECKONING: facts recited exactly from the encoded weights",
                                   "RECKONING: recitation of the relevant facts", CATEGORY, "reckoning",
                                   recitation="reckoning_summary_recitation", enabled="reckoning.enabled"),
    "reckoning_timing": figure(_reckoning_timing, "RECKONING: seconds to answer k questions, encode once vs in context",
                               "RECKONING: time to answer k questions", CATEGORY, "reckoning",
                               timing="reckoning_summary_timing", enabled="reckoning.enabled"),
    "reckoning_circuits": figure(_reckoning_circuits,
                                 "RECKONING: circuits of theta' vs the pre-trained ones, layer profile and Hit@k",
                                 "RECKONING: circuits of theta' against the pre-trained circuits", CATEGORY,
                                 "reckoning", layers="reckoning_summary_circuit_layers",
                                 hits="reckoning_summary_circuit_hits", compare="reckoning_summary_circuit_compare",
                                 enabled="reckoning.enabled"),
}
