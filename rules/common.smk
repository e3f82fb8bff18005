# Shared by all rules/*.smk, holding no rules itself (snakemake --lint): config validation, the output
# paths (PATHS), the job shell, compute requests, and the functions rules call (params, inputs, figures).
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

REPO = Path(workflow.basedir)
sys.path.insert(0, str(REPO / "workflow"))

from kcircuits.analysis.components_stage import COMPONENT_SECTIONS
from kcircuits.config import (
    ConfigError,
    config_path,
    init_dir,
    resource_inputs,
    stage_settings,
    validate_config,
    with_study_defaults,
)
from kcircuits import worker
from kcircuits.data.world import import_files
from kcircuits.figures.stage import all_figures
from kcircuits.figures.table import is_enabled
from kcircuits.studies import STUDIES
from kcircuits.train.schedule import (
    check_steps_within_training,
    checkpoint_names,
    execution_settings,
    phase_settings,
    start_epoch_for_step,
)
from kcircuits.vocabulary import CHECKPOINT_WILDCARD, epoch_name, parse_checkpoint

# Every study's defaults under the config (its config.yaml), then validation before any job is
# scheduled: a bad key stops the run here with a message naming it.
config.update(with_study_defaults(config))
try:
    validate_config(config, root=REPO)
except ConfigError as err:
    raise WorkflowError(str(err))

# --- Paths: every file a rule reads or writes, by one name each --------------------------------------
# Data are shared; everything trained or measured per training replicate lives under seed-{seed}/
# (per-seed rules keep the {seed} wildcard; across_seeds(KEY) lists every replicate's file). Per
# checkpoint files carry {ckpt}: epoch-000, epoch-EEE, step-SSSSSS (kcircuits.vocabulary).
RESULTS = f"results/{config['run']}"
DATA = f"{RESULTS}/data"
SEED_DIR = f"{RESULTS}/seed-{{seed}}"
TRAIN = f"{SEED_DIR}/train"
CKPTS = f"{SEED_DIR}/checkpoints"
EVAL = f"{SEED_DIR}/eval"
CIRCUITS = f"{SEED_DIR}/circuits"
NEURONS = f"{SEED_DIR}/neurons"
SEED_ANALYSIS = f"{SEED_DIR}/analysis"
ANALYSIS = f"{RESULTS}/analysis"
LOGS = f"{RESULTS}/logs"  # one log per job; per-seed jobs under SEED_LOGS
BENCH = f"{RESULTS}/benchmarks"  # run time and memory of heavy jobs
SEED_LOGS = f"{LOGS}/seed-{{seed}}"
SEED_BENCH = f"{BENCH}/seed-{{seed}}"
# Specialised heads and logit lens: per checkpoint in CIRCUITS, joined per seed in SEED_ANALYSIS.
COMPONENT_TABLES = ("heads", "head_roles", "head_layers", "logit_lens")
# Knowledge neurons (kcircuits.neurons.stage): per checkpoint in NEURONS, joined per seed in SEED_ANALYSIS
# (neuron_{table}), with their evolution across checkpoints.
NEURON_TABLES = ("facts", "neurons", "interventions", "edits", "erase", "overlap")
NEURON_SEED_TABLES = tuple(name for name in NEURON_TABLES if name != "neurons")  # joined as they are

PATHS = {
    # data (shared by every replicate)
    "entities": f"{DATA}/entities.parquet",
    "entities_report": f"{DATA}/entities_report.json",
    **{name: f"{DATA}/{name}.jsonl" for name in ("bios_train", "bios_val", "base_train", "base_val")},
    "biographies_report": f"{DATA}/biographies_report.json",
    "probes": f"{DATA}/probes.parquet",
    "paraphrase": f"{DATA}/probes_paraphrase.parquet",
    "probes_report": f"{DATA}/probes_report.json",
    "qa_mc": f"{DATA}/qa_multiple_choice.jsonl",
    "qa_tf": f"{DATA}/qa_true_false.jsonl",
    "qa_report": f"{DATA}/qa_report.json",
    "tokenizer": f"{DATA}/tokenizer",
    "tokenizer_report": f"{DATA}/tokenizer_report.json",
    "circuit_pairs": f"{DATA}/circuit_pairs.parquet",
    "circuit_pairs_report": f"{DATA}/circuit_pairs_report.json",
    # training, per seed: base model, continual blocks, resumable states (their own jobs' saves go to
    # scratch, which no rule declares), exported model-only checkpoints
    "base_model": f"{TRAIN}/base/model",
    "base_scratch": f"{TRAIN}/base/scratch",
    "base_tensorboard": f"{TRAIN}/base/tensorboard",
    "continual_blocks": f"{TRAIN}/continual/blocks.npz",
    "continual_summary": f"{TRAIN}/continual/corpus.json",
    "continual_state": f"{TRAIN}/continual/state/{{ckpt}}",
    "continual_scratch": f"{TRAIN}/continual/scratch/{{ckpt}}",
    "continual_tensorboard": f"{TRAIN}/continual/tensorboard",
    "checkpoint": f"{CKPTS}/{{ckpt}}",
    # evaluation, per seed x checkpoint, joined per seed
    "eval": f"{EVAL}/{{ckpt}}.parquet",
    "eval_entities": f"{EVAL}/entities/{{ckpt}}.parquet",
    "eval_generations": f"{EVAL}/generations/{{ckpt}}.parquet",
    "eval_summary": f"{EVAL}/summary.parquet",
    "eval_summary_entities": f"{EVAL}/entities.parquet",
    "eval_summary_generations": f"{EVAL}/generations.parquet",
    # circuits and components, per seed x checkpoint
    "scores": f"{CIRCUITS}/{{ckpt}}/scores.safetensors",
    "scores_report": f"{CIRCUITS}/{{ckpt}}/scores.json",
    **{name: f"{CIRCUITS}/{{ckpt}}/{name}.parquet" for name in ("circuits", "stats", "hits", "transplant")},
    "drawings": f"{CIRCUITS}/{{ckpt}}/drawings",
    **{name: f"{CIRCUITS}/{{ckpt}}/{name}.parquet" for name in COMPONENT_TABLES},
    # knowledge neurons, per seed x checkpoint
    "neuron_bags": f"{DATA}/neuron_bags.parquet",
    "neuron_prompts": f"{NEURONS}/{{ckpt}}/prompts.parquet",
    "neuron_scores": f"{NEURONS}/{{ckpt}}/scores.safetensors",
    **{f"neurons_{name}": f"{NEURONS}/{{ckpt}}/{name}.parquet" for name in NEURON_TABLES},
    # joined per seed across checkpoints
    **{f"summary_{name}": f"{CIRCUITS}/summary_{name}.parquet" for name in ("stats", "hits", "transplant")},
    **{f"seed_{name}": f"{SEED_ANALYSIS}/{name}.parquet" for name in COMPONENT_TABLES},
    "topology": f"{SEED_ANALYSIS}/topology.parquet",
    "layers": f"{SEED_ANALYSIS}/layers.parquet",
    **{f"seed_neuron_{name}": f"{SEED_ANALYSIS}/neuron_{name}.parquet" for name in NEURON_SEED_TABLES},
    "neuron_evolution": f"{SEED_ANALYSIS}/neuron_evolution.parquet",
    "neuron_layers": f"{SEED_ANALYSIS}/neuron_layers.parquet",
    # across seeds
    "phase_shift": f"{ANALYSIS}/phase_shift.parquet",
    "phase_shift_json": f"{ANALYSIS}/phase_shift.json",
    "depth_trend": f"{ANALYSIS}/depth_trend.parquet",
    "depth_trend_json": f"{ANALYSIS}/depth_trend.json",
    "table": f"{ANALYSIS}/table.parquet",
    "findings_json": f"{ANALYSIS}/findings.json",
    "findings_md": f"{ANALYSIS}/findings.md",
    "figure": f"{RESULTS}/figures/{{name}}.{{ext}}",  # ext: pdf, png
}


wildcard_constraints:
    seed=r"\d+",
    ckpt=CHECKPOINT_WILDCARD,  # never "summary" or "entities": those are joins


# A continual state (and its export) exists for every checkpoint but the start, epoch-000.
CONTINUAL_CHECKPOINT = rf"(?!epoch-000){CHECKPOINT_WILDCARD}"
SEEDS = list(config["train"]["seeds"])  # training replicates: init, packing and batch order
# Every checkpoint analysed downstream: epoch-000, epoch-EEE on the schedule, step-SSSSSS. Static
# (from the config alone): epochs in order, then steps ascending; for training order read each
# checkpoint.json (kcircuits.vocabulary.training_key).
CHECKPOINTS = checkpoint_names(config)
INIT = init_dir(config, REPO)  # model.init, resolved against the repository root
START_MODEL = str(INIT) if INIT else PATHS["base_model"]  # what continual pre-training starts from
LAST_EPOCH = epoch_name(config["train"]["continual"]["epochs"])  # the main study's last epoch checkpoint
RESOURCE_FILES = resource_inputs(config, root=REPO)
# world.source set: the files the rule import_world reads and writes (world.out, what resources read).
WORLD_IMPORT = (
    import_files(config_path(config["world"]["source"], REPO), config_path(config["world"]["out"], REPO))
    if config["world"]["source"]
    else None
)
# train.deepspeed: a DeepSpeed JSON config (resources/deepspeed/zero2.json: ZeRO-2), relative paths
# resolved against the repository root like resource files; checked here, not after a queue wait.
DEEPSPEED_CONFIG = config["train"].get("deepspeed") or None
if DEEPSPEED_CONFIG:
    DEEPSPEED_CONFIG = str(config_path(DEEPSPEED_CONFIG, REPO))
    if not Path(DEEPSPEED_CONFIG).is_file():
        raise WorkflowError(f"train.deepspeed: DeepSpeed config not found: {DEEPSPEED_CONFIG}")


# What the study rules add (each study's rules.smk, included after the core's): its targets in the
# default target, its light rules (run on the submitting machine), and the summary.json of each of its
# findings keys (kcircuits.studies: Study.findings) that findings.md reports on, when it is switched on.
STUDY_TARGETS = []
STUDY_LOCAL_RULES = []
FINDING_INPUTS = {}


def finding_inputs(wildcards):
    return FINDING_INPUTS


def env(name):
    """A conda environment file of envs/, for rules outside rules/ (the studies')."""
    return str(REPO / "envs" / f"{name}.yaml")


def path(key, **wildcards):
    """PATHS[key] with some wildcards filled in, the others left for the rule: path("checkpoint", ckpt="epoch-000")."""
    return expand(PATHS[key], **wildcards, allow_missing=True)[0]


def across_seeds(key):
    """Every training replicate's PATHS[key]."""
    return expand(PATHS[key], seed=SEEDS)


def across_checkpoints(key):
    """PATHS[key] of every checkpoint, in CHECKPOINTS order; {seed} left for the rule."""
    return expand(PATHS[key], ckpt=CHECKPOINTS, allow_missing=True)


# --- The job shell --------------------------------------------------------------------------------
# Every command runs under strict bash with the stage CLI (`python -m kcircuits`) importable from the
# checkout even where the package is not installed (conda envs); it never reaches a model hub, and
# idle OpenMP threads do not spin on shared cores. shell.prefix formats its text: braces doubled.
JOB_ENV = {"HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
JOB_SHELL = (
    "set -euo pipefail; export "
    + " ".join(f"{key}={value}" for key, value in JOB_ENV.items())
    + f" PYTHONPATH={shlex.quote(str(REPO / 'workflow'))}${{PYTHONPATH:+:$PYTHONPATH}}; "
)
shell.prefix(JOB_SHELL.replace("{", "{{").replace("}", "}}"))

# Locally, one worker that has imported torch, transformers and pandas once forks every
# `python -m kcircuits` job (kcircuits.worker: ~4 s less start-up per job); KCIRCUITS_WORKER=off
# before snakemake runs each job in a fresh interpreter. It gets the job shell's environment.
WORKER = {}


def start_worker():
    path = os.environ.get("PYTHONPATH")
    pythonpath = os.pathsep.join([str(REPO / "workflow"), *([path] if path else [])])
    WORKER["process"] = worker.start({**JOB_ENV, "PYTHONPATH": pythonpath}, f"{LOGS}/worker.log")


onstart:
    start_worker()


onsuccess:
    worker.stop(WORKER.get("process"))


onerror:
    worker.stop(WORKER.get("process"))


def untracked(value):
    """A param that never reruns a job: a function of `resources`, which Snakemake counts as derived and
    leaves out of its params rerun trigger. For execution detail, like the resources themselves."""
    return lambda wildcards, resources: value


def settings(stage):
    """The config sections a stage reads, as JSON: a rule param, so editing them reruns the stage.

    A function, so Snakemake does not read the JSON's braces (or a prompt's "{name}") as wildcards.
    """
    text = json.dumps(stage_settings(config, stage), sort_keys=True)
    return lambda wildcards: text


def narrow_settings(stage, **sections):
    """Like settings(stage), cut to the keys a job reads (section=[keys]; section=None: all of it);
    other sections are left out. Editing anything else reruns nothing."""
    s = stage_settings(config, stage)
    picked = {name: s[name] if keys is None else {k: s[name][k] for k in keys} for name, keys in sections.items()}
    text = json.dumps({"seed": s["seed"], **picked}, sort_keys=True)
    return lambda wildcards: text


def replicate_settings(stage, **sections):
    """narrow_settings for a per-replicate job: its seed is the job's training replicate ({seed}),
    not the data seed."""
    narrowed = narrow_settings(stage, **sections)
    return lambda wildcards: json.dumps(
        {**json.loads(narrowed(wildcards)), "seed": int(wildcards.seed)}, sort_keys=True
    )


# The components stage: a topology or Hit@k setting does not rerun every checkpoint's job.
COMPONENTS_SETTINGS = narrow_settings("analysis", **COMPONENT_SECTIONS)
# Knowledge neurons: every neurons setting; of the circuits, only how prompts are encoded
# (circuits.parquet, an input, reruns it when circuits change).
NEURON_SETTINGS = narrow_settings("neurons", neurons=None, circuits=["prepend_bos"])


def parent_dir(key):
    """A param: the folder of the first file of input `key` (resource folders the CLI reads)."""
    return lambda wildcards, input: str(Path(input[key][0]).parent)


# --- Compute: what each heavy job asks of the executor, from config `compute:` (portable) ---------
# Heavy rules use `threads: job_threads(kind)`, `resources: **job_resources(kind)` and pass
# `--device {params.device}` (job_device(kind)); kind is one of train / evaluate / circuits /
# analysis / neurons. Locally, threads above --cores are capped by Snakemake and gpu/mem_mb only
# bound what runs at once (with --resources); the SLURM plugin turns them into --cpus-per-task,
# --mem, -t and --gpus. Partition, account and GPU model live in profiles/slurm. Not params:
# changing where or how wide a job runs reruns nothing. Light rules (file copies, joins, figures)
# run on the submitting machine: LOCAL_RULES in the Snakefile.


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
    """mem_mb (times the attempt: a job retried after an out-of-memory kill asks for more), runtime
    (minutes) and gpu of compute.{kind}. A job on device cuda asks for at least one GPU, so a cluster
    never schedules it on a CPU-only allocation."""
    spec = config["compute"][kind]
    gpu = max(spec["gpu"], 1) if spec["device"] == "cuda" else spec["gpu"]
    return {"mem_mb": lambda wildcards, attempt: spec["mem_mb"] * attempt, "runtime": spec["runtime"], "gpu": gpu}


def job_device(kind):
    """A param: compute.{kind}.device (auto | cpu | cuda), untracked (moving a job reruns nothing)."""
    return untracked(config["compute"][kind]["device"])


# --- Training (rules/train.smk) -------------------------------------------------------------------
TRAIN_SETTINGS = stage_settings(config, "train")
# Device, DeepSpeed config and save interval: untracked, so changing where a job runs retrains nothing.
TRAIN_EXECUTION = json.dumps(execution_settings(config) | {"deepspeed": DEEPSPEED_CONFIG}, sort_keys=True)
# Training jobs use every core they are given (torch.set_num_threads from --threads); the progress
# bar in the log refreshes every few seconds rather than every step. glibc malloc otherwise mmaps
# and returns the large activation buffers to the OS on every step: page faults that cost a
# continual epoch job ~4 s of system time (measured 5.7 s -> 1.3 s); keep freed memory instead.
TRAIN_ENV = (
    "TQDM_MININTERVAL=5 TOKENIZERS_PARALLELISM=false MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296"
)


def phase_params(phase):
    """A training job's params: only the settings that change what it computes (see schedule),
    with the job's replicate seed."""
    return lambda wildcards: json.dumps(phase_settings(TRAIN_SETTINGS, phase, wildcards.seed), sort_keys=True)


def seed_param(wildcards):
    return json.dumps({"seed": int(wildcards.seed)})


def continual_start(wildcards):
    """What a continual job resumes from: the latest epoch state strictly before its checkpoint, or the
    start model. Epoch E: state E-1. Step S: needs steps per epoch, known once the continual_corpus
    checkpoint has run (Snakemake then re-evaluates this); epoch jobs never wait for it."""
    kind, number = parse_checkpoint(wildcards.ckpt)
    epoch = number - 1 if kind == "epoch" else start_epoch_for_step(number, steps_per_epoch(wildcards.seed))
    if epoch == 0:
        return START_MODEL.format(seed=wildcards.seed)
    return path("continual_state", seed=wildcards.seed, ckpt=epoch_name(epoch))


def steps_per_epoch(seed):
    summary = checkpoints.continual_corpus.get(seed=seed).output.summary
    with open(summary) as fh:
        spe = json.load(fh)["steps_per_epoch"]
    try:
        check_steps_within_training(config, spe)
    except ValueError as err:
        raise WorkflowError(str(err))
    return spe


def until_option(wildcards):
    """The train-continual target of a state: --until-epoch E or --until-step S."""
    kind, number = parse_checkpoint(wildcards.ckpt)
    return f"--until-{kind} {number}"


# --- Figures (rules/figures.smk) ------------------------------------------------------------------


def figure_outputs(name, label, category, caption):
    """PDF and PNG of one figure, both shown in the Snakemake report under one category, with its
    caption (a .rst file; Snakemake reads a relative caption path against the rules folder)."""
    return {
        ext: report(
            PATHS["figure"].format(name=name, ext=ext),
            caption=os.path.relpath(caption, REPO / "rules"),
            category=category,
            labels={"figure": label, "format": ext.upper()},
        )
        for ext in ("pdf", "png")
    }


def figure_inputs(figure):
    """Each input option's paths: every replicate's (or the first's) where the path has {seed}."""
    seeds = SEEDS[:1] if figure.first_seed else SEEDS
    return {
        option: expand(PATHS[key], seed=seeds) if "{seed}" in PATHS[key] else PATHS[key]
        for option, key in figure.inputs.items()
    }


def figure_settings(figure):
    if figure.sections is None:
        return settings(figure.stage)
    return narrow_settings(figure.stage, **figure.sections)


def output_options(wildcards, output):
    """A param: one --out-KEY PATH option per output (underscores as dashes)."""
    return " ".join(f"--out-{key.replace('_', '-')} {shlex.quote(output[key])}" for key in output.keys())


def input_options(wildcards, input):
    """A param: one option per input (--KEY PATH..., underscores as dashes), for figures and joins
    with many inputs."""
    return " ".join(
        f"--{key.replace('_', '-')} "
        + " ".join(map(shlex.quote, [input[key]] if isinstance(input[key], str) else input[key]))
        for key in input.keys()
    )
