"""The `circuits` pipeline stage: `kcircuits circuits ACTION ...`, one action per Snakemake rule.

    scores      EAP / EAP-IG score matrices of one checkpoint, every task x type x frequency group
    eval        select circuits (every edge budget), faithfulness, Hit@k under each ablation on
                every (type, group) of the same task (the cross-group evaluation), counts, entropy
    transplant  circuits found at other checkpoints, evaluated (Hit@k) on this checkpoint's model
    draw        SVG of every cell's circuit at the first edge budget
    summary     join the per-checkpoint tables

Hit@k prompts are the circuit task's own template (circuit_pairs.tasks) applied to every probe
entity of a cell, answered with its first answer token -- the prompt the circuit was found on.
Edge budgets: integers are edge counts, floats in (0, 1] fractions of all edges.
"""
from __future__ import annotations

import logging

import pandas as pd

from .. import io
from ..settings import actions, add_job_arguments, add_paths, command, run_handler, set_threads
from ..vocabulary import CELL, at_budget, budget_label, budget_value, parse_cell_key
from .pipeline import encoding, hit_prompts, load_checkpoint, mean_references, pair_cells, select_circuit

log = logging.getLogger("kcircuits")


def add_parser(subparsers) -> None:
    acts = actions(subparsers, "circuits", "knowledge circuits: EAP-IG scores, selection, evaluation, transplant",
                   run, __doc__.split("\n")[0])
    a = command(acts, "scores", "EAP / EAP-IG score matrices of one checkpoint", "circuits", _scores)
    add_paths(a, "checkpoint", "tokenizer", "pairs", "out", "report")
    add_job_arguments(a)
    a = command(acts, "eval", "select circuits; faithfulness, Hit@k, counts, entropy", "circuits", _eval)
    add_paths(a, "checkpoint", "tokenizer", "pairs", "probes", "scores", "out_circuits", "out_stats", "out_hits")
    add_job_arguments(a)
    a = command(acts, "transplant", "circuits of other checkpoints on this checkpoint's model", "circuits",
                _transplant)
    add_paths(a, "checkpoint", "tokenizer", "probes", "out")
    add_paths(a, "circuits", "source_names", many=True)
    add_job_arguments(a)
    a = command(acts, "draw", "SVG of every cell's circuit at the first edge budget", "circuits", _draw)
    add_paths(a, "scores", "circuits", "out_dir")
    a = command(acts, "summary", "join one seed's per-checkpoint tables", "circuits", _summary)
    add_paths(a, "stats", "hits", "transplants", many=True)
    add_paths(a, "out_stats", "out_hits", "out_transplant")


def run(args) -> None:
    set_threads(getattr(args, "threads", None))
    run_handler(args)


# ---- actions ---------------------------------------------------------------------------------------
def _scores(args, s: dict) -> None:
    import torch

    from ..tokenizer import load_tokenizer
    from .attribute import attribute, pair_batches
    from .metrics import logit_difference
    from .store import save_scores

    c = s["circuits"]
    model, meta = load_checkpoint(args.checkpoint, args.device)
    tok = load_tokenizer(args.tokenizer)
    cells, report = {}, {}
    for key, part in pair_cells(pd.read_parquet(args.pairs), c["max_pairs"]):
        batches = pair_batches(part, tok, c["batch_size"], **encoding(model, c))
        with model.precision(c["dtype"]):
            cells[key] = attribute(model, batches, c["method"], c["ig_steps"], c["ig_points"])
        with torch.no_grad():  # mean LDs: the input edges' scores should sum to about their difference
            ld = {name: float(sum(logit_difference(model.run(getattr(b, f"{name}_ids"), b.last), b.clean_label,
                                                   b.corrupted_label).sum() for b in batches)) / len(part)
                  for name in ("clean", "corrupted")}
        report[key] = {"pairs": len(part), "ld_clean": ld["clean"], "ld_corrupted": ld["corrupted"],
                       "input_edges_sum": float(cells[key][0].sum())}
        log.info("%s %s: %d pairs", meta["checkpoint"], key, len(part))
    settings = {k: c[k] for k in ("method", "ig_steps", "ig_points", "prepend_bos", "dtype")}
    save_scores(args.out, cells, model.graph, {**settings, "checkpoint": meta,
                                               "pairs": {k: v["pairs"] for k, v in report.items()}})
    prov = io.provenance("circuit_scores", s["seed"], s, "torch", "transformers")
    io.write_json({"checkpoint": meta, "graph": {**model.graph.to_dict(), "n_edges": model.graph.n_edges},
                   "cells": report, "provenance": prov}, args.report)


def _eval(args, s: dict) -> None:
    from ..tokenizer import load_tokenizer
    from .attribute import pair_batches
    from .evaluate import faithfulness_of, hit_at_k
    from .metrics import edge_entropy
    from .store import circuits_frame, load_scores

    c = s["circuits"]
    k = c["hit_k"]
    model, meta = load_checkpoint(args.checkpoint, args.device)
    graph, cells, _ = load_scores(args.scores)
    tok = load_tokenizer(args.tokenizer)
    pairs = {key: pair_batches(part, tok, c["batch_size"], **encoding(model, c))  # once per cell, not per budget
             for key, part in pair_cells(pd.read_parquet(args.pairs), c["max_pairs"])}
    prompts = hit_prompts(pd.read_parquet(args.probes), s["circuit_pairs"]["tasks"], tok, c["batch_size"],
                          encoding(model, c))
    full_hits = {cell: hit_at_k(model, None, batches, k)[f"hit_at_{k}"] for cell, batches in prompts.items()}
    means = mean_references(model, prompts, c["ablations"])
    selections = [(budget_label(budget), {key: select_circuit(cells[key], graph, budget, c["selection"])
                                          for key in cells}) for budget in map(budget_value, c["edge_budgets"])]
    faith = {key: faithfulness_of(model, [sel[key] for _, sel in selections], pairs[key])  # [budgets]
             for key in cells}  # a cell's clean and corrupted runs once for every budget
    circuit_frames, stats, hits = [], [], []
    for b, (label, selected) in enumerate(selections):
        circuit_frames.append(circuits_frame(selected, cells).assign(budget=label))
        for key, circuit in selected.items():
            row = {**dict(zip(CELL, parse_cell_key(key))), "budget": label, "n_edges": circuit.n_edges,
                   "n_nodes": circuit.n_nodes, "edge_entropy": edge_entropy(cells[key], circuit.edges)}
            f = faith[key][b]
            stats.append({**row, **{n: f[n] for n in ("faithfulness", "ld_clean", "ld_corrupted", "ld_circuit")}})
            for (t_task, t_type, t_group), batches in prompts.items():
                if t_task != row["task"]:
                    continue
                for ablation in c["ablations"]:
                    res = hit_at_k(model, circuit, batches, k, ablation, means.get((t_task, t_type, t_group)))
                    hits.append({**{n: row[n] for n in (*CELL, "budget")},
                                 "target_type": t_type, "target_freq_group": t_group, "ablation": ablation,
                                 "hit_at_k": res[f"hit_at_{k}"], "mean_rank": res["mean_rank"],
                                 "n_prompts": res["n_prompts"],
                                 "full_model_hit_at_k": full_hits[(t_task, t_type, t_group)]})
    prov = {**io.provenance("circuit_eval", s["seed"], s, "torch", "transformers"), "checkpoint": meta}
    for frame, out in ((pd.concat(circuit_frames, ignore_index=True), args.out_circuits),
                       (pd.DataFrame(stats), args.out_stats), (pd.DataFrame(hits), args.out_hits)):
        io.write_parquet(io.with_leading_columns(frame, meta), out, prov)
    log.info("%s: %d circuits evaluated", meta["checkpoint"], len(stats))


def _transplant(args, s: dict) -> None:
    from ..tokenizer import load_tokenizer
    from .evaluate import hit_at_k
    from .store import circuits_from_frame

    c = s["circuits"]
    k = c["hit_k"]
    if len(args.circuits) != len(args.source_names):
        raise SystemExit("--circuits and --source-names must pair up")
    model, meta = load_checkpoint(args.checkpoint, args.device)
    tok = load_tokenizer(args.tokenizer)
    prompts = hit_prompts(pd.read_parquet(args.probes), s["circuit_pairs"]["tasks"], tok, c["batch_size"],
                          encoding(model, c))
    means = mean_references(model, prompts, c["ablations"])
    rows = []
    for source, path in zip(args.source_names, args.circuits):
        table = pd.read_parquet(path)
        for budget, part in table.groupby("budget", sort=True):
            for key, circuit in circuits_from_frame(model.graph, part).items():
                cell = parse_cell_key(key)
                for ablation in c["ablations"]:
                    res = hit_at_k(model, circuit, prompts[cell], k, ablation, means.get(cell))
                    rows.append({"source_checkpoint": source, **dict(zip(CELL, cell)),
                                 "budget": budget, "n_edges": circuit.n_edges, "ablation": ablation,
                                 "hit_at_k": res[f"hit_at_{k}"], "mean_rank": res["mean_rank"]})
    prov = {**io.provenance("circuit_transplant", s["seed"], s, "torch", "transformers"), "checkpoint": meta}
    io.write_parquet(io.with_leading_columns(pd.DataFrame(rows), meta), args.out, prov)


def _draw(args, s: dict) -> None:
    from .draw import to_svg
    from .store import circuits_from_frame, load_scores

    graph, cells, meta = load_scores(args.scores)
    first = at_budget(pd.read_parquet(args.circuits), budget_label(s["circuits"]["edge_budgets"][0]), required=False)
    with io.atomic_path(args.out_dir, is_dir=True) as tmp:
        for key, circuit in circuits_from_frame(graph, first).items():
            title = f"{meta['checkpoint']['checkpoint']} {key} ({circuit.n_edges} edges)"
            (tmp / f"{key.replace('/', '_')}.svg").write_text(to_svg(circuit, cells[key], title), encoding="utf-8")


def _summary(args, s: dict) -> None:
    prov = io.provenance("circuit_summary", s["seed"], s)
    tables = ((args.stats, args.out_stats), (args.hits, args.out_hits), (args.transplants, args.out_transplant))
    for paths, out in tables:
        io.write_parquet(io.read_parquets(paths), out, prov)


def transplant_sources(names: list[str], checkpoints: list[str]) -> list[str]:
    """Config names -> checkpoint names: 'first' = the start checkpoint, 'last' = the final epoch."""
    epochs = [c for c in checkpoints if c.startswith("epoch-")]
    resolved = []
    for name in names:
        target = checkpoints[0] if name == "first" else max(epochs) if name == "last" else name
        if target not in checkpoints:
            raise ValueError(f"circuits.transplant_sources: {name!r} is not a checkpoint of this run "
                             f"(choose from first, last, {', '.join(checkpoints)})")
        if target not in resolved:
            resolved.append(target)
    return resolved


__all__ = ["add_parser", "run", "transplant_sources"]
