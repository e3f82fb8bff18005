"""The `components` stage: `kcircuits components ACTION ...`, one action per Snakemake rule.

    measure  one checkpoint: head roles (heads.py) and the logit lens (logit_lens.py) on the clean
             prompts of every task x type x frequency-group cell of circuit_pairs.parquet (the
             prompts its circuits were found on, circuits.max_pairs of them), one forward pass per
             batch for both; then the roles of each circuit's in-circuit heads (circuits.parquet)
    summary  one training seed: the per-checkpoint tables joined, in training order
    figure   across seeds: role proportions, per-layer role counts, logit-lens ranks

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

log = logging.getLogger("kcircuits")
ACTIONS = ("measure", "summary", "figure")
CELL = ["task", "type", "freq_group"]
TABLES = ("heads", "roles", "layers", "lens")
FILES = {  # action -> required file options
    "measure": ("checkpoint", "tokenizer", "pairs", "circuits", *(f"out_{t}" for t in TABLES)),
    "summary": (*TABLES, *(f"out_{t}" for t in TABLES)),
    "figure": ("tables", "entities", "pdf", "png"),
}
MANY = {*TABLES, "tables"}
FIGURES = ("roles", "layers", "lens")


def add_arguments(p) -> None:
    from ..cli import add_settings_arguments

    p.add_argument("action", choices=ACTIONS)
    add_settings_arguments(p)
    for name in sorted({f for files in FILES.values() for f in files}):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, nargs="+" if name in MANY else None)
    p.add_argument("--kind", choices=FIGURES, help="figure: which one")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args, settings: dict) -> None:
    missing = [f"--{f.replace('_', '-')}" for f in FILES[args.action] if getattr(args, f) is None]
    if args.action == "figure" and args.kind is None:
        missing.append("--kind")
    if missing:
        raise SystemExit(f"kcircuits components {args.action}: missing {' '.join(missing)}")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    globals()[f"_{args.action}"](args, settings)


def _measure(args, s: dict) -> None:
    from ..circuits.stage import _budget, _load, _with_meta
    from ..tokenizer import load_tokenizer
    from .heads import HeadSums, circuit_roles, prompt_batches, trace
    from .logit_lens import LensSums

    started = time.perf_counter()
    c, h = s["circuits"], s["analysis"]["heads"]
    tasks = s["circuit_pairs"]["tasks"]
    model, meta = _load(args.checkpoint)
    tok = load_tokenizer(args.tokenizer)
    heads, lenses, n_prompts = [], [], 0
    for (task, etype, group), part in pd.read_parquet(args.pairs).groupby(CELL, sort=True):
        if task not in tasks:
            raise SystemExit(f"circuit pairs of task {task!r}, which circuit_pairs.tasks does not name")
        part = part.head(c["max_pairs"]) if c["max_pairs"] else part  # the prompts circuits were found on
        head_sums, lens_sums = HeadSums(model.n_layers, model.n_heads), LensSums()
        for batch in prompt_batches(part, tasks[task], tok, c["batch_size"]):
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
    budgets = [str(_budget(b)) for b in c["edge_budgets"]]  # as circuits.parquet spells them
    missing = sorted(set(circuits["budget"].astype(str)) - set(budgets))
    if missing:
        raise SystemExit(f"{args.circuits}: budgets {missing} are not in circuits.edge_budgets {budgets}")
    roles, layers = circuit_roles(heads, circuits, model.graph, budgets)
    prov = {**io.provenance("components", s["seed"], s, "torch", "transformers"), "checkpoint": meta}
    for frame, out in ((heads, args.out_heads), (roles, args.out_roles), (layers, args.out_layers),
                       (lenses, args.out_lens)):
        io.write_parquet(_with_meta(frame, meta), out, prov)
    log.info("%s: %d prompts, %d circuits, %.1f s", meta["checkpoint"], n_prompts,
             len(roles) // 3, time.perf_counter() - started)


def _summary(args, s: dict) -> None:
    prov = io.provenance("components_summary", s["seed"], s)
    for name in TABLES:
        table = pd.concat([pd.read_parquet(p) for p in getattr(args, name)], ignore_index=True)
        seeds = table["seed"].unique()
        if len(seeds) > 1:
            raise SystemExit(f"components summary: tables of several training seeds {sorted(seeds)}")
        progress = table[["checkpoint", "epoch", "global_step"]].drop_duplicates().sort_values(["epoch", "global_step"])
        if progress["checkpoint"].duplicated().any():
            raise SystemExit(f"components summary: a checkpoint appears with two progress records ({name})")
        order = table["checkpoint"].map({c: i for i, c in enumerate(progress["checkpoint"])})
        table.insert(list(table.columns).index("checkpoint"), "order", order)  # place in training
        io.write_parquet(table.sort_values("order", kind="stable").reset_index(drop=True),
                         getattr(args, f"out_{name}"), prov)


def _figure(args, s: dict) -> None:
    from ..figures import components as fig
    from ..figures.acquisition import group_order

    groups = group_order(pd.read_parquet(args.entities))
    table = pd.concat([pd.read_parquet(p) for p in args.tables], ignore_index=True)  # one per training seed
    budget = first_budget(s["circuits"]["edge_budgets"])
    if args.kind == "roles":
        fig.plot_head_roles(table, groups, budget, args.pdf, args.png)
    elif args.kind == "layers":
        fig.plot_head_layers(table, budget, args.pdf, args.png)
    else:
        fig.plot_logit_lens(table, groups, args.pdf, args.png)


def first_budget(budgets: list) -> str:
    """The first edge budget as circuits.parquet spells it (the circuits stage's own conversion)."""
    from ..circuits.stage import _budget

    return str(_budget(budgets[0]))


__all__ = ["ACTIONS", "add_arguments", "run"]
