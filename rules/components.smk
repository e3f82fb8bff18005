# Specialised heads and the logit lens: one job per (seed, checkpoint) -- one forward pass per batch of
# the circuit prompts -- then a table per seed across checkpoints (figures: rules/figures.smk).
#
# Outputs:
#   results/{run}/seed-{seed}/circuits/{ckpt}/heads.parquet        cell x head: subject / relation parts
#                                                                  of its direct target logit, ratio, role
#   results/{run}/seed-{seed}/circuits/{ckpt}/head_roles.parquet   circuit (cell x budget) x role: count,
#                                                                  n_nodes, proportion
#   results/{run}/seed-{seed}/circuits/{ckpt}/head_layers.parquet  circuit x layer x role: count
#   results/{run}/seed-{seed}/circuits/{ckpt}/logit_lens.parquet   cell x layer: rank, prob, rank at subject
#   results/{run}/seed-{seed}/analysis/{heads,head_roles,head_layers,logit_lens}.parquet  joined per seed


rule components_measure:
    input:
        checkpoint=PATHS["checkpoint"],
        pairs=PATHS["circuit_pairs"],
        tokenizer=PATHS["tokenizer"],
        circuits=PATHS["circuits"],
    output:
        heads=PATHS["heads"],
        roles=PATHS["head_roles"],
        layers=PATHS["head_layers"],
        lens=PATHS["logit_lens"],
    params:
        device=job_device("analysis"),
        settings=COMPONENTS_SETTINGS,
    log:
        f"{SEED_LOGS}/components/{{ckpt}}.log",
    benchmark:
        f"{SEED_BENCH}/components/{{ckpt}}.tsv"
    threads: job_threads("analysis")  # config compute.analysis
    resources:
        **job_resources("analysis"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits components measure "
        "--settings {params.settings:q} --checkpoint {input.checkpoint} --pairs {input.pairs} "
        "--tokenizer {input.tokenizer} --circuits {input.circuits} --threads {threads} --device {params.device} "
        "--out-heads {output.heads} --out-roles {output.roles} --out-layers {output.layers} "
        "--out-lens {output.lens} > {log} 2>&1"


rule components_summary:
    input:
        heads=across_checkpoints("heads"),
        roles=across_checkpoints("head_roles"),
        layers=across_checkpoints("head_layers"),
        lens=across_checkpoints("logit_lens"),
    output:
        heads=PATHS["seed_heads"],
        roles=PATHS["seed_head_roles"],
        layers=PATHS["seed_head_layers"],
        lens=PATHS["seed_logit_lens"],
    params:
        settings=COMPONENTS_SETTINGS,
    log:
        f"{SEED_LOGS}/components/summary.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "python -m kcircuits components summary --settings {params.settings:q} --heads {input.heads} "
        "--roles {input.roles} --layers {input.layers} --lens {input.lens} --out-heads {output.heads} "
        "--out-roles {output.roles} --out-layers {output.layers} --out-lens {output.lens} > {log} 2>&1"


COMPONENT_TARGETS = expand([PATHS[f"seed_{name}"] for name in COMPONENT_TABLES], seed=SEEDS)
