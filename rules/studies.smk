# Functions the study rules call (rules/memory.smk), holding no rules itself
# (snakemake --lint): which runs each study has, where each starts, and the settings each job reads.
# Their paths are in PATHS (rules/common.smk), like every other path.
import itertools

import pandas as pd
from snakemake.utils import Paramspace

from kcircuits.memory import hook_layers, memory_models
from kcircuits.memory.stage import MEASURES, POINT
from kcircuits.train.schedule import SHARED_KEYS

# --- Document memory (rules/memory.smk) -------------------------------------------------------------
MEMORY = config["memory"]
# name -> model settings; null in memory.models: the main study's model (its checkpoint memory.start)
MEMORY_MODELS = memory_models(config)
MEMORY_MAIN = {name for name, keys in MEMORY["models"].items() if keys is None}
# The sweep's points besides the number of documents: model x its hook layers x alpha x allocation,
# one Paramspace whose single wildcard {point} reads "model~M/layer~L/alpha~A/allocation~X".
MEMORY_SPACE = Paramspace(
    pd.DataFrame(
        [
            (name, layer, float(alpha), allocation)
            for name, model in MEMORY_MODELS.items()
            for layer in hook_layers(MEMORY["layers"], model["n_layer"])
            for alpha in MEMORY["alphas"]
            for allocation in MEMORY["allocations"]
        ],
        columns=POINT[1:],
    ),
    single_wildcard="point",
)
MEMORY_POINTS = list(MEMORY_SPACE.instance_patterns)
MEMORY_START = {"first": CHECKPOINTS[0], "last": LAST_EPOCH}.get(MEMORY["start"], MEMORY["start"])
if MEMORY_START not in CHECKPOINTS:
    raise WorkflowError(f"memory.start: {MEMORY_START!r} is not a checkpoint of this run ({', '.join(CHECKPOINTS)})")


def memory_point(documents, point):
    """A point as plain values {documents, model, layer, alpha, allocation}; a run "model~M/plain":
    alpha 0, no layer or allocation."""
    rest = point.partition("/")[2]
    if rest == "plain":
        return {
            "documents": int(documents),
            "model": point_model(point),
            "layer": None,
            "alpha": 0.0,
            "allocation": None,
        }
    p = MEMORY_SPACE.instance({"point": point})
    return {
        "documents": int(documents),
        "model": str(p["model"]),
        "layer": int(p["layer"]),
        "alpha": float(p["alpha"]),
        "allocation": str(p["allocation"]),
    }


def memory_run(wildcards):
    """The training run that serves a point: the point itself at alpha > 0. At alpha 0 the allocation
    is not used: with the MLP's neurons as slots training is plain training, bit for bit
    (tests/test_memory_loss.py), so one "model~M/plain" run per model and number of documents serves
    every layer and allocation; a gated memory (memory.module) depends on its layer, so the layer's
    run under the first allocation serves the others."""
    point = wildcards.point
    p = memory_point(wildcards.documents, point)
    if p["alpha"] > 0:
        return point
    if MEMORY["module"] == "mlp":
        return f"model~{p['model']}/plain"
    return f"{point.rpartition('allocation~')[0]}allocation~{MEMORY['allocations'][0]}"


def point_model(point):
    """The model name M of a run or point "model~M/..."."""
    head = point.partition("/")[0]
    return head.removeprefix("model~")


def memory_model_name(wildcards):
    """The model of a run's or point's wildcards."""
    return point_model(wildcards.get("run") or wildcards.point)


def memory_allocations(wildcards):
    """The allocations of the model a run or point belongs to."""
    return path("memory_allocations", model=memory_model_name(wildcards))


def memory_start(wildcards):
    """What a memory run trains from: the main study's checkpoint memory.start, or the model's own
    base model."""
    name = memory_model_name(wildcards)
    if name in MEMORY_MAIN:
        return path("checkpoint", seed=wildcards.seed, ckpt=MEMORY_START)
    return path("memory_base", seed=wildcards.seed, model=name)


def memory_base_settings(wildcards):
    """The base phase's settings with memory.models' model instead of the main one."""
    settings = json.loads(phase_params("base")(wildcards))
    return json.dumps({**settings, "model": MEMORY_MODELS[wildcards.model]}, sort_keys=True)


def memory_allocation_settings(wildcards):
    """The allocation job's settings, with its model's."""
    keys = ["documents", "allocations", "slots", "clusters", "shingle_max_share"]
    settings = json.loads(narrow_settings("memory", memory=keys)(wildcards))
    return json.dumps({**settings, "model": MEMORY_MODELS[wildcards.model]}, sort_keys=True)


def memory_settings(point_wildcard, **keys):
    """A memory job's settings (the keys it reads) with its replicate's seed and its point as `run`."""
    narrowed = replicate_settings("memory", **keys)
    return lambda wildcards: json.dumps(
        {**json.loads(narrowed(wildcards)), "run": memory_point(wildcards.documents, wildcards[point_wildcard])},
        sort_keys=True,
    )


def across_points(key):
    """PATHS[key] of every point, every number of documents, every training replicate."""
    return expand(PATHS[key], seed=SEEDS, documents=MEMORY["documents"], point=MEMORY_POINTS)


# --- Findings (rules/results.smk) ---------------------------------------------------------------------
for _study in ("memory",):
    if config[_study]["enabled"]:
        FINDING_INPUTS[_study] = PATHS[f"{_study}_json"]
