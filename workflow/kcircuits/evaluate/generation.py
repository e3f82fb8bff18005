"""CounterFact-style generation probe: k sampled continuations per prompt, scored by whether a target appears.

Revised entities have a value learned in the base world (`orig_answer`, the "true" fact of CounterFact)
and a changed one met in continual pre-training (`answer`, the "new" target). For each probed prompt
the model writes k continuations by plain temperature sampling (no top-k / top-p), each stopped at a
period, newline or end of text as greedy answers are (scoring.StopAtTokens), and each target is
scored by how many of the k contain it (`target_appears`):

    hits    how many of the k generations contain the target
    success hits > 0: the target in at least one of the k samples
    rate    hits / k

The pieces are generic: `sample_generations` + `probe_rows` take any prompts and any named target
columns (e.g. a single "value" target for another study's prompts); `probe_facts` picks the main
study's revised facts; `generation_probe` runs them for one checkpoint of `kcircuits evaluate`, and
`summarise_generations` joins the checkpoints (`kcircuits eval-summary`).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch
from transformers import StoppingCriteriaList

from ..stats import ALL
from .aggregate import CHECKPOINT_COLUMNS, checkpoint_order
from .scoring import StopAtTokens, check_lengths, encode, stop_token_ids

log = logging.getLogger("kcircuits.evaluate")

# The main study's targets: target_kind -> column of data/probes.parquet.
COUNTERFACT_TARGETS = {"new": "answer", "original": "orig_answer"}
# Columns of the prompt table carried into each row (those present; `prompt` is required).
KEY_COLUMNS = ["entity_id", "attribute", "type", "freq_group", "template", "prompt"]
ROW_COLUMNS = ["target_kind", "target", "generations", "hits", "success", "rate"]
SUMMARY_COLUMNS = CHECKPOINT_COLUMNS + ["target_kind", "attribute", "success", "rate", "n"]


def target_appears(text: str, target: str) -> bool:
    """Whether `target` (stripped) is a case-sensitive substring of the generated `text` (stripped)."""
    target = target.strip()
    if not target:
        raise ValueError("an empty target appears in every text; give a value")
    return target in text.strip()


@torch.inference_mode()
def sample_generations(model, tok, prompts: list[str], k: int, temperature: float, max_new_tokens: int,
                       batch_size: int, seed: int) -> list[list[str]]:
    """k sampled continuations (new text only) of each prompt -> [len(prompts)][k] strings.

    Plain temperature sampling: softmax(logits / temperature), top_k=0 and top_p=1 switch off the
    truncation transformers would otherwise apply. A batch holds about batch_size sequences
    (batch_size // k prompts, each repeated k times); prompts of similar length share a batch, left
    padded with an attention mask (as scoring.greedy_continuations). The torch generator is seeded
    with `seed` once, inside torch.random.fork_rng (the caller's random state is left alone): the same
    model, prompts, settings and seed give identical generations on a CPU (on a GPU up to its kernels'
    determinism). A different batch_size or prompt list draws differently.
    """
    if k < 1 or temperature <= 0:
        raise ValueError(f"need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    device = next(model.parameters()).device
    prompt_ids = encode(tok, prompts)
    check_lengths(model, [p + [0] * max_new_tokens for p in prompt_ids], "sampled generation")
    stopping = StoppingCriteriaList([StopAtTokens(stop_token_ids(tok))])
    per_batch = max(1, batch_size // k)  # prompts per batch
    order = np.argsort([len(p) for p in prompt_ids], kind="stable")  # similar lengths together
    out: list[list[str]] = [[] for _ in prompts]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for b0 in range(0, len(order), per_batch):
            batch = order[b0:b0 + per_batch]
            ids, mask = _left_padded([prompt_ids[i] for i in batch], tok.pad_token_id)  # [B, L] each
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                                       temperature=float(temperature), top_k=0, top_p=1.0, num_return_sequences=k,
                                       max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                       eos_token_id=tok.eos_token_id, stopping_criteria=stopping)  # [B * k, L + new]
            texts = tok.batch_decode(generated[:, ids.shape[1]:], skip_special_tokens=True)  # B * k, prompt-major
            for row, i in enumerate(batch):
                out[i] = texts[row * k:(row + 1) * k]
    return out


def _left_padded(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, both [B, L], each sequence right-aligned (left padding)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)  # [B, L]
    mask = torch.zeros((len(sequences), width), dtype=torch.long)  # [B, L]
    for row, s in enumerate(sequences):
        ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[row, width - len(s):] = 1
    return ids, mask


def probe_rows(prompts: pd.DataFrame, generations: list[list[str]],
               targets: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (prompt, target kind) whose target is given (NaN targets are skipped).

    prompts: a table with a `prompt` column (and any of KEY_COLUMNS, carried over); generations:
    [len(prompts)][k] texts from sample_generations; targets: target_kind -> column holding that
    target (default COUNTERFACT_TARGETS). Columns: the key columns present, then ROW_COLUMNS.
    """
    targets = COUNTERFACT_TARGETS if targets is None else targets
    if len(generations) != len(prompts):
        raise ValueError(f"{len(generations)} generation lists for {len(prompts)} prompts")
    keys = [c for c in KEY_COLUMNS if c in prompts.columns]
    if "prompt" not in keys:
        raise ValueError("the prompt table needs a 'prompt' column")
    rows = []
    for i, record in enumerate(prompts[keys + list(dict.fromkeys(targets.values()))].to_dict("records")):
        for kind, column in targets.items():
            target = record[column]
            if not isinstance(target, str):  # no such target for this prompt (e.g. a new entity's original)
                continue
            hits = sum(target_appears(text, target) for text in generations[i])
            k = len(generations[i])
            rows.append({**{c: record[c] for c in keys}, "target_kind": kind, "target": target,
                         "generations": list(generations[i]), "hits": hits, "success": float(hits > 0),
                         "rate": hits / k if k else np.nan})
    return pd.DataFrame(rows, columns=keys + ROW_COLUMNS).astype({"hits": "int64", "success": float, "rate": float})


def probe_facts(probes: pd.DataFrame, n_facts: int, seed: int) -> pd.DataFrame:
    """The revised facts probed at every checkpoint: up to n_facts (entity, attribute) facts with an
    original value, one prompt (template) each, in (entity_id, attribute) order.

    Drawn from kcircuits.config.stage_rng(seed, "generation_probe"), spread over attributes as evenly
    as they allow (facts shuffled, then taken round-robin across attributes); all if fewer exist.
    """
    from ..stats import stage_rng

    revised = probes[probes["orig_answer"].notna()].sort_values(["entity_id", "attribute", "template"], kind="stable")
    revised = revised.assign(_key=stage_rng(seed, "generation_probe").random(len(revised)))  # [R] a key per prompt
    one = revised.sort_values("_key", kind="stable").drop_duplicates(["entity_id", "attribute"])  # a prompt per fact
    turn = one.groupby("attribute").cumcount()  # facts in random order; round-robin across attributes
    chosen = one.loc[turn.sort_values(kind="stable").index].head(n_facts)
    return chosen.drop(columns="_key").sort_values(["entity_id", "attribute"]).reset_index(drop=True)


def generation_probe(model, tok, probes: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """The probe of one checkpoint: evaluate.generation_probe's facts, k samples each, both targets.

    Sampling is seeded with the config seed, so every checkpoint draws with the same random numbers
    (differences between checkpoints are the model's, not the sampler's). -> probe_rows' table.
    """
    ev, seed = settings["evaluate"], settings["seed"]
    gp = ev["generation_probe"]
    t0 = time.perf_counter()
    facts = probe_facts(probes, gp["facts"], seed)
    generations = sample_generations(model, tok, facts["prompt"].tolist(), gp["samples"], gp["temperature"],
                                     gp["max_new_tokens"], ev["batch_size"], seed)
    rows = probe_rows(facts, generations)
    log.info("generation probe: %d prompts x %d samples in %.2f s", len(facts), gp["samples"], time.perf_counter() - t0)
    return rows


def summarise_generations(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per checkpoint (training order) x target_kind x attribute, and over attributes ("all"): mean
    success, mean rate and n (rows). Each table: one checkpoint's probe_rows with checkpoint columns."""
    if not tables:
        raise ValueError("no generation-probe tables to summarise")
    tables = [t for t in tables if len(t)]  # a run without revised facts probes nothing
    if not tables:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    order = checkpoint_order(tables)
    rows = pd.concat(tables, ignore_index=True)
    meta = [c for c in CHECKPOINT_COLUMNS if c != "order"]
    parts = []
    for attribute in (["attribute"], []):  # per attribute, then over attributes
        part = rows.groupby(meta + ["target_kind"] + attribute, sort=False).agg(
            success=("success", "mean"), rate=("rate", "mean"), n=("success", "size")).reset_index()
        parts.append(part if attribute else part.assign(attribute=ALL))
    out = pd.concat(parts, ignore_index=True)
    out["order"] = out["checkpoint"].map(order)
    out = out.astype({"n": "int64"})[SUMMARY_COLUMNS]
    return out.sort_values(["order", "target_kind", "attribute"], kind="stable").reset_index(drop=True)


__all__ = ["COUNTERFACT_TARGETS", "target_appears", "sample_generations", "probe_rows", "probe_facts",
           "generation_probe", "summarise_generations"]
