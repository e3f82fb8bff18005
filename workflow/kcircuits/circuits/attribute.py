"""Edge attribution: EAP, EAP-IG (input interpolation) and exact per-edge activation patching.

Score of edge u -> v (all three methods, same sign and scale):
    score(u, v) = (1 / N) * sum over items of  sum_{t, d} (clean_u - corrupted_u)[t, d] * G_v[t, d]
where G_v is the gradient of the logit difference (metrics.py) with respect to slot v's input,
    EAP:     at the clean input;
    EAP-IG:  averaged over m points on the straight line from the corrupted to the clean input
             *embedding* (only the input node is interpolated; every node's difference comes from
             the two endpoint runs), x(a) = corrupted + a * (clean - corrupted).
So score(u, v) ~ LD(clean) - LD(clean with edge u -> v patched from the corrupted run): positive
edges support the clean answer. The original study back-propagates the *negative* LD and uses
corrupted - clean; the two sign flips cancel, so its numbers are ours.

Normalisation: scores are a sum over items divided by the number of items (and the mean over the m
points), accumulated across batches, so batch size and batch order do not change them.

Interpolation points (`points`): "right" = a = k/m for k = 1..m, the original study's code (the
clean end is included; with m = 1 this *is* EAP), the default; "left" = a = k/m for k = 0..m-1,
the current upstream EAP-IG (the corrupted end is included).

Cost per batch: 2 recording forwards (clean, corrupted) + m forward/backward passes; no weight
gradients. Gradients are summed over the m points into one [n_bwd, B, T, d] buffer and contracted
with the node differences once, so memory does not grow with m.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..batching import by_length, pad_right
from ..tokenizer import bos_prefix
from .metrics import logit_difference
from .model import CircuitModel

POINTS = ("right", "left")
METHODS = ("eap", "eap-ig", "exact")


@dataclass
class PairBatch:
    """Clean/corrupted prompt pairs, right-padded to a common length T."""
    clean_ids: torch.Tensor        # [B, T]
    corrupted_ids: torch.Tensor    # [B, T]; same length as the clean prompt, item by item
    last: torch.Tensor             # [B]: index of each item's last real token
    clean_label: torch.Tensor      # [B]: first token of the clean answer
    corrupted_label: torch.Tensor  # [B]: first token of the corrupted answer

    def __len__(self) -> int:
        return self.clean_ids.shape[0]


def pair_batches(pairs, tokenizer, batch_size: int, device="cpu", prepend_bos: bool = False) -> list[PairBatch]:
    """Rows of circuit_pairs.parquet (one task x type x group cell) -> batches on `device` (the
    model's), shortest prompts first; prepend_bos: BOS first (kcircuits.tokenizer.bos_prefix)."""
    bos = bos_prefix(tokenizer, prepend_bos)

    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    rows = []
    for r in pairs.itertuples(index=False):
        clean, corrupted = encode(r.clean_prompt), encode(r.corrupted_prompt)
        if not len(clean) == len(corrupted) == r.n_tokens:
            raise ValueError(f"pair {r.clean_prompt!r} / {r.corrupted_prompt!r}: token lengths {len(clean)}, "
                             f"{len(corrupted)} differ from n_tokens {r.n_tokens}; wrong tokenizer?")
        rows.append((bos + clean, bos + corrupted, r.clean_label_token, r.corrupted_label_token))
    batches = []
    for chunk in by_length(rows, batch_size):
        clean_ids, last = pad_right([c[0] for c in chunk], tokenizer.pad_token_id)
        corrupted_ids, _ = pad_right([c[1] for c in chunk], tokenizer.pad_token_id)
        labels = torch.tensor([c[2:] for c in chunk]).T  # [2, B]: clean, corrupted
        batches.append(PairBatch(*(t.to(device) for t in (clean_ids, corrupted_ids, last, *labels))))
    return batches


def ig_alphas(steps: int, points: str = "right") -> list[float]:
    """Interpolation weights a (0 = corrupted, 1 = clean) at which gradients are taken."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if points == "right":
        return [k / steps for k in range(1, steps + 1)]
    if points == "left":
        return [k / steps for k in range(steps)]
    raise ValueError(f"points must be one of {POINTS}, got {points!r}")


def contract(model: CircuitModel, delta: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """sum over items, positions, features of delta_u * grads_v for every edge -> [n_fwd, n_bwd].

    delta [n_fwd, B, T, d], grads [n_bwd, B, T, d]; one matmul per slot group, over its upstream prefix.
    """
    g = model.graph
    out = torch.zeros(g.n_forward, g.n_backward, dtype=torch.float64, device=delta.device)
    flat_delta = delta.reshape(g.n_forward, -1)  # [n_fwd, B*T*d]
    flat_grads = grads.reshape(g.n_backward, -1)  # [n_bwd, B*T*d]
    for start, end, n_up in g.groups:
        out[:n_up, start:end] = flat_delta[:n_up] @ flat_grads[start:end].T
    return out


def attribute_batch(model: CircuitModel, batch: PairBatch, steps: int = 5, points: str = "right") -> torch.Tensor:
    """Unnormalised EAP-IG scores of one batch: summed over its items and the m points [n_fwd, n_bwd]."""
    with torch.no_grad():
        _, clean = model.run(batch.clean_ids, batch.last, record=True)          # [n_fwd, B, T, d]
        _, corrupted = model.run(batch.corrupted_ids, batch.last, record=True)  # [n_fwd, B, T, d]
        delta = clean.sub_(corrupted)  # clean - corrupted, in place: the clean run is not needed again
    corrupted_embeds = corrupted[0].clone()  # [B, T, d]; a copy, so the full buffer can be freed
    grads = corrupted_embeds.new_zeros(model.graph.n_backward, *corrupted_embeds.shape)  # [n_bwd, B, T, d]
    del corrupted
    for alpha in ig_alphas(steps, points):
        embeds = (corrupted_embeds + alpha * delta[0]).requires_grad_(True)  # a point on the input line
        logits = model.run(None, batch.last, embeds=embeds, grads=grads)
        logit_difference(logits, batch.clean_label, batch.corrupted_label).sum().backward(inputs=[embeds])
    return contract(model, delta, grads)


def attribute(model: CircuitModel, batches: list[PairBatch], method: str = "eap-ig", steps: int = 5,
              points: str = "right") -> torch.Tensor:
    """Edge scores [n_fwd, n_bwd] (float32, on the CPU; 0 where no edge), averaged over all items of
    `batches` (on the model's device)."""
    if method == "exact":
        return exact_patching(model, batches)
    if method == "eap":
        steps, points = 1, "right"  # the gradient at the clean input
    elif method != "eap-ig":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    total = torch.zeros(model.graph.n_forward, model.graph.n_backward, dtype=torch.float64, device=model.device)
    n_items = 0
    for batch in batches:
        total += attribute_batch(model, batch, steps, points)
        n_items += len(batch)
    if n_items == 0:
        raise ValueError("no items to attribute")
    return (total / (n_items * steps)).float().cpu()


def exact_patching(model: CircuitModel, batches: list[PairBatch]) -> torch.Tensor:
    """For every edge: mean over items of LD(clean) - LD(clean with only that edge patched from the
    corrupted run). The quantity EAP and EAP-IG approximate; one forward per edge, for tiny models."""
    g = model.graph
    total = torch.zeros(g.n_forward, g.n_backward, dtype=torch.float64, device=model.device)
    edges = g.valid.nonzero().tolist()
    n_items = 0
    with torch.no_grad():
        for batch in batches:
            logits, _ = model.run(batch.clean_ids, batch.last, record=True)
            clean_ld = logit_difference(logits, batch.clean_label, batch.corrupted_label)  # [B]
            _, corrupted = model.run(batch.corrupted_ids, batch.last, record=True)
            mask = g.valid.to(model.device, torch.float32)
            for u, v in edges:
                mask[u, v] = 0.0
                logits = model.run(batch.clean_ids, batch.last, mask=mask, reference=corrupted)
                mask[u, v] = 1.0
                patched_ld = logit_difference(logits, batch.clean_label, batch.corrupted_label)
                total[u, v] += (clean_ld - patched_ld).sum()
            n_items += len(batch)
    return (total / n_items).float().cpu()
