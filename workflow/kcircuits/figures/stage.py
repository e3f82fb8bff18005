"""The one figure command: `kcircuits figure NAME --settings JSON --pdf PDF --png PNG --INPUT PATH... ...`.

NAME is the figure's file stem (results/{run}/figures/NAME.{pdf,png}); all_figures() is the one
figure table (kcircuits.figures.table.Figure: the core's FIGURES here and every study's), read by the
rules too: the settings stage it reads, its input options (each the rule's input key, `_` -> `-`; one
path per training seed where several seeds apply) and how it is drawn. Every figure also reads
--entities (frequency-group order). Circuit figures take --ablation and --budget by hand. Knowledge-neuron
figures (neurons_*, figures/neurons.py) check their tables first: a missing or outdated table is a
one-line error naming the file. By hand:

    kcircuits figure circuit_hits --config config.yaml --hits results/x/seed-*/circuits/summary_hits.parquet \
        --entities results/x/data/entities.parquet --ablation mean --pdf hits.pdf --png hits.png
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Callable

import pandas as pd

from ..analysis.components_stage import COMPONENT_SECTIONS
from ..config import REPO_ROOT
from ..io import read_parquets
from ..settings import actions, add_paths, command, run_handler
from ..studies import STUDIES
from .table import Figure, figure, first_budget, groups

log = logging.getLogger("kcircuits")


# ---- acquisition (settings: figures) ---------------------------------------------------------------
def _acquisition(args, s: dict) -> None:
    from .acquisition import plot_acquisition

    plot_acquisition(read_parquets(args.table), groups(args), s["evaluate"]["hit_k"], args.pdf, args.png)


def _overwriting(args, s: dict) -> None:
    from .acquisition import plot_overwriting

    plot_overwriting(read_parquets(args.table), groups(args), args.pdf, args.png)


def _entity_heatmap(args, s: dict) -> None:
    from .acquisition import plot_heatmap

    plot_heatmap(read_parquets(args.table), groups(args), args.pdf, args.png)


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
    return args.ablation, args.budget or first_budget(s), s["circuits"]["hit_k"], args.pdf, args.png


def _draw_hits(args, s: dict, plot: Callable) -> None:
    """A figure of every seed's summary_hits: plot(hits, groups, tasks, ablation, budget, k, pdf, png)."""
    from .seeds import read_seed_tables

    hits = read_seed_tables(args.hits)
    plot(hits, groups(args), _tasks(args, s, hits), *_hit(args, s))


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
    plot_transplant(transplant, hits, groups(args), *_hit(args, s))


def _circuit_faithfulness(args, s: dict) -> None:
    from .circuits import plot_faithfulness
    from .seeds import read_seed_tables

    stats = read_seed_tables(args.stats)
    plot_faithfulness(stats, _tasks(args, s, stats), s["circuits"]["edge_budgets"], groups(args), args.pdf, args.png)


# ---- components and topology (settings: analysis) --------------------------------------------------
def _head_roles(args, s: dict) -> None:
    from .components import plot_head_roles

    plot_head_roles(read_parquets(args.roles), groups(args), first_budget(s), args.pdf, args.png)


def _head_layers(args, s: dict) -> None:
    from .components import plot_head_layers

    plot_head_layers(read_parquets(args.layers), first_budget(s), args.pdf, args.png)


def _logit_lens(args, s: dict) -> None:
    from .components import plot_logit_lens

    plot_logit_lens(read_parquets(args.lens), groups(args), args.pdf, args.png)


def _topology_entropy(args, s: dict) -> None:
    from .topology import plot_entropy

    plot_entropy(read_parquets(args.topology), groups(args), first_budget(s), args.pdf, args.png)


def _topology_jaccard(args, s: dict) -> None:
    from .topology import plot_jaccard

    plot_jaccard(read_parquets(args.topology), groups(args), first_budget(s), args.pdf, args.png)


def _topology_layers(args, s: dict) -> None:
    from .topology import plot_layer_heatmap

    cell = s["analysis"]["topology"].get("heatmap_cell")
    plot_layer_heatmap(read_parquets(args.layers), first_budget(s), cell, args.pdf, args.png)


def _topology_mean_layer(args, s: dict) -> None:
    from .topology import plot_mean_layer

    if len(args.trend) != 1:
        raise SystemExit("kcircuits figure topology_mean_layer: --trend takes the one depth_trend.json")
    budget = first_budget(s)
    with open(args.trend[0], encoding="utf-8") as fh:
        trend = json.load(fh)["budgets"][budget]["pooled"]
    plot_mean_layer(read_parquets(args.topology), groups(args), budget, trend, args.pdf, args.png)


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
        getattr(neurons, plot)(table, groups(args), *extra, args.pdf, args.png)
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


ACQUISITION = "Knowledge acquisition"
CIRCUIT = "Knowledge circuits"
TOPOLOGY = "Circuit topology"
COMPONENTS = "Specialised heads and logit lens"
NEURONS = "Knowledge neurons"


# Hit@k figures use zero ablation and the first edge budget (circuits.edge_budgets[0]); by hand,
# `kcircuits figure circuit_hits --ablation mean --budget 0.25 ...` draws another.
FIGURES = {
    "acquisition": figure(_acquisition, "accuracy across training (eval summary per seed)", "acquisition curves",
                      ACQUISITION, "figures", table="eval_summary"),
    "overwriting": figure(_overwriting, "revised facts: new vs original values", "overwriting of revised facts",
                      ACQUISITION, "figures", table="eval_summary"),
    "entity_heatmap": figure(_entity_heatmap, "entity x checkpoint recall (entity tables)",
                         "entity x checkpoint recall", ACQUISITION, "figures", table="eval_summary_entities",
                         first_seed=True),
    "generation_probe": figure(_generation_probe, "revised facts: new vs original value in k sampled generations",
                           "generation probe: new vs original value in sampled generations", ACQUISITION, "figures",
                           table="eval_summary_generations"),
    "circuit_hits": figure(_circuit_hits, "own-circuit Hit@k across training", "circuit Hit@k across training", CIRCUIT,
                       "circuits", hits="summary_hits", hit_options=True),
    "circuit_cross_group": figure(_circuit_cross_group, "circuit of cell A on cell B, last checkpoint",
                              "cross-group Hit@k, last checkpoint", CIRCUIT, "circuits", hits="summary_hits",
                              hit_options=True),
    "circuit_cross_group_training": figure(_circuit_cross_group_training, "cross-group Hit@k across training",
                                       "cross-group Hit@k across training", CIRCUIT, "circuits", hits="summary_hits",
                                       hit_options=True),
    "circuit_transplant": figure(_circuit_transplant, "transplant sources' circuits vs each checkpoint's own",
                             "circuit transplant", CIRCUIT, "circuits", hits="summary_hits",
                             transplant="summary_transplant", hit_options=True),
    "circuit_faithfulness": figure(_circuit_faithfulness, "faithfulness per edge budget", "circuit faithfulness",
                               CIRCUIT, "circuits", stats="summary_stats"),
    "topology_entropy": figure(_topology_entropy, "circuit edge entropy", "circuit edge entropy across training",
                           TOPOLOGY, "analysis", topology="topology"),
    "topology_jaccard": figure(_topology_jaccard, "Jaccard to final and previous",
                           "circuit Jaccard to final and previous", TOPOLOGY, "analysis", topology="topology"),
    "topology_layers": figure(_topology_layers, "edge activation ratio, layer x checkpoint",
                          "edge activation ratio, layer x checkpoint", TOPOLOGY, "analysis", topology="topology",
                          layers="layers"),
    "topology_mean_layer": figure(_topology_mean_layer, "mean circuit layer and its trend",
                              "mean circuit layer and its trend", TOPOLOGY, "analysis", topology="topology",
                              trend="depth_trend_json"),
    "head_roles": figure(_head_roles, "mover / relation / mixture heads in circuits",
                     "mover / relation / mixture heads in circuits", COMPONENTS, "analysis", roles="seed_head_roles",
                     sections=COMPONENT_SECTIONS),
    "head_layers": figure(_head_layers, "in-circuit heads by layer and role", "in-circuit heads by layer and role",
                      COMPONENTS, "analysis", layers="seed_head_layers", sections=COMPONENT_SECTIONS),
    "logit_lens": figure(_logit_lens, "logit-lens rank by layer", "logit-lens rank by layer", COMPONENTS, "analysis",
                     lens="seed_logit_lens", sections=COMPONENT_SECTIONS),
    "neurons_layers": figure(_neurons_layers, "knowledge neurons by layer, IG vs baseline, last checkpoint",
                         "knowledge neurons by layer, IG vs baseline", NEURONS, "neurons", layers="neuron_layers"),
    "neurons_suppress": figure(_neurons_suppress, "suppress / amplify knowledge vs random neurons, last checkpoint",
                           "suppress / amplify knowledge neurons", NEURONS, "neurons",
                           interventions="seed_neuron_interventions"),
    "neurons_edit": figure(_neurons_edit, "fact edits through value slots across training",
                       "fact edits across training", NEURONS, "neurons", edits="seed_neuron_edits"),
    "neurons_erase": figure(_neurons_erase, "erasing an attribute, last checkpoint", "erasing an attribute", NEURONS,
                        "neurons", erase="seed_neuron_erase"),
    "neurons_training": figure(_neurons_training, "knowledge neurons across training: count, layer, Jaccard, survival",
                           "knowledge neurons across training", NEURONS, "neurons", evolution="neuron_evolution"),
    "neurons_circuit_overlap": figure(_neurons_circuit_overlap, "knowledge neurons inside circuits across training",
                                  "knowledge neurons inside circuits", NEURONS, "neurons",
                                  overlap="seed_neuron_overlap"),
}


def all_figures() -> dict[str, Figure]:
    """Every figure, the core's and each study's, with its caption (report/NAME.rst of its folder)."""
    out = {name: dataclasses.replace(f, caption=REPO_ROOT / "report" / f"{name}.rst") for name, f in FIGURES.items()}
    for study in STUDIES.values():
        for name, entry in study.figure_table().items():
            if name in out:
                raise ValueError(f"study {study.name}: figure {name!r} is already defined")
            out[name] = dataclasses.replace(entry, caption=study.file(f"report/{name}.rst"))
    return out


def add_parser(subparsers) -> None:
    names = actions(subparsers, "figure", "one figure (PDF and PNG)", run, __doc__.split("\n")[0], dest="figure",
                    metavar="NAME")
    for name, entry in all_figures().items():
        a = command(names, name, entry.help, entry.stage, entry.draw)
        add_paths(a, *entry.inputs, many=True)
        add_paths(a, "entities", "pdf", "png")
        if entry.hit_options:
            a.add_argument("--ablation", default="zero", help="which ablation (default: zero)")
            a.add_argument("--budget", help="edge budget as stored, e.g. 0.1 (default: the first)")


def run(args) -> None:
    run_handler(args)


__all__ = ["FIGURES", "all_figures", "add_parser", "run"]
