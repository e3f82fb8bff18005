"""Reading and writing score matrices (safetensors, never pickle) and circuits (parquet).

Scores: one file per checkpoint; one tensor [n_forward, n_backward] per cell, named by its cell key
"{task}/{type}/{freq_group}" (kcircuits.vocabulary); the file's metadata holds the graph, the node
and slot names (so the matrix is readable without this package), how the scores were computed, and
per-cell item counts.
Circuits: one parquet table of in-circuit edges with the cell's columns, parent, child and score.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..io import read_safetensors_header, write_parquet, write_safetensors
from ..vocabulary import CELL, cell_key, parse_cell_key
from .graph import Circuit, Graph


def save_scores(path: str | Path, cells: dict[str, torch.Tensor], graph: Graph, meta: dict) -> None:
    """cells: key -> scores [n_forward, n_backward]; meta: method, steps, points, n_items per cell..."""
    shape = (graph.n_forward, graph.n_backward)
    for key, scores in cells.items():
        if tuple(scores.shape) != shape:
            raise ValueError(f"{key}: scores {tuple(scores.shape)} do not fit the graph {shape}")
    header = {"graph": graph.to_dict(), "forward_names": graph.forward_names,
              "backward_names": graph.backward_names, "meta": meta}
    write_safetensors({k: v.detach().float() for k, v in cells.items()}, path, header)


def load_scores(path: str | Path) -> tuple[Graph, dict[str, torch.Tensor], dict]:
    from safetensors.torch import load_file

    header, _ = read_safetensors_header(path)
    graph = Graph.from_dict(header["graph"])
    if header["forward_names"] != graph.forward_names:
        raise ValueError(f"{path}: node names do not match the graph's")
    return graph, load_file(str(path)), header["meta"]


def circuits_frame(circuits: dict[str, Circuit], scores: dict[str, torch.Tensor]) -> pd.DataFrame:
    """In-circuit edges of every cell, one row each: task, type, freq_group, parent, child, score."""
    rows = []
    for key, circuit in sorted(circuits.items()):
        cell = dict(zip(CELL, parse_cell_key(key)))
        rows += [{**cell, **r} for r in circuit.rows(scores.get(key))]
    return pd.DataFrame(rows, columns=[*CELL, "parent", "child", "score"])


def circuits_from_frame(graph: Graph, frame: pd.DataFrame) -> dict[str, Circuit]:
    out = {}
    for cell, part in frame.groupby(CELL, sort=True):
        out[cell_key(*cell)] = Circuit.from_rows(graph, part.to_dict("records"))
    return out


def save_circuits(path: str | Path, circuits: dict[str, Circuit], scores: dict[str, torch.Tensor],
                  provenance: dict | None = None) -> None:
    write_parquet(circuits_frame(circuits, scores), path, provenance)


def load_circuits(path: str | Path, graph: Graph) -> dict[str, Circuit]:
    return circuits_from_frame(graph, pd.read_parquet(path))
