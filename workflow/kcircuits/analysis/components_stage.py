"""The `components` stage: `kcircuits components ACTION ...`, one action per Snakemake rule.

    measure  one checkpoint: head roles (heads.py) and the logit lens (logit_lens.py) on the clean
             prompts of every task x type x frequency-group cell of circuit_pairs.parquet (the
             prompts its circuits were found on, circuits.max_pairs of them), one forward pass per
             batch for both; then the roles of each circuit's in-circuit heads (circuits.parquet)
    summary  one training seed: the per-checkpoint tables joined, in training order
(the figures across seeds: `kcircuits figure head_roles | head_layers | logit_lens`, figures/stage.py)

Per-checkpoint outputs (results/{run}/seed-{seed}/circuits/{ckpt}/), each with the checkpoint's seed,
name and progress columns first:
    heads.parquet        cell x head: layer, head, node, subject, relation, total, ratio, role,
                         subject_attention, n_prompts
    head_roles.parquet   circuit (cell x budget) x role: count, n_nodes, proportion
    head_layers.parquet  circuit x layer x role: count
    logit_lens.parquet   cell x layer (-1 = embeddings): rank, median_rank, prob, rank_at_subject, n_prompts
"""
from __future__ import annotations

import logging
import time

import pandas as pd

from .. import io
from ..settings import (
    actions,
    add_job_arguments,
    add_paths,
    command,
    run_handler,
    set_threads,
)
from ..vocabulary import CELL, budget_label, with_order

log = logging.getLogger("kcircuits")
TABLES = ("heads", "roles", "layers", "lens")


# The settings its jobs read (the rules narrow the analysis stage to them): a topology or Hit@k setting
# reruns neither the jobs nor their figures (circuits.parquet, an input, reruns them when circuits change).
COMPONENT_SECTIONS = {"analysis": ["heads"], "circuit_pairs": ["tasks"],
                      "circuits": ["batch_size", "max_pairs", "edge_budgets", "prepend_bos"]}

def add_parser(subparsers) -> None:
    acts = actions(subparsers, "components", "specialised heads and the logit lens per checkpoint; summaries",
                   run, __doc__.split("\n")[0])
    a = command(acts, "measure", "head roles and logit lens of one checkpoint", "analysis", _measure)
    add_paths(a, "checkpoint", "tokenizer", "pairs", "circuits", *(f"out_{t}" for t in TABLES))
    add_job_arguments(a)
    a = command(acts, "summary", "one seed's per-checkpoint tables, in training order", "analysis", _summary)
    add_paths(a, *TABLES, many=True)
    add_paths(a, *(f"out_{t}" for t in TABLES))


def run(args) -> None:
    set_threads(getattr(args, "threads", None))
    run_handler(args)


def _measure(args, s: dict) -> None:
    from ..circuits.pipeline import load_checkpoint
    from ..tokenizer import load_tokenizer
    from .heads import HeadSums, circuit_roles, prompt_batches, trace
    from .logit_lens import LensSums

    started = time.perf_counter()
    c, h = s["circuits"], s["analysis"]["heads"]
    tasks = s["circuit_pairs"]["tasks"]
    model, meta = load_checkpoint(args.checkpoint, args.device)
    tok = load_tokenizer(args.tokenizer)
    heads, lenses, n_prompts = [], [], 0
    for (task, etype, group), part in pd.read_parquet(args.pairs).groupby(CELL, sort=True):
        if task not in tasks:
            raise SystemExit(f"circuit pairs of task {task!r}, which circuit_pairs.tasks does not name")
        part = part.head(c["max_pairs"]) if c["max_pairs"] else part  # the prompts circuits were found on
        head_sums, lens_sums = HeadSums(model.n_layers, model.n_heads, model.device), LensSums()
        for batch in prompt_batches(part, tasks[task], tok, c["batch_size"], model.device, c["prepend_bos"]):
            tr = trace(model, batch.ids, batch.last)  # the one forward pass of this batch
            head_sums.add(model, tr, batch)
            lens_sums.add(model, tr, batch)
        cell = {"task": task, "type": etype, "freq_group": group}
        heads.append(head_sums.frame(h["mover_ratio"], h["relation_ratio"]).assign(**cell))
        lenses.append(lens_sums.frame().assign(**cell))
        n_prompts += head_sums.n
    heads = pd.concat(heads, ignore_index=True)
    heads = heads[CELL + [col for col in heads.columns if col not in CELL]]
    lenses = pd.concat(lenses, ignore_index=True)
    lenses = lenses[CELL + [col for col in lenses.columns if col not in CELL]]
    circuits = pd.read_parquet(args.circuits)
    budgets = [budget_label(b) for b in c["edge_budgets"]]  # as circuits.parquet spells them
    missing = sorted(set(circuits["budget"].astype(str)) - set(budgets))
    if missing:
        raise SystemExit(f"{args.circuits}: budgets {missing} are not in circuits.edge_budgets {budgets}")
    roles, layers = circuit_roles(heads, circuits, model.graph, budgets)
    prov = {**io.provenance("components", s["seed"], s, "torch", "transformers"), "checkpoint": meta}
    for frame, out in ((heads, args.out_heads), (roles, args.out_roles), (layers, args.out_layers),
                       (lenses, args.out_lens)):
        io.write_parquet(io.with_leading_columns(frame, meta), out, prov)
    log.info("%s: %d prompts, %d circuits, %.1f s", meta["checkpoint"], n_prompts,
             len(roles) // 3, time.perf_counter() - started)


def _summary(args, s: dict) -> None:
    prov = io.provenance("components_summary", s["seed"], s)
    for name in TABLES:
        try:
            table = with_order(io.read_parquets(getattr(args, name)))
        except ValueError as err:
            raise SystemExit(f"components summary ({name}): {err}")
        io.write_parquet(table, getattr(args, f"out_{name}"), prov)


__all__ = ["add_parser", "run"]
