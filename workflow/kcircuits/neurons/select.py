"""Knowledge-neuron selection as the original (Dai et al. 2022, `2_get_kn.py`), on any per-prompt scores.

Neurons are flat indices over (layer, neuron): scores of one fact's bag are [P, N] (P prompts, N = L x m).
    coarse   per prompt, neurons scoring >= t x that prompt's maximum (t = 0.2 for attributions; the
             baseline method runs the same procedure on raw activations with t = 0.5); a prompt whose
             maximum is not positive has none
    refined  the fact's knowledge neurons: coarse in at least max(p x P, 3) of its prompts
    p        starts at 0.7 and moves per attribute by +-0.05, for up to 6 rounds, until the attribute's
             mean number of knowledge neurons per fact lies in [2, 5] (too few: lower p; too many: raise)
    relation-level neurons: knowledge neurons of at least 10% of the attribute's facts (the edit
             experiment leaves them out)
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from ..circuits.graph import Graph
from .facts import FACT_COLUMNS
from .store import dense

MIN_PROMPTS = 3
NEURON_COLUMNS = FACT_COLUMNS + ["target_kind", "method", "index", "layer", "neuron", "score", "n_coarse", "relation"]


def coarse(scores: np.ndarray, t: float) -> np.ndarray:
    """scores [P, N] -> bool [P, N]: per prompt, score >= t * its maximum (none if the maximum <= 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    top = scores.max(axis=1, keepdims=True)  # [P, 1]
    return (scores >= t * top) & (top > 0)


def refine(coarse_mask: np.ndarray, p: float, min_prompts: int = MIN_PROMPTS) -> np.ndarray:
    """bool [P, N] -> sorted flat indices of neurons coarse in >= max(p * P, min_prompts) prompts."""
    counts = np.asarray(coarse_mask).sum(axis=0)  # [N]
    return np.flatnonzero(counts >= max(p * coarse_mask.shape[0], min_prompts))


def select_attribute(coarse_by_fact: dict, p: float = 0.7, step: float = 0.05, rounds: int = 6,
                     band: tuple[float, float] = (2.0, 5.0), min_prompts: int = MIN_PROMPTS) -> tuple[dict, float]:
    """Knowledge neurons of every fact of one attribute ({fact: bool [P, N]} -> {fact: indices}) with the
    attribute's p after adjustment (see the module docstring)."""
    lo, hi = band
    for round_ in range(rounds + 1):
        neurons = {fact: refine(mask, p, min_prompts) for fact, mask in coarse_by_fact.items()}
        mean = float(np.mean([len(n) for n in neurons.values()])) if neurons else 0.0
        if lo <= mean <= hi or round_ == rounds:
            return neurons, p
        p = round(p - step if mean < lo else p + step, 10)
    raise AssertionError("unreachable")


def select_configured(coarse_by_fact: dict, settings: dict) -> tuple[dict, float]:
    """select_attribute with config `neurons`' share schedule and min_prompts."""
    share = settings["share"]
    return select_attribute(coarse_by_fact, share["start"], share["step"], share["rounds"], tuple(share["band"]),
                            settings["min_prompts"])


def relation_neurons(neurons_by_fact: dict, share: float = 0.1) -> np.ndarray:
    """Sorted flat indices of neurons that are knowledge neurons of >= share of the facts."""
    counts = Counter(int(i) for indices in neurons_by_fact.values() for i in indices)
    need = share * len(neurons_by_fact)
    return np.array(sorted(i for i, c in counts.items() if c >= need), dtype=np.int64)


def knowledge_neurons(prompts: pd.DataFrame, sparse: dict, n_neurons: int, d_mlp: int, settings: dict,
                      thresholds: dict[str, float]):
    """Every fact's knowledge neurons for each (target kind, method) of a checkpoint.

    prompts: prompts.parquet with its RangeIndex (row q: row q of the stored scores); sparse {method: CSR scores}
    (store.py); thresholds {method: t}; settings: config `neurons`. Returns (facts table, neurons
    table, {(target_kind, method): {fact: indices}}, {(target_kind, method): {attribute: relation-level
    indices}}), tables as the stage's contract.
    """
    facts, rows, found, relation = [], [], {}, {}
    for (kind, attr), part in prompts.groupby(["target_kind", "attribute"], sort=True):  # p is adjusted per attribute
        bags = dict(tuple(part.groupby("fact")))  # fact -> its prompt rows, once for every method
        heads = {fact: g.iloc[0][FACT_COLUMNS].to_dict() for fact, g in bags.items()}
        for method, t in thresholds.items():
            scores = {fact: dense(sparse[method], g.index.to_numpy(), n_neurons)  # [P, N]: rows of the stored scores
                      for fact, g in bags.items()}
            masks = {fact: coarse(x, t) for fact, x in scores.items()}
            neurons, p = select_configured(masks, settings)
            shared = relation_neurons(neurons, settings["relation_share"])
            found.setdefault((kind, method), {}).update(neurons)
            relation.setdefault((kind, method), {})[attr] = shared
            for fact, g in bags.items():
                idx = neurons[fact]
                head = {**heads[fact], "target_kind": kind, "method": method}
                facts.append({**head, "n_prompts": len(g), "prob": g["prob"].mean(), "p": p, "n_neurons": len(idx),
                              "n_layers": n_neurons // d_mlp,
                              "mean_layer": (idx // d_mlp).mean() if len(idx) else np.nan})
                rows.append((head, {"index": idx, "layer": idx // d_mlp, "neuron": idx % d_mlp,
                                    "score": scores[fact][:, idx].mean(0), "n_coarse": masks[fact][:, idx].sum(0),
                                    "relation": np.isin(idx, shared)}))
    return pd.DataFrame(facts), _neuron_table(rows), found, relation


def _neuron_table(rows: list[tuple[dict, dict]]) -> pd.DataFrame:
    """The neurons table from (head, {column: [n] array}) per (fact, target kind, method): the head's
    values repeated over the fact's n neurons. One frame at the end, not one per fact (the same table
    as concatenating a frame per fact)."""
    counts = np.array([len(cols["index"]) for _, cols in rows], dtype=np.int64)  # [R]
    heads = pd.DataFrame([head for head, _ in rows])  # [R]: a row per fact, its columns' types inferred once
    table = heads.loc[heads.index.repeat(counts)].reset_index(drop=True)
    for column in NEURON_COLUMNS[len(heads.columns):]:
        table[column] = np.concatenate([cols[column] for _, cols in rows])
    return table[NEURON_COLUMNS]


def circuit_overlap(neurons: pd.DataFrame, circuits: pd.DataFrame) -> pd.DataFrame:
    """Per (type, freq_group, attribute = circuit task, method, budget): how many of the cell's distinct
    knowledge neurons (value target) have their layer's MLP node (Graph.mlp_name) among the nodes of the
    cell's circuit at that budget. Attributes without a circuit task are left out."""
    cell = ["type", "freq_group", "attribute"]
    kn = neurons[neurons["target_kind"] == "value"].drop_duplicates(cell + ["method", "index"])
    edges = circuits.rename(columns={"task": "attribute"})
    rows = []
    for (etype, group, attr, budget), circuit in edges.groupby(cell + ["budget"], sort=True):
        nodes = set(circuit["parent"]) | set(circuit["child"])
        in_cell = kn[(kn["type"] == etype) & (kn["freq_group"] == group) & (kn["attribute"] == attr)]
        for method, part in in_cell.groupby("method", sort=True):
            inside = int(part["layer"].map(lambda layer: Graph.mlp_name(layer) in nodes).sum())
            rows.append({"type": etype, "freq_group": group, "attribute": attr, "method": method,
                         "budget": budget, "n_neurons": len(part), "n_in_circuit": inside,
                         "share": inside / len(part)})
    return pd.DataFrame(rows, columns=cell + ["method", "budget", "n_neurons", "n_in_circuit", "share"])
