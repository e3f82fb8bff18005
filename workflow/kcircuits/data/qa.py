"""Stage 4: question-answering formats for the probe entities.

Multiple choice: a question, n options (the true value plus distractors drawn from the same
attribute's pool, never equal to it), the answer index, and a cloze prompt (a training-template
prefix) for scoring options as completions. True/false: for every (entity, attribute) one true and
one false statement from the same template, the false one with a swapped value, so the classes are
exactly balanced and paired.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import ATTRIBUTES
from ..resources import ATTRIBUTE_POOLS, Templates


def value_pools(pools: dict, entities: pd.DataFrame) -> dict[str, list[str]]:
    """Candidate values per attribute: shipped pools; birthdays from every date in the world."""
    out = {attr: list(pools[name]) for attr, name in ATTRIBUTE_POOLS.items()}
    dates = pd.concat([entities["birthday"], entities["orig_birthday"]]).dropna().unique()
    out["birthday"] = sorted(dates)
    return out


def other_values(rng: np.random.Generator, pool: list[str], truth: str, k: int) -> list[str]:
    candidates = [v for v in pool if v != truth]
    if len(candidates) < k:
        raise ValueError(f"need {k} values other than {truth!r} but the pool has {len(candidates)}")
    return [candidates[i] for i in rng.choice(len(candidates), size=k, replace=False)]


def multiple_choice(rng: np.random.Generator, probe_entities: pd.DataFrame, templates: Templates,
                    pools: dict[str, list[str]], n_options: int) -> list[dict]:
    items = []
    for e in probe_entities.itertuples(index=False):
        for attr in ATTRIBUTES:
            truth = getattr(e, attr)
            options = [truth, *other_values(rng, pools[attr], truth, n_options - 1)]
            order = rng.permutation(n_options)
            options = [options[i] for i in order]
            questions = templates.multiple_choice[attr]
            prompts = templates.probe_prompts(attr)
            items.append({
                "entity_id": int(e.entity_id), "type": e.type, "freq_group": e.freq_group, "attribute": attr,
                "question": questions[int(rng.integers(len(questions)))].format(name=e.name),
                "cloze_prompt": prompts[int(rng.integers(len(prompts)))][1].format(name=e.name),
                "options": options, "answer": int(np.flatnonzero(order == 0)[0]),
            })
    return items


def true_false(rng: np.random.Generator, probe_entities: pd.DataFrame, templates: Templates,
               pools: dict[str, list[str]]) -> list[dict]:
    items = []
    for e in probe_entities.itertuples(index=False):
        for attr in ATTRIBUTES:
            truth = getattr(e, attr)
            statements = templates.true_false[attr]
            tid = int(rng.integers(len(statements)))
            false_value = other_values(rng, pools[attr], truth, 1)[0]
            for value, label in ((truth, True), (false_value, False)):
                items.append({
                    "entity_id": int(e.entity_id), "type": e.type, "freq_group": e.freq_group,
                    "attribute": attr, "template": tid, "label": label, "value": value,
                    "statement": statements[tid].format(name=e.name, **{attr: value}),
                })
    return items
