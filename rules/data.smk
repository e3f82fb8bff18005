# Synthetic-knowledge data: (an imported world ->) entities -> biographies -> probes / QA, and circuit pairs.

# world.source set: its files are imported into world.out, the folder the config's resources read
# (kcircuits.config.check_world), so a changed source file re-imports and reruns what reads the world.
# The first import precedes the first run: the config is validated against the imported files.
if WORLD_IMPORT:

    rule import_world:
        input:
            WORLD_IMPORT["inputs"],
        output:
            **WORLD_IMPORT["outputs"],
        params:
            settings=narrow_settings("world", world=["paraphrase_share"], circuit_pairs=["tasks"]),
            source=lambda wildcards, input: str(Path(input[0]).parents[1]),  # SOURCE/selection_pool/*.json
            out=lambda wildcards, output: str(Path(output.report).parent),  # OUT/world.json
        log:
            f"{LOGS}/data/import_world.log",
        localrule: True
        conda:
            "../envs/data.yaml"
        shell:
            "python -m kcircuits import-world --settings {params.settings:q} {params.source:q} {params.out:q} "
            "> {log} 2>&1"


# resources.entities set: those entities are used as given (--imported), else they are generated.
rule entities:
    input:
        pools=RESOURCE_FILES["pools"],
        imported=RESOURCE_FILES["entities"],
    output:
        table=PATHS["entities"],
        report=PATHS["entities_report"],
    params:
        settings=settings("entities"),
        pools=parent_dir("pools"),
        imported=lambda wildcards, input: " ".join(f"--imported {shlex.quote(p)}" for p in input.imported),
    log:
        f"{LOGS}/data/entities.log",
    conda:
        "../envs/data.yaml"
    shell:
        "python -m kcircuits entities --settings {params.settings:q} --pools {params.pools:q} {params.imported} "
        "--out {output.table} --report {output.report} > {log} 2>&1"


rule biographies:
    input:
        entities=PATHS["entities"],
        templates=RESOURCE_FILES["templates"],
    output:
        bios_train=PATHS["bios_train"],
        bios_val=PATHS["bios_val"],
        base_train=PATHS["base_train"],
        base_val=PATHS["base_val"],
        report=PATHS["biographies_report"],
    params:
        settings=settings("biographies"),
        templates=parent_dir("templates"),
        out_dir=lambda wildcards, output: str(Path(output.bios_train).parent),
    log:
        f"{LOGS}/data/biographies.log",
    benchmark:
        f"{BENCH}/data/biographies.tsv"
    resources:
        mem_mb=2000,
    conda:
        "../envs/data.yaml"
    shell:
        "python -m kcircuits biographies --settings {params.settings:q} --templates {params.templates:q} "
        "--entities {input.entities} --out-dir {params.out_dir} --report {output.report} > {log} 2>&1"


rule probes:
    input:
        entities=PATHS["entities"],
        templates=RESOURCE_FILES["templates"],
    output:
        probes=PATHS["probes"],
        paraphrase=PATHS["paraphrase"],
        report=PATHS["probes_report"],
    params:
        settings=settings("probes"),
        templates=parent_dir("templates"),
    log:
        f"{LOGS}/data/probes.log",
    conda:
        "../envs/data.yaml"
    shell:
        "python -m kcircuits probes --settings {params.settings:q} --templates {params.templates:q} "
        "--entities {input.entities} --out {output.probes} --out-paraphrase {output.paraphrase} "
        "--report {output.report} > {log} 2>&1"


rule qa:
    input:
        entities=PATHS["entities"],
        probes=PATHS["probes"],
        pools=RESOURCE_FILES["pools"],
        templates=RESOURCE_FILES["templates"],
    output:
        mc=PATHS["qa_mc"],
        tf=PATHS["qa_tf"],
        report=PATHS["qa_report"],
    params:
        settings=settings("qa"),
        pools=parent_dir("pools"),
        templates=parent_dir("templates"),
    log:
        f"{LOGS}/data/qa.log",
    conda:
        "../envs/data.yaml"
    shell:
        "python -m kcircuits qa --settings {params.settings:q} --pools {params.pools:q} "
        "--templates {params.templates:q} --entities {input.entities} --probes {input.probes} "
        "--out-mc {output.mc} --out-tf {output.tf} --report {output.report} > {log} 2>&1"


rule circuit_pairs:
    input:
        entities=PATHS["entities"],
        probes=PATHS["probes"],
        tokenizer=PATHS["tokenizer"],
    output:
        pairs=PATHS["circuit_pairs"],
        report=PATHS["circuit_pairs_report"],
    params:
        settings=settings("circuit_pairs"),
    log:
        f"{LOGS}/data/circuit_pairs.log",
    conda:
        "../envs/data.yaml"
    shell:
        "python -m kcircuits circuit-pairs --settings {params.settings:q} --entities {input.entities} "
        "--probes {input.probes} --tokenizer {input.tokenizer} --out {output.pairs} "
        "--report {output.report} > {log} 2>&1"


DATA_TARGETS = [
    *rules.biographies.output,
    *rules.probes.output,
    *rules.qa.output,
    *rules.circuit_pairs.output,
]
