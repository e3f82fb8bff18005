"""The document-memory sweep's axes: allocation names, simset's cluster count, the models of
memory.models and the hook layers of memory.layers (read by the rules, the config check and the stages)."""
from __future__ import annotations

import numpy as np

STRATEGIES = ("random", "partitioned", "simset")
SHINGLE_SIZES = (1, 2)  # simset-K: K-word shingles
ALLOCATIONS = ("random", "partitioned", *(f"simset-{k}" for k in SHINGLE_SIZES))


def parse_allocation(name: str) -> tuple[str, int | None]:
    """An allocation name -> (strategy, shingle size K): "random" -> ("random", None), "partitioned"
    -> ("partitioned", None), "simset-K" (clusters of K-word shingles, K in SHINGLE_SIZES) ->
    ("simset", K). Anything else: ValueError."""
    if name not in ALLOCATIONS:
        raise ValueError(f"memory.allocations: unknown allocation {name!r}; expected one of {', '.join(ALLOCATIONS)}")
    strategy, _, k = name.partition("-")
    return strategy, int(k) if k else None


def n_clusters(setting: int | float, n_docs: int) -> int:
    """simset's number of clusters for n_docs documents (config memory.clusters): an integer >= 1
    (an int, or a float with no fraction above 1) is a count, capped at n_docs; a float in (0, 1]
    is that share of the documents, rounded half up, at least 1. So 1 is one cluster, 1.0 every
    document its own."""
    if isinstance(setting, bool) or not isinstance(setting, (int, float, np.integer, np.floating)):
        raise ValueError(f"memory.clusters: expected an integer >= 1 or a share in (0, 1], got {setting!r}")
    if isinstance(setting, (int, np.integer)) or (setting > 1 and float(setting).is_integer()):
        if setting < 1:
            raise ValueError(f"memory.clusters: a count must be >= 1, got {setting}")
        return int(min(setting, max(n_docs, 1)))
    if not 0 < setting <= 1:
        raise ValueError(f"memory.clusters: expected an integer >= 1 or a share in (0, 1], got {setting}")
    return max(1, int(np.floor(setting * n_docs + 0.5)))


def memory_models(cfg: dict) -> dict[str, dict]:
    """name -> `model:` settings of each model of the sweep (config memory.models): null is the main
    study's model (its checkpoint memory.start), a mapping is size and family keys over the main
    model's (no init), trained by its own base phase. Insertion order."""
    main = cfg["model"]
    out = {}
    for name, keys in cfg["memory"]["models"].items():
        out[name] = dict(main) if keys is None else {**main, **keys, "init": None}
    return out


def hook_layers(layers: list, n_layer: int) -> list[int]:
    """config memory.layers for a model of n_layer layers: an integer is a layer index, a share in
    (0, 1) of the depth the layer round(share x n_layer) (half up, at most the last layer). In the
    given order, repeats dropped; a layer outside the model is a ValueError naming the key."""
    out = []
    for x in layers:
        layer = x if isinstance(x, int) else min(n_layer - 1, int(np.floor(x * n_layer + 0.5)))
        if not 0 <= layer < n_layer:
            raise ValueError(f"memory.layers: layer {layer} is outside a model of {n_layer} layers")
        if layer not in out:
            out.append(layer)
    return out
