"""Where the inner loop writes a fact: EAP-IG circuits of theta', against the main study's circuits.

For every circuit task (circuit_pairs.tasks) that is a studied attribute: a group of test entities
whose task prompt ("{name} lives in") has one token length -- so every pair lines up -- has its
facts of that attribute (the sentences of its contexts with the fewest distractors) encoded by the
trained inner loop in one context, giving theta'. On theta', with the main study's machinery and
settings (kcircuits.circuits.pipeline.circuit_tables): EAP-IG scores of the group's clean /
corrupted pairs (data.pairs.circuit_pairs: different first answer tokens), the circuit at every
edge budget and its Hit@k under every ablation. The cell is (task, "new", "encoded"): fresh
entities, their knowledge encoded rather than pre-trained.

Compared with the circuits of the main study's checkpoint the methods started from (same tasks,
every type x frequency group): the Jaccard of edge sets at the same budget, the layer profile
(in-circuit edges per parent layer over the graph's, analysis.topology.layer_ratios) and Hit@k.
"""
from __future__ import annotations

import copy

import pandas as pd
import torch

from ...analysis.topology import edge_mask, jaccard, layer_ratios, mean_layer
from ...vocabulary import CELL

ENCODED_CELL = {"type": "new", "freq_group": "encoded"}


def group_facts(contexts: pd.DataFrame, task: str, template: str, tok, size: int) -> pd.DataFrame:
    """Up to `size` test entities (entity order) whose task prompt has the most common token length,
    with their `task` fact from their context with the fewest distractors.
    -> entity_id, name, fact, value, n_tokens."""
    test = contexts[contexts["split"] == "test"].sort_values(["entity_id", "distractors"])
    rows = []
    for ctx in test.drop_duplicates("entity_id").itertuples(index=False):
        i = next(j for j, (k, e) in enumerate(zip(ctx.fact_kind, ctx.fact_entity)) if k == task and e == ctx.entity_id)
        n = len(tok(template.format(name=ctx.name), add_special_tokens=False)["input_ids"])
        rows.append({"entity_id": int(ctx.entity_id), "name": ctx.name, "fact": ctx.facts[i],
                     "value": ctx.fact_value[i], "n_tokens": n})
    table = pd.DataFrame(rows)
    common = table["n_tokens"].value_counts().sort_index().idxmax()  # the most frequent; ties: shortest
    return table[table["n_tokens"] == common].head(size).reset_index(drop=True)


def encoded_circuit_model(model, rates, tok, facts: list[str], inner: dict):
    """A CircuitModel of theta' = the inner loop's encoding of `facts` (one context) on a copy."""
    from ...checkpoint import fuse_tanh_gelu
    from ...circuits.model import CircuitModel
    from .batches import fact_rows, pad
    from .inner import encode

    batch = pad(fact_rows(tok, facts), tok.pad_token_id, model.device)
    with torch.no_grad():
        params = encode(model, rates, batch, inner["steps"], True, inner["optimizer"])
        theta = copy.deepcopy(model)
        theta.load_state_dict({name: p.detach() for name, p in params.items()}, strict=False)
    theta.set_attn_implementation("sdpa")  # as every analysis loads a model (the eager one was for training)
    return CircuitModel(fuse_tanh_gelu(theta))


def _entities(group: pd.DataFrame, task: str) -> pd.DataFrame:
    """The group as a probed-entities table (circuit pairs) and as probes (Hit@k prompts)."""
    return group.assign(**ENCODED_CELL, **{task: group["value"], "attribute": task, "answer": group["value"]})


def encoded_circuits(model, rates, tok, contexts: pd.DataFrame, tasks: dict[str, str], inner: dict, c: dict,
                     size: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(edges, hits, circuit models by task) of every task's encoded group (c: circuits settings)."""
    from ...circuits.pipeline import circuit_tables
    from ...data.pairs import circuit_pairs
    from ...stats import stage_rng

    edges, hits, models = [], [], {}
    for task, template in tasks.items():
        group = _entities(group_facts(contexts, task, template, tok, size), task)
        pairs, _ = circuit_pairs({task: template}, group, [ENCODED_CELL["freq_group"]], tok,
                                 stage_rng(seed, f"reckoning_pairs_{task}"))
        models[task] = encoded_circuit_model(model, rates, tok, list(group["fact"]), inner)
        e, h = circuit_tables(models[task], tok, pairs, group, {task: template}, c, c["max_pairs"])
        edges.append(e)
        hits.append(h.assign(n_entities=len(group), n_pairs=len(pairs)))
    return pd.concat(edges, ignore_index=True), pd.concat(hits, ignore_index=True), models


def compare_circuits(graph, encoded: pd.DataFrame, continual: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comparison, layers): per task x budget, every continual cell's circuit and the encoded one:
    n_edges, Jaccard with the encoded circuit, |score|-weighted mean layer; and their layer profiles."""
    rows, layers = [], []
    for (task, budget), enc in encoded.groupby(["task", "budget"], sort=True):
        enc_mask, enc_scores = edge_mask(graph, enc)
        cont = continual[(continual["task"] == task) & (continual["budget"] == budget)]
        cells = [(("encoded", *ENCODED_CELL.values()), enc_mask, enc_scores)]
        for (etype, group), part in cont.groupby(["type", "freq_group"], sort=True):
            cells.append((("continual", etype, group), *edge_mask(graph, part)))
        for (source, etype, group), mask, scores in cells:
            lead = {"task": task, "budget": budget, "source": source, "type": etype, "freq_group": group}
            rows.append({**lead, "n_edges": int(mask.sum()), "jaccard_with_encoded": jaccard(mask, enc_mask),
                         "mean_layer": mean_layer(graph, mask, scores)})
            layers.append(layer_ratios(graph, mask).assign(**lead))
    lead = ["task", "budget", "source", "type", "freq_group"]
    table = pd.concat(layers, ignore_index=True) if layers else pd.DataFrame(columns=[*lead, "layer"])
    return pd.DataFrame(rows), table[[*lead, *[col for col in table.columns if col not in lead]]]


def continual_hits(hits: pd.DataFrame, tasks) -> pd.DataFrame:
    """The main study's Hit@k rows of its circuits on their own cell's prompts, for `tasks`."""
    own = (hits["target_type"] == hits["type"]) & (hits["target_freq_group"] == hits["freq_group"])
    keep = [*CELL, "budget", "ablation", "hit_at_k"]
    return hits[own & hits["task"].isin(list(tasks))][keep].assign(source="continual").reset_index(drop=True)

