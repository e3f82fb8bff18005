"""Stage 3: probe sets -- query prompts for sampled entities of every (type, frequency group).

Primary prompts are prefixes of training templates ("{name} lives in"): a small model trained from
scratch answers only in phrasing it has seen. A separate set uses held-out paraphrase templates to
measure generalisation. Answers are stored without the leading space the prompt is followed by.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import ATTRIBUTES, TYPES
from ..resources import Templates

PROBE_COLUMNS = ["entity_id", "name", "type", "freq_group", "frequency", "attribute", "template",
                 "prompt", "answer", "orig_answer"]


def sample_probe_entities(entities: pd.DataFrame, n_per_group: int, groups: list[str],
                          rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """n entities per (type, group), all of them where fewer exist; report requested vs taken."""
    taken, report = [], {}
    for etype in TYPES:
        for group in groups:
            pool = entities[(entities["type"] == etype) & (entities["freq_group"] == group)]
            k = min(n_per_group, len(pool))
            idx = np.sort(rng.choice(len(pool), size=k, replace=False)) if k else np.array([], int)
            taken.append(pool.iloc[idx])
            report[f"{etype}/{group}"] = {"requested": n_per_group, "available": int(len(pool)), "taken": int(k)}
    return pd.concat(taken).sort_values("entity_id").reset_index(drop=True), report


def probe_entities(entities: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """The entities a probe table asks about (probes: at least its entity_id column), in entity order."""
    ids = probes["entity_id"].unique()
    return entities[entities["entity_id"].isin(ids)].reset_index(drop=True)


def probe_rows(entities: pd.DataFrame, templates: Templates, paraphrase: bool) -> pd.DataFrame:
    rows = []
    for e in entities.itertuples(index=False):
        for attr in ATTRIBUTES:
            for tid, prompt in templates.probe_prompts(attr, paraphrase=paraphrase):
                rows.append({
                    "entity_id": e.entity_id, "name": e.name, "type": e.type, "freq_group": e.freq_group,
                    "frequency": e.frequency, "attribute": attr, "template": tid,
                    "prompt": prompt.format(name=e.name), "answer": getattr(e, attr),
                    "orig_answer": getattr(e, f"orig_{attr}") if e.type == "revised" else None,
                })
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)
