"""The computation graph EAP-IG scores: nodes, edges, names, in-circuit masks, selection, pruning.

Nodes are the input embedding, every attention head, every MLP and the logits. A *forward node*
writes into the residual stream (input, heads, MLPs); a *backward slot* reads from it (each head's
separate query, key and value input, each MLP's input, the logits). An edge joins a forward node to
a backward slot that comes after it, so every score matrix here is [n_forward, n_backward] and only
the entries where `graph.valid` is True are edges.

Orders (fixed, so matrices saved at one checkpoint line up with every other checkpoint):
  forward nodes:   input, a0.h0 .. a0.h{H-1}, m0, a1.h0, ..., m{L-1}
  backward slots:  a0.h0<q> .. a0.h{H-1}<q>, a0.h0<k> .., a0.h0<v> .., m0, a1.h0<q>, ..., m{L-1}, logits
Every slot reads a *prefix* of the forward nodes, which is what makes masks and matmuls cheap.
Names are built (Graph.head_name, Graph.mlp_name) and parsed (Graph.parse) here and nowhere else.
With parallel attention/MLP (GPT-NeoX's default, Phi) an MLP does not read its own layer's heads.
"""
from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass
from functools import cached_property

import torch

QKV = ("q", "k", "v")
_INT = r"(0|[1-9][0-9]*)"
_NAME = re.compile(rf"a{_INT}\.h{_INT}(?:<([qkv])>)?|m{_INT}")  # a{layer}.h{head}[<q|k|v>], m{layer}


@dataclass(frozen=True)
class NodeName:
    """A node's or slot's name, parsed (Graph.parse)."""
    kind: str               # "input", "head", "mlp" or "logits"
    layer: int              # input -1, logits n_layers (as Graph.node_layer)
    head: int | None = None  # heads (and their slots) only
    qkv: str = ""           # "q", "k" or "v" for a head's backward slot, else ""


@dataclass(frozen=True)
class Graph:
    n_layers: int
    n_heads: int
    parallel_attn_mlp: bool = False

    # ---- sizes and names -------------------------------------------------------------------
    @property
    def n_forward(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_backward(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    def head_node(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_node(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def attn_slots(self, layer: int) -> tuple[int, int]:
        """[start, end) of layer's 3H query/key/value slots (q for every head, then k, then v)."""
        start = layer * (3 * self.n_heads + 1)
        return start, start + 3 * self.n_heads

    def mlp_slot(self, layer: int) -> int:
        return layer * (3 * self.n_heads + 1) + 3 * self.n_heads

    @property
    def logits_slot(self) -> int:
        return self.n_backward - 1

    @property
    def logits_node(self) -> int:
        """Index of the logits in the node list (forward nodes, then the logits)."""
        return self.n_forward

    @staticmethod
    def head_name(layer: int, head: int, qkv: str = "") -> str:
        """'a1.h3'; with qkv ('q', 'k' or 'v') the name of that input slot, 'a1.h3<q>'."""
        return f"a{layer}.h{head}" + (f"<{qkv}>" if qkv else "")

    @staticmethod
    def mlp_name(layer: int) -> str:
        return f"m{layer}"

    def parse(self, name: str) -> NodeName:
        """Any node or slot name of this graph -> NodeName; ValueError for anything else."""
        if name in ("input", "logits"):
            return NodeName(name, -1 if name == "input" else self.n_layers)
        m = _NAME.fullmatch(name)
        if m is not None:
            head_layer, head, qkv, mlp_layer = m.groups()
            layer = int(mlp_layer if head is None else head_layer)
            if layer < self.n_layers and (head is None or int(head) < self.n_heads):
                return NodeName("mlp", layer) if head is None else NodeName("head", layer, int(head), qkv or "")
        raise ValueError(f"{name!r} is not a node or slot of a {self.n_layers}-layer, {self.n_heads}-head graph")

    @cached_property
    def forward_names(self) -> list[str]:
        names = ["input"]
        for layer in range(self.n_layers):
            names += [self.head_name(layer, h) for h in range(self.n_heads)] + [self.mlp_name(layer)]
        return names

    @cached_property
    def backward_names(self) -> list[str]:
        names = []
        for layer in range(self.n_layers):
            names += [self.head_name(layer, h, s) for s in QKV for h in range(self.n_heads)] + [self.mlp_name(layer)]
        return names + ["logits"]

    @property
    def node_names(self) -> list[str]:
        return self.forward_names + ["logits"]

    # ---- structure ---------------------------------------------------------------------------
    @cached_property
    def groups(self) -> list[tuple[int, int, int]]:
        """(slot start, slot end, n upstream nodes) in forward order: attention, MLP per layer, logits."""
        out = []
        for layer in range(self.n_layers):
            first = 1 + layer * (self.n_heads + 1)  # nodes before this layer
            start, end = self.attn_slots(layer)
            out.append((start, end, first))
            out.append((end, end + 1, first if self.parallel_attn_mlp else first + self.n_heads))
        out.append((self.logits_slot, self.logits_slot + 1, self.n_forward))
        return out

    @cached_property
    def upstream_count(self) -> torch.Tensor:
        """[n_backward] long: slot v reads forward nodes 0 .. upstream_count[v]-1."""
        counts = torch.empty(self.n_backward, dtype=torch.long)
        for start, end, n_up in self.groups:
            counts[start:end] = n_up
        return counts

    @cached_property
    def valid(self) -> torch.Tensor:
        """[n_forward, n_backward] bool: True where (node, slot) is an edge of the graph."""
        return torch.arange(self.n_forward)[:, None] < self.upstream_count[None, :]

    @property
    def n_edges(self) -> int:
        return int(self.upstream_count.sum())

    @cached_property
    def slot_node(self) -> torch.Tensor:
        """[n_backward] long: the node (index into node_names) whose input each slot is."""
        nodes = torch.empty(self.n_backward, dtype=torch.long)
        for layer in range(self.n_layers):
            start, end = self.attn_slots(layer)
            nodes[start:end] = torch.arange(self.head_node(layer, 0), self.head_node(layer, 0) + self.n_heads).repeat(3)
            nodes[end] = self.mlp_node(layer)
        nodes[self.logits_slot] = self.logits_node
        return nodes

    def node_layer(self, node: int) -> int:
        """Drawing row: input -1, layer l's heads and MLP l, logits n_layers."""
        if node == 0:
            return -1
        if node == self.logits_node:
            return self.n_layers
        return (node - 1) // (self.n_heads + 1)

    def to_dict(self) -> dict:
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "parallel_attn_mlp": self.parallel_attn_mlp}

    @classmethod
    def from_dict(cls, d: dict) -> "Graph":
        return cls(int(d["n_layers"]), int(d["n_heads"]), bool(d["parallel_attn_mlp"]))

    def edge_name(self, parent: int, slot: int) -> str:
        return f"{self.forward_names[parent]}->{self.backward_names[slot]}"


# ---- circuits ----------------------------------------------------------------------------------
@dataclass
class Circuit:
    """A subgraph: the in-circuit edges as a [n_forward, n_backward] bool mask."""
    graph: Graph
    edges: torch.Tensor

    def __post_init__(self):
        if self.edges.shape != (self.graph.n_forward, self.graph.n_backward):
            raise ValueError(f"edge mask {tuple(self.edges.shape)} does not fit the graph "
                             f"({self.graph.n_forward}, {self.graph.n_backward})")
        if (self.edges & ~self.graph.valid).any():
            raise ValueError("edge mask marks pairs that are not edges of the graph")

    @property
    def nodes(self) -> torch.Tensor:
        """[n_forward + 1] bool: nodes touching an in-circuit edge (the logits are last)."""
        g = self.graph
        nodes = torch.zeros(g.n_forward + 1, dtype=torch.bool)
        nodes[: g.n_forward] = self.edges.any(1)
        nodes[g.slot_node[self.edges.any(0)]] = True
        return nodes

    @property
    def n_edges(self) -> int:
        return int(self.edges.sum())

    @property
    def n_nodes(self) -> int:
        return int(self.nodes.sum())

    def edge_list(self) -> list[tuple[int, int]]:
        """(parent node, child slot) pairs in matrix order."""
        return [tuple(e) for e in self.edges.nonzero().tolist()]

    def rows(self, scores: torch.Tensor | None = None) -> list[dict]:
        """One dict per in-circuit edge: parent, child slot, its score (for parquet tables)."""
        g = self.graph
        return [{"parent": g.forward_names[u], "child": g.backward_names[v],
                 "score": float(scores[u, v]) if scores is not None else math.nan} for u, v in self.edge_list()]

    @classmethod
    def from_rows(cls, graph: Graph, rows) -> "Circuit":
        fwd = {n: i for i, n in enumerate(graph.forward_names)}
        bwd = {n: i for i, n in enumerate(graph.backward_names)}
        edges = torch.zeros(graph.n_forward, graph.n_backward, dtype=torch.bool)
        for row in rows:
            edges[fwd[row["parent"]], bwd[row["child"]]] = True
        return cls(graph, edges)

    @classmethod
    def full(cls, graph: Graph) -> "Circuit":
        return cls(graph, graph.valid.clone())

    @classmethod
    def empty(cls, graph: Graph) -> "Circuit":
        return cls(graph, torch.zeros_like(graph.valid))


def prune(graph: Graph, edges: torch.Tensor) -> torch.Tensor:
    """Keep only edges on some input -> ... -> logits path (nodes that connect input to logits).

    A node is reachable if an in-circuit edge enters one of its slots from a reachable node; it is
    useful if an in-circuit edge leaves it towards a useful node. An edge survives iff its parent is
    reachable and its child useful; one pass reaches the fixed point (see the module tests).
    """
    n_fwd = graph.n_forward
    slot_node = graph.slot_node
    reachable = torch.zeros(n_fwd + 1, dtype=torch.bool)
    reachable[0] = True
    for start, end, _ in graph.groups:  # forward order: a group's parents are all settled
        fed = (edges[:, start:end] & reachable[:n_fwd, None]).any(0)  # [slots in group]
        reachable.index_put_((slot_node[start:end][fed],), torch.tensor(True))
    useful = torch.zeros(n_fwd + 1, dtype=torch.bool)
    useful[graph.logits_node] = True
    for node in range(n_fwd - 1, -1, -1):  # children always come later in node order
        useful[node] = bool((edges[node] & useful[slot_node]).any())
    return edges & reachable[:n_fwd, None] & useful[slot_node][None, :]


def edge_budget(graph: Graph, n: int | float) -> int:
    """n as a count (an int >= 1) or as a fraction of all edges (a float in (0, 1])."""
    if isinstance(n, float):
        if not 0 < n <= 1:
            raise ValueError(f"an edge fraction must lie in (0, 1], got {n}; give counts as integers")
        return max(1, round(n * graph.n_edges))
    if int(n) < 1:
        raise ValueError(f"edge count must be >= 1, got {n}")
    return min(int(n), graph.n_edges)


def select_top_n(scores: torch.Tensor, graph: Graph, n: int | float) -> Circuit:
    """The n edges of largest |score|, then pruned to nodes that connect input to logits."""
    k = edge_budget(graph, n)
    magnitude = scores.abs().masked_fill(~graph.valid, -1.0).flatten()  # [n_fwd * n_bwd]
    chosen = torch.zeros_like(magnitude, dtype=torch.bool)
    chosen[magnitude.topk(k).indices] = True
    return Circuit(graph, prune(graph, chosen.view_as(scores) & graph.valid))


def select_greedy(scores: torch.Tensor, graph: Graph, n: int | float) -> Circuit:
    """Grow the circuit back from the logits: repeatedly add the largest-|score| edge whose child is
    already in the circuit (so every edge reaches the logits), until n edges; then prune."""
    k = edge_budget(graph, n)
    magnitude = scores.abs().tolist()
    n_up = graph.upstream_count.tolist()
    node_slots: dict[int, list[int]] = {}
    for slot, node in enumerate(graph.slot_node.tolist()):
        node_slots.setdefault(node, []).append(slot)
    edges = torch.zeros(graph.n_forward, graph.n_backward, dtype=torch.bool)
    in_circuit, heap, count = set(), [], 0

    def admit(node: int) -> None:
        in_circuit.add(node)
        for slot in node_slots.get(node, []):
            for parent in range(n_up[slot]):
                heapq.heappush(heap, (-magnitude[parent][slot], parent, slot))

    admit(graph.logits_node)
    while heap and count < k:
        _, parent, slot = heapq.heappop(heap)
        edges[parent, slot] = True
        count += 1
        if parent not in in_circuit:
            admit(parent)
    return Circuit(graph, prune(graph, edges))
