"""Measure every checkpoint of a stream run: what the model knows, and the circuits that hold it.

A run's checkpoints are its start model (step 0) and the step-SSSSSS folders its training job wrote.
At each, with the main study's own machinery and settings:
- accuracy: top-1 and Hit@k of the first answer token on every probed fact's query prompts
  (kcircuits.evaluate.knowledge.query_items, without generation), averaged per fact;
- circuits: EAP-IG scores of every circuit cell (task x type x frequency group, at most max_pairs
  pairs each), the circuit at every edge budget, and its Hit@k under every ablation on its own
  cell's prompts (with the full model's Hit@k beside it).
One job measures a whole run: the models are small next to the cost of starting a job per checkpoint.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..vocabulary import CELL, budget_label, budget_value, parse_cell_key, parse_checkpoint

log = logging.getLogger("kcircuits.interplay")

FACT = ["target", "entity_id", "type", "freq_group", "attribute"]


def run_checkpoints(start: str | Path, folder: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of a run's checkpoints in training order: the start model as step 0, then
    every step-SSSSSS in `folder`."""
    steps = sorted((parse_checkpoint(p.name)[1], p) for p in Path(folder).iterdir() if p.name.startswith("step-"))
    if not steps:
        raise ValueError(f"{folder}: no step-SSSSSS checkpoints")
    return [(0, Path(start)), *steps]


def select_facts(probes: pd.DataFrame, pairs: pd.DataFrame, facts: pd.DataFrame,
                 tasks: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """The probes, circuit pairs (by their clean subject) and circuit tasks of the facts a run is
    measured on (facts: entity_id, attribute)."""
    keys = facts[["entity_id", "attribute"]].drop_duplicates()
    probes = probes.merge(keys, on=["entity_id", "attribute"])
    pairs = pairs.merge(keys.rename(columns={"entity_id": "clean_entity_id", "attribute": "task"}),
                        on=["clean_entity_id", "task"])
    return probes, pairs, {t: p for t, p in tasks.items() if t in set(keys["attribute"])}


def fact_accuracy(hf_model, tok, probes: pd.DataFrame, hit_k: int, batch_size: int) -> pd.DataFrame:
    """Per fact (FACT columns): top1 and hit_at_k of its query prompts, and how many there are."""
    from ..evaluate.knowledge import query_items

    items = query_items(hf_model, tok, probes, np.zeros(len(probes), dtype=bool), "query", hit_k, 1, batch_size)
    items = items.rename(columns={"query_top1": "top1", f"query_hit@{hit_k}": "hit_at_k"})
    grouped = items.groupby(FACT, sort=True, dropna=False)
    return grouped[["top1", "hit_at_k"]].mean().join(grouped.size().rename("n_prompts")).reset_index()


def circuit_tables(model, tok, pairs: pd.DataFrame, probes: pd.DataFrame, tasks: dict[str, str], c: dict,
                   max_pairs: int | None, parts=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(in-circuit edges, Hit@k rows) of every cell's circuit at every edge budget (c: circuits
    settings; parts: batches made per group of rows, kcircuits.circuits.stage.batched)."""
    from ..circuits.attribute import attribute, pair_batches
    from ..circuits.evaluate import hit_at_k
    from ..circuits.stage import batched, encoding, hit_prompts, mean_references, pair_cells, select_circuit
    from ..circuits.store import circuits_frame

    k, on = c["hit_k"], encoding(model, c)
    prompts = hit_prompts(probes, tasks, tok, c["batch_size"], on, parts)
    means = mean_references(model, prompts, c["ablations"])
    frames, hits = [], []
    for key, part in pair_cells(pairs, max_pairs):
        cell = parse_cell_key(key)
        with model.precision(c["dtype"]):
            batches = batched(part, lambda rows: pair_batches(rows, tok, c["batch_size"], **on), parts)
            scores = attribute(model, batches, c["method"], c["ig_steps"], c["ig_points"])
        full = hit_at_k(model, None, prompts[cell], k)[f"hit_at_{k}"]
        for budget in map(budget_value, c["edge_budgets"]):
            circuit = select_circuit(scores, model.graph, budget, c["selection"])
            frames.append(circuits_frame({key: circuit}, {key: scores}).assign(budget=budget_label(budget)))
            for ablation in c["ablations"]:
                res = hit_at_k(model, circuit, prompts[cell], k, ablation, means.get(cell))
                hits.append({**dict(zip(CELL, cell)), "budget": budget_label(budget), "ablation": ablation,
                             "n_edges": circuit.n_edges, "hit_at_k": res[f"hit_at_{k}"],
                             "mean_rank": res["mean_rank"], "n_prompts": res["n_prompts"],
                             "full_model_hit_at_k": full})
    edges = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*CELL, "parent", "child", "score"])
    return edges, pd.DataFrame(hits)


def measure_run(checkpoints: list[tuple[int, Path]], tok, probes: pd.DataFrame, pairs: pd.DataFrame,
                tasks: dict[str, str], s: dict, max_pairs: int | None, device: str = "cpu") -> dict[str, pd.DataFrame]:
    """accuracy, circuits and hits of every checkpoint (s: the study's stage settings), each row led
    by seed, step and checkpoint."""
    from ..circuits.stage import load_checkpoint

    ev = s["evaluate"]
    out = {"accuracy": [], "circuits": [], "hits": []}
    for step, path in checkpoints:
        model, meta = load_checkpoint(str(path), device)
        lead = {"seed": meta["seed"], "step": step, "checkpoint": meta["checkpoint"]}
        tables = {"accuracy": fact_accuracy(model.hf, tok, probes, ev["hit_k"], ev["batch_size"])}
        tables["circuits"], tables["hits"] = circuit_tables(model, tok, pairs, probes, tasks, s["circuits"], max_pairs)
        for name, table in tables.items():
            out[name].append(table.assign(**lead)[[*lead, *table.columns]])
        log.info("step %d (%s): top-1 %.3f over %d facts", step, meta["checkpoint"],
                 tables["accuracy"]["top1"].mean(), len(tables["accuracy"]))
    return {name: pd.concat(frames, ignore_index=True) for name, frames in out.items()}
