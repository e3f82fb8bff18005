# Document memory (workflow/kcircuits/memory): allocate where each document is stored (hook-layer MLP
# neurons: random, partitioned, or shared by similar documents), train with an inductive loss that puts
# it there, and measure where the knowledge ends up. The sweep is a Paramspace (rules/studies.smk).
#
#   data:     memory/{documents,allocations,clusters}.parquet + report.json (every number of documents)
#   per seed: memory/documents~{n}/{run}/model  (run: plain = alpha 0, or a point; rules/studies.smk memory_run)
#             memory/documents~{n}/{point}/{facts,paragraphs,documents,circuits,generations}.parquet
#   summary:  analysis/memory/{recall,interference,locality,layers,generation}.parquet + summary.json
wildcard_constraints:
    documents=r"\d+",
    point=r"layer~\d+/alpha~[0-9.e+-]+/allocation~[a-z0-9-]+",
    run=r"plain|layer~\d+/alpha~[0-9.e+-]+/allocation~[a-z0-9-]+",


rule memory_documents:
    input:
        bios=PATHS["bios_train"],
        entities=PATHS["entities"],
        probes=PATHS["probes"],
    output:
        documents=PATHS["memory_documents"],
        allocations=PATHS["memory_allocations"],
        clusters=PATHS["memory_clusters"],
        report=PATHS["memory_report"],
    params:
        settings=narrow_settings(
            "memory",
            memory=[
                "documents",
                "entities_per_document",
                "entity_types",
                "allocations",
                "slots",
                "clusters",
                "shingle_max_share",
            ],
            model=None,
        ),
    log:
        f"{LOGS}/memory/documents.log",
    conda:
        "../envs/data.yaml"
    shell:
        "python -m kcircuits memory documents --settings {params.settings:q} --bios {input.bios} "
        "--entities {input.entities} --probes {input.probes} --out-documents {output.documents} "
        "--out-allocations {output.allocations} --out-clusters {output.clusters} --report {output.report} "
        "> {log} 2>&1"


MEMORY_DATA = dict(
    documents=PATHS["memory_documents"],
    allocations=PATHS["memory_allocations"],
    tokenizer=PATHS["tokenizer"],
)


rule memory_train:
    input:
        **MEMORY_DATA,
        start=path("checkpoint", ckpt=MEMORY_START),
    output:
        model=directory(PATHS["memory_model"]),
    params:
        settings=memory_settings("run", memory=["epochs", "lr", "module", "gated"], train=list(SHARED_KEYS)),
        scratch=PATHS["memory_scratch"],
        device=job_device("memory"),
    log:
        f"{SEED_LOGS}/memory/documents~{{documents}}/{{run}}/train.log",
    benchmark:
        f"{SEED_BENCH}/memory/documents~{{documents}}/{{run}}/train.tsv"
    threads: job_threads("memory")
    resources:
        **job_resources("memory"),
    conda:
        "../envs/train.yaml"
    shell:
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits memory train "
        "--settings {params.settings:q} --start {input.start} --documents {input.documents} "
        "--allocations {input.allocations} --tokenizer {input.tokenizer} --scratch {params.scratch:q} "
        "--threads {threads} --device {params.device} --out {output.model:q} > {log:q} 2>&1"


rule memory_measure:
    input:
        **MEMORY_DATA,
        model=lambda wildcards: path("memory_model", documents=wildcards.documents, run=memory_run(wildcards)),
        probes=PATHS["probes"],
        pairs=PATHS["circuit_pairs"],
    output:
        **{name: PATHS[f"memory_point_{name}"] for name in MEMORY_MEASURES},
    params:
        settings=memory_settings(
            "point",
            memory=["measure"],
            evaluate=["batch_size", "hit_k", "generation_probe"],
            circuits=None,
            circuit_pairs=["tasks"],
            neurons=["ig_steps", "ig_points", "dtype", "batch_size", "threshold", "share", "min_prompts"],
        ),
        outputs=output_options,
        device=job_device("memory"),
    log:
        f"{SEED_LOGS}/memory/documents~{{documents}}/{{point}}/measure.log",
    benchmark:
        f"{SEED_BENCH}/memory/documents~{{documents}}/{{point}}/measure.tsv"
    threads: job_threads("memory")
    resources:
        **job_resources("memory"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits memory measure "
        "--settings {params.settings:q} --model {input.model:q} --documents {input.documents} "
        "--allocations {input.allocations} --probes {input.probes} --pairs {input.pairs} "
        "--tokenizer {input.tokenizer} --threads {threads} --device {params.device} {params.outputs} > {log:q} 2>&1"


rule memory_summary:
    input:
        **{name: across_points(f"memory_point_{name}") for name in MEMORY_MEASURES},
    output:
        **{name: PATHS[f"memory_summary_{name}"] for name in MEMORY_SUMMARIES},
        json=PATHS["memory_json"],
    params:
        settings=narrow_settings("memory", memory=["alphas", "allocations", "layers"], analysis=["topology"]),
        inputs=input_options,
        outputs=output_options,
    log:
        f"{LOGS}/memory/summary.log",
    conda:
        "../envs/figures.yaml"
    shell:
        "python -m kcircuits memory summary --settings {params.settings:q} {params.inputs} {params.outputs} > {log} 2>&1"


MEMORY_TARGETS = rules.memory_summary.output if MEMORY["enabled"] else []
