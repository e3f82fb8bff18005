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

log = logging.getLogger("kcircuits")
ACTIONS = ("scores", "eval", "transplant", "draw", "summary")
CELL = ["task", "type", "freq_group"]
FILES = {  # action -> required file options
    "scores": ("checkpoint", "tokenizer", "pairs", "out", "report"),
    "eval": ("checkpoint", "tokenizer", "pairs", "probes", "scores", "out_circuits", "out_stats", "out_hits"),
    "transplant": ("checkpoint", "tokenizer", "probes", "circuits", "source_names", "out"),
    "draw": ("scores", "circuits", "out_dir"),
    "summary": ("stats", "hits", "transplants", "out_stats", "out_hits", "out_transplant"),
}
MANY = {"circuits", "source_names", "stats", "hits", "transplants"}


def add_arguments(p) -> None:
    from ..cli import add_settings_arguments

    p.add_argument("action", choices=ACTIONS)
    add_settings_arguments(p)
    for name in sorted({f for files in FILES.values() for f in files}):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, nargs="+" if name in MANY else None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args, settings: dict) -> None:
    missing = [f"--{f.replace('_', '-')}" for f in FILES[args.action] if getattr(args, f) is None]
    if missing:
        raise SystemExit(f"kcircuits circuits {args.action}: missing {' '.join(missing)}")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    globals()[f"_{args.action}"](args, settings)


# ---- helpers ---------------------------------------------------------------------------------------
def _budget(value) -> int | float:
    return float(value) if isinstance(value, float) or "." in str(value) else int(value)


def _load(checkpoint: str):
    from ..evaluate.knowledge import checkpoint_metadata
    from ..evaluate.scoring import load_model
    from .model import CircuitModel

    return CircuitModel(load_model(checkpoint)), checkpoint_metadata(checkpoint)


def _cells(pairs: pd.DataFrame, max_pairs: int | None):
    for (task, etype, group), part in pairs.groupby(CELL, sort=True):
        yield f"{task}/{etype}/{group}", part.head(max_pairs) if max_pairs else part


def _hit_prompts(probes: pd.DataFrame, tasks: dict[str, str], tokenizer, batch_size: int) -> dict:
    """(task, type, group) -> probe batches of the task's circuit prompt for each probe entity."""
    from .evaluate import probe_batches

    out = {}
    for task, template in tasks.items():
        rows = probes[probes["attribute"] == task].drop_duplicates("entity_id")
        for (etype, group), part in rows.groupby(["type", "freq_group"], sort=True):
            prompts = [template.format(name=n) for n in part["name"]]
            out[(task, etype, group)] = probe_batches(pd.DataFrame({"prompt": prompts, "answer": part["answer"]}),
                                                      tokenizer, batch_size)
    return out


def _mean_references(model, prompts: dict, ablations: list[str]) -> dict:
    """Per probe cell, the mean activations that mean ablation patches in (only if it is asked for)."""
    from .evaluate import mean_reference

    return {cell: mean_reference(model, batches) for cell, batches in prompts.items()} if "mean" in ablations else {}


def _select(scores, graph, budget, how: str):
    from .graph import select_greedy, select_top_n

    return (select_greedy if how == "greedy" else select_top_n)(scores, graph, budget)


def _with_meta(frame: pd.DataFrame, meta: dict) -> pd.DataFrame:
    return frame.assign(**meta)[list(meta) + list(frame.columns)]


# ---- actions ---------------------------------------------------------------------------------------
def _scores(args, s: dict) -> None:
    import torch

    from ..tokenizer import load_tokenizer
    from .attribute import attribute, pair_batches
    from .metrics import logit_difference
    from .store import save_scores

    c = s["circuits"]
    model, meta = _load(args.checkpoint)
    tok = load_tokenizer(args.tokenizer)
    cells, report = {}, {}
    for key, part in _cells(pd.read_parquet(args.pairs), c["max_pairs"]):
        batches = pair_batches(part, tok, c["batch_size"])
        cells[key] = attribute(model, batches, c["method"], c["ig_steps"], c["ig_points"])
        with torch.no_grad():  # mean LDs: the input edges' scores should sum to about their difference
            ld = {name: sum(float(logit_difference(model.run(getattr(b, f"{name}_ids"), b.last), b.clean_label,
                                                   b.corrupted_label).sum()) for b in batches) / len(part)
                  for name in ("clean", "corrupted")}
        report[key] = {"pairs": len(part), "ld_clean": ld["clean"], "ld_corrupted": ld["corrupted"],
                       "input_edges_sum": float(cells[key][0].sum())}
        log.info("%s %s: %d pairs", meta["checkpoint"], key, len(part))
    settings = {"method": c["method"], "ig_steps": c["ig_steps"], "ig_points": c["ig_points"]}
    save_scores(args.out, cells, model.graph, {**settings, "checkpoint": meta,
                                               "pairs": {k: v["pairs"] for k, v in report.items()}})
    prov = io.provenance("circuit_scores", s["seed"], s, "torch", "transformers")
    io.write_json({"checkpoint": meta, "graph": {**model.graph.to_dict(), "n_edges": model.graph.n_edges},
                   "cells": report, "provenance": prov}, args.report)


def _eval(args, s: dict) -> None:
    from ..tokenizer import load_tokenizer
    from .attribute import pair_batches
    from .evaluate import faithfulness, hit_at_k
    from .metrics import edge_entropy
    from .store import circuits_frame, load_scores

    c = s["circuits"]
    k = c["hit_k"]
    model, meta = _load(args.checkpoint)
    graph, cells, _ = load_scores(args.scores)
    tok = load_tokenizer(args.tokenizer)
    pairs = dict(_cells(pd.read_parquet(args.pairs), c["max_pairs"]))
    prompts = _hit_prompts(pd.read_parquet(args.probes), s["circuit_pairs"]["tasks"], tok, c["batch_size"])
    full_hits = {cell: hit_at_k(model, None, batches, k)[f"hit_at_{k}"] for cell, batches in prompts.items()}
    means = _mean_references(model, prompts, c["ablations"])
    circuit_frames, stats, hits = [], [], []
    for budget in map(_budget, c["edge_budgets"]):
        selected = {key: _select(cells[key], graph, budget, c["selection"]) for key in cells}
        circuit_frames.append(circuits_frame(selected, cells).assign(budget=str(budget)))
        for key, circuit in selected.items():
            task, etype, group = key.split("/")
            row = {"task": task, "type": etype, "freq_group": group, "budget": str(budget), "n_edges": circuit.n_edges,
                   "n_nodes": circuit.n_nodes, "edge_entropy": edge_entropy(cells[key], circuit.edges)}
            f = faithfulness(model, circuit, pair_batches(pairs[key], tok, c["batch_size"]))
            stats.append({**row, **{n: f[n] for n in ("faithfulness", "ld_clean", "ld_corrupted", "ld_circuit")}})
            for (t_task, t_type, t_group), batches in prompts.items():
                if t_task != task:
                    continue
                for ablation in c["ablations"]:
                    res = hit_at_k(model, circuit, batches, k, ablation, means.get((t_task, t_type, t_group)))
                    hits.append({**{n: row[n] for n in ("task", "type", "freq_group", "budget")},
                                 "target_type": t_type, "target_freq_group": t_group, "ablation": ablation,
                                 "hit_at_k": res[f"hit_at_{k}"], "mean_rank": res["mean_rank"],
                                 "n_prompts": res["n_prompts"],
                                 "full_model_hit_at_k": full_hits[(t_task, t_type, t_group)]})
    prov = {**io.provenance("circuit_eval", s["seed"], s, "torch", "transformers"), "checkpoint": meta}
    io.write_parquet(_with_meta(pd.concat(circuit_frames, ignore_index=True), meta), args.out_circuits, prov)
    io.write_parquet(_with_meta(pd.DataFrame(stats), meta), args.out_stats, prov)
    io.write_parquet(_with_meta(pd.DataFrame(hits), meta), args.out_hits, prov)
    log.info("%s: %d circuits evaluated", meta["checkpoint"], len(stats))


def _transplant(args, s: dict) -> None:
    from ..tokenizer import load_tokenizer
    from .evaluate import hit_at_k
    from .store import circuits_from_frame

    c = s["circuits"]
    k = c["hit_k"]
    if len(args.circuits) != len(args.source_names):
        raise SystemExit("--circuits and --source-names must pair up")
    model, meta = _load(args.checkpoint)
    tok = load_tokenizer(args.tokenizer)
    prompts = _hit_prompts(pd.read_parquet(args.probes), s["circuit_pairs"]["tasks"], tok, c["batch_size"])
    means = _mean_references(model, prompts, c["ablations"])
    rows = []
    for source, path in zip(args.source_names, args.circuits):
        table = pd.read_parquet(path)
        for budget, part in table.groupby("budget", sort=True):
            for key, circuit in circuits_from_frame(model.graph, part).items():
                cell = tuple(key.split("/"))
                for ablation in c["ablations"]:
                    res = hit_at_k(model, circuit, prompts[cell], k, ablation, means.get(cell))
                    rows.append({"source_checkpoint": source, "task": cell[0], "type": cell[1], "freq_group": cell[2],
                                 "budget": budget, "n_edges": circuit.n_edges, "ablation": ablation,
                                 "hit_at_k": res[f"hit_at_{k}"], "mean_rank": res["mean_rank"]})
    prov = {**io.provenance("circuit_transplant", s["seed"], s, "torch", "transformers"), "checkpoint": meta}
    io.write_parquet(_with_meta(pd.DataFrame(rows), meta), args.out, prov)


def _draw(args, s: dict) -> None:
    from .draw import to_svg
    from .store import circuits_from_frame, load_scores

    graph, cells, meta = load_scores(args.scores)
    table = pd.read_parquet(args.circuits[0])
    first = str(_budget(s["circuits"]["edge_budgets"][0]))
    with io.atomic_path(args.out_dir, is_dir=True) as tmp:
        for key, circuit in circuits_from_frame(graph, table[table["budget"] == first]).items():
            title = f"{meta['checkpoint']['checkpoint']} {key} ({circuit.n_edges} edges)"
            (tmp / f"{key.replace('/', '_')}.svg").write_text(to_svg(circuit, cells[key], title), encoding="utf-8")


def _summary(args, s: dict) -> None:
    prov = io.provenance("circuit_summary", s["seed"], s)
    tables = ((args.stats, args.out_stats), (args.hits, args.out_hits), (args.transplants, args.out_transplant))
    for paths, out in tables:
        io.write_parquet(pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True), out, prov)


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


__all__ = ["ACTIONS", "add_arguments", "run", "transplant_sources"]
