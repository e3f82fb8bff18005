"""The document-memory study's config checks (after the schema): a start that can be a checkpoint, the
sweep's models, hook layers and slots."""
from __future__ import annotations

import re

from ...config import ConfigError
from ...vocabulary import CHECKPOINT_WILDCARD


def check(cfg: dict, root) -> None:
    """The memory sweep's start can be a checkpoint, a simset cluster count is whole, one model at most
    is the main study's, every model builds, and (for models built from the config) its hook layers
    exist and every allocation's slots fit in its MLP."""
    from ...train.model import check_shape, mlp_width
    from .sweep import hook_layers, memory_models, n_clusters

    mem = cfg["memory"]
    if mem["start"] not in ("first", "last") and not re.fullmatch(CHECKPOINT_WILDCARD, mem["start"]):
        raise ConfigError(f"memory.start: {mem['start']!r} is neither first, last nor a checkpoint name (epoch-005)")
    main = [name for name, keys in mem["models"].items() if keys is None]
    if len(main) > 1:
        raise ConfigError(f"memory.models: {main} are all the main study's model (null); name it once")
    n = max(mem["documents"])
    try:
        blocks = {"partitioned": n, **{a: n_clusters(mem["clusters"], n) for a in mem["allocations"]
                                       if a.startswith("simset")}}
        for name, model in memory_models(cfg).items():
            check_shape(model)
            if model["init"] is not None:
                continue  # the model's shape is known once its folder is read (the jobs check it)
            hook_layers(mem["layers"], model["n_layer"])
            width = mlp_width(model)
            slots = mem["slots"] or max(1, width // n)
            for allocation, count in blocks.items():
                if allocation in mem["allocations"] and count * slots > width:
                    raise ConfigError(f"memory.slots: {allocation} needs {count} disjoint blocks of {slots} slots but "
                                      f"model {name} has {width} MLP neurons per layer")
    except ValueError as err:
        raise ConfigError(f"memory.models: {err}" if str(err).startswith("model.") else str(err)) from err
