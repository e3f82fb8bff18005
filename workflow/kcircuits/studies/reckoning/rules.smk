# RECKONING (kcircuits.studies.reckoning): a learned inner loop writes a context's facts into the
# weights; theta' answers without them in context. Every method starts from the main study's
# RECKONING_START checkpoint and gets the same contexts and budget.
#
#   data:     companies.parquet (the companies' headquarters, the two-hop questions' second hop),
#             reckoning/{entities,contexts,questions}.parquet
#   per seed: reckoning/{method}/model/ (safetensors + learned rates), answers / recitation / timing;
#             encoded methods also circuits / circuit_hits / circuit_compare / circuit_layers (theta')
#   summary:  analysis/reckoning/{accuracy,steps,recitation,timing,circuit_*}.parquet + summary.json
wildcard_constraints:
    method="|".join(RECKONING["methods"]) or "none",


# The companies' headquarters: the second hop of the two-hop questions (a data-stage table).
rule companies:
    input:
        pools=RESOURCE_FILES["pools"],
    output:
        table=PATHS["companies"],
    params:
        settings=settings("companies"),
        pools=parent_dir("pools"),
    log:
        f"{LOGS}/data/companies.log",
    conda:
        env("data")
    shell:
        "python -m kcircuits companies --settings {params.settings:q} --pools {params.pools:q} "
        "--out {output.table} > {log} 2>&1"


rule reckoning_tasks:
    input:
        entities=PATHS["entities"],
        companies=PATHS["companies"],
        pools=RESOURCE_FILES["pools"],
        templates=RESOURCE_FILES["templates"],
    output:
        entities=PATHS["reckoning_entities"],
        contexts=PATHS["reckoning_contexts"],
        questions=PATHS["reckoning_questions"],
        report=PATHS["reckoning_report"],
    params:
        settings=reckoning_settings(
            replicate=False,
            reckoning=["entities", "attributes", "distractors", "questions", "headquarters_fact"],
            entities=["birth_years"],
        ),
        pools=parent_dir("pools"),
        templates=parent_dir("templates"),
    log:
        f"{LOGS}/reckoning/tasks.log",
    conda:
        env("data")
    shell:
        "python -m kcircuits reckoning tasks --settings {params.settings:q} --pools {params.pools:q} "
        "--templates {params.templates:q} --entities {input.entities} --companies {input.companies} "
        "--out-entities {output.entities} --out-contexts {output.contexts} "
        "--out-questions {output.questions} --report {output.report} > {log} 2>&1"


RECKONING_TASK_INPUTS = dict(
    contexts=PATHS["reckoning_contexts"],
    questions=PATHS["reckoning_questions"],
    tokenizer=PATHS["tokenizer"],
)


rule reckoning_train:
    input:
        **RECKONING_TASK_INPUTS,
        start=path("checkpoint", ckpt=RECKONING_START),
    output:
        model=directory(PATHS["reckoning_model"]),
    params:
        device=job_device("reckoning"),
        settings=reckoning_settings(reckoning=["inner", "outer"]),
        env=untracked(TRAIN_ENV),
    log:
        f"{SEED_LOGS}/reckoning/{{method}}/train.log",
    benchmark:
        f"{SEED_BENCH}/reckoning/{{method}}/train.tsv"
    threads: job_threads("reckoning")
    resources:
        **job_resources("reckoning"),
    conda:
        env("train")
    shell:
        "{params.env} OMP_NUM_THREADS={threads} python -m kcircuits reckoning train "
        "--settings {params.settings:q} --method {wildcards.method} --start {input.start} "
        "--contexts {input.contexts} --questions {input.questions} --tokenizer {input.tokenizer} "
        "--threads {threads} --device {params.device} --out {output.model} > {log} 2>&1"


rule reckoning_evaluate:
    input:
        **RECKONING_TASK_INPUTS,
        model=PATHS["reckoning_model"],
    output:
        answers=PATHS["reckoning_answers"],
        recitation=PATHS["reckoning_recitation"],
        timing=PATHS["reckoning_timing"],
    params:
        device=job_device("reckoning"),
        settings=reckoning_settings(reckoning=["inner", "evaluate"]),
    log:
        f"{SEED_LOGS}/reckoning/{{method}}/evaluate.log",
    benchmark:
        f"{SEED_BENCH}/reckoning/{{method}}/evaluate.tsv"
    threads: job_threads("reckoning")
    resources:
        **job_resources("reckoning"),
    conda:
        env("evaluate")
    shell:
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits reckoning evaluate "
        "--settings {params.settings:q} --method {wildcards.method} --model {input.model} "
        "--contexts {input.contexts} --questions {input.questions} --tokenizer {input.tokenizer} "
        "--threads {threads} --device {params.device} --out-answers {output.answers} "
        "--out-recitation {output.recitation} --out-timing {output.timing} > {log} 2>&1"


rule reckoning_circuits:
    input:
        **RECKONING_TASK_INPUTS,
        model=PATHS["reckoning_model"],
        continual=path("circuits", ckpt=RECKONING_START),
        continual_hits=path("hits", ckpt=RECKONING_START),
    output:
        circuits=PATHS["reckoning_circuits"],
        hits=PATHS["reckoning_circuit_hits"],
        compare=PATHS["reckoning_circuit_compare"],
        layers=PATHS["reckoning_circuit_layers"],
    params:
        device=job_device("reckoning"),
        settings=reckoning_settings(
            reckoning=["inner", "attributes", "circuits"], circuits=None, circuit_pairs=["tasks"]
        ),
    log:
        f"{SEED_LOGS}/reckoning/{{method}}/circuits.log",
    benchmark:
        f"{SEED_BENCH}/reckoning/{{method}}/circuits.tsv"
    threads: job_threads("reckoning")
    resources:
        **job_resources("reckoning"),
    conda:
        env("evaluate")
    shell:
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits reckoning circuits "
        "--settings {params.settings:q} --method {wildcards.method} --model {input.model} "
        "--contexts {input.contexts} --questions {input.questions} --tokenizer {input.tokenizer} "
        "--continual {input.continual} --continual-hits {input.continual_hits} --threads {threads} "
        "--device {params.device} --out-circuits {output.circuits} --out-hits {output.hits} "
        "--out-compare {output.compare} --out-layers {output.layers} > {log} 2>&1"


rule reckoning_summary:
    input:
        answers=across_methods("reckoning_answers"),
        recitation=across_methods("reckoning_recitation"),
        timing=across_methods("reckoning_timing"),
        circuit_hits=across_methods("reckoning_circuit_hits", encoded=True),
        circuit_compare=across_methods("reckoning_circuit_compare", encoded=True),
        circuit_layers=across_methods("reckoning_circuit_layers", encoded=True),
    output:
        accuracy=PATHS["reckoning_summary_accuracy"],
        steps=PATHS["reckoning_summary_steps"],
        recitation=PATHS["reckoning_summary_recitation"],
        timing=PATHS["reckoning_summary_timing"],
        circuit_hits=PATHS["reckoning_summary_circuit_hits"],
        circuit_compare=PATHS["reckoning_summary_circuit_compare"],
        circuit_layers=PATHS["reckoning_summary_circuit_layers"],
        json=PATHS["reckoning_json"],
    params:
        settings=reckoning_settings(
            replicate=False,
            reckoning=["inner", "methods", "distractors"],
            analysis=["topology"],
            circuits=["edge_budgets", "hit_k"],
        ),
        inputs=input_options,
        outputs=output_options,
    log:
        f"{LOGS}/reckoning/summary.log",
    conda:
        env("figures")
    shell:
        "python -m kcircuits reckoning summary --settings {params.settings:q} {params.inputs} {params.outputs} "
        "> {log} 2>&1"


STUDY_TARGETS.extend(rules.reckoning_summary.output if RECKONING["enabled"] else [])
STUDY_LOCAL_RULES.extend(["companies", "reckoning_summary"])
FINDING_INPUTS.update({"reckoning": PATHS["reckoning_json"]} if RECKONING["enabled"] else {})
