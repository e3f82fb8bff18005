"""Specialised attention heads: each head's direct contribution to the target logit, split by source.

Decomposition (standard value-vector / direct-logit attribution). At an item's last position p, head
h of layer l writes  out_h = sum_s A[p, s] * (v_s @ W_O[h])  into the residual stream, where A is its
attention pattern and v_s = norm_attn(x_s) @ W_V[h] + b_V[h] the value vector of source s (the value
bias is inside v_s, and since the weights sum to 1 the sum over sources is exactly out_h). The final
norm is made linear by freezing its scale at the clean run's final residual x at p:
    LayerNorm:  N(c) = gamma * (c - mean(c)) / sqrt(var(x) + eps)     (+ beta, owned by no component)
    RMSNorm:    N(c) = gamma * c / sqrt(mean(x^2) + eps)
so the logit of target t splits exactly over everything that writes into x (embeddings, each
head, each MLP, attention output biases) plus the constants beta . W_U[t] (+ b_U[t]). With
u = d(logit_t)/dc of that frozen map (target_direction), source s's contribution is
    contribution(l, h, s) = A[p, s] * (v_s @ W_O[h]) . u,
and subject / relation are its sums over the subject's tokens (the entity name) and over the other
real tokens (the relation words, e.g. "lives in", including the last one). The attention output
bias b_O belongs to no head (as in circuits/model.py), so it is in neither part.

Why not the reference's heuristic (DynamicKnowledgeCircuits, ComponentAnalyzer.calculate_DLA_by_source):
it weights each source's z @ W_O by the last token's attention, unembeds it and sums the logits over
the *whole vocabulary* (bias included), then divides each part by the head's total. A sum over the
vocabulary measures how a write shifts all logits together -- which softmax ignores -- not support
for the answer, and it mixes in the unembedding bias; the ratio of two such sums can flip sign for
reasons unrelated to the target. Here both parts are in target-logit units, add up to the head's
direct contribution exactly, and are averaged over the prompts of a cell before the ratio is taken
(ratio of means: one prompt with a near-zero relation part cannot dominate the cell).

Roles (reference thresholds, analysis.heads): ratio = subject / relation;
    |ratio| > mover_ratio     -> "mover"    (moves subject information to the last position)
    |ratio| < relation_ratio  -> "relation" (reads the relation words)
    otherwise                 -> "mixture"; also when both parts are 0 (ratio undefined).
A head with relation exactly 0 and subject != 0 has ratio +-inf: a mover.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..batching import by_length, pad_right
from ..circuits.graph import Circuit, Graph
from ..circuits.model import CircuitModel
from ..tokenizer import bos_prefix
from ..vocabulary import CELL

ROLES = ("mover", "relation", "mixture")


# ---- prompts and subject spans -------------------------------------------------------------------
@dataclass
class PromptBatch:
    ids: torch.Tensor      # [B, T] right-padded clean prompts
    last: torch.Tensor     # [B] index of each prompt's last token
    label: torch.Tensor    # [B] target: first token of the clean answer
    subject: torch.Tensor  # [B, T] bool: the subject's (entity name's) tokens

    def __len__(self) -> int:
        return self.ids.shape[0]


def subject_positions(tokenizer, prompt: str, template: str) -> tuple[list[int], list[int]]:
    """Token ids of `prompt` (= template.format(name=...)) and the positions of the name's tokens.

    A token is the subject's if its characters overlap the name's (offsets of a fast tokenizer), so
    a leading space merged into the name's first token does not matter.
    """
    prefix, found, suffix = template.partition("{name}")
    if not found or not prompt.startswith(prefix) or not prompt.endswith(suffix) \
            or len(prompt) <= len(prefix) + len(suffix):
        raise ValueError(f"prompt {prompt!r} is not the task template {template!r} applied to a name")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("subject spans need a fast (Rust) tokenizer: its character offsets")
    start, end = len(prefix), len(prompt) - len(suffix)  # the name's characters [start, end)
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    positions = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < end and b > start]
    if not positions:
        raise ValueError(f"no token of {prompt!r} covers its subject {prompt[start:end]!r}")
    return list(enc["input_ids"]), positions


def prompt_batches(pairs: pd.DataFrame, template: str, tokenizer, batch_size: int, device="cpu",
                   prepend_bos: bool = False) -> list[PromptBatch]:
    """Clean prompts of one cell of circuit_pairs.parquet -> batches on `device` (shortest first, less
    padding); prepend_bos: BOS first (kcircuits.tokenizer.bos_prefix), subject positions shifted."""
    bos = bos_prefix(tokenizer, prepend_bos)
    rows = []
    for prompt, n_tokens, label in zip(pairs["clean_prompt"], pairs["n_tokens"], pairs["clean_label_token"]):
        ids, subject = subject_positions(tokenizer, prompt, template)
        if len(ids) != n_tokens:
            raise ValueError(f"{prompt!r}: {len(ids)} tokens, circuit_pairs says {n_tokens}; wrong tokenizer?")
        rows.append((bos + ids, [len(bos) + i for i in subject], int(label)))
    out = []
    for chunk in by_length(rows, batch_size):
        ids, last = pad_right([r[0] for r in chunk], tokenizer.pad_token_id)
        subject = torch.zeros(ids.shape, dtype=torch.bool)
        for b, r in enumerate(chunk):
            subject[b, r[1]] = True
        label = torch.tensor([r[2] for r in chunk])
        out.append(PromptBatch(*(t.to(device) for t in (ids, last, label, subject))))
    return out


# ---- one forward pass that keeps what both analyses need ----------------------------------------------
@dataclass
class Trace:
    """What heads and logit lens read of one forward: run's cache entries (circuits.model.CACHE)."""
    stream: torch.Tensor  # "resid" [L + 1, B, T, d]: the embeddings, then the stream after each layer
    values: torch.Tensor  # "values" [L, B, H, T, dh]
    attn: torch.Tensor    # "attn_last" [L, B, H, T]: attention from each item's last position
    logits: torch.Tensor  # [B, V] at the last position


@torch.no_grad()
def trace(model: CircuitModel, ids: torch.Tensor, last: torch.Tensor) -> Trace:
    """The full model's forward (CircuitModel.run), keeping the residual stream, the value vectors and
    the last position's attention pattern of every layer."""
    logits, cache = model.run(ids, last, cache=("resid", "values", "attn_last"))
    return Trace(cache["resid"], cache["values"], cache["attn_last"], logits)


def target_direction(model: CircuitModel, x_last: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """u [B, d]: a write c at the last position adds c . u to the target's logit, with the final
    norm's scale frozen at the clean residual x_last [B, d] (module docstring)."""
    norm = model.final_norm
    w = model.unembed.weight[label].float()  # [B, d]: the target's unembedding rows
    gamma = getattr(norm, "weight", None)
    a = w if gamma is None else w * gamma
    x = x_last.float()
    if isinstance(norm, torch.nn.LayerNorm):
        scale = (x.var(-1, unbiased=False) + norm.eps).rsqrt()  # [B]
        return (a - a.mean(-1, keepdim=True)) * scale[:, None]  # centring is self-adjoint
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    if eps is None:
        raise ValueError(f"final norm {type(norm).__name__} is neither LayerNorm nor RMSNorm")
    return a * (x.pow(2).mean(-1) + eps).rsqrt()[:, None]


def source_contributions(model: CircuitModel, tr: Trace, u: torch.Tensor) -> torch.Tensor:
    """[L, B, H, T]: each source position's share of each head's direct target-logit contribution."""
    w_o = torch.stack([layer.w_o for layer in model.layers])  # [L, H, dh, d]
    read = torch.einsum("lhed,bd->lbhe", w_o, u)  # [L, B, H, dh]: what a value vector is worth
    return tr.attn * torch.einsum("lbhte,lbhe->lbht", tr.values, read)


def split_by_source(contrib: torch.Tensor, subject: torch.Tensor, last: torch.Tensor):
    """contrib [L, B, H, T] -> (subject, relation) parts [L, B, H] each; padding carries no weight."""
    real = torch.arange(subject.shape[1], device=last.device)[None, :] <= last[:, None]  # [B, T]
    subj = subject & real
    rel = real & ~subject
    return (contrib * subj[None, :, None]).sum(-1), (contrib * rel[None, :, None]).sum(-1)


# ---- roles -------------------------------------------------------------------------------------------
def head_ratio(subject, relation) -> np.ndarray:
    """subject / relation; +-inf for a zero relation part, NaN when both are 0."""
    s, r = np.asarray(subject, dtype=float), np.asarray(relation, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return s / r


def classify(ratio, mover_ratio: float, relation_ratio: float) -> np.ndarray:
    """Role per ratio: mover if |ratio| > mover_ratio, relation if < relation_ratio, else mixture."""
    if not 0 < relation_ratio < mover_ratio:
        raise ValueError(f"need 0 < relation_ratio < mover_ratio, got {relation_ratio}, {mover_ratio}")
    mag = np.abs(np.asarray(ratio, dtype=float))
    roles = np.full(mag.shape, "mixture", dtype=object)
    roles[mag > mover_ratio] = "mover"  # NaN compares False: stays a mixture
    roles[mag < relation_ratio] = "relation"
    return roles


class HeadSums:
    """Running per-head sums over a cell's prompts (float64, so batching does not matter)."""

    def __init__(self, n_layers: int, n_heads: int, device="cpu"):
        self.subject = torch.zeros(n_layers, n_heads, dtype=torch.float64, device=device)
        self.relation = torch.zeros_like(self.subject)
        self.attention = torch.zeros_like(self.subject)  # attention mass on the subject
        self.n = 0

    def add(self, model: CircuitModel, tr: Trace, batch: PromptBatch) -> None:
        u = target_direction(model, tr.stream[-1, torch.arange(len(batch), device=batch.last.device), batch.last],
                             batch.label)  # [B, d]
        subj, rel = split_by_source(source_contributions(model, tr, u), batch.subject, batch.last)  # [L, B, H]
        self.subject += subj.sum(1).double()
        self.relation += rel.sum(1).double()
        self.attention += (tr.attn * batch.subject[None, :, None]).sum((1, 3)).double()
        self.n += len(batch)

    def frame(self, mover_ratio: float, relation_ratio: float) -> pd.DataFrame:
        """One row per head: layer, head, node name, mean subject / relation parts, ratio, role."""
        L, H = self.subject.shape
        subject = (self.subject / max(self.n, 1)).flatten().cpu().numpy()
        relation = (self.relation / max(self.n, 1)).flatten().cpu().numpy()
        ratio = head_ratio(subject, relation)
        layer, head = np.divmod(np.arange(L * H), H)
        return pd.DataFrame({
            "layer": layer, "head": head, "node": [Graph.head_name(lyr, h) for lyr, h in zip(layer, head)],
            "subject": subject, "relation": relation, "total": subject + relation, "ratio": ratio,
            "role": classify(ratio, mover_ratio, relation_ratio),
            "subject_attention": (self.attention / max(self.n, 1)).flatten().cpu().numpy(), "n_prompts": self.n})


# ---- roles inside circuits -----------------------------------------------------------------------------
def circuit_roles(heads: pd.DataFrame, circuits: pd.DataFrame, graph,
                  budgets: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Roles of the in-circuit heads of every circuit: each cell of `heads` x each budget (default:
    those in circuits.parquet). A circuit pruned to nothing has no rows in circuits.parquet; it is
    still reported (count 0, n_nodes 0, proportion NaN), so every circuit of stats.parquet has rows.

    heads: heads.parquet rows (CELL, layer, head, node, role). Returns
      per circuit x role: count, n_nodes (every node of the circuit: input, heads, MLPs, logits),
                          proportion = count / n_nodes (the reference's normalisation);
      per circuit x layer x role: count (zeros included, so means over circuits are right).
    """
    role_of = {(*k[:3], k[3]): k[4] for k in heads[[*CELL, "node", "role"]].itertuples(index=False)}
    layers = range(graph.n_layers)
    totals, per_layer = [], []
    budgets = sorted(circuits["budget"].astype(str).unique()) if budgets is None else [str(b) for b in budgets]
    edges = {key: part for key, part in circuits.assign(budget=circuits["budget"].astype(str))
             .groupby([*CELL, "budget"], sort=True)}
    cells = heads[CELL].drop_duplicates().sort_values(CELL).itertuples(index=False)
    for (task, etype, group), budget in ((tuple(c), b) for c in cells for b in budgets):
        part = edges.get((task, etype, group, budget))
        circuit = Circuit.empty(graph) if part is None else \
            Circuit.from_rows(graph, part[["parent", "child"]].to_dict("records"))
        in_circuit = circuit.nodes.tolist()
        counts = {(layer, role): 0 for layer in layers for role in ROLES}
        for layer in layers:
            for h in range(graph.n_heads):
                if in_circuit[graph.head_node(layer, h)]:
                    role = role_of.get((task, etype, group, graph.head_name(layer, h)))
                    if role is None:
                        raise ValueError(f"circuit {task}/{etype}/{group} has no head table row for "
                                         f"{graph.head_name(layer, h)}")
                    counts[(layer, role)] += 1
        cell = {"task": task, "type": etype, "freq_group": group, "budget": budget}
        n_nodes = circuit.n_nodes
        for role in ROLES:
            count = sum(counts[(layer, role)] for layer in layers)
            totals.append({**cell, "role": role, "count": count, "n_nodes": n_nodes,
                           "proportion": count / n_nodes if n_nodes else math.nan})
        per_layer += [{**cell, "layer": layer, "role": role, "count": c} for (layer, role), c in counts.items()]
    return pd.DataFrame(totals), pd.DataFrame(per_layer)
