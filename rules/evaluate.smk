# Evaluation: knowledge metrics of every checkpoint (one job each), then one table across training.


rule evaluate:
    input:
        checkpoint=PATHS["checkpoint"],
        tokenizer=PATHS["tokenizer"],
        entities=PATHS["entities"],
        probes=PATHS["probes"],
        paraphrase=PATHS["paraphrase"],
        bios_val=PATHS["bios_val"],
        base_val=PATHS["base_val"],
        mc=PATHS["qa_mc"],
        tf=PATHS["qa_tf"],
    output:
        cells=PATHS["eval"],
        entities=PATHS["eval_entities"],
        generations=PATHS["eval_generations"],
    params:
        device=job_device("evaluate"),
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
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits evaluate "
        "--settings {params.settings:q} --checkpoint {input.checkpoint} "
        "--tokenizer {input.tokenizer} --entities {input.entities} --probes {input.probes} "
        "--paraphrase {input.paraphrase} --bios-val {input.bios_val} --base-val {input.base_val} "
        "--mc {input.mc} --tf {input.tf} --threads {threads} --device {params.device} "
        "--out {output.cells} --out-entities {output.entities} --out-generations {output.generations} "
        "> {log} 2>&1"


rule eval_summary:
    input:
        evals=across_checkpoints("eval"),
        entity_evals=across_checkpoints("eval_entities"),
        generation_evals=across_checkpoints("eval_generations"),
    output:
        summary=PATHS["eval_summary"],
        entities=PATHS["eval_summary_entities"],
        generations=PATHS["eval_summary_generations"],
    params:
        settings=settings("evaluate"),
    log:
        f"{SEED_LOGS}/eval/summary.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "python -m kcircuits eval-summary --settings {params.settings:q} --evals {input.evals} "
        "--entity-evals {input.entity_evals} --generation-evals {input.generation_evals} --out {output.summary} "
        "--out-entities {output.entities} --out-generations {output.generations} > {log} 2>&1"


EVAL_TARGETS = [
    *across_seeds("eval_summary"),
    *across_seeds("eval_summary_entities"),
    *across_seeds("eval_summary_generations"),
]
