"""Circuit topology across checkpoints of one training replicate (seed), from the stored circuit files.

Per (checkpoint, task, type, freq_group, budget) circuit: edge and node counts, edge entropy, the
score-weighted mean layer, and Jaccard similarity of its node and edge sets to the final
checkpoint's circuit of the same cell and budget and to the previous checkpoint's. Per layer: the
"edge activation ratio" of the original study (in-circuit edges whose parent is in layer l / all
graph edges whose parent is in layer l).

Everything is read from files the circuits stage wrote -- circuits.parquet (in-circuit edges with
their scores) and the *header* of scores.safetensors (graph, scored cells, checkpoint progress) --
so no model is loaded and no score tensor is read. The header matters: a cell whose circuit pruned
to nothing has no rows in circuits.parquet but is still a circuit (of 0 edges) at that checkpoint.

Layers: forward node -> layer is input -1 (the embedding comes before layer 0), a{l}.h{i} and m{l}
-> l. Edges are placed at their *parent's* layer, as in the original analysis; the logits are never
a parent (they only read), so they take no place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..circuits.graph import Circuit, Graph
from ..circuits.metrics import edge_entropy
from ..io import read_safetensors_header
from ..vocabulary import CELL, cell_key, parse_cell_key, training_key

CHECKPOINT_COLUMNS = ["checkpoint", "phase", "epoch", "global_step", "tokens_seen"]
TOPOLOGY_COLUMNS = ["seed", "order", *CHECKPOINT_COLUMNS, *CELL, "budget", "n_edges", "n_nodes", "edge_entropy",
                    "mean_layer", "node_jaccard_final", "edge_jaccard_final", "node_jaccard_prev", "edge_jaccard_prev"]
LAYER_COLUMNS = ["seed", "order", *CHECKPOINT_COLUMNS, *CELL, "budget", "layer", "n_circuit_edges",
                 "n_graph_edges", "ratio"]


@dataclass
class CheckpointCircuits:
    """What one checkpoint's circuit files hold."""
    meta: dict           # checkpoint, phase, epoch, global_step, tokens_seen (from checkpoint.json)
    graph: Graph
    cells: list[str]     # every scored cell "task/type/freq_group"
    table: pd.DataFrame  # circuits.parquet: budget, task, type, freq_group, parent, child, score, ...


def read_checkpoint(scores_path: str | Path, circuits_path: str | Path, seed: int | None = None) -> CheckpointCircuits:
    """Header of scores.safetensors (no tensor is read) + the circuits table of one checkpoint.

    seed: the training replicate the caller expects; refused if checkpoint.json recorded another.
    """
    header, cells = read_safetensors_header(scores_path)
    meta = header["meta"]["checkpoint"]
    if seed is not None and "seed" in meta and int(meta["seed"]) != int(seed):
        raise ValueError(f"{scores_path}: scores of training seed {meta['seed']}, expected seed {seed}")
    table = pd.read_parquet(circuits_path, columns=["budget", *CELL, "parent", "child", "score"])
    return CheckpointCircuits({c: meta[c] for c in CHECKPOINT_COLUMNS}, Graph.from_dict(header["graph"]),
                              cells, table)


# ---- per-circuit quantities ------------------------------------------------------------------------
def parent_layers(graph: Graph) -> torch.Tensor:
    """[n_forward] long: layer of each forward node (input -1, layer l's heads and MLP l)."""
    return torch.tensor([graph.node_layer(n) for n in range(graph.n_forward)], dtype=torch.long)


def edge_mask(graph: Graph, part: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (parent, child, score) -> in-circuit mask [n_forward, n_backward] bool and scores (0 outside)."""
    fwd = pd.Index(graph.forward_names).get_indexer(part["parent"])
    bwd = pd.Index(graph.backward_names).get_indexer(part["child"])
    if (fwd < 0).any() or (bwd < 0).any():
        raise ValueError("circuit edges name nodes that are not in the graph of scores.safetensors")
    edges = torch.zeros(graph.n_forward, graph.n_backward, dtype=torch.bool)
    scores = torch.zeros(graph.n_forward, graph.n_backward, dtype=torch.float64)
    edges[fwd, bwd] = True
    scores[fwd, bwd] = torch.tensor(part["score"].to_numpy(dtype=np.float64))
    return edges, scores  # Circuit() refuses pairs that are not graph edges


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """|A & B| / |A | B| of two equal-shape bool masks; NaN when both are empty (0/0)."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else math.nan


def mean_layer(graph: Graph, edges: torch.Tensor, scores: torch.Tensor) -> float:
    """|score|-weighted mean parent layer of the in-circuit edges (input -1, layer l -> l).

    NaN for an empty circuit or one whose edges all score 0 (no weights).
    """
    layer = parent_layers(graph)[:, None].expand_as(edges)[edges].double()  # [n in-circuit edges]
    weight = scores[edges].abs().double()
    total = weight.sum()
    return float((layer * weight).sum() / total) if len(weight) and total > 0 else math.nan


def layer_ratios(graph: Graph, edges: torch.Tensor) -> pd.DataFrame:
    """Per parent layer (-1 = input, 0..L-1): in-circuit edges, valid graph edges, their ratio."""
    per_node_circuit = edges.sum(1)     # [n_forward] in-circuit edges leaving each node
    per_node_graph = graph.valid.sum(1)  # [n_forward] graph edges leaving each node
    layer = parent_layers(graph) + 1     # shift so the input is bin 0
    n_bins = graph.n_layers + 1
    circuit = torch.bincount(layer, weights=per_node_circuit.double(), minlength=n_bins)
    total = torch.bincount(layer, weights=per_node_graph.double(), minlength=n_bins)
    return pd.DataFrame({"layer": np.arange(-1, graph.n_layers), "n_circuit_edges": circuit.long().numpy(),
                         "n_graph_edges": total.long().numpy(), "ratio": (circuit / total).numpy()})


# ---- across checkpoints --------------------------------------------------------------------------
def _circuit_masks(ordered: list[CheckpointCircuits], graph: Graph,
                   budgets: list[str]) -> dict[tuple[int, str, str], tuple[torch.Tensor, torch.Tensor]]:
    """(checkpoint index, budget, cell) -> (edge mask, score matrix) of every scored cell; a cell
    without rows in circuits.parquet is an empty circuit."""
    masks = {}
    empty = (torch.zeros_like(graph.valid), torch.zeros(graph.valid.shape, dtype=torch.float64))
    for i, ckpt in enumerate(ordered):
        groups = {(str(b), cell_key(*cell)): part for (b, *cell), part in ckpt.table.groupby(["budget", *CELL])}
        unknown = {b for b, _ in groups} - set(budgets)
        if unknown:
            raise ValueError(f"{ckpt.meta['checkpoint']}: circuits at budgets {sorted(unknown)} that the settings "
                             f"do not list ({budgets})")
        for budget in budgets:
            for cell in ckpt.cells:
                part = groups.get((budget, cell))
                masks[i, budget, cell] = empty if part is None else edge_mask(graph, part)
    return masks


def topology_tables(checkpoints: list[CheckpointCircuits], budgets: list[str],
                    seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(topology, layers) tables of one replicate; `checkpoints` in any order, budgets as labels.

    Jaccard to the final circuit compares with the same cell and budget at the last checkpoint in
    training order; to the previous, with the checkpoint just before (NaN at the first).
    """
    if not checkpoints:
        raise ValueError("no checkpoints to analyse")
    graph = checkpoints[0].graph
    if any(c.graph != graph for c in checkpoints):
        raise ValueError("checkpoints disagree on the circuit graph (different models?)")
    ordered = sorted(checkpoints, key=lambda c: training_key(c.meta["checkpoint"], c.meta["epoch"],
                                                              c.meta["global_step"]))
    cells = sorted(set().union(*(c.cells for c in ordered)))
    masks = _circuit_masks(ordered, graph, budgets)
    last = len(ordered) - 1
    topo, layers = [], []
    for i, ckpt in enumerate(ordered):
        head = {"seed": int(seed), "order": i, **ckpt.meta}
        for budget in budgets:
            for cell in cells:
                if (i, budget, cell) not in masks:
                    continue  # a cell this checkpoint did not score (should not happen within a run)
                edges, scores = masks[i, budget, cell]
                nodes = Circuit(graph, edges).nodes
                row = {**head, **dict(zip(CELL, parse_cell_key(cell))), "budget": budget, "n_edges": int(edges.sum()),
                       "n_nodes": int(nodes.sum()), "edge_entropy": edge_entropy(scores, edges),
                       "mean_layer": mean_layer(graph, edges, scores)}
                for name, j in (("final", last), ("prev", i - 1)):
                    other = masks.get((j, budget, cell)) if j >= 0 else None
                    if other is None:
                        row[f"node_jaccard_{name}"] = row[f"edge_jaccard_{name}"] = math.nan
                    else:
                        row[f"node_jaccard_{name}"] = jaccard(nodes, Circuit(graph, other[0]).nodes)
                        row[f"edge_jaccard_{name}"] = jaccard(edges, other[0])
                topo.append(row)
                ratios = layer_ratios(graph, edges)
                layers.append(ratios.assign(**{k: row[k] for k in LAYER_COLUMNS if k in row}))
    return (pd.DataFrame(topo, columns=TOPOLOGY_COLUMNS),
            pd.concat(layers, ignore_index=True)[LAYER_COLUMNS] if layers else pd.DataFrame(columns=LAYER_COLUMNS))


__all__ = ["CheckpointCircuits", "read_checkpoint", "edge_mask", "jaccard",
           "mean_layer", "layer_ratios", "parent_layers", "topology_tables", "TOPOLOGY_COLUMNS", "LAYER_COLUMNS"]
