# Functions the study rules call (rules/interplay.smk, rules/reckoning.smk), holding no rules itself
# (snakemake --lint): which runs each study has, where each starts, and the settings each job reads.
# Their paths are in PATHS (rules/common.smk), like every other path.
import itertools

from kcircuits.reckoning import ENCODED

# --- RECKONING (rules/reckoning.smk) ---------------------------------------------------------------
RECKONING = config["reckoning"]
RECKONING_METHODS = list(RECKONING["methods"])
# The main-study checkpoint every method starts from: reckoning.start, "last" = the last epoch.
RECKONING_START = LAST_EPOCH if RECKONING["start"] == "last" else RECKONING["start"]
if RECKONING_START not in CHECKPOINTS:
    raise WorkflowError(
        f"reckoning.start: {RECKONING_START!r} is not a checkpoint of this run ({', '.join(CHECKPOINTS)})"
    )


def reckoning_settings(replicate=True, **keys):
    """A RECKONING job's settings: the reckoning keys it reads (and other sections), as JSON, with
    the job's training replicate as its seed (replicate=False: the data seed, for shared files)."""
    return (replicate_settings if replicate else narrow_settings)("reckoning", **keys)


def across_methods(key, encoded=False):
    """PATHS[key] of every method (encoded: of the encoded methods only), every training replicate."""
    methods = [m for m in RECKONING_METHODS if m in ENCODED] if encoded else RECKONING_METHODS
    return expand(PATHS[key], seed=SEEDS, method=methods)


# --- Findings (rules/results.smk) ---------------------------------------------------------------------
for _study in ("reckoning",):
    if config[_study]["enabled"]:
        FINDING_INPUTS[_study] = PATHS[f"{_study}_json"]
