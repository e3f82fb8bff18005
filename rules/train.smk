# Training: base world -> continual pre-training, one job per epoch -> exported checkpoints.
#
# Outputs (exact paths other rules rely on):
#   results/{run}/seed-{seed}/train/base/model/                  base model (model-only, safetensors)
#   results/{run}/seed-{seed}/train/continual/state/epoch-EEE/   resumable Trainer state after epoch E
#   results/{run}/seed-{seed}/checkpoints/{ckpt}/                model-only checkpoint + checkpoint.json,
#                                                    for every ckpt in CHECKPOINTS (static file targets)
# one set per training replicate {seed} in train.seeds.
#
# Why the DAG looks like this: Snakemake deletes a job's outputs before rerunning it and reruns a
# job whose inputs or params change. So each continual epoch is its own job resuming from the one
# before (more epochs = more jobs), exporting is a separate leaf job per checkpoint (a denser
# schedule = more leaf jobs), and no training job's params mention the epoch count or the schedule.
# Device, DeepSpeed config and save interval reach the jobs outside params (TRAIN_EXECUTION):
# changing where a job runs retrains nothing. In-job saves go to scratch folders that are not
# outputs, so a killed job resumes where it last saved.
import json as _json

from kcircuits.train.schedule import (check_steps_within_training, checkpoint_names, execution_settings,
                                      phase_settings, start_epoch_for_step)

TRAIN = f"{SEED_DIR}/train"
CKPTS = f"{SEED_DIR}/checkpoints"
TRAIN_SETTINGS = stage_settings(config, "train")
# train.deepspeed resolved against the repository root (DEEPSPEED_CONFIG, rules/common.smk)
TRAIN_EXECUTION = _json.dumps(execution_settings(TRAIN_SETTINGS) | {"deepspeed": DEEPSPEED_CONFIG}, sort_keys=True)
INIT = config["model"].get("init")
START_MODEL = INIT if INIT else f"{TRAIN}/base/model"  # what continual pre-training starts from

if config["train"]["block_size"] > config["model"]["n_positions"]:
    raise WorkflowError(f"train.block_size ({config['train']['block_size']}) exceeds model.n_positions "
                        f"({config['model']['n_positions']})")

# Every checkpoint analysed downstream: epoch-000, epoch-EEE on the schedule, step-SSSSSS. Static
# (from the config alone): epochs in order, then steps ascending; for training-progress order read
# each checkpoint.json's `epoch`, or see kcircuits.train.schedule / kcircuits.train.export.progress_order.
CHECKPOINTS = checkpoint_names(config)

# Training jobs use every core they are given (torch.set_num_threads from --threads); the progress
# bar in the log refreshes every few seconds rather than every step. glibc malloc otherwise mmaps
# and returns the large activation buffers to the OS on every step: page faults that cost a
# continual epoch job ~4 s of system time (measured 5.7 s -> 1.3 s); keep freed memory instead.
TRAIN_ENV = ("TQDM_MININTERVAL=5 TOKENIZERS_PARALLELISM=false "
             "MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296")
# threads, memory, run time and GPUs of training jobs: config compute.train (rules/common.smk).


def phase_params(phase):
    """A training job's rule params: only the settings that change what it computes (see schedule),
    with the job's replicate seed."""
    return lambda wildcards: _json.dumps(phase_settings(TRAIN_SETTINGS, phase, wildcards.seed), sort_keys=True)


def seed_param(wildcards):
    return _json.dumps({"seed": int(wildcards.seed)})


rule train_base:
    input:
        corpus=f"{DATA}/base_train.jsonl",
        tokenizer=f"{DATA}/tokenizer",
    output:
        model=directory(f"{TRAIN}/base/model"),
    params:
        settings=phase_params("base"),
        scratch=f"{TRAIN}/base/scratch",
        tensorboard=f"{TRAIN}/base/tensorboard",
    log:
        f"{SEED_LOGS}/train/base.log",
    benchmark:
        f"{SEED_BENCH}/train/base.tsv"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/train.yaml"
    shell:
        "{TRAIN_ENV} OMP_NUM_THREADS={threads} {KC} train-base "
        "--settings {params.settings:q} --execution {TRAIN_EXECUTION:q} "
        "--corpus {input.corpus} --tokenizer {input.tokenizer} --scratch {params.scratch} "
        "--tensorboard-dir {params.tensorboard} --threads {threads} --processes {resources.gpu} --out {output.model} > {log} 2>&1"


checkpoint continual_corpus:
    input:
        corpus=f"{DATA}/bios_train.jsonl",
        tokenizer=f"{DATA}/tokenizer",
    output:
        blocks=f"{TRAIN}/continual/blocks.npz",
        summary=f"{TRAIN}/continual/corpus.json",
    params:
        settings=phase_params("corpus"),
    log:
        f"{SEED_LOGS}/train/continual_corpus.log",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/train.yaml"
    shell:
        "TOKENIZERS_PARALLELISM=false {KC} continual-corpus --settings {params.settings:q} --corpus {input.corpus} "
        "--tokenizer {input.tokenizer} --blocks {output.blocks} --summary {output.summary} > {log} 2>&1"


def continual_start(wildcards):
    """Epoch 1 starts from the base model (or model.init); epoch E from epoch E-1's state."""
    epoch = int(wildcards.epoch)
    start = START_MODEL if epoch == 1 else f"{TRAIN}/continual/state/epoch-{epoch - 1:03d}"
    return start.format(seed=wildcards.seed)


rule train_continual_epoch:
    input:
        start=continual_start,
        blocks=rules.continual_corpus.output.blocks,
        summary=rules.continual_corpus.output.summary,
        tokenizer=f"{DATA}/tokenizer",
    output:
        state=directory(f"{TRAIN}/continual/state/epoch-{{epoch}}"),
    wildcard_constraints:
        epoch=r"(?!000)\d{3}",
    params:
        settings=phase_params("continual"),
        scratch=f"{TRAIN}/continual/scratch/epoch-{{epoch}}",
        tensorboard=f"{TRAIN}/continual/tensorboard",
    log:
        f"{SEED_LOGS}/train/continual/epoch-{{epoch}}.log",
    benchmark:
        f"{SEED_BENCH}/train/continual/epoch-{{epoch}}.tsv"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/train.yaml"
    shell:
        "{TRAIN_ENV} OMP_NUM_THREADS={threads} {KC} train-continual "
        "--settings {params.settings:q} --execution {TRAIN_EXECUTION:q} "
        "--start {input.start} --blocks {input.blocks} --summary {input.summary} --tokenizer {input.tokenizer} "
        "--until-epoch {wildcards.epoch} --scratch {params.scratch} --tensorboard-dir {params.tensorboard} "
        "--threads {threads} --processes {resources.gpu} --out {output.state} > {log} 2>&1"


def step_start(wildcards):
    """The latest continual state before the step (needs steps per epoch: known once the
    continual_corpus checkpoint has run, after which Snakemake re-evaluates this)."""
    summary = checkpoints.continual_corpus.get(seed=wildcards.seed).output.summary
    with open(summary) as fh:
        spe = _json.load(fh)["steps_per_epoch"]
    try:
        check_steps_within_training(config, spe)
    except ValueError as err:
        raise WorkflowError(str(err))
    epoch = start_epoch_for_step(int(wildcards.step), spe)
    start = START_MODEL if epoch == 0 else f"{TRAIN}/continual/state/epoch-{epoch:03d}"
    return start.format(seed=wildcards.seed)


rule train_continual_step:
    input:
        start=step_start,
        blocks=rules.continual_corpus.output.blocks,
        summary=rules.continual_corpus.output.summary,
        tokenizer=f"{DATA}/tokenizer",
    output:
        checkpoint=directory(f"{CKPTS}/step-{{step}}"),
    wildcard_constraints:
        step=r"\d{6}",
    params:
        settings=phase_params("continual"),
        scratch=f"{TRAIN}/continual/scratch/step-{{step}}",
        tensorboard=f"{TRAIN}/continual/tensorboard",
    log:
        f"{SEED_LOGS}/train/continual/step-{{step}}.log",
    benchmark:
        f"{SEED_BENCH}/train/continual/step-{{step}}.tsv"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/train.yaml"
    shell:
        "{TRAIN_ENV} OMP_NUM_THREADS={threads} {KC} train-continual "
        "--settings {params.settings:q} --execution {TRAIN_EXECUTION:q} "
        "--start {input.start} --blocks {input.blocks} --summary {input.summary} --tokenizer {input.tokenizer} "
        "--until-step {wildcards.step} --scratch {params.scratch} --tensorboard-dir {params.tensorboard} "
        "--threads {threads} --processes {resources.gpu} --out {output.checkpoint} > {log} 2>&1"


rule export_start_checkpoint:
    input:
        source=START_MODEL,
        summary=rules.continual_corpus.output.summary,
        tokenizer=f"{DATA}/tokenizer",
    output:
        checkpoint=directory(f"{CKPTS}/epoch-000"),
    params:
        seed=seed_param,
        init="--init" if INIT else "",
    log:
        f"{SEED_LOGS}/train/export/epoch-000.log",
    conda:
        "../envs/train.yaml"
    shell:
        "{KC} export-checkpoint --settings {params.seed:q} --name epoch-000 --source {input.source} {params.init} "
        "--summary {input.summary} --tokenizer {input.tokenizer} --out {output.checkpoint} > {log} 2>&1"


rule export_epoch_checkpoint:
    input:
        state=f"{TRAIN}/continual/state/epoch-{{epoch}}",
        tokenizer=f"{DATA}/tokenizer",
    output:
        checkpoint=directory(f"{CKPTS}/epoch-{{epoch}}"),
    wildcard_constraints:
        epoch=r"(?!000)\d{3}",
    params:
        seed=seed_param,
    log:
        f"{SEED_LOGS}/train/export/epoch-{{epoch}}.log",
    conda:
        "../envs/train.yaml"
    shell:
        "{KC} export-checkpoint --settings {params.seed:q} --name epoch-{wildcards.epoch} --source {input.state} "
        "--tokenizer {input.tokenizer} --out {output.checkpoint} > {log} 2>&1"


TRAIN_TARGETS = expand(f"{CKPTS}/{{ckpt}}", seed=SEEDS, ckpt=CHECKPOINTS)
