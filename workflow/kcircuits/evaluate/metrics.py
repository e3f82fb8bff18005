"""Pure metric functions: every knowledge score is built from these, and each is checkable by hand.

Conventions shared by the evaluation (and by circuit Hit@k and the logit lens):
- the *rank* of a target token is the number of vocabulary tokens with a strictly higher logit
  (0-based; ties count in the target's favour), so rank 0 means no token scores above the target;
- top-1 means rank 0, Hit@k means rank < k;
- a choice among options (multiple choice, a true/false pair) whose best score is tied gives each
  tied option an equal share of the credit: the expected accuracy of breaking the tie at random, so a
  model that scores every option alike sits at chance instead of at 0 or 1.
"""
from __future__ import annotations

import re

import numpy as np
import torch

# A generated answer ends at its first period or newline (the sentence end of every template).
# Values therefore must not contain either; the evaluation checks this before scoring.
ANSWER_END = re.compile(r"[.\n]")


def target_rank(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank of each row's target token: how many tokens score strictly higher.
    logits [Q, V], targets [Q] (int64) -> ranks [Q] (int64)."""
    target_logit = logits.gather(1, targets[:, None])  # [Q, 1]
    return (logits > target_logit).sum(dim=1)  # [Q]


def target_logprob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under softmax(logits). logits [Q, V], targets [Q] -> [Q] (float32)."""
    return torch.log_softmax(logits.float(), dim=1).gather(1, targets[:, None]).squeeze(1)


def hit_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Whether the target is among the k highest logits. ranks [N] -> bool [N]; k=1 is top-1."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return np.asarray(ranks) < k


def full_value_columns(prefix: str, ranks: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Full-value metric columns from ranks among candidates (exact below k; -1: not ranked, NaN):
    {prefix}_full_top1 (rank 0), {prefix}_full_hit@k (rank < k) and {prefix}_full_mrr@k (1 / (rank + 1)
    for rank < k, else 0: the reciprocal rank cut at k, as Hit@k)."""
    ranks = np.asarray(ranks)
    scored, safe = ranks >= 0, np.maximum(ranks, 0)
    return {f"{prefix}_full_top1": np.where(scored, hit_at(safe, 1), np.nan),
            f"{prefix}_full_hit@{k}": np.where(scored, hit_at(safe, k), np.nan),
            f"{prefix}_full_mrr@{k}": np.where(scored, np.where(hit_at(safe, k), 1.0 / (safe + 1), 0.0), np.nan)}


def full_value_chance(prefix: str, n_candidates: int, k: int) -> dict[str, float]:
    """What ranking C candidates at random scores on the full_value_columns: 1/C, min(k, C)/C and
    the mean over r = 1..C of 1/r for r <= k (else 0)."""
    c = max(int(n_candidates), 1)
    reciprocal = 1.0 / np.arange(1, c + 1)
    return {f"{prefix}_full_top1": 1 / c, f"{prefix}_full_hit@{k}": min(k, c) / c,
            f"{prefix}_full_mrr@{k}": float(np.where(np.arange(c) < k, reciprocal, 0.0).mean())}


def cut_answer(generated: str) -> str:
    """The answer part of a greedy continuation: text before the first period or newline, stripped."""
    match = ANSWER_END.search(generated)
    return (generated[: match.start()] if match else generated).strip()


def exact_match(generated: str, answer: str) -> bool:
    """Whether a continuation, cut at its first period/newline, is exactly the value (case-sensitive)."""
    return cut_answer(generated) == answer.strip()


def choice_credit(option_scores: np.ndarray, answer: np.ndarray) -> np.ndarray:
    """Credit for picking the highest-scoring option. option_scores [N, O], answer [N] -> [N] in [0, 1].

    1 if the true option alone scores highest, 1/t if it is one of t tied best options, else 0.
    NaN scores (padding for items with fewer options) never win.
    """
    scores = np.asarray(option_scores, dtype=np.float64)
    scores = np.where(np.isnan(scores), -np.inf, scores)
    best = scores.max(axis=1, keepdims=True)  # [N, 1]
    is_best = scores == best  # [N, O]
    truth_is_best = is_best[np.arange(len(scores)), np.asarray(answer)]  # [N]
    return np.where(truth_is_best, 1.0 / is_best.sum(axis=1), 0.0)


def length_normalised(logprob_sum: np.ndarray, n_chars: np.ndarray) -> np.ndarray:
    """Log-likelihood per character of the scored text (lm-evaluation-harness's `acc_norm`)."""
    return np.asarray(logprob_sum, dtype=np.float64) / np.maximum(np.asarray(n_chars), 1)


def paired_true_false_credit(loglik_true: np.ndarray, loglik_false: np.ndarray) -> np.ndarray:
    """True/false by pairwise comparison: [P], [P] -> credit [P] in {0, 0.5, 1}.

    Each (entity, attribute) has one true and one false statement from the same template, differing
    only in the value. The model calls the more likely statement true and the other false, so both
    statements of a pair are right (1), both wrong (0), or, on a tie, each right with chance 1/2.
    """
    return choice_credit(np.stack([loglik_true, loglik_false], axis=1), np.zeros(len(loglik_true), dtype=int))


def cell_means(items, keys: list[str], value_columns: list[str]):
    """Tidy cells: the mean and count of each value column per group of `keys`.

    items: a DataFrame with one row per scored item; NaN values (not applicable to the item, e.g.
    the original value of a new entity) are left out of both mean and n. Returns columns
    keys + [metric, value, n], one row per (group, value column) with n > 0.
    """
    long = items.melt(id_vars=keys, value_vars=value_columns, var_name="metric",
                      value_name="value").dropna(subset=["value"])
    long["value"] = long["value"].astype(float)
    cells = long.groupby(keys + ["metric"], sort=True, dropna=False)["value"].agg(["mean", "size"]).reset_index()
    return cells.rename(columns={"mean": "value", "size": "n"}).astype({"n": "int64"})


def weighted_mean(values, counts) -> float:
    """Mean of cell means weighted by their item counts (the mean over all items of the cells)."""
    values, counts = np.asarray(values, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    return float((values * counts).sum() / counts.sum()) if counts.sum() > 0 else float("nan")
