# Knowledge interplay (kcircuits.studies.interplay): its paths, and the functions its rules call
# (rules.smk), holding no rules itself (snakemake --lint). Included after the core's rules/common.smk.
from kcircuits.studies.interplay.streams import knowledge_types, parse_stream, stream_names
from kcircuits.train.schedule import stream_settings

PATHS.update(
    {
        # the order corpus and its streams (shared by every
        # replicate), then per seed one run per branch of a study -- order: {branch} = a stream
        # ("random", "A-B"); forgetting: {branch} = "{corpus}-replay-{share}" -- and the summaries
        "order_sentences": f"{DATA}/order/sentences.parquet",
        "order_streams": f"{DATA}/order/streams.parquet",
        "order_blocks": f"{DATA}/order/blocks/{{branch}}.npz",
        "order_report": f"{DATA}/order/report.json",
        "forgetting_corpus": f"{DATA}/forgetting/{{corpus}}.jsonl",
        "forgetting_facts": f"{DATA}/forgetting/facts.parquet",
        "forgetting_entities": f"{DATA}/forgetting/{{corpus}}.parquet",
        "forgetting_blocks": f"{SEED_DIR}/forgetting/{{branch}}/blocks.npz",
        "branch_checkpoints": f"{SEED_DIR}/{{study}}/{{branch}}/checkpoints",
        "branch_scratch": f"{SEED_DIR}/{{study}}/{{branch}}/scratch",
        **{
            f"branch_{name}": f"{SEED_DIR}/{{study}}/{{branch}}/{name}.parquet"
            for name in ("accuracy", "circuits", "hits")
        },
        **{f"order_{name}": f"{ANALYSIS}/order/{name}.parquet" for name in ("outcome", "curves", "overlap")},
        "order_json": f"{ANALYSIS}/order/summary.json",
        **{f"forgetting_{name}": f"{ANALYSIS}/forgetting/{name}.parquet" for name in ("recall", "circuits")},
        "forgetting_json": f"{ANALYSIS}/forgetting/summary.json",
    }
)
ORDER = config["order"]
FORGETTING = config["forgetting"]
# Every rule exists whatever the switches say (a figure stays requestable by path); `enabled` decides
# what the default target asks for.
ORDER_STREAMS = stream_names(knowledge_types(ORDER["types"]))
FORGETTING_BRANCHES = {
    f"{corpus}-replay-{share:g}": (corpus, share) for corpus in FORGETTING["corpora"] for share in FORGETTING["replay"]
}
STUDY_BRANCHES = {"order": ORDER_STREAMS, "forgetting": list(FORGETTING_BRANCHES)}
STREAM_SETTINGS = stage_settings(config, "stream")
# Where a stream run trains (compute.stream.device) and its DeepSpeed config and save interval: untracked.
STREAM_EXECUTION = json.dumps(execution_settings(config, "stream") | {"deepspeed": DEEPSPEED_CONFIG}, sort_keys=True)
# Where each study starts: the main study's start model (order) or its last epoch (forgetting).
STUDY_START = {"order": CHECKPOINTS[0], "forgetting": LAST_EPOCH}


def stream_start(wildcards):
    return path("checkpoint", seed=wildcards.seed, ckpt=STUDY_START[wildcards.study])


def stream_blocks(wildcards):
    if wildcards.study == "order":
        return path("order_blocks", branch=wildcards.branch)
    return path("forgetting_blocks", seed=wildcards.seed, branch=wildcards.branch)


def stream_params(wildcards):
    """A stream run's training settings (model, shared train keys, the study's lr and schedule) and seed."""
    return json.dumps(stream_settings(STREAM_SETTINGS, wildcards.study, wildcards.seed), sort_keys=True)


def branch_labels(wildcards):
    """The leading columns of a run's measurements: its study and what distinguishes the run."""
    if wildcards.study == "order":
        first, second = parse_stream(wildcards.branch) or (None, None)
        labels = {"stream": wildcards.branch, "first": first, "second": second}
    else:
        corpus, share = FORGETTING_BRANCHES[wildcards.branch]
        labels = {"corpus": corpus, "replay": share}
    return json.dumps({"study": wildcards.study, **labels})


def measure_facts(wildcards):
    """The facts a run is measured on: the order corpus's, or the followed learned facts."""
    return PATHS["order_sentences" if wildcards.study == "order" else "forgetting_facts"]


def across_branches(study, key):
    """PATHS[key] of every run of `study`, every training replicate."""
    return expand(PATHS[key], seed=SEEDS, study=study, branch=STUDY_BRANCHES[study])
