# Knowledge circuits of every checkpoint: EAP-IG scores -> circuits + evaluation -> transplant -> summary.
#
# Outputs per checkpoint, results/{run}/seed-{seed}/circuits/{ckpt}/:
#   scores.safetensors  score matrix [n_forward, n_backward] per task/type/freq_group; node names in
#                       the metadata (kcircuits.circuits.store.load_scores)
#   scores.json         pairs per cell, mean clean/corrupted logit differences, input-edge sum
#   circuits.parquet    in-circuit edges of every cell at every edge budget
#   stats.parquet       per circuit: edges, nodes, edge entropy, faithfulness
#   hits.parquet        Hit@k per circuit x target (type, group) of its task x ablation (cross-group)
#   transplant.parquet  circuits of circuits.transplant_sources evaluated on this checkpoint
# and across checkpoints, results/{run}/seed-{seed}/circuits/summary_{stats,hits,transplant}.parquet.
from kcircuits.circuits.stage import transplant_sources as _transplant_sources

try:
    TRANSPLANT_SOURCES = _transplant_sources(config["circuits"]["transplant_sources"], CHECKPOINTS)
except ValueError as err:
    raise WorkflowError(str(err))


rule circuit_scores:
    input:
        checkpoint=PATHS["checkpoint"],
        pairs=PATHS["circuit_pairs"],
        tokenizer=PATHS["tokenizer"],
    output:
        scores=PATHS["scores"],
        report=PATHS["scores_report"],
    params:
        device=job_device("circuits"),
        settings=settings("circuits"),
    log:
        f"{SEED_LOGS}/circuits/{{ckpt}}/scores.log",
    benchmark:
        f"{SEED_BENCH}/circuits/{{ckpt}}/scores.tsv"
    threads: job_threads("circuits")  # config compute.circuits
    resources:
        **job_resources("circuits"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits circuits scores "
        "--settings {params.settings:q} --checkpoint {input.checkpoint} --pairs {input.pairs} "
        "--tokenizer {input.tokenizer} --threads {threads} --device {params.device} --out {output.scores} --report {output.report} "
        "> {log} 2>&1"


rule circuit_eval:
    input:
        checkpoint=PATHS["checkpoint"],
        scores=PATHS["scores"],
        pairs=PATHS["circuit_pairs"],
        probes=PATHS["probes"],
        tokenizer=PATHS["tokenizer"],
    output:
        circuits=PATHS["circuits"],
        stats=PATHS["stats"],
        hits=PATHS["hits"],
    params:
        device=job_device("circuits"),
        settings=settings("circuits"),
    log:
        f"{SEED_LOGS}/circuits/{{ckpt}}/eval.log",
    benchmark:
        f"{SEED_BENCH}/circuits/{{ckpt}}/eval.tsv"
    threads: job_threads("circuits")
    resources:
        **job_resources("circuits"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits circuits eval "
        "--settings {params.settings:q} --checkpoint {input.checkpoint} --scores {input.scores} "
        "--pairs {input.pairs} --probes {input.probes} --tokenizer {input.tokenizer} --threads {threads} --device {params.device} "
        "--out-circuits {output.circuits} --out-stats {output.stats} --out-hits {output.hits} > {log} 2>&1"


rule circuit_transplant:
    input:
        checkpoint=PATHS["checkpoint"],
        circuits=expand(PATHS["circuits"], ckpt=TRANSPLANT_SOURCES, allow_missing=True),
        probes=PATHS["probes"],
        tokenizer=PATHS["tokenizer"],
    output:
        transplant=PATHS["transplant"],
    params:
        device=job_device("circuits"),
        settings=settings("circuits"),
        sources=" ".join(TRANSPLANT_SOURCES),
    log:
        f"{SEED_LOGS}/circuits/{{ckpt}}/transplant.log",
    threads: job_threads("circuits")
    resources:
        **job_resources("circuits"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits circuits transplant "
        "--settings {params.settings:q} --checkpoint {input.checkpoint} --circuits {input.circuits} "
        "--source-names {params.sources} --probes {input.probes} --tokenizer {input.tokenizer} "
        "--threads {threads} --device {params.device} --out {output.transplant} > {log} 2>&1"


rule circuit_drawings:
    input:
        scores=PATHS["scores"],
        circuits=PATHS["circuits"],
    output:
        drawings=directory(PATHS["drawings"]),
    params:
        settings=settings("circuits"),
    log:
        f"{SEED_LOGS}/circuits/{{ckpt}}/draw.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "python -m kcircuits circuits draw --settings {params.settings:q} --scores {input.scores} "
        "--circuits {input.circuits} --out-dir {output.drawings} > {log} 2>&1"


rule circuit_summary:
    input:
        stats=across_checkpoints("stats"),
        hits=across_checkpoints("hits"),
        transplants=across_checkpoints("transplant"),
    output:
        stats=PATHS["summary_stats"],
        hits=PATHS["summary_hits"],
        transplant=PATHS["summary_transplant"],
    params:
        settings=settings("circuits"),
    log:
        f"{SEED_LOGS}/circuits/summary.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "python -m kcircuits circuits summary --settings {params.settings:q} --stats {input.stats} "
        "--hits {input.hits} --transplants {input.transplants} --out-stats {output.stats} "
        "--out-hits {output.hits} --out-transplant {output.transplant} > {log} 2>&1"


CIRCUIT_TARGETS = [*across_seeds("summary_stats"), *across_seeds("summary_hits"), *across_seeds("summary_transplant")]
if config["circuits"]["draw"]:
    CIRCUIT_TARGETS += expand(PATHS["drawings"], seed=SEEDS, ckpt=CHECKPOINTS)
