# Evaluation: knowledge metrics of every checkpoint (one job each), then one table across training.
# Checkpoint folders and the CHECKPOINTS list (names in training order) come from rules/train.smk.

EVAL = f"{SEED_DIR}/eval"  # per training replicate

# Everything a checkpoint is evaluated on: the held-out data and the tokenizer (all data stages).
EVAL_DATA = {
    "tokenizer": f"{DATA}/tokenizer",
    "entities": f"{DATA}/entities.parquet",
    "probes": f"{DATA}/probes.parquet",
    "paraphrase": f"{DATA}/probes_paraphrase.parquet",
    "bios_val": f"{DATA}/bios_val.jsonl",
    "base_val": f"{DATA}/base_val.jsonl",
    "mc": f"{DATA}/qa_multiple_choice.jsonl",
    "tf": f"{DATA}/qa_true_false.jsonl",
}


rule evaluate:
    input:
        checkpoint=f"{CKPTS}/{{ckpt}}",
        **EVAL_DATA,
    output:
        cells=f"{EVAL}/{{ckpt}}.parquet",
        entities=f"{EVAL}/entities/{{ckpt}}.parquet",
    wildcard_constraints:
        ckpt=r"(epoch|step)-[0-9]+",  # never "summary"/"entities": those are eval_summary's
    params:
        settings=settings("evaluate"),
    log:
        f"{SEED_LOGS}/eval/{{ckpt}}.log",
    benchmark:
        f"{SEED_BENCH}/eval/{{ckpt}}.tsv"
    threads: job_threads("evaluate")  # config compute.evaluate
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        # KC sets OMP_WAIT_POLICY=PASSIVE and HF_HUB_OFFLINE=1 before python (and so torch) starts
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} {KC} evaluate --settings {params.settings:q} --checkpoint {input.checkpoint} "
        "--tokenizer {input.tokenizer} --entities {input.entities} --probes {input.probes} "
        "--paraphrase {input.paraphrase} --bios-val {input.bios_val} --base-val {input.base_val} "
        "--mc {input.mc} --tf {input.tf} --threads {threads} "
        "--out {output.cells} --out-entities {output.entities} > {log} 2>&1"


rule eval_summary:
    input:
        evals=expand(f"{EVAL}/{{ckpt}}.parquet", ckpt=CHECKPOINTS, allow_missing=True),
        entity_evals=expand(f"{EVAL}/entities/{{ckpt}}.parquet", ckpt=CHECKPOINTS, allow_missing=True),
    output:
        summary=f"{EVAL}/summary.parquet",
        entities=f"{EVAL}/entities.parquet",
    params:
        settings=settings("evaluate"),
    log:
        f"{SEED_LOGS}/eval/summary.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "{KC} eval-summary --settings {params.settings:q} --evals {input.evals} "
        "--entity-evals {input.entity_evals} --out {output.summary} --out-entities {output.entities} > {log} 2>&1"


EVAL_TARGETS = expand(list(rules.eval_summary.output), seed=SEEDS)
