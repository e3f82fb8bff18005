# Tokenizer: byte-level BPE trained on the training corpora, or a local pretrained one.


rule tokenizer:
    input:
        corpora=[f"{DATA}/bios_train.jsonl", f"{DATA}/base_train.jsonl"],
        pools=RESOURCE_FILES["pools"],
    output:
        tokenizer=directory(f"{DATA}/tokenizer"),
        report=f"{DATA}/tokenizer_report.json",
    params:
        settings=settings("tokenizer"),
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
        "{KC} tokenizer --settings {params.settings:q} --pools {POOLS_DIR:q} "
        "--corpus {input.corpora} --out-dir {output.tokenizer} --report {output.report} > {log} 2>&1"
