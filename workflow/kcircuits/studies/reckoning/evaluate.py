"""Evaluate a trained method on the test contexts: answers, the inner-step sweep, recitation, time.

- answers: per question, exact (greedy decoding reproduces the answer: reckoning.batches.
  answer_scores, teacher-forced) and the first answer token's rank. Encoded methods are read after
  0, 1, ..., max_steps inner steps (0: theta itself, nothing encoded); the in-context methods once
  (steps 0), with their context in the prompt.
- recitation (encoded methods): per relevant fact at every step, whether theta' regenerates its
  value exactly from the fact's sentence up to the value.
- timing: wall time to answer k questions about one context -- encode once, then k prompts without
  the facts (encoded), or k prompts each with the facts in context (the others).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from . import ENCODED
from .batches import answer_scores, relevant_facts
from .inner import LearnedRates, encode, encode_steps, forward
from .train import prompts


def _scores(model, params: dict, batch: dict) -> tuple[np.ndarray, np.ndarray]:
    exact, rank = answer_scores(forward(model, params, batch), batch["labels"])
    return exact.cpu().numpy(), rank.cpu().numpy()


def _trajectory(model, rates: LearnedRates, batches: dict, method: str, inner: dict, max_steps: int):
    """(steps, params, prompt batch) at which a method answers: encoded, theta'_0 ... theta'_max;
    in context, the model as it is (steps 0)."""
    batch = prompts(batches, method)
    yield 0, {}, batch
    if method in ENCODED:
        for k, params in enumerate(
                encode_steps(model, rates, batches["facts"], max_steps, True, inner["optimizer"]), 1):
            yield k, params, batch


def evaluate_contexts(model, rates: LearnedRates, prepared: list[dict], method: str, inner: dict,
                      max_steps: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(answers, recitation) rows of every prepared context ({"context", "questions", "batches"})."""
    answers, recitation = [], []
    with torch.no_grad():
        for item in prepared:
            ctx, questions = item["context"], item["questions"]
            lead = {"context_id": int(ctx["context_id"]), "entity_id": int(ctx["entity_id"]),
                    "distractors": int(ctx["distractors"])}
            relevant = relevant_facts(questions)
            for k, params, batch in _trajectory(model, rates, item["batches"], method, inner, max_steps):
                exact, rank = _scores(model, params, batch)
                answers += [{**lead, "attribute": q["attribute"], "hops": int(q["hops"]), "steps": k,
                             "exact": bool(e), "first_rank": int(r), "answer": q["answer"]}
                            for q, e, r in zip(questions, exact, rank)]
                if method in ENCODED:
                    hit, _ = _scores(model, params, item["batches"]["recall"])
                    recitation += [{**lead, "steps": k, "position": i, "kind": ctx["fact_kind"][i], "exact": bool(e)}
                                   for i, e in zip(relevant, hit)]
    return pd.DataFrame(answers), pd.DataFrame(recitation, columns=[
        "context_id", "entity_id", "distractors", "steps", "position", "kind", "exact"])


def _one_question(batch: dict, i: int) -> dict:
    return {name: t[i:i + 1] for name, t in batch.items()}


def time_answers(model, rates: LearnedRates, batches: dict, method: str, inner: dict, ks: list[int],
                 repeats: int = 3) -> pd.DataFrame:
    """Median wall seconds (over `repeats`) to answer k questions (cycling through the context's
    questions, one prompt each) for every k in ks: -> questions, mode, seconds."""
    encoded, batch = method in ENCODED, prompts(batches, method)
    rows = []
    with torch.no_grad():
        for k in ks:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                params = (encode(model, rates, batches["facts"], inner["steps"], True, inner["optimizer"]) if encoded
                          else {})
                for j in range(k):
                    one = _one_question(batch, j % len(batch["input_ids"]))
                    forward(model, params, one)
                times.append(time.perf_counter() - start)
            rows.append({"questions": k, "mode": "encode once" if encoded else "in context",
                         "seconds": float(np.median(times))})
    return pd.DataFrame(rows)
