"""Token trees through a causal LM: many continuations of one context scored without repeating it.

A row is a context (a token chain) with items at positions in it; each item's candidate values hang
off the position before it as a prefix trie (candidates.Candidates). `TreeBatch` feeds trie nodes
as tokens that see only their context and their ancestors (an attention mask per row and position
ids by depth), first together with the contexts, then pass by pass on the cached keys and values of
the rows that still need nodes (values.py decides which).
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import numpy as np
import torch

from .candidates import Candidates
from .metrics import target_rank


@dataclass
class ValueItems:
    """N items: the true value at `anchor` (its first token's index; read at anchor - 1) of chain
    `row`. first [N]: that token's id (ranked among the vocabulary); sets [N]: its candidates, or
    None for a first-token rank only; truth [N]: its index among them."""
    row: np.ndarray
    anchor: np.ndarray
    first: np.ndarray
    sets: list[Candidates | None]
    truth: np.ndarray


def tree_inputs(par: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Which tokens each token sees, and its position, in token trees. par [B, L]: the column each
    token continues (i - 1 in a plain sequence; always below i; -1: a first token or padding, which
    see only themselves at position 0). A token sees itself and its ancestors and sits at its depth,
    so a branch reads as if it were its parent's only continuation.
    Returns (seen [B, L, L] bool, position ids [B, L])."""
    b, width = par.shape
    plain = np.arange(-1, width - 1)  # [L]
    seen = torch.tril(torch.ones(width, width, dtype=torch.bool)).repeat(b, 1, 1)  # [B, L, L]
    depth = torch.arange(width).repeat(b, 1)  # [B, L]
    branched = np.flatnonzero((par != plain).any(axis=0))  # columns where some row leaves the plain chain
    rows, par_t = torch.arange(b), torch.as_tensor(par)
    for i in range(int(branched[0]) if len(branched) else width, width):  # ascending: parents are final
        p, root = par_t[:, i].clamp(min=0), par_t[:, i] < 0  # [B], [B]
        seen[:, i] = seen[rows, p] & ~root[:, None]
        seen[:, i, i] = True
        depth[:, i] = torch.where(root, 0, depth[rows, p] + 1)
    return seen, depth


def additive_mask(seen: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A 4D attention mask from seen [B, Q, K] bool: 0 where seen, the dtype's minimum elsewhere. -> [B, 1, Q, K]"""
    return torch.zeros(seen.shape, dtype=dtype).masked_fill_(~seen, torch.finfo(dtype).min)[:, None]


@functools.lru_cache(maxsize=8)
def _cache_argument(body) -> str:
    """The forward argument taking the key/value cache (transformers 5 renamed past_key_values)."""
    return "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"


class TreeBatch:
    """The contexts of one batch, every candidate node of their items, and the passes over them.

    Nodes of all sites (distinct item positions) share one numbering g [G]. The first pass runs the
    chains with the nodes above the true values; each later pass appends nodes to the cached rows
    that need any (lanes: the rows kept in the cache, in order)."""

    def __init__(self, model, chains: list[list[int]], rows: np.ndarray, items: ValueItems, mine: np.ndarray,
                 pad_id: int):
        self.model, self.pad_id = model, pad_id
        local = {int(r): b for b, r in enumerate(rows)}  # chain index -> row of the batch
        self.chains = [chains[r] for r in rows]
        self.item_row = np.array([local[int(r)] for r in items.row[mine]], dtype=np.int64)  # [n]
        self.item_anchor = items.anchor[mine]
        self.sites, self.item_site = self._sites(items, mine)
        self.site_row = np.array([r for r, _, _ in self.sites], dtype=np.int64)  # [S]
        self.site_col = np.array([a - 1 for _, a, _ in self.sites], dtype=np.int64)  # [S] read before the value
        self.offset = np.cumsum([0] + [len(c.token) if c is not None else 0 for _, _, c in self.sites])  # [S + 1]
        self.node_site = np.repeat(np.arange(len(self.sites)), np.diff(self.offset))  # [G]
        parts = [(c.token, np.where(c.parent < 0, -1, c.parent + o), c.depth, c.inner)
                 for (_, _, c), o in zip(self.sites, self.offset) if c is not None]
        def cat(k, dt):
            return np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, dtype=dt)

        self.token, self.parent = cat(0, np.int64), cat(1, np.int64)  # [G] each node's token, parent node
        self.depth, self.inner = cat(2, np.int64), cat(3, bool)  # [G]
        self.score = np.full(len(self.token), np.nan)  # [G] prefix log-prob of each node
        self.column = np.full(len(self.token), -1, dtype=np.int64)  # [G] where a node was fed
        self.item_leaf = np.array([self.offset[s] + items.sets[i].leaf[items.truth[i]] if items.sets[i] is not None
                                   else -1 for s, i in zip(self.item_site, mine)], dtype=np.int64)  # [n] truth's node
        self.lane = np.arange(len(rows))  # [B] each row's lane in the cache (-1: dropped)
        self.seen = self.position = self.cache = None  # [L, W, W] bool, [L, W], the model's key/value cache

    def _sites(self, items: ValueItems, mine: np.ndarray):
        """Distinct (row, anchor) positions of the batch's items with their candidate set."""
        sites, index = [], {}
        out = np.empty(len(mine), dtype=np.int64)
        for k, i in enumerate(mine):
            key = (int(self.item_row[k]), int(items.anchor[i]))
            if key not in index:
                index[key] = len(sites)
                sites.append((*key, items.sets[i]))
            elif sites[index[key]][2] is not items.sets[i]:
                raise ValueError(f"items at one position of chain {items.row[i]} have different candidates")
            out[k] = index[key]
        return sites, out

    def row_of(self, nodes: np.ndarray) -> np.ndarray:
        return self.site_row[self.node_site[nodes]]

    def parent_column(self, nodes: np.ndarray) -> np.ndarray:
        """Column a node's token is read from: its parent's, or the position before its anchor. -> [n]"""
        return np.where(self.parent[nodes] < 0, self.site_col[self.node_site[nodes]],
                        self.column[np.maximum(self.parent[nodes], 0)])

    def first_pass(self, fed: np.ndarray) -> torch.Tensor:
        """The chains, each followed by its fed nodes (parents first). -> hidden states [B, W, D]"""
        node_row = self.row_of(fed)
        width = max(len(c) + n for c, n in zip(self.chains, np.bincount(node_row, minlength=len(self.chains))))
        ids = np.full((len(self.chains), width), self.pad_id, dtype=np.int64)  # [B, W]
        par = np.full((len(self.chains), width), -1, dtype=np.int64)  # [B, W]
        for b, chain in enumerate(self.chains):
            ids[b, : len(chain)], par[b, : len(chain)] = chain, np.arange(-1, len(chain) - 1)
            own = fed[node_row == b]
            self.column[own] = len(chain) + np.arange(len(own))
            ids[b, self.column[own]], par[b, self.column[own]] = self.token[own], self.parent_column(own)
        if len(self.token) == 0:  # first-token ranks only: the plain causal pass, as scoring.score_tokens
            plain = torch.arange(width)[None] < torch.tensor([len(c) for c in self.chains])[:, None]  # [B, W]
            device = next(self.model.parameters()).device
            return self.model.base_model(input_ids=torch.as_tensor(ids, device=device),
                                         attention_mask=plain.long().to(device)).last_hidden_state
        self.seen, self.position = tree_inputs(par)
        return self._forward(ids, 0)

    def next_pass(self, nodes: np.ndarray) -> tuple[torch.Tensor, int]:
        """Append `nodes` (whose parents are fed) to the rows they belong to; only those rows stay in
        the cache. Returns (hidden states of the new columns [L, M, D], the first new column)."""
        rows = self.row_of(nodes)
        active = np.unique(rows)
        keep = self.lane[active]
        self.cache.reorder_cache(torch.as_tensor(keep, device=next(self.model.parameters()).device))
        seen, position = self.seen[keep], self.position[keep]  # [L, W, W], [L, W]
        self.lane[:] = -1
        self.lane[active] = np.arange(len(active))
        order = np.argsort(rows, kind="stable")
        slot = np.empty(len(nodes), dtype=np.int64)
        slot[order] = np.arange(len(nodes)) - np.searchsorted(rows[order], rows[order])  # [n] place in its row
        lanes, (n_lanes, base) = self.lane[rows], seen.shape[:2]
        width = base + int(slot.max()) + 1
        cols, parent_cols = base + slot, self.parent_column(nodes)
        self.seen = torch.zeros((n_lanes, width, width), dtype=torch.bool)
        self.seen[:, :base, :base] = seen
        self.seen[lanes, cols, :base] = seen[lanes, parent_cols]  # a node sees what its parent sees
        self.seen[:, torch.arange(base, width), torch.arange(base, width)] = True  # and itself (padding too)
        self.position = torch.cat([position, torch.zeros((n_lanes, width - base), dtype=position.dtype)], dim=1)
        self.position[lanes, cols] = position[lanes, parent_cols] + 1
        ids = np.full((n_lanes, width - base), self.pad_id, dtype=np.int64)
        ids[lanes, slot] = self.token[nodes]
        self.column[nodes] = cols
        return self._forward(ids, base), base

    @torch.inference_mode()
    def _forward(self, ids: np.ndarray, base: int) -> torch.Tensor:
        """The model over the new columns from `base` on, with the cache of the columns before. -> [L, M, D]"""
        device, dtype = next(self.model.parameters()).device, next(self.model.parameters()).dtype
        body = self.model.base_model
        out = body(input_ids=torch.as_tensor(ids, device=device),
                   attention_mask=additive_mask(self.seen[:, base:], dtype).to(device),
                   position_ids=self.position[:, base:].to(device), use_cache=True,
                   **{_cache_argument(body): self.cache})
        self.cache = out.cache if "cache" in out else out.past_key_values
        return out.last_hidden_state

    def children_queries(self, parents: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lane, column, node) of every node whose parent is in `parents` (None: the depth-1 nodes)."""
        kids = np.flatnonzero(self.parent < 0) if parents is None else np.flatnonzero(np.isin(self.parent, parents))
        return self.lane[self.row_of(kids)], self.parent_column(kids), kids

    def take_scores(self, kids: np.ndarray, logprob: np.ndarray) -> None:
        """Prefix scores of queried nodes, parents before children (a pass may score several levels)."""
        for d in np.unique(self.depth[kids]):
            at = self.depth[kids] == d
            parent = self.parent[kids[at]]
            self.score[kids[at]] = np.where(parent < 0, 0.0, self.score[np.maximum(parent, 0)]) + logprob[at]


@torch.inference_mode()
def read_positions(model, hidden: torch.Tensor, base: int, rows: np.ndarray, cols: np.ndarray, target: np.ndarray,
                   ranked: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """log p(target) (where not `ranked`) or its rank among the vocabulary (where `ranked`), read at
    (row, column) of hidden [B, L, D] whose first column is `base`. Queries at one position share its
    logits, made `chunk` positions at a time (a [chunk, V] block bounds the memory).
    Inputs [Q]; returns (logprob [Q] float64, NaN where ranked; rank [Q] int64, -1 elsewhere)."""
    rank, logprob = np.full(len(rows), -1, dtype=np.int64), np.full(len(rows), np.nan)
    where, inverse = np.unique(rows * hidden.shape[1] + cols - base, return_inverse=True)  # [U], [Q]
    device, flat = hidden.device, hidden.flatten(0, 1)  # [B * L, D]
    for u0 in range(0, len(where), chunk):
        mine = np.flatnonzero((inverse >= u0) & (inverse < u0 + chunk))  # [q] queries read in this block
        picked = flat[torch.as_tensor(where[u0:u0 + chunk], device=device)]  # [u, D]
        logits = model.get_output_embeddings()(picked).float()  # [u, V]
        at, tgt = torch.as_tensor(inverse[mine] - u0, device=device), torch.as_tensor(target[mine], device=device)
        scored = ~ranked[mine]  # [q]
        if scored.any():  # the normaliser only where a log-prob is wanted
            pick = torch.as_tensor(np.flatnonzero(scored), device=device)
            need, back = torch.unique(at[pick], return_inverse=True)  # [u'], [q']
            lse = torch.logsumexp(logits[need], dim=1)  # [u']
            logprob[mine[scored]] = (logits[at[pick], tgt[pick]] - lse[back]).double().cpu().numpy()
        if (~scored).any():
            pick = torch.as_tensor(np.flatnonzero(~scored), device=device)
            rank[mine[~scored]] = target_rank(logits[at[pick]], tgt[pick]).cpu().numpy()
    return logprob, rank
