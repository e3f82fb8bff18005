"""Stage 2: biography paragraphs for continual pre-training and for the base world.

A paragraph is one sentence per attribute, each from a freshly drawn template, in shuffled order.
Every paragraph records the character span of each attribute value (for first-token accuracy) and
its template choice. Validation paragraphs are fresh draws that differ from every training
paragraph of the same entity, so they are genuinely held out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import ATTRIBUTES
from ..resources import Templates

MAX_REDRAWS = 1000


def entity_values(row: pd.Series, prefix: str = "") -> dict[str, str]:
    return {attr: row[f"{prefix}{attr}"] for attr in ATTRIBUTES}


def fill_sentence(template: str, name: str, attr: str, value: str) -> tuple[str, tuple[int, int]]:
    """A template filled with name and value; returns the sentence and the value's (start, end) in it.

    The template is split at the value placeholder and located before {name} is filled, so the span
    is exact even when a name happens to contain the value as a word.
    """
    head, tail = template.split("{" + attr + "}")
    head = head.format(name=name)
    return head + value + tail.format(name=name), (len(head), len(head) + len(value))


def compose_paragraph(rng: np.random.Generator, name: str, values: dict[str, str],
                      templates: dict[str, list[str]]) -> dict:
    """One paragraph; returns its text, value spans and the (order, template ids) that made it."""
    order = [ATTRIBUTES[i] for i in rng.permutation(len(ATTRIBUTES))]
    choice = {attr: int(rng.integers(len(templates[attr]))) for attr in ATTRIBUTES}
    text, spans = "", {}
    for attr in order:
        if text:
            text += " "
        sentence, (start, end) = fill_sentence(templates[attr][choice[attr]], name, attr, values[attr])
        spans[attr] = [len(text) + start, len(text) + end]
        text += sentence
    return {"text": text, "spans": spans, "layout": [[a, choice[a]] for a in order]}


def entity_paragraphs(rng: np.random.Generator, entity_id: int, name: str, values: dict[str, str],
                      templates: dict[str, list[str]], n_train: int, n_val: int) -> tuple[list[dict], list[dict]]:
    train = [compose_paragraph(rng, name, values, templates) for _ in range(n_train)]
    seen = {p["text"] for p in train}
    val = []
    for _ in range(n_val):
        for _ in range(MAX_REDRAWS):
            p = compose_paragraph(rng, name, values, templates)
            if p["text"] not in seen:
                break
        else:
            raise RuntimeError(f"entity {entity_id}: could not draw a held-out paragraph; add templates")
        seen.add(p["text"])
        val.append(p)
    def tag(ps):
        return [{"entity_id": int(entity_id), "paragraph": i, **p} for i, p in enumerate(ps)]

    return tag(train), tag(val)


def generate_biographies(settings: dict, entities: pd.DataFrame, templates: Templates,
                         rng: np.random.Generator) -> dict[str, list[dict]]:
    """Four corpora: bios_{train,val} (continual pre-training) and base_{train,val} (base world)."""
    bio = settings["biographies"]
    n_val = bio["validation_paragraphs"]
    out: dict[str, list[dict]] = {"bios_train": [], "bios_val": [], "base_train": [], "base_val": []}
    for row in entities.itertuples(index=False):
        row = pd.Series(row._asdict())
        if row["type"] in ("new", "revised"):
            tr, va = entity_paragraphs(rng, row["entity_id"], row["name"], entity_values(row),
                                       templates.biography, int(row["frequency"]), n_val)
            out["bios_train"] += tr
            out["bios_val"] += va
        if row["type"] in ("revised", "background"):
            tr, va = entity_paragraphs(rng, row["entity_id"], row["name"], entity_values(row, "orig_"),
                                       templates.biography, bio["base_paragraphs"][row["type"]], n_val)
            out["base_train"] += tr
            out["base_val"] += va
    return out


def biographies_report(corpora: dict[str, list[dict]]) -> dict:
    return {name: {"paragraphs": len(rows), "entities": len({r["entity_id"] for r in rows}),
                   "characters": sum(len(r["text"]) for r in rows)} for name, rows in corpora.items()}
