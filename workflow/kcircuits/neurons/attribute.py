"""Knowledge-neuron attribution: integrated gradients of P(target) over one layer's MLP hidden neurons.

For a prompt and a layer l, a [m] are l's MLP hidden activations at the last prompt position (after the
nonlinearity; for gated MLPs the input of the down projection: CircuitModel's cache entry
"mlp_hidden"). They are replaced by alpha * a for alphas on [0, 1] while the rest of the forward runs
as usual, and the gradient of the target token's softmax probability (not its log) is taken with
respect to the replaced activations:

    attribution_i = a_i * mean over alphas of dP(target)/d(alpha a)_i

Two point conventions (`points`):
    left  alpha = k / m, k = 0 .. m-1: the original code's left Riemann sum (never reaches a itself);
    grid  alpha = linspace(0, 1, m), both ends included: the public re-implementation (EleutherAI).
As m grows both approach the integral, and a layer's attributions sum to P(target | a) - P(target |
that layer's activations zeroed) (completeness).

Replacing layer l's activations at the last position changes no earlier position (attention is
causal) and no layer below l. So after one clean forward (CircuitModel.run's cache: keys, values,
residual stream) only the last position is run, from layer l on (CircuitModel.run_last), attending
to the clean keys and values of the earlier positions -- the same numbers as the full forward with
CircuitModel.run's replace_mlp_hidden (tests/test_neurons.py) at a fraction of the work.
Batched: every alpha of every prompt of a chunk, for as many layers as `batch_size` rows allow, in
one forward and one backward (layers x prompts x steps rows, each entering at its own layer); no
Python loop over neurons or steps.
"""
from __future__ import annotations

import torch

POINTS = ("left", "grid")


def alphas(steps: int, points: str = "left", device="cpu") -> torch.Tensor:
    """The scaling points [steps] of one integral on `device` (see the module docstring)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if points == "left":
        return torch.arange(steps, dtype=torch.float32, device=device) / steps
    if points == "grid":
        return torch.linspace(0.0, 1.0, steps, device=device) if steps > 1 else torch.ones(1, device=device)
    raise ValueError(f"points must be one of {POINTS}, got {points!r}")


@torch.no_grad()
def hidden_activations(model, ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """MLP hidden activations at each prompt's last position: ids [P, T], last [P] -> [L, P, m]."""
    return model.run(ids, last, cache="mlp_hidden")[1]["mlp_hidden"]


@torch.no_grad()
def clean_run(model, ids: torch.Tensor, last: torch.Tensor) -> dict[str, torch.Tensor]:
    """What attribution reads from one clean forward: the MLP hidden activations "mlp_hidden"
    [L, P, m], each layer's clean stream at the last position minus its MLP's write there "base"
    [L, P, d], and every layer's "keys" and "values" [L, P, H, T, dh]."""
    _, c = model.run(ids, last, cache=("resid", "keys", "values", "mlp_hidden"))
    rows = torch.arange(ids.shape[0], device=ids.device)
    after = c["resid"][1:, rows, last]  # [L, P, d]: the stream after each layer, last position
    base = torch.stack([after[i] - lay.mlp_out(c["mlp_hidden"][i]) for i, lay in enumerate(model.layers)])
    return {"mlp_hidden": c["mlp_hidden"], "base": base, "keys": c["keys"], "values": c["values"]}


def attribute_layers(model, clean: dict, last: torch.Tensor, targets: torch.Tensor, layers: list[int],
                     alpha: torch.Tensor) -> torch.Tensor:
    """Attributions [G, P, m] of G layers (ascending) for P prompts (last [P], targets [P]) from their
    clean run (clean_run) and the points alpha [S]: one forward and one backward of G * P * S rows,
    each of the last position only, entering at its own layer (CircuitModel.run_last)."""
    P, S = last.shape[0], alpha.shape[0]
    hidden = clean["mlp_hidden"][layers]  # [G, P, m]
    scaled = (alpha[None, None, :, None] * hidden[:, :, None, :]).reshape(len(layers), P * S, -1)  # [G, P*S, m]
    scaled.requires_grad_(True)
    prompt = torch.arange(P, device=last.device).repeat_interleave(S)  # [P*S]: prompt of each row
    with torch.enable_grad():
        entries = {layer: (clean["base"][layer, prompt] + model.layers[layer].mlp_out(scaled[g]), prompt)
                   for g, layer in enumerate(layers)}  # the stream after `layer` with a replaced by alpha a
        logits = model.run_last(entries, last, clean["keys"], clean["values"])  # [G*P*S, V], as entries
        prob = torch.softmax(logits.float(), -1).gather(1, targets[prompt].repeat(len(layers))[:, None])
        (grad,) = torch.autograd.grad(prob.sum(), scaled)  # rows are independent: one backward
    return hidden.float() * grad.float().reshape(len(layers), P, S, -1).mean(dim=2)  # [G, P, m]


def attribute(model, ids: torch.Tensor, last: torch.Tensor, targets: torch.Tensor, steps: int = 20,
              points: str = "left", batch_size: int = 256, layers=None) -> torch.Tensor:
    """Integrated-gradient attributions [L, P, m] of every MLP hidden neuron of `layers` (default all;
    other layers' rows are zero) for prompts ids [P, T] (right-padded, last [P]) and their target
    tokens targets [P]. batch_size caps the rows of one forward (prompts x steps x layers: as many
    layers per forward as fit, whole prompts and layers). Scores do not depend on batch_size, on
    the number of layers per forward or on the order of the prompts."""
    alpha = alphas(steps, points, ids.device)
    layers = sorted(range(model.n_layers) if layers is None else layers)
    per_chunk = max(1, batch_size // steps)  # prompts per forward
    out = []
    for start in range(0, ids.shape[0], per_chunk):
        part = slice(start, start + per_chunk)
        clean = clean_run(model, ids[part], last[part])
        scores = torch.zeros_like(clean["mlp_hidden"], dtype=torch.float32)  # [L, n, m]
        per_forward = max(1, batch_size // (len(ids[part]) * steps))  # layers per forward
        for k in range(0, len(layers), per_forward):
            group = layers[k:k + per_forward]
            scores[group] = attribute_layers(model, clean, last[part], targets[part], group, alpha)
        out.append(scores)
    return torch.cat(out, dim=1)
