"""Per-prompt neuron scores on disk: only each prompt's top scores, never the dense tensor.

Neurons are flat indices over (layer, neuron): index = layer * m + neuron (m MLP hidden neurons per
layer). For every prompt, the scores of at least `share` x that prompt's maximum are kept (as the
original code keeps >= 0.1 x max), so any selection threshold t >= share is exact from the file. A
method's scores are three tensors in compressed sparse rows (one row per prompt):

    {method}.indptr [Q + 1] int64   row q's entries are indptr[q] .. indptr[q + 1]
    {method}.index  [nnz]   int32   flat neuron index, ascending within a row
    {method}.score  [nnz]   float32 the score

with the header n_layers, d_mlp and share (kcircuits.io.write_safetensors).
"""
from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file

from ..io import read_safetensors_header, write_safetensors


def top_rows(scores: torch.Tensor, share: float) -> dict[str, torch.Tensor]:
    """scores [Q, N] -> the CSR tensors of the entries >= share x their row's maximum (none in a row
    whose maximum is not positive)."""
    top = scores.max(dim=1, keepdim=True).values  # [Q, 1]
    keep = (scores >= share * top) & (top > 0)  # [Q, N]
    rows, index = keep.nonzero(as_tuple=True)  # row-major: ascending index within a row
    indptr = torch.zeros(scores.shape[0] + 1, dtype=torch.int64)
    indptr[1:] = torch.bincount(rows, minlength=scores.shape[0]).cumsum(0)
    return {"indptr": indptr, "index": index.to(torch.int32), "score": scores[rows, index].float()}


def save_scores(path: str, methods: dict[str, torch.Tensor], share: float, n_layers: int, d_mlp: int) -> None:
    """Each method's scores [Q, n_layers * d_mlp] as its top rows (see the module docstring)."""
    tensors = {f"{method}.{key}": t.contiguous() for method, scores in methods.items()
               for key, t in top_rows(scores.cpu(), share).items()}
    write_safetensors(tensors, path, {"n_layers": n_layers, "d_mlp": d_mlp, "share": share})


def load_scores(path: str) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """({method: {indptr, index, score}} as numpy arrays, metadata with numbers parsed)."""
    meta, _ = read_safetensors_header(path)
    tensors = load_file(path)
    methods: dict[str, dict[str, np.ndarray]] = {}
    for key, t in tensors.items():
        method, part = key.rsplit(".", 1)
        methods.setdefault(method, {})[part] = t.numpy()
    return methods, meta


def dense(sparse: dict[str, np.ndarray], rows: np.ndarray, n_neurons: int) -> np.ndarray:
    """The stored scores of prompts `rows` as a dense [len(rows), n_neurons] array (0 where not kept)."""
    out = np.zeros((len(rows), n_neurons), dtype=np.float32)
    indptr, index, score = sparse["indptr"], sparse["index"], sparse["score"]
    for i, q in enumerate(rows):
        part = slice(indptr[q], indptr[q + 1])
        out[i, index[part]] = score[part]
    return out
