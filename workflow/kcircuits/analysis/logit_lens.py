"""Logit lens: what each layer's residual stream already says about the answer.

The accumulated residual stream after layer l (layer -1: the embeddings alone; layer L-1: the model's
final residual) is passed through the model's own final norm and unembedding -- the norm recomputes
its scale for each layer's stream, as the reference's accumulated-residual lens does -- and read
  * at the last position: 1-based rank of the target (the clean answer's first token; 1 = top,
    ties in the target's favour: evaluate.metrics.target_rank + 1) and its softmax probability;
  * at the subject's positions: the best (minimum) rank over the subject's tokens ("rank at subject"):
    whether the answer is already readable where the entity is named, before it is moved to the end.
Layer L-1 at the last position is exactly the model's output (tests/test_components.py checks it
against the transformers logits). Per cell: mean and median rank, mean probability, mean rank at
subject, over the clean prompts of circuit_pairs.parquet.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..circuits.model import CircuitModel
from ..evaluate.metrics import target_rank
from .heads import PromptBatch, Trace


@torch.no_grad()
def lens(model: CircuitModel, tr: Trace, batch: PromptBatch) -> dict[str, torch.Tensor]:
    """rank, prob (last position) and rank_at_subject, each [L + 1, B] (row 0: the embeddings)."""
    B, T = batch.ids.shape
    position = torch.arange(T, device=batch.ids.device)[None, :]  # [1, T]
    is_last = position == batch.last[:, None]  # [B, T]
    read = is_last | (batch.subject & (position <= batch.last[:, None]))  # [B, T]
    # which prompt each read position is
    item = torch.arange(B, device=batch.ids.device)[:, None].expand(B, T)[read]  # [N]
    at_last = is_last[read]  # [N]
    labels = batch.label[item]  # [N]
    out = {"rank": [], "prob": [], "rank_at_subject": []}
    for x in tr.stream:  # [B, T, d] per layer
        logits = model.unembed(model.final_norm(x[read]))  # [N, V]: only the positions read
        rank = target_rank(logits, labels) + 1  # [N]
        prob = logits.softmax(-1).gather(1, labels[:, None])[:, 0]  # [N]
        order = item[at_last].argsort()  # one last position per prompt, in prompt order
        out["rank"].append(rank[at_last][order])
        out["prob"].append(prob[at_last][order])
        subject = ~at_last | batch.subject[item, batch.last[item]]  # the last token may be the subject's
        best = torch.full((B,), torch.iinfo(rank.dtype).max, dtype=rank.dtype, device=rank.device)
        out["rank_at_subject"].append(best.scatter_reduce(0, item[subject], rank[subject], "amin"))
    return {k: torch.stack(v) for k, v in out.items()}


class LensSums:
    """Per-prompt lens values of one cell, gathered over batches."""

    def __init__(self):
        self.parts: dict[str, list[torch.Tensor]] = {"rank": [], "prob": [], "rank_at_subject": []}

    def add(self, model: CircuitModel, tr: Trace, batch: PromptBatch) -> None:
        for key, value in lens(model, tr, batch).items():
            self.parts[key].append(value)

    def frame(self) -> pd.DataFrame:
        """One row per layer (-1 = embeddings): mean / median rank, mean probability, rank at subject."""
        rank, prob, subj = (torch.cat(self.parts[k], dim=1).double().cpu().numpy()
                            for k in ("rank", "prob", "rank_at_subject"))  # each [L + 1, N]
        return pd.DataFrame({
            "layer": np.arange(rank.shape[0]) - 1, "rank": rank.mean(1), "median_rank": np.median(rank, axis=1),
            "prob": prob.mean(1), "rank_at_subject": subj.mean(1), "n_prompts": rank.shape[1]})
