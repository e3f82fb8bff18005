# Training: base world -> continual pre-training, one job per state -> exported checkpoints.
#
# Outputs (PATHS in rules/common.smk), one set per training replicate {seed} in train.seeds:
#   seed-{seed}/train/base/model/                base model (model-only, safetensors)
#   seed-{seed}/train/continual/state/{ckpt}/    resumable Trainer state at epoch-EEE (E > 0) or step-SSSSSS
#   seed-{seed}/checkpoints/{ckpt}/              model-only checkpoint + checkpoint.json, for every ckpt
#                                                in CHECKPOINTS (static file targets)
#
# Why the DAG looks like this: Snakemake deletes a job's outputs before rerunning it and reruns a
# job whose inputs or params change. So each continual state is its own job: an epoch state resumes
# from the epoch state before it (more epochs = more jobs), a step state from the last epoch state
# strictly before it (never from another step: a denser schedule = more leaf jobs); exporting is a
# separate job per checkpoint; and no training job's params mention the epoch count or the schedule.
# Device, DeepSpeed config and save interval reach the jobs as untracked params (TRAIN_EXECUTION):
# changing where a job runs retrains nothing. In-job saves go to scratch folders that are not
# outputs, so a killed job resumes where it last saved.


rule train_base:
    input:
        corpus=PATHS["base_train"],
        tokenizer=PATHS["tokenizer"],
    output:
        model=directory(PATHS["base_model"]),
    params:
        settings=phase_params("base"),
        execution=untracked(TRAIN_EXECUTION),
        env=untracked(TRAIN_ENV),
        scratch=PATHS["base_scratch"],
        tensorboard=PATHS["base_tensorboard"],
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
        "{params.env} OMP_NUM_THREADS={threads} python -m kcircuits train-base "
        "--settings {params.settings:q} --execution {params.execution:q} "
        "--corpus {input.corpus} --tokenizer {input.tokenizer} --scratch {params.scratch} "
        "--tensorboard-dir {params.tensorboard} --threads {threads} --processes {resources.gpu} "
        "--out {output.model} > {log} 2>&1"


checkpoint continual_corpus:
    input:
        corpus=PATHS["bios_train"],
        tokenizer=PATHS["tokenizer"],
    output:
        blocks=PATHS["continual_blocks"],
        summary=PATHS["continual_summary"],
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
        "TOKENIZERS_PARALLELISM=false python -m kcircuits continual-corpus --settings {params.settings:q} "
        "--corpus {input.corpus} --tokenizer {input.tokenizer} --blocks {output.blocks} "
        "--summary {output.summary} > {log} 2>&1"


rule train_continual:
    input:
        start=continual_start,
        blocks=PATHS["continual_blocks"],
        summary=PATHS["continual_summary"],
        tokenizer=PATHS["tokenizer"],
    output:
        state=directory(PATHS["continual_state"]),
    wildcard_constraints:
        ckpt=CONTINUAL_CHECKPOINT,
    params:
        settings=phase_params("continual"),
        until=until_option,
        execution=untracked(TRAIN_EXECUTION),
        env=untracked(TRAIN_ENV),
        scratch=PATHS["continual_scratch"],
        tensorboard=PATHS["continual_tensorboard"],
    log:
        f"{SEED_LOGS}/train/continual/{{ckpt}}.log",
    benchmark:
        f"{SEED_BENCH}/train/continual/{{ckpt}}.tsv"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/train.yaml"
    shell:
        "{params.env} OMP_NUM_THREADS={threads} python -m kcircuits train-continual "
        "--settings {params.settings:q} --execution {params.execution:q} "
        "--start {input.start} --blocks {input.blocks} --summary {input.summary} --tokenizer {input.tokenizer} "
        "{params.until} --scratch {params.scratch} --tensorboard-dir {params.tensorboard} "
        "--threads {threads} --processes {resources.gpu} --out {output.state} > {log} 2>&1"


rule export_start_checkpoint:
    input:
        source=START_MODEL,
        summary=PATHS["continual_summary"],
        tokenizer=PATHS["tokenizer"],
    output:
        checkpoint=directory(path("checkpoint", ckpt=epoch_name(0))),
    params:
        seed=seed_param,
        init="--init" if INIT else "",
    log:
        f"{SEED_LOGS}/train/export/{epoch_name(0)}.log",
    conda:
        "../envs/train.yaml"
    shell:
        "python -m kcircuits export-checkpoint --settings {params.seed:q} --name epoch-000 "
        "--source {input.source} {params.init} --summary {input.summary} --tokenizer {input.tokenizer} "
        "--out {output.checkpoint} > {log} 2>&1"


rule export_checkpoint:
    input:
        state=PATHS["continual_state"],
        tokenizer=PATHS["tokenizer"],
    output:
        checkpoint=directory(PATHS["checkpoint"]),
    wildcard_constraints:
        ckpt=CONTINUAL_CHECKPOINT,
    params:
        seed=seed_param,
    log:
        f"{SEED_LOGS}/train/export/{{ckpt}}.log",
    conda:
        "../envs/train.yaml"
    shell:
        "python -m kcircuits export-checkpoint --settings {params.seed:q} --name {wildcards.ckpt} "
        "--source {input.state} --tokenizer {input.tokenizer} --out {output.checkpoint} > {log} 2>&1"


TRAIN_TARGETS = expand(PATHS["checkpoint"], seed=SEEDS, ckpt=CHECKPOINTS)
