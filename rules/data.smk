# Synthetic-knowledge data: entities -> biographies -> probes / QA, and circuit pairs.


rule entities:
    input:
        pools=RESOURCE_FILES["pools"],
    output:
        table=f"{DATA}/entities.parquet",
        report=f"{DATA}/entities_report.json",
    params:
        settings=settings("entities"),
    log:
        f"{LOGS}/data/entities.log",
    conda:
        "../envs/data.yaml"
    shell:
        "{KC} entities --settings {params.settings:q} --pools {POOLS_DIR:q} "
        "--out {output.table} --report {output.report} > {log} 2>&1"


rule biographies:
    input:
        entities=rules.entities.output.table,
        templates=RESOURCE_FILES["templates"],
    output:
        bios_train=f"{DATA}/bios_train.jsonl",
        bios_val=f"{DATA}/bios_val.jsonl",
        base_train=f"{DATA}/base_train.jsonl",
        base_val=f"{DATA}/base_val.jsonl",
        report=f"{DATA}/biographies_report.json",
    params:
        settings=settings("biographies"),
    log:
        f"{LOGS}/data/biographies.log",
    benchmark:
        f"{BENCH}/data/biographies.tsv"
    resources:
        mem_mb=2000,
    conda:
        "../envs/data.yaml"
    shell:
        "{KC} biographies --settings {params.settings:q} --templates {TEMPLATES_DIR:q} "
        "--entities {input.entities} --out-dir {DATA} --report {output.report} > {log} 2>&1"


rule probes:
    input:
        entities=rules.entities.output.table,
        templates=RESOURCE_FILES["templates"],
    output:
        probes=f"{DATA}/probes.parquet",
        paraphrase=f"{DATA}/probes_paraphrase.parquet",
        report=f"{DATA}/probes_report.json",
    params:
        settings=settings("probes"),
    log:
        f"{LOGS}/data/probes.log",
    conda:
        "../envs/data.yaml"
    shell:
        "{KC} probes --settings {params.settings:q} --templates {TEMPLATES_DIR:q} "
        "--entities {input.entities} --out {output.probes} --out-paraphrase {output.paraphrase} "
        "--report {output.report} > {log} 2>&1"


rule qa:
    input:
        entities=rules.entities.output.table,
        probes=rules.probes.output.probes,
        pools=RESOURCE_FILES["pools"],
        templates=RESOURCE_FILES["templates"],
    output:
        mc=f"{DATA}/qa_multiple_choice.jsonl",
        tf=f"{DATA}/qa_true_false.jsonl",
        report=f"{DATA}/qa_report.json",
    params:
        settings=settings("qa"),
    log:
        f"{LOGS}/data/qa.log",
    conda:
        "../envs/data.yaml"
    shell:
        "{KC} qa --settings {params.settings:q} --pools {POOLS_DIR:q} --templates {TEMPLATES_DIR:q} "
        "--entities {input.entities} --probes {input.probes} --out-mc {output.mc} --out-tf {output.tf} "
        "--report {output.report} > {log} 2>&1"


rule circuit_pairs:
    input:
        entities=rules.entities.output.table,
        probes=rules.probes.output.probes,
        tokenizer=f"{DATA}/tokenizer",
    output:
        pairs=f"{DATA}/circuit_pairs.parquet",
        report=f"{DATA}/circuit_pairs_report.json",
    params:
        settings=settings("circuit_pairs"),
    log:
        f"{LOGS}/data/circuit_pairs.log",
    conda:
        "../envs/data.yaml"
    shell:
        "{KC} circuit-pairs --settings {params.settings:q} --entities {input.entities} "
        "--probes {input.probes} --tokenizer {input.tokenizer} --out {output.pairs} "
        "--report {output.report} > {log} 2>&1"


DATA_TARGETS = [
    *rules.biographies.output,
    *rules.probes.output,
    *rules.qa.output,
    *rules.circuit_pairs.output,
]
