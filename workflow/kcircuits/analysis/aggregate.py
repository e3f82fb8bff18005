"""One tidy table across seeds and checkpoints: a row per (seed, checkpoint, task, type, frequency
group, edge budget) with every metric of the evaluation and circuit stages beside it.

Metrics that do not depend on the edge budget (knowledge evaluation, logit lens, knowledge neurons)
repeat on each budget's row; metrics that do (circuit size, faithfulness, Hit@k, Jaccard, head roles,
knowledge neurons in the circuit) are that budget's circuit. Column prefixes say where a number comes from:

    eval_*         knowledge evaluation of the task's attribute (current value; eval_original_* the
                   revised entities' base-world value), kcircuits.evaluate
    circuit_*      the cell's own circuit: size, entropy, faithfulness, Hit@k by ablation
                   (full_model_hit: the unablated model on the same prompts)
    transplant_*   Hit@k of circuits taken from other checkpoints, evaluated here
    topology_*     Jaccard to the final / previous circuit, score-weighted mean layer
    heads_*        specialised-head shares among circuit nodes
    lens_*         logit lens at the last position and best subject position
    neurons_*      knowledge neurons (kcircuits.neurons) of the cell's sampled facts of the task's
                   attribute, suffix _ig | _baseline (method), from the per-seed neuron tables:
                   neurons_per_fact, neurons_mean_layer, neurons_jaccard_prev / _final,
                   neurons_share_of_first (value target, neurons/evolution.py);
                   neurons_original_share_of_first / _share_in_value (revised facts' base-world
                   value); neurons_{suppress,amplify}_{own,random,unrelated}: mean relative change of
                   P(value) over facts (own: own prompts; random: as many random neurons, own
                   prompts; unrelated: another attribute's fact's prompts; non-finite left out);
                   per budget, neurons_circuit_share: share of the cell's knowledge neurons whose MLP
                   is a node of its circuit
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..vocabulary import CELL, budget_label
from .findings import CONDITIONS

KEYS = ["seed", "checkpoint", "order", "epoch", *CELL, "budget"]
CKPT_CELL = ["seed", "checkpoint", *CELL]  # one cell of one checkpoint of one training seed


def _concat(tables: list[pd.DataFrame]) -> pd.DataFrame:
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def evaluation_columns(summaries: list[pd.DataFrame], tasks: list[str]) -> pd.DataFrame:
    """Per (seed, checkpoint, task, type, group): every evaluation metric as an eval_* column."""
    ev = _concat(summaries)
    ev = ev[ev["attribute"].isin(tasks) & (ev["freq_group"] != "all")]
    ev = ev.assign(column=ev["target"].map({"current": "eval_", "original": "eval_original_"}) + ev["metric"])
    wide = ev.pivot_table(index=["seed", "checkpoint", "order", "epoch", "attribute", "type", "freq_group"],
                          columns="column", values="value", aggfunc="first").reset_index()
    wide.columns.name = None
    return wide.rename(columns={"attribute": "task"})


def circuit_columns(stats: list[pd.DataFrame], hits: list[pd.DataFrame], hit_k: int) -> pd.DataFrame:
    """Per (cell, budget): circuit size, entropy, faithfulness and its own cell's Hit@k by ablation."""
    st = _concat(stats)[CKPT_CELL + ["budget", "n_edges", "n_nodes", "edge_entropy", "faithfulness"]]
    st = st.rename(columns={c: f"circuit_{c}" for c in ("n_edges", "n_nodes", "edge_entropy", "faithfulness")})
    h = _concat(hits)
    own = h[(h["target_type"] == h["type"]) & (h["target_freq_group"] == h["freq_group"])]
    wide = own.pivot_table(index=CKPT_CELL + ["budget"], columns="ablation", values="hit_at_k", aggfunc="first")
    wide.columns = [f"circuit_hit@{hit_k}_{a}" for a in wide.columns]
    full = own.groupby(CKPT_CELL + ["budget"])["full_model_hit_at_k"].first().rename(f"full_model_hit@{hit_k}")
    return st.merge(wide.join(full).reset_index(), on=CKPT_CELL + ["budget"], how="left")


def transplant_columns(transplants: list[pd.DataFrame], hit_k: int) -> pd.DataFrame:
    t = _concat(transplants)
    if t.empty:
        return pd.DataFrame(columns=CKPT_CELL + ["budget"])
    t = t.assign(column=f"transplant_hit@{hit_k}_" + t["ablation"] + "_from_" + t["source_checkpoint"])
    wide = t.pivot_table(index=CKPT_CELL + ["budget"], columns="column", values="hit_at_k",
                         aggfunc="first").reset_index()
    wide.columns.name = None
    return wide


def topology_columns(topology: list[pd.DataFrame]) -> pd.DataFrame:
    """Jaccard to the final / previous circuit and the score-weighted mean layer (sizes and entropy
    are already circuit_* columns)."""
    t = _concat(topology)
    metrics = ["node_jaccard_final", "edge_jaccard_final", "node_jaccard_prev", "edge_jaccard_prev", "mean_layer"]
    if t.empty:
        return pd.DataFrame(columns=CKPT_CELL + ["budget"])
    return t[CKPT_CELL + ["budget"] + metrics].rename(columns={m: f"topology_{m}" for m in metrics})


def head_columns(roles: list[pd.DataFrame]) -> pd.DataFrame:
    """Share of mover / relation / mixture heads among each circuit's nodes."""
    r = _concat(roles)
    if r.empty:
        return pd.DataFrame(columns=CKPT_CELL + ["budget"])
    wide = r.pivot_table(index=CKPT_CELL + ["budget"], columns="role", values="proportion", aggfunc="first",
                         dropna=False)
    wide.columns = [f"heads_{role}_share" for role in wide.columns]
    return wide.reset_index()


def lens_columns(lens: list[pd.DataFrame]) -> pd.DataFrame:
    """Logit-lens mean rank of the target per layer (L-1 = embeddings), at the last position and at
    the best subject position."""
    t = _concat(lens)
    if t.empty:
        return pd.DataFrame(columns=CKPT_CELL)
    t = t.assign(layer=t["layer"].map(lambda layer: "emb" if layer < 0 else f"L{layer}"))
    wide = t.pivot_table(index=CKPT_CELL, columns="layer", values=["rank", "rank_at_subject"], aggfunc="first")
    wide.columns = [f"lens_{metric}_{layer}" for metric, layer in wide.columns]
    return wide.reset_index()


# neuron_evolution metric -> tidy column (+ _{method}), per target kind
NEURON_EVOLUTION = {"value": {"neurons_per_fact": "neurons_per_fact", "mean_layer": "neurons_mean_layer",
                              "jaccard_prev": "neurons_jaccard_prev", "jaccard_final": "neurons_jaccard_final",
                              "share_of_first": "neurons_share_of_first"},
                    "original": {"share_of_first": "neurons_original_share_of_first",
                                 "share_in_value": "neurons_original_share_in_value"}}
# (neurons, prompts) of neuron_interventions -> the condition in neurons_{operation}_{condition}_{method}
NEURON_CONDITIONS = {**CONDITIONS, ("random", "unrelated"): "random_unrelated"}


def _wide(long: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Rows (index..., column, value) -> one column per `column` (NaN kept), `attribute` renamed task."""
    if long.empty:
        return pd.DataFrame(columns=index).rename(columns={"attribute": "task"})
    wide = long.groupby([*index, "column"])["value"].mean().unstack("column")
    wide.columns.name = None
    return wide.reset_index().rename(columns={"attribute": "task"})


def neuron_columns(evolution: list[pd.DataFrame], overlap: list[pd.DataFrame],
                   interventions: list[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Knowledge-neuron columns of each cell (task = the facts' attribute): (per checkpoint cell, keyed
    CKPT_CELL: neuron_evolution metrics and intervention means; per cell and budget, keyed CKPT_CELL +
    budget: neurons_circuit_share_{method} from neuron_overlap)."""
    index = ["seed", "checkpoint", "attribute", "type", "freq_group"]
    parts = []
    ev = _concat(evolution)
    for kind, names in (NEURON_EVOLUTION.items() if len(ev) else ()):
        part = ev[ev["target_kind"] == kind].melt(id_vars=[*index, "method"], value_vars=list(names), var_name="metric")
        parts.append(part.assign(column=part["metric"].map(names) + "_" + part["method"]))
    iv = _concat(interventions)
    if len(iv):
        iv = iv.assign(condition=[NEURON_CONDITIONS.get(k) for k in zip(iv["neurons"], iv["prompts"])])
        iv = iv[iv["condition"].notna()]
        parts.append(iv.assign(column="neurons_" + iv["operation"] + "_" + iv["condition"] + "_" + iv["method"],
                               value=iv["change"].where(np.isfinite(iv["change"]))))  # p_before 0: left out
    per_cell = _wide(pd.concat([p[[*index, "column", "value"]] for p in parts], ignore_index=True)
                     if parts else pd.DataFrame(), index)
    ov = _concat(overlap)
    if len(ov):
        ov = ov.assign(budget=ov["budget"].map(budget_label), column="neurons_circuit_share_" + ov["method"],
                       value=ov["share"])
    per_budget = _wide(ov, [*index, "budget"])
    return per_cell, per_budget


def tidy_table(eval_summaries, stats, hits, transplants, topology, head_roles, lens, tasks: list[str], hit_k: int,
               neuron_evolution=(), neuron_overlap=(), neuron_interventions=()) -> pd.DataFrame:
    """Join everything on its keys; rows are the circuit cells (task x type x group x budget). The
    neuron_* tables (per seed, optional) add the neurons_* columns."""
    circuits = circuit_columns(stats, hits, hit_k)
    table = circuits.merge(evaluation_columns(eval_summaries, tasks), on=CKPT_CELL, how="left")
    table = table.merge(transplant_columns(transplants, hit_k), on=CKPT_CELL + ["budget"], how="left")
    table = table.merge(topology_columns(topology), on=CKPT_CELL + ["budget"], how="left")
    table = table.merge(head_columns(head_roles), on=CKPT_CELL + ["budget"], how="left")
    table = table.merge(lens_columns(lens), on=CKPT_CELL, how="left")
    per_cell, per_budget = neuron_columns(list(neuron_evolution), list(neuron_overlap), list(neuron_interventions))
    table = table.merge(per_cell, on=CKPT_CELL, how="left").merge(per_budget, on=CKPT_CELL + ["budget"], how="left")
    first = KEYS + sorted(c for c in table.columns if c.startswith("eval_"))
    rest = [c for c in table.columns if c not in first]
    return table[first + rest].sort_values(["seed", "order", "task", "type", "freq_group", "budget"],
                                           kind="stable").reset_index(drop=True)
