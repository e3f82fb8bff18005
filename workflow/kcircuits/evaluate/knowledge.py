"""Run one checkpoint over every probe set and reduce the scores to tidy cells.

Each probe set becomes an *item table* (one row per scored item, 0/1 or fractional credit per metric
column, NaN where a metric does not apply), then `metrics.cell_means` averages items into cells of
(target, type, freq_group, attribute). `target` says which value was asked for: `current` (the
continual-pre-training world's value) or `original` (the base world's value of a revised entity,
which shows whether old knowledge is overwritten).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import ATTRIBUTES, io
from .metrics import cell_means, choice_credit, exact_match, hit_at, length_normalised, paired_true_false_credit
from .scoring import (answer_token_ids, check_lengths, encode, greedy_continuations, score_tokens,
                      sequence_logprob)

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
    from ..config import stage_rng

    key = stage_rng(seed, "evaluate").random(len(probes))  # [N]
    order = pd.Series(key, index=probes.index).groupby([probes["entity_id"], probes["attribute"]]).rank(method="first")
    return (order <= per_attribute).to_numpy()


def _targets(frame: pd.DataFrame, label: str, **columns) -> pd.DataFrame:
    out = frame[["entity_id", "type", "freq_group", "attribute"]].reset_index(drop=True).copy()
    out["target"] = label
    for name, values in columns.items():
        out[name] = values
    return out


def query_items(model, tok, probes: pd.DataFrame, generate: np.ndarray, prefix: str, hit_k: int,
                max_new_tokens: int, batch_size: int) -> pd.DataFrame:
    """Top-1 / Hit@k of the first answer token at the end of each prompt, and greedy exact match
    (NaN for prompts not generated), for the current value and, for revised entities, the original."""
    prompts = probes["prompt"].tolist()
    prompt_ids, full_ids, current_first = answer_token_ids(tok, prompts, probes["answer"].tolist())  # [N]
    revised = np.flatnonzero(probes["orig_answer"].notna().to_numpy())  # [R]
    original_prompt, original_full, original_first = answer_token_ids(
        tok, [prompts[i] for i in revised], probes["orig_answer"].iloc[revised].tolist())
    check_lengths(model, prompt_ids, prefix)
    seq_index = np.concatenate([np.arange(len(prompts)), revised])  # current targets, then original ones
    last = np.array([len(p) - 1 for p in prompt_ids])
    _, ranks = score_tokens(model, prompt_ids, seq_index, last[seq_index], np.concatenate([current_first, original_first]),
                            batch_size, tok.pad_token_id, want_logprob=False)
    rank_current, rank_original = ranks[: len(prompts)], ranks[len(prompts):]

    chosen = np.flatnonzero(generate)
    answer_tokens = np.array([len(f) - len(p) for p, f in zip(prompt_ids, full_ids)])  # [N]
    for i, f, o in zip(revised, original_full, original_prompt):
        answer_tokens[i] = max(answer_tokens[i], len(f) - len(o))
    texts = greedy_continuations(model, tok, [prompts[i] for i in chosen], max_new_tokens, batch_size,
                                 budgets=answer_tokens[chosen] + 1)  # + 1: the token that ends the answer
    generated = dict(zip(chosen, texts))
    em_current = np.full(len(prompts), np.nan)
    for i, text in generated.items():
        em_current[i] = exact_match(text, probes["answer"].iat[i])
    em_original = np.array([exact_match(generated[i], probes["orig_answer"].iat[i]) if i in generated else np.nan
                            for i in revised])
    cols = lambda ranks, em: {f"{prefix}_top1": hit_at(ranks, 1).astype(float),
                              f"{prefix}_hit@{hit_k}": hit_at(ranks, hit_k).astype(float), f"{prefix}_exact_match": em}
    return pd.concat([_targets(probes, "current", **cols(rank_current, em_current)),
                      _targets(probes.iloc[revised], "original", **cols(rank_original, em_original))], ignore_index=True)


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
            start = p["spans"][attr][0]
            j = int(np.searchsorted(ends, start, side="right"))  # first token ending after the span start
            tok_start = offsets[k][j][0] if j < len(ends) else None
            if tok_start is None or tok_start > start or p["text"][tok_start:start].strip() or j == 0:
                raise ValueError(f"paragraph {k} (entity {p['entity_id']}): no token starts the {attr} value")
            rows.append({"paragraph": k, "entity_id": p["entity_id"], "attribute": attr, "token": j,
                         "value_start": start})
    return ids, pd.DataFrame(rows)


def paragraph_items(model, tok, paragraphs: list[dict], entities: pd.DataFrame, metric: str, text_target: str,
                    batch_size: int, original_of_revised: bool) -> pd.DataFrame:
    """First-token accuracy of attribute values inside held-out paragraphs: is each value's first
    token top-1 (metrics.target_rank 0) at the position before it? With `original_of_revised`, revised
    entities' original values are also scored at the same positions (target 'original')."""
    ids, spans = value_token_positions(tok, paragraphs)
    check_lengths(model, ids, metric)
    meta = entities.set_index("entity_id")
    spans = spans.join(meta[["type", "freq_group"]], on="entity_id")
    spans["freq_group"] = spans["freq_group"].fillna(NO_GROUP)
    targets = np.array([ids[p][j] for p, j in zip(spans["paragraph"], spans["token"])])  # [S]
    frames = [(text_target, spans, targets)]
    if original_of_revised:
        alt = spans[spans["type"] == "revised"]
        prefixes = [paragraphs[p]["text"][: s - 1] for p, s in zip(alt["paragraph"], alt["value_start"])]
        originals = [meta.at[e, f"orig_{a}"] for e, a in zip(alt["entity_id"], alt["attribute"])]
        frames.append(("original", alt, answer_token_ids(tok, prefixes, originals)[2]))
    seq_index = np.concatenate([f[1]["paragraph"].to_numpy() for f in frames])
    position = np.concatenate([f[1]["token"].to_numpy() - 1 for f in frames])
    _, ranks = score_tokens(model, ids, seq_index, position, np.concatenate([f[2] for f in frames]), batch_size,
                            tok.pad_token_id, want_logprob=False)
    out, used = [], 0
    for label, table, _ in frames:
        out.append(_targets(table, label, **{metric: hit_at(ranks[used:used + len(table)], 1).astype(float)}))
        used += len(table)
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
    pairs = frame.pivot_table(index=["entity_id", "attribute"], columns="label", values="loglik", aggfunc=["first", "size"])
    if not ((pairs["size"] == 1).all().all() and set(pairs["size"].columns) == {True, False}):
        raise ValueError("true/false items must come in pairs: one true and one false statement per entity and attribute")
    credit = pd.Series(paired_true_false_credit(pairs[("first", True)].to_numpy(), pairs[("first", False)].to_numpy()),
                       index=pairs.index, name="tf_accuracy")
    frame = frame.join(credit, on=["entity_id", "attribute"])  # both statements of a pair share the credit
    return _targets(frame, "current", tf_accuracy=frame["tf_accuracy"].to_numpy())


def evaluate_checkpoint(model, tok, inputs: EvalInputs, settings: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All metrics of one model. Returns (cells: CELL_KEYS + metric, value, n, chance;
    entity table: one row per (target, entity, attribute) with per-entity accuracies for heatmaps)."""
    ev = settings["evaluate"]
    bs, k, new_tokens = ev["batch_size"], ev["hit_k"], ev["max_new_tokens"]
    timings, parts = {}, {}

    def timed(name, func, *args):
        t0 = time.perf_counter()
        parts[name] = func(*args)
        timings[name] = round(time.perf_counter() - t0, 2)

    per_attr = ev["generate_templates"]
    timed("query", query_items, model, tok, inputs.probes, generation_mask(inputs.probes, per_attr, settings["seed"]),
          "query", k, new_tokens, bs)
    timed("paraphrase", query_items, model, tok, inputs.paraphrase,
          generation_mask(inputs.paraphrase, per_attr, settings["seed"]), "paraphrase", k, new_tokens, bs)
    timed("bio", paragraph_items, model, tok, inputs.bios_val, inputs.entities, "bio_first_token", "current", bs, True)
    timed("base", paragraph_items, model, tok, inputs.base_val, inputs.entities, "base_first_token", "original", bs, False)
    timed("multiple_choice", multiple_choice_items, model, tok, inputs.multiple_choice, bs)
    timed("true_false", true_false_items, model, tok, inputs.true_false, bs)
    log.info("evaluation seconds per probe set: %s", timings)

    cells = pd.concat([cell_means(items, CELL_KEYS, [c for c in items.columns if c not in CELL_KEYS + ["entity_id"]])
                       for items in parts.values()], ignore_index=True)
    mc_chance = float(np.mean([1 / len(it["options"]) for it in inputs.multiple_choice]))
    chance = {"mc_accuracy": mc_chance, "mc_accuracy_norm": mc_chance, "tf_accuracy": TRUE_FALSE_CHANCE}
    cells["chance"] = cells["metric"].map(chance).astype(float)
    return cells, entity_table(parts["query"], parts["bio"])


def entity_table(query: pd.DataFrame, bio: pd.DataFrame) -> pd.DataFrame:
    """Per (target, entity, attribute): query top-1 and exact match averaged over the entity's
    prompts, and first-token accuracy in its held-out paragraph(s)."""
    keys = ["target", "entity_id", "type", "freq_group", "attribute"]
    q = query.groupby(keys)[["query_top1", "query_exact_match"]].mean()
    b = bio.groupby(keys)[["bio_first_token"]].mean()
    return q.join(b, how="left").reset_index()

