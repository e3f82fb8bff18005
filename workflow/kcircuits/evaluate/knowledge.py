"""Run one checkpoint over every probe set and reduce the scores to tidy cells.

Each probe set becomes an *item table* (one row per scored item, 0/1 or fractional credit per metric
column, NaN where a metric does not apply), then `metrics.cell_means` averages items into cells of
(target, type, freq_group, attribute). `target` says which value was asked for: `current` (the
continual-pre-training world's value) or `original` (the base world's value of a revised entity,
which shows whether old knowledge is overwritten). Query, paraphrase and paragraph items carry two
forms of each rank metric: first-token (`*_top1`, `*_hit@k`, `*_first_token`: the value's first
token among the vocabulary) and full-value (`*_full_top1`, `*_full_hit@k`, `*_full_mrr@k`: the whole
value among its attribute's candidates, values.py), both from one pass over each prompt.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import ATTRIBUTES, io
from .candidates import CandidateSets
from .metrics import (
    cell_means,
    choice_credit,
    exact_match,
    full_value_chance,
    full_value_columns,
    hit_at,
    length_normalised,
    paired_true_false_credit,
)
from .scoring import answer_token_ids, check_lengths, encode, greedy_continuations, sequence_logprob
from .values import ValueItems, rank_values

log = logging.getLogger("kcircuits.evaluate")

CELL_KEYS = ["target", "type", "freq_group", "attribute"]
NO_GROUP = "none"  # frequency group of background entities: never seen in continual pre-training
TRUE_FALSE_CHANCE = 0.5


@dataclass
class EvalInputs:
    entities: pd.DataFrame
    probes: pd.DataFrame
    paraphrase: pd.DataFrame
    bios_val: list[dict]
    base_val: list[dict]
    multiple_choice: list[dict]
    true_false: list[dict]


def load_inputs(entities, probes, paraphrase, bios_val, base_val, multiple_choice, true_false) -> EvalInputs:
    inputs = EvalInputs(pd.read_parquet(entities), pd.read_parquet(probes), pd.read_parquet(paraphrase),
                        io.read_jsonl(bios_val), io.read_jsonl(base_val), io.read_jsonl(multiple_choice),
                        io.read_jsonl(true_false))
    for name, table in (("probes", inputs.probes), ("paraphrase probes", inputs.paraphrase)):
        values = pd.concat([table["answer"], table["orig_answer"]]).dropna()
        bad = values[values.str.contains(r"[.\n]", regex=True)]
        if len(bad):  # greedy answers are cut at the first period/newline; such a value could never match
            raise ValueError(f"{name}: values contain a period or newline, e.g. {bad.iloc[0]!r}")
    return inputs


def generation_mask(probes: pd.DataFrame, per_attribute: int | None, seed: int) -> np.ndarray:
    """Which query prompts are also answered by greedy generation: `per_attribute` templates drawn at
    random per (entity, attribute), the same draw for every checkpoint; None keeps all. -> bool [N]"""
    if per_attribute is None:
        return np.ones(len(probes), dtype=bool)
    from ..stats import stage_rng

    key = stage_rng(seed, "evaluate").random(len(probes))  # [N]
    order = pd.Series(key, index=probes.index).groupby([probes["entity_id"], probes["attribute"]]).rank(method="first")
    return (order <= per_attribute).to_numpy()


def _targets(frame: pd.DataFrame, label: str, **columns) -> pd.DataFrame:
    out = frame[["entity_id", "type", "freq_group", "attribute"]].reset_index(drop=True).copy()
    out["target"] = label
    for name, values in columns.items():
        out[name] = values
    return out


def with_candidates(items: ValueItems, candidates: CandidateSets, chosen: np.ndarray, entity_ids: np.ndarray,
                    attributes: np.ndarray, values: list[str], own: list) -> None:
    """Give the `chosen` items their candidates and true values' places (candidates.lookup; own: each
    item's tokens of its value as its text has them)."""
    sets, items.truth[chosen] = candidates.lookup(entity_ids[chosen], attributes[chosen], [values[i] for i in chosen],
                                                  [own[i] for i in chosen])
    for i, c in zip(chosen, sets):
        items.sets[i] = c


def query_items(model, tok, probes: pd.DataFrame, generate: np.ndarray, prefix: str, hit_k: int,
                max_new_tokens: int, batch_size: int, candidates: CandidateSets | None = None,
                full: np.ndarray | None = None) -> pd.DataFrame:
    """Top-1 / Hit@k of the first answer token at the end of each prompt, and greedy exact match
    (NaN for prompts not generated), for the current value and, for revised entities, the original.
    With `candidates`, also the full-value rank among them (values.py) of the prompts in `full`
    (bool [N]; None: all), NaN elsewhere."""
    prompts = probes["prompt"].tolist()
    prompt_ids, full_ids, current_first = answer_token_ids(tok, prompts, probes["answer"].tolist())  # [N]
    revised = np.flatnonzero(probes["orig_answer"].notna().to_numpy())  # [R]
    original_prompt, original_full, original_first = answer_token_ids(
        tok, [prompts[i] for i in revised], probes["orig_answer"].iloc[revised].tolist())
    check_lengths(model, prompt_ids, prefix)
    rows = np.concatenate([np.arange(len(prompts)), revised])  # [N + R] current targets, then original ones
    anchors = np.array([len(p) for p in prompt_ids], dtype=np.int64)[rows]
    items = ValueItems(rows, anchors, np.concatenate([current_first, original_first]), [None] * len(rows),
                       np.zeros(len(rows), dtype=np.int64))
    if candidates is not None:
        tails = [f[a:] for f, a in zip(full_ids + original_full, anchors)]  # each value's own tokens
        check_lengths(model, [p + t[:-1] for p, t in zip([prompt_ids[r] for r in rows], tails)], f"{prefix} values")
        with_candidates(items, candidates, np.flatnonzero(np.ones(len(rows), bool) if full is None else full[rows]),
                        probes["entity_id"].to_numpy()[rows], probes["attribute"].to_numpy()[rows],
                        [*probes["answer"], *probes["orig_answer"].iloc[revised]], tails)
    ranks, value_ranks = rank_values(model, prompt_ids, items, batch_size, tok.pad_token_id, stop_at=hit_k)
    answer_tokens = np.array([len(f) - len(p) for p, f in zip(prompt_ids, full_ids)])  # [N]
    for i, f, o in zip(revised, original_full, original_prompt):
        answer_tokens[i] = max(answer_tokens[i], len(f) - len(o))
    em_current, em_original = greedy_exact_match(model, tok, probes, generate, answer_tokens, max_new_tokens,
                                                 batch_size)

    def cols(part: slice, em: np.ndarray) -> dict:
        out = {f"{prefix}_top1": hit_at(ranks[part], 1).astype(float),
               f"{prefix}_hit@{hit_k}": hit_at(ranks[part], hit_k).astype(float), f"{prefix}_exact_match": em}
        return {**out, **(full_value_columns(prefix, value_ranks[part], hit_k) if candidates is not None else {})}

    current, original = slice(0, len(prompts)), slice(len(prompts), None)
    return pd.concat([_targets(probes, "current", **cols(current, em_current)),
                      _targets(probes.iloc[revised], "original", **cols(original, em_original))], ignore_index=True)


def greedy_exact_match(model, tok, probes: pd.DataFrame, generate: np.ndarray, answer_tokens: np.ndarray,
                       max_new_tokens: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact match of the greedy continuation of the prompts in `generate` (bool [N]) with the current
    value [N] and, for revised entities, the original one [R]; NaN where not generated. answer_tokens
    [N]: the longest value's token count per prompt (the generation budget, with its end token)."""
    chosen = np.flatnonzero(generate)
    texts = greedy_continuations(model, tok, probes["prompt"].iloc[chosen].tolist(), max_new_tokens, batch_size,
                                 budgets=answer_tokens[chosen] + 1)  # + 1: the token that ends the answer
    generated = dict(zip(chosen, texts))
    em_current = np.full(len(probes), np.nan)
    for i, text in generated.items():
        em_current[i] = exact_match(text, probes["answer"].iat[i])
    revised = np.flatnonzero(probes["orig_answer"].notna().to_numpy())
    em_original = np.array([exact_match(generated[i], probes["orig_answer"].iat[i]) if i in generated else np.nan
                            for i in revised])
    return em_current, em_original


def value_token_positions(tok, paragraphs: list[dict]) -> tuple[list[list[int]], pd.DataFrame]:
    """Token ids per paragraph, and per (paragraph, attribute) the index of the value's first token.

    The value's first token is the one whose character range covers the span start (byte-level BPE
    puts the preceding space into it); only whitespace may lie between its start and the value.
    """
    ids, offsets = encode(tok, [p["text"] for p in paragraphs], offsets=True)
    rows = []
    for k, p in enumerate(paragraphs):
        ends = np.array([e for _, e in offsets[k]])  # [L]
        for attr in ATTRIBUTES:
            start, end = p["spans"][attr]
            j = int(np.searchsorted(ends, start, side="right"))  # first token ending after the span start
            tok_start = offsets[k][j][0] if j < len(ends) else None
            if tok_start is None or tok_start > start or p["text"][tok_start:start].strip() or j == 0:
                raise ValueError(f"paragraph {k} (entity {p['entity_id']}): no token starts the {attr} value")
            last = int(np.searchsorted(ends, end, side="left"))  # the token that ends the value
            rows.append({"paragraph": k, "entity_id": p["entity_id"], "attribute": attr, "token": j,
                         "value_start": start, "value": p["text"][start:end], "value_ids": ids[k][j:last + 1]})
    return ids, pd.DataFrame(rows)


def paragraph_items(model, tok, paragraphs: list[dict], entities: pd.DataFrame, prefix: str, text_target: str,
                    batch_size: int, original_of_revised: bool, candidates: CandidateSets | None = None,
                    hit_k: int = 10, full: set | None = None) -> pd.DataFrame:
    """First-token accuracy of attribute values inside held-out paragraphs ({prefix}_first_token): is
    each value's first token top-1 (metrics.target_rank 0) at the position before it? With
    `original_of_revised`, revised entities' original values are also scored at the same positions
    (target 'original'). With `candidates`, also the full-value rank there ({prefix}_full_*) of the
    entities in `full` (None: all), NaN elsewhere."""
    ids, spans = value_token_positions(tok, paragraphs)
    check_lengths(model, ids, prefix)
    meta = entities.set_index("entity_id")
    spans = spans.join(meta[["type", "freq_group"]], on="entity_id")
    spans["freq_group"] = spans["freq_group"].fillna(NO_GROUP)
    targets = np.array([ids[p][j] for p, j in zip(spans["paragraph"], spans["token"])])  # [S]
    frames = [(text_target, spans, targets, spans["value"].tolist(), spans["value_ids"].tolist())]
    if original_of_revised:
        alt = spans[spans["type"] == "revised"]
        prefixes = [paragraphs[p]["text"][: s - 1] for p, s in zip(alt["paragraph"], alt["value_start"])]
        originals = [meta.at[e, f"orig_{a}"] for e, a in zip(alt["entity_id"], alt["attribute"])]
        first = answer_token_ids(tok, prefixes, originals)[2]
        frames.append(("original", alt, first, originals, [[f] for f in first]))
    table = pd.concat([f[1] for f in frames], ignore_index=True)
    items = ValueItems(table["paragraph"].to_numpy(), table["token"].to_numpy(), np.concatenate([f[2] for f in frames]),
                       [None] * len(table), np.zeros(len(table), dtype=np.int64))
    if candidates is not None:
        chosen = table["entity_id"].isin(full).to_numpy() if full is not None else np.ones(len(table), bool)
        with_candidates(items, candidates, np.flatnonzero(chosen), table["entity_id"].to_numpy(),
                        table["attribute"].to_numpy(), [v for f in frames for v in f[3]],
                        [t for f in frames for t in f[4]])
    ranks, value_ranks = rank_values(model, ids, items, batch_size, tok.pad_token_id, stop_at=hit_k)
    out, used = [], 0
    for label, part, *_ in frames:
        got = slice(used, used + len(part))
        whole = full_value_columns(prefix, value_ranks[got], hit_k) if candidates is not None else {}
        out.append(_targets(part, label, **{f"{prefix}_first_token": hit_at(ranks[got], 1).astype(float), **whole}))
        used += len(part)
    return pd.concat(out, ignore_index=True)


def multiple_choice_items(model, tok, items: list[dict], batch_size: int) -> pd.DataFrame:
    """Each option scored as the completion of the item's cloze prompt: log P(' option' | prompt).
    `mc_accuracy` picks the highest total log-likelihood (no length normalisation); `mc_accuracy_norm`
    the highest log-likelihood per character of ' option'."""
    owner = np.repeat(np.arange(len(items)), [len(it["options"]) for it in items])  # [T] item of each option
    prompts = [items[i]["cloze_prompt"] for i in owner]
    options = [o for it in items for o in it["options"]]
    prompt_ids, full, _ = answer_token_ids(tok, prompts, options)  # also checks the prompt/option boundary
    check_lengths(model, full, "multiple choice")
    loglik = sequence_logprob(model, full, [len(p) for p in prompt_ids], batch_size, tok.pad_token_id)  # [T]
    width = max(len(it["options"]) for it in items)
    slot = np.concatenate([np.arange(len(it["options"])) for it in items])  # [T]
    total = np.full((len(items), width), np.nan)
    total[owner, slot] = loglik
    per_char = np.full((len(items), width), np.nan)
    per_char[owner, slot] = length_normalised(loglik, [len(o) + 1 for o in options])
    answer = np.array([it["answer"] for it in items])
    frame = pd.DataFrame(items)
    return _targets(frame, "current", mc_accuracy=choice_credit(total, answer),
                    mc_accuracy_norm=choice_credit(per_char, answer))


def true_false_items(model, tok, items: list[dict], batch_size: int) -> pd.DataFrame:
    """Paired true/false: a statement is called true when it is more likely (total log-likelihood,
    every token after the first) than its paired counterpart, which differs only in the value."""
    frame = pd.DataFrame(items)
    ids = encode(tok, frame["statement"].tolist())
    check_lengths(model, ids, "true/false")
    frame["loglik"] = sequence_logprob(model, ids, [1] * len(ids), batch_size, tok.pad_token_id)
    pairs = frame.pivot_table(index=["entity_id", "attribute"], columns="label", values="loglik",
                              aggfunc=["first", "size"])
    if not ((pairs["size"] == 1).all().all() and set(pairs["size"].columns) == {True, False}):
        raise ValueError("true/false items must come in pairs: one true and one false statement per entity "
                         "and attribute")
    credit = pd.Series(paired_true_false_credit(pairs[("first", True)].to_numpy(), pairs[("first", False)].to_numpy()),
                       index=pairs.index, name="tf_accuracy")
    frame = frame.join(credit, on=["entity_id", "attribute"])  # both statements of a pair share the credit
    return _targets(frame, "current", tf_accuracy=frame["tf_accuracy"].to_numpy())


def evaluate_checkpoint(model, tok, inputs: EvalInputs, settings: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All metrics of one model. Returns (cells: CELL_KEYS + metric, value, n, chance;
    entity table: one row per (target, entity, attribute) with per-entity accuracies for heatmaps)."""
    ev, seed = settings["evaluate"], settings["seed"]
    bs, k, new_tokens, fv = ev["batch_size"], ev["hit_k"], ev["max_new_tokens"], ev.get("full_value")
    timings, parts = {}, {}

    def timed(name, func, *args, **kwargs):
        t0 = time.perf_counter()
        parts[name] = func(*args, **kwargs)
        timings[name] = round(time.perf_counter() - t0, 2)

    candidates = CandidateSets(tok, inputs.entities, fv["birthday_candidates"], seed) if fv else None
    for name, probes in (("query", inputs.probes), ("paraphrase", inputs.paraphrase)):
        full = generation_mask(probes, fv["templates"], seed) if fv else None
        timed(name, query_items, model, tok, probes, generation_mask(probes, ev["generate_templates"], seed), name, k,
              new_tokens, bs, candidates=candidates, full=full)
    probed = set(inputs.probes["entity_id"])  # full-value ranks in paragraphs: the probed entities' facts
    timed("bio", paragraph_items, model, tok, inputs.bios_val, inputs.entities, "bio", "current", bs, True,
          candidates, k, probed)
    timed("base", paragraph_items, model, tok, inputs.base_val, inputs.entities, "base", "original", bs, False,
          candidates, k, probed)
    timed("multiple_choice", multiple_choice_items, model, tok, inputs.multiple_choice, bs)
    timed("true_false", true_false_items, model, tok, inputs.true_false, bs)
    log.info("evaluation seconds per probe set: %s", timings)

    cells = pd.concat([cell_means(items, CELL_KEYS, [c for c in items.columns if c not in CELL_KEYS + ["entity_id"]])
                       for items in parts.values()], ignore_index=True)
    cells["chance"] = chance_levels(cells, inputs.multiple_choice, candidates.sizes() if fv else {}, k)
    return cells, entity_table(parts["query"], parts["bio"])


def chance_levels(cells: pd.DataFrame, multiple_choice: list[dict], sizes: dict[str, int], k: int) -> np.ndarray:
    """Per cell, what guessing scores: multiple choice 1 / options, true/false 0.5, full-value metrics
    a random order of the attribute's candidates (metrics.full_value_chance); NaN for vocabulary ranks."""
    mc_chance = float(np.mean([1 / len(it["options"]) for it in multiple_choice]))
    chance = {("mc_accuracy", a): mc_chance for a in ATTRIBUTES}
    chance |= {("mc_accuracy_norm", a): mc_chance for a in ATTRIBUTES}
    chance |= {("tf_accuracy", a): TRUE_FALSE_CHANCE for a in ATTRIBUTES}
    for prefix in ("query", "paraphrase", "bio", "base"):
        for attr, n in sizes.items():
            chance |= {(m, attr): v for m, v in full_value_chance(prefix, n, k).items()}
    return np.array([chance.get(key, np.nan) for key in zip(cells["metric"], cells["attribute"])], dtype=float)


def entity_table(query: pd.DataFrame, bio: pd.DataFrame) -> pd.DataFrame:
    """Per (target, entity, attribute): query top-1 (first-token; full-value where ranked) and exact
    match averaged over the entity's prompts, and both top-1s in its held-out paragraph(s)."""
    keys = ["target", "entity_id", "type", "freq_group", "attribute"]
    q = query.groupby(keys)[[c for c in ("query_top1", "query_full_top1", "query_exact_match") if c in query]].mean()
    b = bio.groupby(keys)[[c for c in ("bio_first_token", "bio_full_top1") if c in bio]].mean()
    return q.join(b, how="left").reset_index()
