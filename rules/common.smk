# Helpers shared by every rule file: config validation, output paths, the stage command.
import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

REPO = Path(workflow.basedir)
sys.path.insert(0, str(REPO / "workflow"))

from kcircuits.config import ConfigError, resource_inputs, stage_settings, validate_config

# Validate before any job is scheduled: a bad key stops the run here with a message naming it.
try:
    validate_config(config, root=REPO)
except ConfigError as err:
    raise WorkflowError(str(err))

RUN = config["run"]
RESULTS = f"results/{RUN}"
DATA = f"{RESULTS}/data"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"

# Training replicates: data and tokenizer are shared; everything trained or measured per replicate
# lives under SEED_DIR, which keeps the {seed} wildcard (per-seed rules; expand(..., seed=SEEDS) across).
SEEDS = list(config["train"]["seeds"])
SEED_DIR = f"{RESULTS}/seed-{{seed}}"
SEED_LOGS = f"{LOGS}/seed-{{seed}}"
SEED_BENCH = f"{BENCH}/seed-{{seed}}"


wildcard_constraints:
    seed=r"\d+",
RESOURCE_FILES = resource_inputs(config, root=REPO)
POOLS_DIR = str(Path(RESOURCE_FILES["pools"][0]).parent)
TEMPLATES_DIR = str(Path(RESOURCE_FILES["templates"][0]).parent)

# The stage CLI, importable from the checkout even where the package is not installed (conda envs).
# Never reach a model hub; keep idle OpenMP threads from spinning on shared cores.
KC = f"HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH={shlex.quote(str(REPO / 'workflow'))}${{PYTHONPATH:+:$PYTHONPATH}} python -m kcircuits"


def settings(stage):
    """The config sections a stage reads, as JSON: a rule param, so editing them reruns the stage.

    A function, so Snakemake does not read the JSON's braces (or a prompt's "{name}") as wildcards.
    """
    text = json.dumps(stage_settings(config, stage), sort_keys=True)
    return lambda wildcards: text


# --- Compute: what each heavy job asks of the executor, from config `compute:` (portable) ---------
# Rules use `threads: job_threads(kind)` and `resources: **job_resources(kind)`; kind is one of
# train / evaluate / circuits / analysis. Locally, threads above --cores are capped by Snakemake and
# gpu/mem_mb only bound what runs at once (with --resources); the SLURM plugin turns them into
# --cpus-per-task, --mem, -t and --gpus. Partition, account and GPU model live in profiles/slurm.
# Not params: changing where or how wide a job runs reruns nothing.


def job_threads(kind):
    """compute.{kind}.threads; null = every core given to Snakemake (--cores; under a cluster executor
    without --cores, one)."""
    threads = config["compute"][kind]["threads"]
    if threads is not None:
        return threads
    try:
        cores = workflow.cores
    except WorkflowError:  # no --cores at all (e.g. `snakemake --report`): nothing runs, any number will do
        return 1
    return cores if isinstance(cores, int) and 0 < cores < 10**6 else 1


def job_resources(kind):
    """mem_mb, runtime (minutes) and gpu of compute.{kind}. A training job on train.device cuda asks for
    at least one GPU, so a cluster never schedules it on a CPU-only allocation."""
    spec = config["compute"][kind]
    gpu = spec["gpu"]
    if kind == "train" and config["train"]["device"] == "cuda":
        gpu = max(gpu, 1)
    return {"mem_mb": spec["mem_mb"], "runtime": spec["runtime"], "gpu": gpu}


# --- Light rules: run on the submitting machine under a cluster executor (no queue wait) ----------
# By name, so rules in rule files added later follow the convention without touching this list:
# `all`, checkpoint exports (file copies), and anything named *summary* or *figure* (tables joined
# across checkpoints or seeds, plots). Other light rules: add their names to LOCAL_RULES_EXTRA.
LOCAL_RULE_PATTERN = re.compile(r"all|export_.+|.*summary.*|.*figure.*")
# Light by content (small JSON/pandas joins of finished tables): names outside the convention.
LOCAL_RULES_EXTRA = {"topology_phase_shift", "topology_depth_trend", "results_table", "findings"}


def register_local_rules():
    """Declare the light rules local (the Snakefile calls this after every include); returns their names."""
    names = sorted(r.name for r in workflow.rules
                   if LOCAL_RULE_PATTERN.fullmatch(r.name) or r.name in LOCAL_RULES_EXTRA)
    workflow.localrules(*names)
    return names


# train.deepspeed: a DeepSpeed JSON config (resources/deepspeed/zero2.json: ZeRO-2), relative paths
# resolved against the repository root like resource files; checked here, not after a queue wait.
DEEPSPEED_CONFIG = config["train"].get("deepspeed") or None
if DEEPSPEED_CONFIG:
    DEEPSPEED_CONFIG = str(Path(DEEPSPEED_CONFIG) if Path(DEEPSPEED_CONFIG).is_absolute() else REPO / DEEPSPEED_CONFIG)
    if not Path(DEEPSPEED_CONFIG).is_file():
        raise WorkflowError(f"train.deepspeed: DeepSpeed config not found: {DEEPSPEED_CONFIG}")
