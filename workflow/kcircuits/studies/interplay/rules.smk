# Knowledge interplay (kcircuits.studies.interplay): training order and forgetting with replay.
#
# Both studies are "stream runs": one ordered pass of the project's trainer (kcircuits train-stream)
# over a stream of packed blocks, from a checkpoint of the main study, with model-only checkpoints on
# a dense-early schedule; then one job measures every checkpoint of the run (accuracy and circuits,
# with the main study's machinery), and a summary joins the runs.
#
#   order:      data/order/{sentences,streams}.parquet, data/order/blocks/{branch}.npz
#               (branch = a stream: "random" or "A-B"), seed-{seed}/order/{branch}/, from epoch-000
#   forgetting: data/forgetting/{corpus}.{parquet,jsonl} + facts.parquet (the followed learned facts),
#               seed-{seed}/forgetting/{branch}/
#               (branch = "{corpus}-replay-{share}", blocks.npz its stream), from the last epoch
#   per run:    checkpoints/step-SSSSSS/, accuracy.parquet, circuits.parquet, hits.parquet
#   summaries:  analysis/order/{outcome,curves,overlap}.parquet + summary.json,
#               analysis/forgetting/{recall,circuits}.parquet + summary.json
wildcard_constraints:
    study="order|forgetting",
    branch=r"[a-z0-9_.]+(-[a-z0-9_.]+)*",


rule order_corpus:
    input:
        entities=PATHS["entities"],
        probes=PATHS["probes"],
        tokenizer=PATHS["tokenizer"],
        templates=RESOURCE_FILES["templates"],
    output:
        sentences=PATHS["order_sentences"],
        streams=PATHS["order_streams"],
        blocks=expand(PATHS["order_blocks"], branch=ORDER_STREAMS),
        report=PATHS["order_report"],
    params:
        settings=narrow_settings(
            "interplay", order=["types", "entity_types", "entities", "repeats"], train=["block_size"]
        ),
        templates=parent_dir("templates"),
    log:
        f"{LOGS}/order/corpus.log",
    conda:
        env("train")
    shell:
        "TOKENIZERS_PARALLELISM=false python -m kcircuits interplay order-corpus --settings {params.settings:q} "
        "--templates {params.templates:q} --entities {input.entities} --probes {input.probes} "
        "--tokenizer {input.tokenizer} --out-sentences {output.sentences} --out-streams {output.streams} "
        "--out-blocks {output.blocks} --report {output.report} > {log} 2>&1"


rule forgetting_corpus:
    input:
        entities=PATHS["entities"],
        probes=PATHS["probes"],
        pools=RESOURCE_FILES["pools"],
        templates=RESOURCE_FILES["templates"],
    output:
        facts=PATHS["forgetting_facts"],
        tables=expand(PATHS["forgetting_entities"], corpus=FORGETTING["corpora"]),
        corpora=expand(PATHS["forgetting_corpus"], corpus=FORGETTING["corpora"]),
    params:
        settings=narrow_settings(
            "interplay",
            forgetting=["corpora", "entities", "paragraphs", "entities_per_cell"],
            entities=["birth_years"],
        ),
        pools=parent_dir("pools"),
        templates=parent_dir("templates"),
    log:
        f"{LOGS}/forgetting/corpus.log",
    conda:
        env("data")
    shell:
        "python -m kcircuits interplay forgetting-corpus --settings {params.settings:q} --pools {params.pools:q} "
        "--templates {params.templates:q} --entities {input.entities} --probes {input.probes} "
        "--out-facts {output.facts} --out-tables {output.tables} --out-corpora {output.corpora} > {log} 2>&1"


FORGETTING_MIX_SETTINGS = replicate_settings(
    "interplay",
    forgetting=["corpora", "replay", "steps"],
    train=["block_size", "batch_size", "grad_accum"],
)


rule forgetting_mix:
    input:
        replay=PATHS["continual_blocks"],
        corpora=expand(PATHS["forgetting_corpus"], corpus=FORGETTING["corpora"]),
        tokenizer=PATHS["tokenizer"],
    output:
        blocks=expand(PATHS["forgetting_blocks"], branch=FORGETTING_BRANCHES, allow_missing=True),
    params:
        # the replicate's seed: its replay blocks are its own packing of the continual corpus
        settings=FORGETTING_MIX_SETTINGS,
    log:
        f"{SEED_LOGS}/forgetting/mix.log",
    conda:
        env("train")
    shell:
        "TOKENIZERS_PARALLELISM=false python -m kcircuits interplay forgetting-mix --settings {params.settings:q} "
        "--replay {input.replay} --corpora {input.corpora} --tokenizer {input.tokenizer} "
        "--out-blocks {output.blocks} > {log} 2>&1"


rule train_stream:
    input:
        start=stream_start,
        blocks=stream_blocks,
        tokenizer=PATHS["tokenizer"],
    output:
        checkpoints=directory(PATHS["branch_checkpoints"]),
    params:
        settings=stream_params,
        execution=untracked(STREAM_EXECUTION),
        env=untracked(TRAIN_ENV),
        scratch=PATHS["branch_scratch"],
    log:
        f"{SEED_LOGS}/{{study}}/{{branch}}/train.log",
    benchmark:
        f"{SEED_BENCH}/{{study}}/{{branch}}/train.tsv"
    threads: job_threads("stream")
    resources:
        **job_resources("stream"),
    conda:
        env("train")
    shell:
        "{params.env} OMP_NUM_THREADS={threads} python -m kcircuits train-stream "
        "--settings {params.settings:q} --execution {params.execution:q} --study {wildcards.study} "
        "--start {input.start} --blocks {input.blocks} --tokenizer {input.tokenizer} --scratch {params.scratch} "
        "--threads {threads} --processes {resources.gpu} --out {output.checkpoints} > {log} 2>&1"


# What a run's measurement reads: the circuits settings, the tasks, the evaluation batch and k, and
# its study's max_pairs (editing the other study reruns nothing here).
MEASURE_SETTINGS = {
    study: narrow_settings(
        "interplay",
        **{study: ["max_pairs"]},
        circuits=None,
        circuit_pairs=["tasks"],
        evaluate=["batch_size", "hit_k"],
    )
    for study in STUDY_BRANCHES
}


rule interplay_measure:
    input:
        start=stream_start,
        facts=measure_facts,
        checkpoints=PATHS["branch_checkpoints"],
        probes=PATHS["probes"],
        pairs=PATHS["circuit_pairs"],
        tokenizer=PATHS["tokenizer"],
    output:
        accuracy=PATHS["branch_accuracy"],
        circuits=PATHS["branch_circuits"],
        hits=PATHS["branch_hits"],
    params:
        device=job_device("circuits"),
        settings=lambda wildcards: MEASURE_SETTINGS[wildcards.study](wildcards),
        labels=branch_labels,
    log:
        f"{SEED_LOGS}/{{study}}/{{branch}}/measure.log",
    benchmark:
        f"{SEED_BENCH}/{{study}}/{{branch}}/measure.tsv"
    threads: job_threads("circuits")
    resources:
        **job_resources("circuits"),
    conda:
        env("evaluate")
    shell:
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits interplay measure "
        "--settings {params.settings:q} --labels {params.labels:q} --start {input.start} "
        "--checkpoints {input.checkpoints} --probes {input.probes} --pairs {input.pairs} --facts {input.facts} "
        "--tokenizer {input.tokenizer} --threads {threads} --device {params.device} "
        "--out-accuracy {output.accuracy} --out-circuits {output.circuits} --out-hits {output.hits} > {log} 2>&1"


rule order_summary:
    input:
        accuracy=across_branches("order", "branch_accuracy"),
        circuits=across_branches("order", "branch_circuits"),
        hits=across_branches("order", "branch_hits"),
    output:
        outcome=PATHS["order_outcome"],
        curves=PATHS["order_curves"],
        overlap=PATHS["order_overlap"],
        json=PATHS["order_json"],
    params:
        settings=narrow_settings("interplay", order=["types", "entity_types"], analysis=["topology"]),
    log:
        f"{LOGS}/order/summary.log",
    conda:
        env("figures")
    shell:
        "python -m kcircuits interplay order-summary --settings {params.settings:q} --accuracy {input.accuracy} "
        "--circuits {input.circuits} --hits {input.hits} --out-outcome {output.outcome} "
        "--out-curves {output.curves} --out-overlap {output.overlap} --out-json {output.json} > {log} 2>&1"


rule forgetting_summary:
    input:
        accuracy=across_branches("forgetting", "branch_accuracy"),
        circuits=across_branches("forgetting", "branch_circuits"),
        hits=across_branches("forgetting", "branch_hits"),
    output:
        recall=PATHS["forgetting_recall"],
        circuits=PATHS["forgetting_circuits"],
        json=PATHS["forgetting_json"],
    params:
        settings=narrow_settings("interplay", forgetting=["tolerance"]),
    log:
        f"{LOGS}/forgetting/summary.log",
    conda:
        env("figures")
    shell:
        "python -m kcircuits interplay forgetting-summary --settings {params.settings:q} "
        "--accuracy {input.accuracy} --circuits {input.circuits} --hits {input.hits} "
        "--out-recall {output.recall} --out-circuits {output.circuits} --out-json {output.json} > {log} 2>&1"


STUDY_TARGETS.extend(
    [
        *(rules.order_summary.output if ORDER["enabled"] else []),
        *(rules.forgetting_summary.output if FORGETTING["enabled"] else []),
    ]
)
STUDY_LOCAL_RULES.extend(["order_summary", "forgetting_summary"])
FINDING_INPUTS.update({key: PATHS[f"{key}_json"] for key in ("order", "forgetting") if config[key]["enabled"]})
