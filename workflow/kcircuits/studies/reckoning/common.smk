# RECKONING (kcircuits.studies.reckoning): its paths, and the functions its rules call (rules.smk),
# holding no rules itself (snakemake --lint). Included after the core's rules/common.smk.
from kcircuits.studies.reckoning import ENCODED

PATHS.update(
    {
        # the companies' headquarters (shared data), the task's entities, contexts and questions; per
        # seed one folder per method (the trained model, its test answers, recitation, timing; for
        # encoded methods the circuits of theta' and their comparison with the main study's); the
        # summary across them
        "companies": f"{DATA}/companies.parquet",
        **{f"reckoning_{name}": f"{DATA}/reckoning/{name}.parquet" for name in ("entities", "contexts", "questions")},
        "reckoning_report": f"{DATA}/reckoning/report.json",
        "reckoning_model": f"{SEED_DIR}/reckoning/{{method}}/model",
        **{
            f"reckoning_{name}": f"{SEED_DIR}/reckoning/{{method}}/{name}.parquet"
            for name in (
                "answers",
                "recitation",
                "timing",
                "circuits",
                "circuit_hits",
                "circuit_compare",
                "circuit_layers",
            )
        },
        **{
            f"reckoning_summary_{name}": f"{ANALYSIS}/reckoning/{name}.parquet"
            for name in (
                "accuracy",
                "steps",
                "recitation",
                "timing",
                "circuit_hits",
                "circuit_compare",
                "circuit_layers",
            )
        },
        "reckoning_json": f"{ANALYSIS}/reckoning/summary.json",
    }
)
RECKONING = config["reckoning"]
RECKONING_METHODS = list(RECKONING["methods"])
# The main-study checkpoint every method starts from: reckoning.start, "last" = the main study's last epoch.
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
