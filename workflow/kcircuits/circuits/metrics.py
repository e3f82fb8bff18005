"""Metrics shared by attribution and circuit evaluation.

Sign convention: the logit difference is logit(clean label) - logit(corrupted label), read at each
item's last prompt position on the first token of each label. It is positive when the model prefers
the clean answer. (The original study minimises its negative; see attribute.py for why the edge
scores come out identical.) The rank of a label is kcircuits.evaluate.metrics.target_rank.
"""
from __future__ import annotations

import math

import torch


def logit_difference(logits: torch.Tensor, clean_label: torch.Tensor, corrupted_label: torch.Tensor) -> torch.Tensor:
    """logits [B, V] at the last position; labels [B] token ids -> [B]."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, clean_label] - logits[rows, corrupted_label]


def edge_entropy(scores: torch.Tensor, edges: torch.Tensor) -> float:
    """Shannon entropy (nats) of |score| normalised over the in-circuit edges.

    High entropy = importance spread evenly over the circuit's edges; low = a few edges dominate.
    NaN for an empty circuit or one whose edges all score 0 (no distribution to speak of).
    """
    magnitude = scores[edges].abs().double()
    total = magnitude.sum()
    if magnitude.numel() == 0 or total == 0:
        return math.nan
    p = magnitude[magnitude > 0] / total
    return float(-(p * p.log()).sum())


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks with ties sharing their mean rank (as Spearman's rho needs)."""
    order = x.argsort()
    sorted_x = x[order]
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(len(x), dtype=torch.float64, device=x.device)
    _, inverse, counts = torch.unique_consecutive(sorted_x, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() + 1) / 2  # mean of the 0-based positions of each tie group
    ranks[order] = mean_rank[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two equal-length 1-D tensors."""
    ra, rb = _ranks(a.flatten()), _ranks(b.flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))
