"""The one figure command: `kcircuits figure NAME --settings JSON --pdf PDF --png PNG --INPUT PATH... ...`.

NAME is the figure's file stem (results/{run}/figures/NAME.{pdf,png}); FIGURES is the registry:
the settings stage it reads, its input options (each the rule's input key, `_` -> `-`; one path per
training seed where several seeds apply) and how it is drawn. Every figure also reads --entities
(frequency-group order). Circuit figures take --ablation and --budget by hand. Knowledge-neuron
figures (neurons_*, figures/neurons.py) check their tables first: a missing or outdated table is a
one-line error naming the file. By hand:

    kcircuits figure circuit_hits --config config.yaml --hits results/x/seed-*/circuits/summary_hits.parquet \
        --entities results/x/data/entities.parquet --ablation mean --pdf hits.pdf --png hits.png
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from ..io import read_parquets
from ..settings import actions, add_paths, command, run_handler
from ..vocabulary import budget_label

log = logging.getLogger("kcircuits")


@dataclass(frozen=True)
class Figure:
    stage: str                # settings stage (kcircuits.config.STAGE_SECTIONS)
    inputs: tuple[str, ...]   # input options besides --entities, one or more paths each
    draw: Callable            # draw(args, settings)
    help: str
    hit_options: bool = False  # --ablation / --budget (circuit figures)


def _groups(args) -> list[str]:
    from ..data.entities import group_order

    return group_order(pd.read_parquet(args.entities))


def _order_types(s: dict) -> list[str]:
    from ..interplay.streams import knowledge_types

    return list(knowledge_types(s["order"]["types"]))


def _first_budget(s: dict) -> str:
    return budget_label(s["circuits"]["edge_budgets"][0])


# ---- acquisition (settings: figures) ---------------------------------------------------------------
def _acquisition(args, s: dict) -> None:
    from .acquisition import plot_acquisition

    plot_acquisition(read_parquets(args.table), _groups(args), s["evaluate"]["hit_k"], args.pdf, args.png)


def _overwriting(args, s: dict) -> None:
    from .acquisition import plot_overwriting

    plot_overwriting(read_parquets(args.table), _groups(args), args.pdf, args.png)


def _entity_heatmap(args, s: dict) -> None:
    from .acquisition import plot_heatmap

    plot_heatmap(read_parquets(args.table), _groups(args), args.pdf, args.png)


def _generation_probe(args, s: dict) -> None:
    from .generation import plot_generation_probe

    plot_generation_probe(read_parquets(args.table), s["evaluate"]["generation_probe"]["samples"], args.pdf, args.png)


# ---- circuits (settings: circuits) -----------------------------------------------------------------
def _tasks(args, s: dict, *tables: pd.DataFrame) -> list[str]:
    """The configured tasks (settings order) that have circuits in the tables."""
    present = set().union(*(set(t["task"]) for t in tables))
    tasks = [t for t in s["circuit_pairs"]["tasks"] if t in present]
    log.info("figure %s: seeds %s, %d checkpoints, tasks %s", args.figure, sorted(tables[0]["seed"].unique()),
             tables[0]["checkpoint"].nunique(), tasks)
    return tasks


def _hit(args, s: dict) -> tuple:
    """Hit@k figures' trailing arguments: ablation, budget label, k, pdf, png."""
    return args.ablation, args.budget or _first_budget(s), s["circuits"]["hit_k"], args.pdf, args.png


def _draw_hits(args, s: dict, plot: Callable) -> None:
    """A figure of every seed's summary_hits: plot(hits, groups, tasks, ablation, budget, k, pdf, png)."""
    from .seeds import read_seed_tables

    hits = read_seed_tables(args.hits)
    plot(hits, _groups(args), _tasks(args, s, hits), *_hit(args, s))


def _circuit_hits(args, s: dict) -> None:
    from .circuits import plot_hits

    _draw_hits(args, s, plot_hits)


def _circuit_cross_group(args, s: dict) -> None:
    from .circuits import plot_cross_group

    _draw_hits(args, s, plot_cross_group)


def _circuit_cross_group_training(args, s: dict) -> None:
    from .circuits import plot_cross_group_training

    _draw_hits(args, s, plot_cross_group_training)


def _circuit_transplant(args, s: dict) -> None:
    from .circuits import plot_transplant
    from .seeds import read_seed_tables

    hits, transplant = read_seed_tables(args.hits), read_seed_tables(args.transplant)
    _tasks(args, s, hits, transplant)
    plot_transplant(transplant, hits, _groups(args), *_hit(args, s))


def _circuit_faithfulness(args, s: dict) -> None:
    from .circuits import plot_faithfulness
    from .seeds import read_seed_tables

    stats = read_seed_tables(args.stats)
    plot_faithfulness(stats, _tasks(args, s, stats), s["circuits"]["edge_budgets"], _groups(args), args.pdf, args.png)


# ---- components and topology (settings: analysis) --------------------------------------------------
def _head_roles(args, s: dict) -> None:
    from .components import plot_head_roles

    plot_head_roles(read_parquets(args.roles), _groups(args), _first_budget(s), args.pdf, args.png)


def _head_layers(args, s: dict) -> None:
    from .components import plot_head_layers

    plot_head_layers(read_parquets(args.layers), _first_budget(s), args.pdf, args.png)


def _logit_lens(args, s: dict) -> None:
    from .components import plot_logit_lens

    plot_logit_lens(read_parquets(args.lens), _groups(args), args.pdf, args.png)


def _topology_entropy(args, s: dict) -> None:
    from .topology import plot_entropy

    plot_entropy(read_parquets(args.topology), _groups(args), _first_budget(s), args.pdf, args.png)


def _topology_jaccard(args, s: dict) -> None:
    from .topology import plot_jaccard

    plot_jaccard(read_parquets(args.topology), _groups(args), _first_budget(s), args.pdf, args.png)


def _topology_layers(args, s: dict) -> None:
    from .topology import plot_layer_heatmap

    cell = s["analysis"]["topology"].get("heatmap_cell")
    plot_layer_heatmap(read_parquets(args.layers), _first_budget(s), cell, args.pdf, args.png)


def _topology_mean_layer(args, s: dict) -> None:
    from .topology import plot_mean_layer

    if len(args.trend) != 1:
        raise SystemExit("kcircuits figure topology_mean_layer: --trend takes the one depth_trend.json")
    budget = _first_budget(s)
    with open(args.trend[0], encoding="utf-8") as fh:
        trend = json.load(fh)["budgets"][budget]["pooled"]
    plot_mean_layer(read_parquets(args.topology), _groups(args), budget, trend, args.pdf, args.png)


# ---- knowledge neurons (settings: neurons) ----------------------------------------------------------
def _neuron_figure(args, option: str, plot: str, *extra) -> None:
    """Draw neurons.PLOT from every seed's table given to --OPTION (checked by neurons.read_tables).
    Without the rows the figure draws: a figure saying why where nothing may have qualified
    (neurons.EMPTY_REASONS), else a TableError naming the files."""
    from . import neurons

    paths = getattr(args, option)
    table = neurons.read_tables(paths, option)
    log.info("figure %s: seeds %s, %d checkpoints, %d rows", args.figure, sorted(table["seed"].unique()),
             table["checkpoint"].nunique(), len(table))
    try:
        getattr(neurons, plot)(table, _groups(args), *extra, args.pdf, args.png)
    except neurons.NoRows as err:
        files = " ".join(map(str, paths))
        if option not in neurons.EMPTY_REASONS:
            raise neurons.TableError(f"--{option} {files}: {err}") from None
        reason = f"{err} in the --{option} tables ({neurons.EMPTY_REASONS[option]})"
        log.warning("figure %s: %s: %s; the figure says so", args.figure, files, reason)
        neurons.plot_nothing(args.figure, reason, args.pdf, args.png)


def _neurons_layers(args, s: dict) -> None:
    _neuron_figure(args, "layers", "plot_layers")


def _neurons_suppress(args, s: dict) -> None:
    _neuron_figure(args, "interventions", "plot_suppress")


def _neurons_edit(args, s: dict) -> None:
    _neuron_figure(args, "edits", "plot_edit")


def _neurons_erase(args, s: dict) -> None:
    _neuron_figure(args, "erase", "plot_erase")


def _neurons_training(args, s: dict) -> None:
    _neuron_figure(args, "evolution", "plot_training")


def _neurons_circuit_overlap(args, s: dict) -> None:
    _neuron_figure(args, "overlap", "plot_circuit_overlap", s["circuits"]["edge_budgets"])


# ---- knowledge interplay (settings: order / forgetting) ---------------------------------------------------
def _order_accuracy(args, s: dict) -> None:
    from .interplay import plot_order_accuracy

    plot_order_accuracy(read_parquets(args.outcome), _order_types(s), args.pdf, args.png)


def _order_heatmap(args, s: dict) -> None:
    from .interplay import plot_order_heatmap

    plot_order_heatmap(read_parquets(args.outcome), _order_types(s), args.pdf, args.png)


def _order_circuits(args, s: dict) -> None:
    from .interplay import plot_order_circuits

    plot_order_circuits(read_parquets(args.overlap), _order_types(s), _first_budget(s), args.pdf, args.png)


def _forgetting_recall(args, s: dict) -> None:
    from .interplay import plot_forgetting_recall

    f = s["forgetting"]
    plot_forgetting_recall(read_parquets(args.recall), _groups(args), f["corpora"], f["tolerance"], args.pdf, args.png)


def _forgetting_circuits(args, s: dict) -> None:
    from .interplay import plot_forgetting_circuits

    plot_forgetting_circuits(read_parquets(args.circuits), s["forgetting"]["corpora"], _first_budget(s),
                             s["circuits"]["hit_k"], args.pdf, args.png)


# ---- RECKONING (settings: reckoning) ----------------------------------------------------------------
def _reckoning_methods(s: dict) -> list[str]:
    return list(s["reckoning"]["methods"])


def _reckoning_accuracy(args, s: dict) -> None:
    from .reckoning import plot_reckoning_accuracy

    plot_reckoning_accuracy(read_parquets(args.accuracy), _reckoning_methods(s), args.pdf, args.png)


def _reckoning_steps(args, s: dict) -> None:
    from .reckoning import plot_reckoning_steps

    plot_reckoning_steps(read_parquets(args.steps), s["reckoning"]["inner"]["steps"], args.pdf, args.png)


def _reckoning_recitation(args, s: dict) -> None:
    from .reckoning import plot_reckoning_recitation

    plot_reckoning_recitation(read_parquets(args.recitation), _reckoning_methods(s), s["reckoning"]["inner"]["steps"],
                              args.pdf, args.png)


def _reckoning_timing(args, s: dict) -> None:
    from .reckoning import plot_reckoning_timing

    plot_reckoning_timing(read_parquets(args.timing), _reckoning_methods(s), args.pdf, args.png)


def _reckoning_circuits(args, s: dict) -> None:
    from .reckoning import plot_reckoning_circuits

    layers, hits, compare = (read_parquets(getattr(args, name)) for name in ("layers", "hits", "compare"))
    plot_reckoning_circuits(layers, hits, compare, _reckoning_methods(s), list(s["circuit_pairs"]["tasks"]),
                            _groups(args), _first_budget(s), s["circuits"]["hit_k"], args.pdf, args.png)


# ---- document memory (settings: memory) -------------------------------------------------------------
def _memory_allocations(s: dict) -> list[str]:
    return list(s["memory"]["allocations"])


def _memory_recall(args, s: dict) -> None:
    from .memory import plot_memory_recall

    plot_memory_recall(read_parquets(args.recall), read_parquets(args.interference), _memory_allocations(s),
                       args.pdf, args.png)


def _memory_layers(args, s: dict) -> None:
    from .memory import plot_memory_layers

    plot_memory_layers(read_parquets(args.layers), read_parquets(args.recall), _memory_allocations(s),
                       _first_budget(s), args.pdf, args.png)


def _memory_locality(args, s: dict) -> None:
    from .memory import plot_memory_locality

    plot_memory_locality(read_parquets(args.locality), _memory_allocations(s), args.pdf, args.png)


FIGURES = {
    "acquisition": Figure("figures", ("table",), _acquisition, "accuracy across training (eval summary per seed)"),
    "overwriting": Figure("figures", ("table",), _overwriting, "revised facts: new vs original values"),
    "entity_heatmap": Figure("figures", ("table",), _entity_heatmap, "entity x checkpoint recall (entity tables)"),
    "generation_probe": Figure("figures", ("table",), _generation_probe,
                               "revised facts: new vs original value in k sampled generations"),
    "circuit_hits": Figure("circuits", ("hits",), _circuit_hits, "own-circuit Hit@k across training", True),
    "circuit_cross_group": Figure("circuits", ("hits",), _circuit_cross_group,
                                  "circuit of cell A on cell B, last checkpoint", True),
    "circuit_cross_group_training": Figure("circuits", ("hits",), _circuit_cross_group_training,
                                           "cross-group Hit@k across training", True),
    "circuit_transplant": Figure("circuits", ("hits", "transplant"), _circuit_transplant,
                                 "transplant sources' circuits vs each checkpoint's own", True),
    "circuit_faithfulness": Figure("circuits", ("stats",), _circuit_faithfulness, "faithfulness per edge budget"),
    "head_roles": Figure("analysis", ("roles",), _head_roles, "mover / relation / mixture heads in circuits"),
    "head_layers": Figure("analysis", ("layers",), _head_layers, "in-circuit heads by layer and role"),
    "logit_lens": Figure("analysis", ("lens",), _logit_lens, "logit-lens rank by layer"),
    "topology_entropy": Figure("analysis", ("topology",), _topology_entropy, "circuit edge entropy"),
    "topology_jaccard": Figure("analysis", ("topology",), _topology_jaccard, "Jaccard to final and previous"),
    "topology_layers": Figure("analysis", ("topology", "layers"), _topology_layers,
                              "edge activation ratio, layer x checkpoint"),
    "topology_mean_layer": Figure("analysis", ("topology", "trend"), _topology_mean_layer,
                                  "mean circuit layer and its trend"),
    "neurons_layers": Figure("neurons", ("layers",), _neurons_layers,
                             "knowledge neurons by layer, IG vs baseline, last checkpoint"),
    "neurons_suppress": Figure("neurons", ("interventions",), _neurons_suppress,
                               "suppress / amplify knowledge vs random neurons, last checkpoint"),
    "neurons_edit": Figure("neurons", ("edits",), _neurons_edit, "fact edits through value slots across training"),
    "neurons_erase": Figure("neurons", ("erase",), _neurons_erase, "erasing an attribute, last checkpoint"),
    "neurons_training": Figure("neurons", ("evolution",), _neurons_training,
                               "knowledge neurons across training: count, layer, Jaccard, survival"),
    "neurons_circuit_overlap": Figure("neurons", ("overlap",), _neurons_circuit_overlap,
                                      "knowledge neurons inside circuits across training"),
    "order_accuracy": Figure("order", ("outcome",), _order_accuracy,
                             "knowledge order: B's final accuracy after A first vs random order"),
    "order_heatmap": Figure("order", ("outcome",), _order_heatmap, "knowledge order: A x B accuracy difference"),
    "order_circuits": Figure("order", ("overlap",), _order_circuits,
                             "knowledge order: Jaccard of B's circuits with vs without A first"),
    "forgetting_recall": Figure("forgetting", ("recall",), _forgetting_recall,
                                "forgetting: recall of learned facts per replay share"),
    "forgetting_circuits": Figure("forgetting", ("circuits",), _forgetting_circuits,
                                  "forgetting: circuit Hit@k and Jaccard to before, per replay share"),
    "reckoning_accuracy": Figure("reckoning", ("accuracy",), _reckoning_accuracy,
                                 "RECKONING: accuracy per method, hop count and distractor count"),
    "reckoning_steps": Figure("reckoning", ("steps",), _reckoning_steps,
                              "RECKONING: accuracy against the inner steps at test time"),
    "reckoning_recitation": Figure("reckoning", ("recitation",), _reckoning_recitation,
                                   "RECKONING: facts recited exactly from the encoded weights"),
    "reckoning_timing": Figure("reckoning", ("timing",), _reckoning_timing,
                               "RECKONING: seconds to answer k questions, encode once vs in context"),
    "reckoning_circuits": Figure("reckoning", ("layers", "hits", "compare"), _reckoning_circuits,
                                 "RECKONING: circuits of theta' vs the pre-trained ones, layer profile and Hit@k"),
    "memory_recall": Figure("memory", ("recall", "interference"), _memory_recall,
                            "document memory: recall and interference (sharing cost) against alpha, per allocation"),
    "memory_layers": Figure("memory", ("layers", "recall"), _memory_layers,
                            "document memory: the layer sweep at alpha 0 (circuit edges, knowledge neurons)"),
    "memory_locality": Figure("memory", ("locality",), _memory_locality,
                              "document memory: knowledge neurons and activation inside the slots against alpha"),
}


def add_parser(subparsers) -> None:
    names = actions(subparsers, "figure", "one figure (PDF and PNG)", run, __doc__.split("\n")[0], dest="figure",
                    metavar="NAME")
    for name, figure in FIGURES.items():
        a = command(names, name, figure.help, figure.stage, figure.draw)
        add_paths(a, *figure.inputs, many=True)
        add_paths(a, "entities", "pdf", "png")
        if figure.hit_options:
            a.add_argument("--ablation", default="zero", help="which ablation (default: zero)")
            a.add_argument("--budget", help="edge budget as stored, e.g. 0.1 (default: the first)")


def run(args) -> None:
    run_handler(args)


__all__ = ["FIGURES", "Figure", "add_parser", "run"]
