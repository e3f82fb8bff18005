# Document memory (kcircuits.studies.memory): allocate where each document is stored (hook-layer MLP
# neurons: random, partitioned, or shared by similar documents), train with an inductive loss that puts
# it there, and measure where the knowledge ends up. The sweep is a Paramspace (common.smk).
#
#   data:     memory/{documents,clusters}.parquet + report.json (every number of documents);
#             memory/model~{model}/allocations.parquet (every allocation, in that model's MLP width)
#   per seed: memory/model~{model}/base/model  (a model of memory.models other than the main study's)
#             memory/documents~{n}/{run}/model  (run: model~M/plain = alpha 0, or a point; memory_run)
#             memory/documents~{n}/{point}/{facts,paragraphs,documents,circuits,generations}.parquet
#   summary:  analysis/memory/{recall,interference,locality,layers,generation}.parquet + summary.json
wildcard_constraints:
    documents=r"\d+",
    model=r"[a-z0-9][a-z0-9_.-]*",
    point=r"model~[a-z0-9][a-z0-9_.-]*/layer~\d+/alpha~[0-9.e+-]+/allocation~[a-z0-9-]+",
    run=r"model~[a-z0-9][a-z0-9_.-]*/(plain|layer~\d+/alpha~[0-9.e+-]+/allocation~[a-z0-9-]+)",


rule memory_documents:
    input:
        bios=PATHS["bios_train"],
        entities=PATHS["entities"],
        probes=PATHS["probes"],
    output:
        documents=PATHS["memory_documents"],
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
                "clusters",
                "shingle_max_share",
            ],
        ),
    log:
        f"{LOGS}/memory/documents.log",
    conda:
        env("data")
    shell:
        "python -m kcircuits memory documents --settings {params.settings:q} --bios {input.bios} "
        "--entities {input.entities} --probes {input.probes} --out-documents {output.documents} "
        "--out-clusters {output.clusters} --report {output.report} > {log} 2>&1"


rule memory_allocations:
    input:
        documents=PATHS["memory_documents"],
        clusters=PATHS["memory_clusters"],
    output:
        allocations=PATHS["memory_allocations"],
        report=PATHS["memory_allocations_report"],
    params:
        settings=memory_allocation_settings,
    log:
        f"{LOGS}/memory/model~{{model}}/allocations.log",
    conda:
        env("data")
    shell:
        "python -m kcircuits memory allocations --settings {params.settings:q} --documents {input.documents} "
        "--clusters {input.clusters} --out-allocations {output.allocations} --report {output.report} > {log} 2>&1"


# A model of memory.models other than the main study's: the core's base phase (rules/train.smk) with
# that model's settings, in the study's folders. Its conda env is restated: a relative path is read
# from the folder of the file that uses the rule (here), not of the one that defines it.
use rule train_base as memory_base with:
    output:
        model=directory(PATHS["memory_base"]),
    params:
        settings=memory_base_settings,
        scratch=PATHS["memory_base_scratch"],
        tensorboard=PATHS["memory_base_tensorboard"],
    log:
        f"{SEED_LOGS}/memory/model~{{model}}/base.log",
    benchmark:
        f"{SEED_BENCH}/memory/model~{{model}}/base.tsv"
    conda:
        env("train")


rule memory_train:
    input:
        documents=PATHS["memory_documents"],
        allocations=memory_allocations,
        tokenizer=PATHS["tokenizer"],
        start=memory_start,
    output:
        model=directory(PATHS["memory_model"]),
    params:
        settings=memory_settings("run", memory=["epochs", "lr", "module", "gated"], train=list(SHARED_KEYS)),
        scratch=PATHS["memory_scratch"],
        device=job_device("memory"),
        env=untracked(TRAIN_ENV),
    log:
        f"{SEED_LOGS}/memory/documents~{{documents}}/{{run}}/train.log",
    benchmark:
        f"{SEED_BENCH}/memory/documents~{{documents}}/{{run}}/train.tsv"
    threads: job_threads("memory")
    resources:
        **job_resources("memory"),
    conda:
        env("train")
    shell:
        "{params.env} OMP_NUM_THREADS={threads} python -m kcircuits memory train "
        "--settings {params.settings:q} --start {input.start} --documents {input.documents} "
        "--allocations {input.allocations} --tokenizer {input.tokenizer} --scratch {params.scratch:q} "
        "--threads {threads} --device {params.device} --out {output.model:q} > {log:q} 2>&1"


rule memory_measure:
    input:
        documents=PATHS["memory_documents"],
        allocations=memory_allocations,
        tokenizer=PATHS["tokenizer"],
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
        env("evaluate")
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
        env("figures")
    shell:
        "python -m kcircuits memory summary --settings {params.settings:q} {params.inputs} {params.outputs} > {log} 2>&1"


STUDY_TARGETS.extend(rules.memory_summary.output if MEMORY["enabled"] else [])
STUDY_LOCAL_RULES.extend(["memory_documents", "memory_summary"])
FINDING_INPUTS.update({"memory": PATHS["memory_json"]} if MEMORY["enabled"] else {})
