"""The inductive loss: each document's tokens use the slots allocated to it at the hook layer.

Slots are the hook layer's MLP hidden neurons: the input of its down projection (after the
nonlinearity; gated MLPs: act(gate) x up), the neurons the knowledge-neuron stage attributes
(CircuitModel's "mlp_hidden"). For a token t of document d, with hidden activations a_t [m] and
allocation A_d (a set of s slots):

    share_t = (sum_{j in A_d} a_tj^2 + eps) / (sum_j a_tj^2 + eps)          in (0, 1]
    L_ind   = mean over the tokens that belong to a document of  -log share_t

the cross-entropy of "the token's activation energy lies inside its allocation" against the target
"all of it does": exactly 0 when every slot outside A_d is silent, positive otherwise, growing
without bound as the energy leaves the allocation. Squared activations: smooth at zero, and a
GELU's small negative outputs count as activity. End-of-text tokens (doc = -1) are not counted.
Training minimises  LM loss + alpha x L_ind;  alpha = 0 is plain memorisation.

L_ind reads nothing above the hook layer's hidden activations, so its gradient reaches that layer's
MLP input projection and everything below it, and nothing else (tests/studies/memory/test_memory_loss.py).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

EPS = 1e-8
# The module whose input is a layer's MLP hidden activations, per model family (the same modules
# CircuitModel reads as `mlp_out`; it freezes the model, so training cannot use it).
DOWN_PROJECTION = {
    "gpt2": "transformer.h.{}.mlp.c_proj",
    "gpt_neox": "gpt_neox.layers.{}.mlp.dense_4h_to_h",
    "llama": "model.layers.{}.mlp.down_proj",
}


def slot_module(model, layer: int) -> torch.nn.Module:
    """The down projection of `layer` in a Hugging Face causal LM of a supported family."""
    family = model.config.model_type
    if family not in DOWN_PROJECTION:
        raise ValueError(f"model family {family!r} has no memory slots here; choose one of {tuple(DOWN_PROJECTION)}")
    n_layers = model.config.num_hidden_layers
    if not 0 <= layer < n_layers:
        raise ValueError(f"memory.layers: layer {layer} is outside the model's {n_layers} layers")
    return model.get_submodule(DOWN_PROJECTION[family].format(layer))


def slot_count(model, layer: int) -> int:
    """m: the hidden width of `layer`'s MLP (Conv1D stores [m, d], nn.Linear [d, m])."""
    proj = slot_module(model, layer)
    return proj.weight.shape[1] if isinstance(proj, torch.nn.Linear) else proj.weight.shape[0]


@contextmanager
def capture_slots(model, layer: int):
    """Within the block, store["hidden"] is the last forward's hidden activations at `layer`
    [B, T, m], still on the autograd graph."""
    store = {}

    def keep(module, args):
        store["hidden"] = args[0]

    handle = slot_module(model, layer).register_forward_pre_hook(keep)
    try:
        yield store
    finally:
        handle.remove()


def slot_share(hidden: torch.Tensor, doc: torch.Tensor, allocation: torch.Tensor) -> torch.Tensor:
    """share_t of every token that belongs to a document: hidden [B, T, m], doc [B, T] (-1: none),
    allocation bool [D, m] -> [N] (N tokens with doc >= 0, in row-major order)."""
    keep = doc >= 0  # [B, T]
    energy = hidden[keep].float().pow(2)  # [N, m]
    inside = (energy * allocation[doc[keep]]).sum(-1)  # [N]
    return (inside + EPS) / (energy.sum(-1) + EPS)


def inductive_loss(hidden: torch.Tensor, doc: torch.Tensor, allocation: torch.Tensor) -> torch.Tensor:
    """L_ind (module docstring): a scalar, 0 when no token belongs to a document."""
    share = slot_share(hidden, doc, allocation)  # [N]
    return -share.log().mean() if share.numel() else hidden.new_zeros(())
