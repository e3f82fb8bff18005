"""Knowledge-neuron attribution: integrated gradients of P(target) over one layer's MLP hidden neurons.

For a prompt and a layer l, a [m] are l's MLP hidden activations at the last prompt position (after the
nonlinearity; for gated MLPs the input of the down projection: CircuitModel's cache entry
"mlp_hidden"). They are replaced by alpha * a for alphas on [0, 1] while the rest of the forward runs
as usual (CircuitModel.run's replace_mlp_hidden), and the gradient of the target token's softmax
probability (not its log) is taken with respect to the replaced activations:

    attribution_i = a_i * mean over alphas of dP(target)/d(alpha a)_i

Two point conventions (`points`):
    left  alpha = k / m, k = 0 .. m-1: the original code's left Riemann sum (never reaches a itself);
    grid  alpha = linspace(0, 1, m), both ends included: the public re-implementation (EleutherAI).
As m grows both approach the integral, and a layer's attributions sum to P(target | a) - P(target |
that layer's activations zeroed) (completeness).

Batched: every alpha of every prompt of a chunk, for as many layers as `batch_size` rows allow, in
one forward and one backward (layers x prompts x steps rows, each block of rows scaling its own
layer); no Python loop over neurons or steps.
"""
from __future__ import annotations

import torch

POINTS = ("left", "grid")


def alphas(steps: int, points: str = "left") -> torch.Tensor:
    """The scaling points [steps] of one integral (see the module docstring)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if points == "left":
        return torch.arange(steps, dtype=torch.float32) / steps
    if points == "grid":
        return torch.linspace(0.0, 1.0, steps) if steps > 1 else torch.ones(1)
    raise ValueError(f"points must be one of {POINTS}, got {points!r}")


@torch.no_grad()
def hidden_activations(model, ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """MLP hidden activations at each prompt's last position: ids [P, T], last [P] -> [L, P, m]."""
    return model.run(ids, last, cache="mlp_hidden")[1]["mlp_hidden"]


def attribute_layers(model, ids: torch.Tensor, last: torch.Tensor, targets: torch.Tensor, layers: list[int],
                     hidden: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Attributions [G, P, m] of G layers for prompts ids [P, T] (last [P], targets [P]), given those
    layers' activations hidden [G, P, m] and the points alpha [S]: one forward and one backward of
    G * P * S rows, rows of block g scaling layer layers[g] only (the others run as usual)."""
    G, P, S = len(layers), ids.shape[0], alpha.shape[0]
    scaled = (alpha[None, None, :, None] * hidden[:, :, None, :]).reshape(G, P * S, -1)  # [G, P*S, m]
    scaled.requires_grad_(True)
    rows = torch.arange(P, device=ids.device).repeat_interleave(S).repeat(G)  # [G*P*S]: prompt of each row
    edits = {layer: _block_replaced(g * P * S, scaled[g]) for g, layer in enumerate(layers)}
    with torch.enable_grad():
        logits = model.run(ids[rows], last[rows], replace_mlp_hidden=edits)  # [G*P*S, V]
        prob = torch.softmax(logits.float(), dim=-1).gather(1, targets[rows, None])  # [G*P*S, 1]
        (grad,) = torch.autograd.grad(prob.sum(), scaled)  # rows are independent: one backward
    return hidden * grad.reshape(G, P, S, -1).mean(dim=2)  # [G, P, m]


def _block_replaced(start: int, values: torch.Tensor):
    """An edit for CircuitModel.run: rows start .. start + len(values) become values, others stay."""
    return lambda h: torch.cat([h[:start], values, h[start + len(values):]])


def attribute(model, ids: torch.Tensor, last: torch.Tensor, targets: torch.Tensor, steps: int = 20,
              points: str = "left", batch_size: int = 256, layers=None) -> torch.Tensor:
    """Integrated-gradient attributions [L, P, m] of every MLP hidden neuron of `layers` (default all;
    other layers' rows are zero) for prompts ids [P, T] (right-padded, last [P]) and their target
    tokens targets [P]. batch_size caps the rows of one forward (prompts x steps x layers: as many
    layers per forward as fit, whole prompts and layers). Scores do not depend on batch_size, on
    the number of layers per forward or on the order of the prompts."""
    alpha = alphas(steps, points).to(ids.device)
    hidden = hidden_activations(model, ids, last)  # [L, P, m]
    out = torch.zeros_like(hidden)
    layers = list(range(hidden.shape[0]) if layers is None else layers)
    per_chunk = max(1, batch_size // steps)  # prompts per forward
    for start in range(0, ids.shape[0], per_chunk):
        part = slice(start, start + per_chunk)
        n = len(ids[part])
        per_forward = max(1, batch_size // (n * steps))  # layers per forward
        for k in range(0, len(layers), per_forward):
            group = layers[k:k + per_forward]
            out[group, part] = attribute_layers(model, ids[part], last[part], targets[part], group,
                                                hidden[group, part], alpha)
    return out
