"""Batches of token sequences, one way for every analysis (circuit pairs, probes, head prompts, neuron
facts, document memory): rows sorted shortest first and cut into batches (less padding; no result
depends on the order), each padded on the right with the tokenizer's pad id (kcircuits.tokenizer
.load_tokenizer makes sure there is one: EOS where the tokenizer has none).
"""
from __future__ import annotations

from typing import Sequence

import torch


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> ids [B, T_max] padded on the right, last-token index [B]."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, torch.tensor([len(s) - 1 for s in seqs], dtype=torch.long)


def by_length(rows: list, batch_size: int) -> list[list]:
    """rows sorted by the length of their first item (the tokens), shortest first (stable: equal
    lengths keep their order), in batches of batch_size."""
    rows = sorted(rows, key=lambda row: len(row[0]))
    return [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]


__all__ = ["pad_right", "by_length"]
