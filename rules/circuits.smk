# Knowledge circuits of every checkpoint: EAP-IG scores -> circuits + evaluation -> transplant -> summary.
# Checkpoint folders (CKPTS) and the CHECKPOINTS list come from rules/train.smk.
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

CIRCUITS = f"{SEED_DIR}/circuits"  # per training replicate
CIRCUIT_CKPT = r"(epoch|step)-[0-9]+"

try:
    TRANSPLANT_SOURCES = _transplant_sources(config["circuits"]["transplant_sources"], CHECKPOINTS)
except ValueError as err:
    raise WorkflowError(str(err))


rule circuit_scores:
    input:
        checkpoint=f"{CKPTS}/{{ckpt}}",
        pairs=f"{DATA}/circuit_pairs.parquet",
        tokenizer=f"{DATA}/tokenizer",
    output:
        scores=f"{CIRCUITS}/{{ckpt}}/scores.safetensors",
        report=f"{CIRCUITS}/{{ckpt}}/scores.json",
    wildcard_constraints:
        ckpt=CIRCUIT_CKPT,
    params:
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
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} {KC} circuits scores --settings {params.settings:q} "
        "--checkpoint {input.checkpoint} --pairs {input.pairs} --tokenizer {input.tokenizer} --threads {threads} "
        "--out {output.scores} --report {output.report} > {log} 2>&1"


rule circuit_eval:
    input:
        checkpoint=f"{CKPTS}/{{ckpt}}",
        scores=rules.circuit_scores.output.scores,
        pairs=f"{DATA}/circuit_pairs.parquet",
        probes=f"{DATA}/probes.parquet",
        tokenizer=f"{DATA}/tokenizer",
    output:
        circuits=f"{CIRCUITS}/{{ckpt}}/circuits.parquet",
        stats=f"{CIRCUITS}/{{ckpt}}/stats.parquet",
        hits=f"{CIRCUITS}/{{ckpt}}/hits.parquet",
    wildcard_constraints:
        ckpt=CIRCUIT_CKPT,
    params:
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
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} {KC} circuits eval --settings {params.settings:q} "
        "--checkpoint {input.checkpoint} --scores {input.scores} --pairs {input.pairs} --probes {input.probes} "
        "--tokenizer {input.tokenizer} --threads {threads} --out-circuits {output.circuits} "
        "--out-stats {output.stats} --out-hits {output.hits} > {log} 2>&1"


rule circuit_transplant:
    input:
        checkpoint=f"{CKPTS}/{{ckpt}}",
        circuits=expand(f"{CIRCUITS}/{{source}}/circuits.parquet", source=TRANSPLANT_SOURCES, allow_missing=True),
        probes=f"{DATA}/probes.parquet",
        tokenizer=f"{DATA}/tokenizer",
    output:
        transplant=f"{CIRCUITS}/{{ckpt}}/transplant.parquet",
    wildcard_constraints:
        ckpt=CIRCUIT_CKPT,
    params:
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
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} {KC} circuits transplant --settings {params.settings:q} "
        "--checkpoint {input.checkpoint} --circuits {input.circuits} --source-names {params.sources} "
        "--probes {input.probes} --tokenizer {input.tokenizer} --threads {threads} --out {output.transplant} > {log} 2>&1"


rule circuit_drawings:
    input:
        scores=rules.circuit_scores.output.scores,
        circuits=rules.circuit_eval.output.circuits,
    output:
        drawings=directory(f"{CIRCUITS}/{{ckpt}}/drawings"),
    wildcard_constraints:
        ckpt=CIRCUIT_CKPT,
    params:
        settings=settings("circuits"),
    log:
        f"{SEED_LOGS}/circuits/{{ckpt}}/draw.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "{KC} circuits draw --settings {params.settings:q} --scores {input.scores} --circuits {input.circuits} "
        "--out-dir {output.drawings} > {log} 2>&1"


rule circuit_summary:
    input:
        stats=expand(f"{CIRCUITS}/{{ckpt}}/stats.parquet", ckpt=CHECKPOINTS, allow_missing=True),
        hits=expand(f"{CIRCUITS}/{{ckpt}}/hits.parquet", ckpt=CHECKPOINTS, allow_missing=True),
        transplants=expand(f"{CIRCUITS}/{{ckpt}}/transplant.parquet", ckpt=CHECKPOINTS, allow_missing=True),
    output:
        stats=f"{CIRCUITS}/summary_stats.parquet",
        hits=f"{CIRCUITS}/summary_hits.parquet",
        transplant=f"{CIRCUITS}/summary_transplant.parquet",
    params:
        settings=settings("circuits"),
    log:
        f"{SEED_LOGS}/circuits/summary.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "{KC} circuits summary --settings {params.settings:q} --stats {input.stats} --hits {input.hits} "
        "--transplants {input.transplants} --out-stats {output.stats} --out-hits {output.hits} "
        "--out-transplant {output.transplant} > {log} 2>&1"


CIRCUIT_TARGETS = expand(list(rules.circuit_summary.output), seed=SEEDS)
if config["circuits"]["draw"]:
    CIRCUIT_TARGETS += expand(f"{CIRCUITS}/{{ckpt}}/drawings", seed=SEEDS, ckpt=CHECKPOINTS)
