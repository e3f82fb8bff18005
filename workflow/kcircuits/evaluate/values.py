"""Ranks of true values at positions in token sequences: the first answer token among the vocabulary
(the first-token metrics) and the whole value among its candidates (the full-value metrics).

A candidate value's score is log P(' value' | context), the sum of its tokens' log-probabilities
after the context (candidates.py: which values, and their prefix trie). Its full-value rank is the
number of candidates scoring strictly higher (ties in the truth's favour, as metrics.target_rank).
The candidates share the context's forward pass and their common prefixes (trees.TreeBatch):

1. one pass over each context plus the trie nodes above its true values gives the first-token rank,
   every candidate's first-token log-prob and the true value's score S;
2. then, pass by pass, trie nodes are expanded (fed as tokens on the cached keys and values) best
   first. A value never scores above its own prefix (log-probs are <= 0), so a node whose prefix
   scores at most S can hold no candidate above the truth and is never expanded; and once `stop_at`
   candidates are known to score above S the rank is known to be at least `stop_at`.
Ranks are exact below `stop_at` and reported as `stop_at` at or above it, which is all that top-1,
Hit@k and MRR@k (k <= stop_at) need. A model that knows the fact prunes nearly everything after the
first pass; one that does not stops after about `stop_at` expansions per item.
"""
from __future__ import annotations

import numpy as np
import torch

from .trees import TreeBatch, ValueItems, read_positions

__all__ = ["ValueItems", "candidate_scores", "rank_values"]


def _first_pass(model, batch: TreeBatch, first: np.ndarray, fed: np.ndarray) -> np.ndarray:
    """Run the contexts with the `fed` nodes, score every depth-1 node and the children of the fed
    ones. Returns the first-token ranks of the items [n]."""
    hidden, n = batch.first_pass(fed), len(first)
    root_lane, root_col, roots = batch.children_queries(None)
    kid_lane, kid_col, kids = batch.children_queries(fed)
    lanes = np.concatenate([batch.lane[batch.item_row], root_lane, kid_lane])
    cols = np.concatenate([batch.item_anchor - 1, root_col, kid_col])
    target = np.concatenate([first, batch.token[roots], batch.token[kids]])
    logprob, rank = read_positions(model, hidden, 0, lanes, cols, target, np.arange(len(lanes)) < n)
    batch.take_scores(np.concatenate([roots, kids]), logprob[n:])
    return rank[:n]


def _truth_paths(batch: TreeBatch) -> np.ndarray:
    """The nodes above every item's true value (its proper prefixes), parents first."""
    nodes, cur = [], batch.parent[batch.item_leaf[batch.item_leaf >= 0]]
    while len(cur := cur[cur >= 0]):
        nodes.append(cur)
        cur = batch.parent[cur]
    nodes = np.unique(np.concatenate(nodes)) if nodes else np.zeros(0, dtype=np.int64)
    return nodes[np.argsort(batch.depth[nodes], kind="stable")]


def _leaf_table(batch: TreeBatch) -> np.ndarray:
    """Node of every candidate per site, -1 padded. -> [S, C_max]"""
    sizes = [len(c.values) if c is not None else 0 for _, _, c in batch.sites]
    table = np.full((len(sizes), max(sizes, default=0)), -1, dtype=np.int64)
    for s, (_, _, c) in enumerate(batch.sites):
        if c is not None:
            table[s, : len(c.values)] = batch.offset[s] + c.leaf
    return table


def _above(batch: TreeBatch, leaves: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per item: candidates of its site known to score strictly above its true value. -> [n]
    A candidate not scored yet is counted out (below the truth, or still to be expanded)."""
    scores = np.where(leaves >= 0, batch.score[np.maximum(leaves, 0)], np.nan)  # [S, C_max]
    scores = np.nan_to_num(scores, nan=-np.inf)[batch.item_site]  # [n, C_max]
    return (scores > np.nan_to_num(truth, nan=np.inf)[:, None]).sum(axis=1)


def _frontier(batch: TreeBatch, truth: np.ndarray, above: np.ndarray, expanded: np.ndarray,
              stop_at: int | None, prune: bool) -> np.ndarray:
    """The nodes to expand next, parents first: per site, its best-scoring unexpanded inner nodes
    above the lowest S of its unfinished items, as many as those items still miss to `stop_at`."""
    open_ = ~np.isnan(truth) & (above < (stop_at if stop_at is not None else np.inf))  # [n] rank not yet settled
    threshold = np.full(len(batch.sites), np.inf)  # [S]
    np.minimum.at(threshold, batch.item_site[open_], truth[open_] if prune else -np.inf)
    nodes = np.flatnonzero(batch.inner & ~expanded & (batch.score > threshold[batch.node_site]))
    if stop_at is not None and prune and len(nodes):
        need = np.zeros(len(batch.sites), dtype=np.int64)  # [S]
        np.maximum.at(need, batch.item_site[open_], stop_at - above[open_])
        nodes = nodes[np.lexsort((-batch.score[nodes], batch.node_site[nodes]))]  # by site, best first
        site = batch.node_site[nodes]
        place = np.arange(len(nodes)) - np.searchsorted(site, site, side="left")  # [n] rank within its site
        nodes = nodes[place < need[site]]
    return nodes[np.argsort(batch.depth[nodes], kind="stable")]


@torch.inference_mode()
def _rank_batch(model, batch: TreeBatch, first: np.ndarray, stop_at: int | None,
                prune: bool) -> tuple[np.ndarray, np.ndarray]:
    """First-token and full-value ranks of one batch's items (first [n]: first-token ids)."""
    fed = _truth_paths(batch)
    rank = _first_pass(model, batch, first, fed)
    if len(batch.token) == 0:
        return rank, np.full(len(first), -1, dtype=np.int64)
    truth = np.where(batch.item_leaf >= 0, batch.score[np.maximum(batch.item_leaf, 0)], np.nan)  # [n] S
    leaves, expanded = _leaf_table(batch), np.zeros(len(batch.token), dtype=bool)
    expanded[fed] = True
    while len(frontier := _frontier(batch, truth, _above(batch, leaves, truth), expanded, stop_at, prune)):
        hidden, base = batch.next_pass(frontier)
        lanes, cols, kids = batch.children_queries(frontier)
        logprob, _ = read_positions(model, hidden, base, lanes, cols, batch.token[kids], np.zeros(len(kids), bool))
        batch.take_scores(kids, logprob)
        expanded[frontier] = True
    above = _above(batch, leaves, truth)
    value_rank = above if stop_at is None else np.minimum(above, stop_at)
    return rank, np.where(np.isnan(truth), -1, value_rank)


def _row_order(lengths: np.ndarray, items: ValueItems) -> np.ndarray:
    """The chains with items: those with similar candidate tries (a pass pads every row to the one
    with the most new nodes), then of similar length, together. -> [R] chain indices"""
    nodes = np.zeros(len(lengths), dtype=np.int64)  # [chains] trie nodes of a chain's sites
    seen = set()
    for r, a, c in zip(items.row, items.anchor, items.sets):
        if c is not None and (r, a) not in seen:
            seen.add((r, a))
            nodes[r] += len(c.token)
    used = np.unique(items.row)
    return used[np.lexsort((lengths[used], nodes[used] // 16))]


def _batches(model, chains: list[list[int]], items: ValueItems, batch_size: int, pad_id: int,
             stop_at: int | None, prune: bool):
    """Per batch of chains: (its items, the batch, first-token ranks, value ranks)."""
    lengths = np.array([len(c) for c in chains])
    if len(items.row) and ((items.anchor < 1) | (items.anchor > lengths[items.row])).any():
        raise ValueError("an item's value does not follow a token of its sequence")
    order = _row_order(lengths, items)
    for b0 in range(0, len(order), batch_size):
        rows = order[b0:b0 + batch_size]
        mine = np.flatnonzero(np.isin(items.row, rows))
        batch = TreeBatch(model, chains, rows, items, mine, pad_id)
        yield (mine, batch, *_rank_batch(model, batch, items.first[mine], stop_at, prune))


def rank_values(model, chains: list[list[int]], items: ValueItems, batch_size: int, pad_id: int,
                stop_at: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First-token rank (among the vocabulary) and full-value rank (among the item's candidates; -1
    without; `stop_at` for any rank at or above it) of every item. -> ([N] int64, [N] int64)"""
    first_rank = np.full(len(items.row), -1, dtype=np.int64)
    value_rank = np.full(len(items.row), -1, dtype=np.int64)
    for mine, _, first, value in _batches(model, chains, items, batch_size, pad_id, stop_at, prune=True):
        first_rank[mine], value_rank[mine] = first, value
    return first_rank, value_rank


def candidate_scores(model, chains: list[list[int]], items: ValueItems, batch_size: int, pad_id: int) -> list:
    """Every candidate's score log P(' value' | context) per item, nothing pruned (a check of the
    batched scoring; ranks need only rank_values). -> per item [C] float64, or None without candidates"""
    out = [None] * len(items.row)
    for mine, batch, _, _ in _batches(model, chains, items, batch_size, pad_id, None, prune=False):
        for k, i in enumerate(mine):
            s = batch.item_site[k]
            if batch.sites[s][2] is not None:
                out[i] = batch.score[batch.offset[s] + batch.sites[s][2].leaf]
    return out
