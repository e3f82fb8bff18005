# Tokenizer: byte-level BPE trained on the training corpora, or a local pretrained one.


rule tokenizer:
    input:
        corpora=[PATHS["bios_train"], PATHS["base_train"]],
        pools=RESOURCE_FILES["pools"],
    output:
        tokenizer=directory(PATHS["tokenizer"]),
        report=PATHS["tokenizer_report"],
    params:
        settings=settings("tokenizer"),
        pools=parent_dir("pools"),
    log:
        f"{LOGS}/data/tokenizer.log",
    benchmark:
        f"{BENCH}/data/tokenizer.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/data.yaml"
    shell:
        "TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS={threads} "
        "python -m kcircuits tokenizer --settings {params.settings:q} --pools {params.pools:q} "
        "--corpus {input.corpora} --out-dir {output.tokenizer} --report {output.report} > {log} 2>&1"
