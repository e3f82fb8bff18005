"""The circuit pipeline on a set of pairs: EAP-IG scores of every circuit cell, its circuit at every
edge budget, and that circuit's Hit@k under every ablation on the cell's own prompts, with the main
study's machinery and settings. Used by the studies that find circuits of other models or subsets
(stream runs, RECKONING's theta', document memory).
"""
from __future__ import annotations

import pandas as pd

from ..vocabulary import CELL, budget_label, budget_value, parse_cell_key


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


__all__ = ["circuit_tables"]
