"""The RECKONING task in this world (Chen et al. 2023): contexts of facts, questions about them.

A model writes a context's facts into its weights with a few gradient steps (the inner loop) and
then answers questions about the context's entity without the facts in its prompt. Here:

  entities   fresh people (type "reckoning", names no main-world entity has), each in one split:
             train, validation or test, so no test entity's name ever reaches a train context.
  facts      one biography sentence per studied attribute, from a template whose value is its last
             placeholder (text[:value_start] is a recitation prompt naming the entity); with
             "company" studied, also the headquarters fact of the entity's company (the company
             table of `kcircuits companies`, headquarters()).
  contexts   per split, entity and distractor count d: the entity's facts plus d facts about other
             entities of the same split, shuffled together.
  questions  one-hop: an attribute of the context's entity; two-hop: the headquarters city of its
             company (needs its company fact and that company's headquarters fact).

Everything is a pure function of its inputs and the np.random.Generator passed in.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ... import ATTRIBUTES
from ...data.biographies import fill_sentence
from ...data.entities import other_entities
from ...resources import placeholders, prompt_prefix
from . import HEADQUARTERS

SPLITS = ("train", "validation", "test")
CONTEXT_COLUMNS = ["context_id", "split", "entity_id", "name", "distractors", "facts", "fact_kind", "fact_entity",
                   "fact_value", "fact_start", "random_context"]
QUESTION_COLUMNS = ["context_id", "split", "entity_id", "distractors", "attribute", "hops", "question", "answer",
                    "relevant"]


def headquarters(companies: list[str], cities: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """The company table (the two-hop facts): each company, in pool order, gets a headquarters city
    drawn uniformly from the city pool."""
    picks = rng.integers(len(cities), size=len(companies))  # [n_companies]
    return pd.DataFrame({"company": list(companies), "city": [cities[int(i)] for i in picks]})


def reckoning_entities(entities: pd.DataFrame, pools: dict, sizes: dict[str, int], years: dict,
                       rng: np.random.Generator) -> pd.DataFrame:
    """Fresh entities for the study: the entities table's columns, type "reckoning", plus `split`.

    sizes[split] entities per split, in the order train, validation, test; names unused by the
    main world (and unique), ids after the main world's largest.
    """
    if set(sizes) != set(SPLITS):
        raise ValueError(f"reckoning.entities: needs exactly the splits {list(SPLITS)}, got {sorted(sizes)}")
    counts = [int(sizes[s]) for s in SPLITS]
    if any(n < 0 for n in counts) or not sum(counts):
        raise ValueError(f"reckoning.entities: sizes must be >= 0 and not all zero, got {dict(zip(SPLITS, counts))}")
    table = other_entities(entities, pools, sum(counts), years, 0, rng)
    table["type"] = "reckoning"
    table["split"] = np.repeat(np.array(SPLITS, dtype=object), counts)
    return table


def fact_templates(templates: dict[str, list[str]], attr: str) -> list[str]:
    """The attribute's templates usable as facts: value last, after a space, name before it."""
    usable = []
    for tpl in templates[attr]:
        if sorted(placeholders(tpl)) != sorted(["name", attr]):
            continue
        cut = tpl.index("{" + attr + "}")
        if cut > 0 and tpl[cut - 1] == " " and prompt_prefix(tpl, attr) is not None:
            usable.append(tpl)
    if not usable:
        raise ValueError(f"reckoning: no biography template for {attr!r} states {{name}} before a "
                         f"space-preceded {{{attr}}}; add one")
    return usable


def attribute_fact(row, attr: str, templates: dict[str, list[str]], rng: np.random.Generator) -> dict:
    """One fact: the entity's `attr` in a randomly chosen fact template."""
    usable = fact_templates(templates, attr)
    value = str(row[attr])
    text, (start, _) = fill_sentence(usable[int(rng.integers(len(usable)))], row["name"], attr, value)
    return {"text": text, "kind": attr, "entity_id": int(row["entity_id"]), "value": value, "value_start": start}


def headquarters_fact(row, hq: dict[str, str], hq_template: str) -> dict:
    """The headquarters fact of the entity's company; value_start: the city's offset."""
    company = str(row["company"])
    city = str(hq[company])
    head, tail = hq_template.split("{city}")
    head = head.format(company=company)
    return {"text": head + city + tail.format(company=company), "kind": HEADQUARTERS,
            "entity_id": int(row["entity_id"]), "value": city, "value_start": len(head)}


def entity_facts(row, attributes: list[str], templates: dict[str, list[str]], hq: dict[str, str],
                 hq_template: str, rng: np.random.Generator) -> list[dict]:
    """The facts of one entity: one per attribute (in order), then its company's headquarters
    fact when "company" is studied. Each: text, kind, entity_id, value, value_start."""
    facts = [attribute_fact(row, attr, templates, rng) for attr in attributes]
    if "company" in attributes:
        facts.append(headquarters_fact(row, hq, hq_template))
    return facts


def _distinct_draws(rng: np.random.Generator, pool: int, k: int) -> np.ndarray:
    """k indices into range(pool), without repeats while k <= pool (then in fresh passes); [k]."""
    full, rest = divmod(k, pool)
    parts = [rng.permutation(pool) for _ in range(full)] + [rng.choice(pool, size=rest, replace=False)]
    return np.concatenate(parts).astype(np.int64)


def _check_inputs(attributes: list[str], distractor_counts: list[int]) -> list[int]:
    """ValueError on attributes that are not distinct known ones or on bad counts; the counts as ints."""
    if not attributes or len(set(attributes)) != len(attributes) or not set(attributes) <= set(ATTRIBUTES):
        raise ValueError(f"reckoning.attributes: needs distinct attributes of {list(ATTRIBUTES)}, "
                         f"got {list(attributes)}")
    counts = [int(d) for d in distractor_counts]
    if not counts or any(d < 0 for d in counts) or len(set(counts)) != len(counts):
        raise ValueError(f"reckoning.distractors: needs distinct counts >= 0, got {list(distractor_counts)}")
    return counts


def _context(rows: list, i: int, d: int, attributes: list[str], templates: dict, hq: dict,
             hq_template: str, rng: np.random.Generator) -> list[dict]:
    """Entity rows[i]'s facts plus d facts about other entities of rows, shuffled together."""
    facts = entity_facts(rows[i], attributes, templates, hq, hq_template, rng)
    others = [j for j in range(len(rows)) if j != i]
    for k in _distinct_draws(rng, len(others) * len(attributes), d) if d else []:
        j, a = divmod(int(k), len(attributes))  # a pair (other entity, attribute)
        facts.append(attribute_fact(rows[others[j]], attributes[a], templates, rng))
    return [facts[p] for p in rng.permutation(len(facts))]


def _questions(row, facts: list[dict], attributes: list[str], hq: dict, questions: dict[str, str]) -> list[dict]:
    """The context's questions (attributes order, then headquarters) with relevant positions."""
    # distractors are about other entities, so this entity's facts are its own: one per kind
    own = {f["kind"]: p for p, f in enumerate(facts) if f["entity_id"] == int(row["entity_id"])}
    out = [{"attribute": a, "hops": 1, "question": questions[a].format(name=row["name"]),
            "answer": str(row[a]), "relevant": [own[a]]} for a in attributes if a in questions]
    if "company" in attributes and HEADQUARTERS in questions:
        out.append({"attribute": HEADQUARTERS, "hops": 2, "question": questions[HEADQUARTERS].format(name=row["name"]),
                    "answer": str(hq[str(row["company"])]), "relevant": [own["company"], own[HEADQUARTERS]]})
    return out


def build_contexts(table: pd.DataFrame, attributes: list[str], distractor_counts: list[int], templates: dict,
                   hq: dict[str, str], hq_template: str, questions: dict[str, str],
                   rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contexts and questions of every split (see the module docstring); returns (contexts, questions).

    contexts: context_id, split, entity_id, name, distractors, facts, fact_kind, fact_entity,
    fact_value, fact_start, random_context. questions: context_id, split, entity_id, distractors,
    attribute, hops, question, answer, relevant (positions in the context's facts).
    """
    counts = _check_inputs(attributes, distractor_counts)
    contexts, asked = [], []
    for split in SPLITS:
        rows = [row for _, row in table[table["split"] == split].iterrows()]
        if len(rows) == 1 and max(counts) > 0:
            raise ValueError(f"reckoning.entities.{split}: distractors need at least 2 entities in the split, got 1")
        base = len(contexts)
        for i, row in enumerate(rows):
            for c, d in enumerate(counts):
                facts = _context(rows, i, d, attributes, templates, hq, hq_template, rng)
                cid = base + i * len(counts) + c
                other = -1
                if len(rows) > 1:  # another entity's context with the same d: skip the entity itself
                    other = int(rng.integers(len(rows) - 1))
                    other = base + (other + (other >= i)) * len(counts) + c
                contexts.append({
                    "context_id": cid, "split": split, "entity_id": int(row["entity_id"]), "name": row["name"],
                    "distractors": d, "facts": [f["text"] for f in facts], "fact_kind": [f["kind"] for f in facts],
                    "fact_entity": [f["entity_id"] for f in facts], "fact_value": [f["value"] for f in facts],
                    "fact_start": [int(f["value_start"]) for f in facts],
                    "random_context": other})
                lead = {"context_id": cid, "split": split, "entity_id": int(row["entity_id"]), "distractors": d}
                asked += [{**lead, **q} for q in _questions(row, facts, attributes, hq, questions)]
    return pd.DataFrame(contexts, columns=CONTEXT_COLUMNS), pd.DataFrame(asked, columns=QUESTION_COLUMNS)
