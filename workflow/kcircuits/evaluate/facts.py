"""What a model knows of a set of facts, one row per fact: the probes and circuit pairs of the facts a
run is measured on, and each fact's first-token top-1 and Hit@k over its query prompts.

Used wherever a study measures a subset of the world's facts (stream runs, document memory).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

FACT = ["target", "entity_id", "type", "freq_group", "attribute"]


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
    from .knowledge import query_items

    items = query_items(hf_model, tok, probes, np.zeros(len(probes), dtype=bool), "query", hit_k, 1, batch_size)
    items = items.rename(columns={"query_top1": "top1", f"query_hit@{hit_k}": "hit_at_k"})
    grouped = items.groupby(FACT, sort=True, dropna=False)
    return grouped[["top1", "hit_at_k"]].mean().join(grouped.size().rename("n_prompts")).reset_index()


__all__ = ["FACT", "select_facts", "fact_accuracy"]
