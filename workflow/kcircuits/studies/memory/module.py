"""The gated document memory (`memory.module: gated`): the public analogue's design (Park & Choi,
IJCAI 2024) on the hook layer's MLP neurons.

A module beside the hook layer's MLP reads the MLP's input x (after its layer norm) and adds, for a
token of document d, to the MLP's hidden activations h [m] (the down projection's input):

    u(x; d) = gelu(W_up x + b_up) * act(W_g k_d)        [m]     act: tanh | relu (memory.gated.gate)
    h'      = h + u                                      the down projection writes W_out h' + b_out

k_d is a fixed key per document [key_dim] (orthonormal rows when documents <= key_dim, seeded, never
trained); W_g [m, key_dim] turns it into a gate per neuron. The memory's units are therefore the
hook layer's MLP neurons themselves: the slots, the allocations, the inductive loss (on u, the
memory's activity) and the knowledge-neuron and circuit stages (which see h') mean the same as with
`memory.module: mlp`. It differs from the analogue in writing through the layer's own (frozen) down
projection instead of its own W_down and output map, which is what makes its units MLP neurons.
As in the analogue only the module trains; the language model is frozen. W_up and b_up start at 0,
so u = 0 and the model starts as the start checkpoint exactly; W_g starts N(0, 1 / key_dim), so the
gates are not 0 and the gradient reaches W_up.

At query time the module needs the document: `reading(doc)` sets it (a document id for every row, or
a [B, T] tensor of them; -1: no document, u = 0). Tokens outside documents get no memory.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from .loss import DOWN_PROJECTION, capture_slots, slot_count, slot_module

GATES = {"tanh": torch.tanh, "relu": torch.relu}
WEIGHTS = "memory.safetensors"  # beside the model's weights in a memory run's checkpoint folder
PREFIX = "document_memory."     # its parameters' names inside the model while it trains


class GatedMemory(torch.nn.Module):
    def __init__(self, d_model: int, width: int, n_docs: int, key_dim: int, gate: str, seed: int):
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"memory.gated.gate: {gate!r}; choose one of {', '.join(GATES)}")
        g = torch.Generator().manual_seed(seed)
        self.gate_name, self.gate_act = gate, GATES[gate]
        self.up = torch.nn.Linear(d_model, width)
        self.gate = torch.nn.Linear(key_dim, width, bias=False)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)
        with torch.no_grad():
            self.gate.weight.copy_(torch.randn(width, key_dim, generator=g) * key_dim ** -0.5)
        keys = torch.empty(n_docs, key_dim)
        torch.nn.init.orthogonal_(keys, generator=g)
        self.register_buffer("keys", keys)  # [D, key_dim]
        self.doc = None    # what `reading` set: an int or a LongTensor broadcasting with x[..., 0]
        self.units = None  # u of the last forward, [..., m], on the autograd graph
        self.layer = None  # the hook layer, once attached

    def unit_activations(self, x: torch.Tensor, doc) -> torch.Tensor:
        """u (module docstring): x [..., d], doc int or LongTensor [...] (-1: none) -> [..., m]."""
        if doc is None:
            raise RuntimeError("the gated memory needs its document: call inside memory.reading(doc)")
        doc = torch.as_tensor(doc, device=x.device)
        gate = self.gate_act(self.gate(self.keys[doc.clamp(min=0)])) * (doc >= 0)[..., None]  # [..., m]
        return torch.nn.functional.gelu(self.up(x)) * gate

    @contextmanager
    def reading(self, doc):
        """Within the block the memory reads document `doc` (module docstring)."""
        before, self.doc = self.doc, doc
        try:
            yield self
        finally:
            self.doc = before

    @contextmanager
    def attached(self, hf, layer: int):
        """Within the block the Hugging Face model `hf` runs with the memory at `layer`."""
        mlp = hf.get_submodule(DOWN_PROJECTION[hf.config.model_type].format(layer).rsplit(".", 1)[0])
        seen = {}

        def keep(module, args):
            seen["x"] = args[0]  # [B, T, d]: the MLP's input

        def add(module, args):  # only inside the MLP's own call (a CircuitModel calls the projection alone)
            if "x" not in seen:
                return None
            self.units = self.unit_activations(seen.pop("x"), self.doc)
            return (args[0] + self.units, *args[1:])

        handles = [mlp.register_forward_pre_hook(keep), slot_module(hf, layer).register_forward_pre_hook(add)]
        self.layer = layer
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def attach_circuit_model(self, model, layer: int) -> None:
        """Make a CircuitModel of the same model see the memory at `layer` (its MLP hidden: h + u)."""
        lay, base = model.layers[layer], model.layers[layer].mlp_in
        lay.mlp_in = lambda x: base(x) + self.unit_activations(x, self.doc)  # [..., d] -> [..., m]


@contextmanager
def slot_activity(hf, layer: int, memory: GatedMemory | None = None):
    """After the block, store["hidden"] is the slots' activity in its last forward [B, T, m], on the
    autograd graph: the hook layer's MLP hidden activations, or with a gated memory its units u."""
    if memory is None:
        with capture_slots(hf, layer) as store:
            yield store
        return
    store = {}
    yield store
    store["hidden"] = memory.units


def build_memory(hf, layer: int, n_docs: int, gated: dict, seed: int) -> GatedMemory:
    """A new memory for `hf` at `layer` (gated: config memory.gated; key_dim null = n_docs)."""
    d_model = hf.get_input_embeddings().weight.shape[1]
    return GatedMemory(d_model, slot_count(hf, layer), n_docs, gated["key_dim"] or n_docs, gated["gate"], seed)


def save_memory(memory: GatedMemory, folder: Path, state: dict) -> None:
    """Move the memory's tensors out of a trained checkpoint's model.safetensors (state: its tensors)
    into `WEIGHTS` beside it, with what rebuilds the module in the file's metadata."""
    from safetensors.torch import save_file

    mine = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    rest = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    save_file(rest, str(folder / "model.safetensors"), metadata={"format": "pt"})
    meta = {"format": "pt", "layer": str(memory.layer), "gate": memory.gate_name}
    save_file(mine, str(folder / WEIGHTS), metadata=meta)


def load_memory(folder: str | Path) -> GatedMemory | None:
    """The trained memory of a memory run's checkpoint folder (frozen, its `layer` set), or None when
    the run has none (memory.module: mlp)."""
    from safetensors import safe_open

    path = Path(folder) / WEIGHTS
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    width, d_model = state["up.weight"].shape
    n_docs, key_dim = state["keys"].shape
    memory = GatedMemory(d_model, width, n_docs, key_dim, meta["gate"], 0)
    memory.load_state_dict(state)
    memory.layer = int(meta["layer"])
    return memory.requires_grad_(False).eval()
