"""Stage 6: clean / corrupted prompt pairs for circuit discovery.

For each task attribute and (type, frequency group) of the probe entities, every clean subject is
paired with another subject of the same cell whose prompt has the same token length (so positions
line up when activations are patched) and whose answer starts with a different first token (else
the logit-difference metric is identically zero). This holds whether or not the world's values share
first words (values that do are ranked whole by the evaluation's full-value metrics, but a circuit's
metric compares two label tokens). Subjects with no such partner are counted in the report, never
silently dropped, and so are the same-length partners with another value passed over because it
begins with the subject's first label token, and the values of a cell that share a first label token
with another; the totals are logged.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import TYPES
from ..tokenizer import first_answer_token
from ..vocabulary import CELL, cell_key

log = logging.getLogger("kcircuits")

PAIR_COLUMNS = [*CELL, "clean_entity_id", "corrupted_entity_id", "clean_prompt",
                "corrupted_prompt", "n_tokens", "clean_label", "corrupted_label", "clean_label_token",
                "corrupted_label_token"]


def pair_cell(cell: pd.DataFrame, task: str, template: str, tok, rng: np.random.Generator) -> tuple[list[dict], dict]:
    """The pairs of one cell's subjects (rows of probe entities) and its counts."""
    prompts = [template.format(name=n) for n in cell["name"]]
    lengths = np.array([len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts], dtype=int)
    labels = np.array([first_answer_token(tok, p, v) for p, v in zip(prompts, cell[task])], dtype=int)
    values = cell[task].to_numpy()
    rows, no_length, no_label, shared = [], 0, 0, 0
    for i in range(len(cell)):
        same_len = np.flatnonzero((lengths == lengths[i]) & (np.arange(len(cell)) != i))
        ok = same_len[labels[same_len] != labels[i]]
        shared += int((values[same_len] != values[i]).sum()) - len(ok)  # other values, the same first token
        if len(same_len) == 0:
            no_length += 1
            continue
        if len(ok) == 0:
            no_label += 1
            continue
        j = int(ok[rng.integers(len(ok))])
        rows.append({
            "clean_entity_id": int(cell["entity_id"].iloc[i]), "corrupted_entity_id": int(cell["entity_id"].iloc[j]),
            "clean_prompt": prompts[i], "corrupted_prompt": prompts[j], "n_tokens": int(lengths[i]),
            "clean_label": cell[task].iloc[i], "corrupted_label": cell[task].iloc[j],
            "clean_label_token": int(labels[i]), "corrupted_label_token": int(labels[j]),
        })
    first = pd.Series(labels, index=values).groupby(level=0).first()  # per distinct value
    return rows, {"subjects": int(len(cell)), "paired": int(len(cell) - no_length - no_label),
                  "no_same_length_subject": no_length, "no_partner_with_other_label_token": no_label,
                  "partners_sharing_first_label_token": shared,
                  "values_sharing_first_label_token": int(first.duplicated(keep=False).sum())}


def circuit_pairs(tasks: dict[str, str], probe_entities: pd.DataFrame, groups: list[str], tok,
                  rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    rows, report = [], {}
    for task, template in tasks.items():
        for etype in TYPES:
            for group in groups:
                cell = probe_entities[(probe_entities["type"] == etype) & (probe_entities["freq_group"] == group)]
                found, report[cell_key(task, etype, group)] = pair_cell(cell, task, template, tok, rng)
                rows += [{"task": task, "type": etype, "freq_group": group, **r} for r in found]
    total = {k: sum(c[k] for c in report.values()) for k in ("no_same_length_subject",
                                                            "no_partner_with_other_label_token",
                                                            "partners_sharing_first_label_token")}
    log.info("circuit pairs drop %d subjects without a same-length partner and %d whose same-length partners all "
             "begin with their first label token (%d same-length partners with another value passed over for it)",
             *total.values())
    return pd.DataFrame(rows, columns=PAIR_COLUMNS), report
