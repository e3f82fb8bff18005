# Specialised heads and the logit lens: one job per (seed, checkpoint) -- one forward pass per batch of
# the circuit prompts -- then a table per seed across checkpoints and figures across seeds.
#
# Outputs:
#   results/{run}/seed-{seed}/circuits/{ckpt}/heads.parquet        cell x head: subject / relation parts
#                                                                  of its direct target logit, ratio, role
#   results/{run}/seed-{seed}/circuits/{ckpt}/head_roles.parquet   circuit (cell x budget) x role: count,
#                                                                  n_nodes, proportion
#   results/{run}/seed-{seed}/circuits/{ckpt}/head_layers.parquet  circuit x layer x role: count
#   results/{run}/seed-{seed}/circuits/{ckpt}/logit_lens.parquet   cell x layer: rank, prob, rank at subject
#   results/{run}/seed-{seed}/analysis/{heads,head_roles,head_layers,logit_lens}.parquet  joined per seed
#   results/{run}/figures/{head_roles,head_layers,logit_lens}.{pdf,png}
# CKPTS, CIRCUITS (with {seed}), CIRCUIT_CKPT, CHECKPOINTS, SEEDS, FIGURES and figure_outputs come from
# earlier rule files.

COMPONENTS = f"{SEED_DIR}/analysis"  # per training replicate (shared with the topology tables)
# table -> the CLI's name for it (kcircuits.analysis.components_stage.TABLES)
COMPONENT_TABLES = {"heads": "heads", "head_roles": "roles", "head_layers": "layers", "logit_lens": "lens"}


def components_settings():
    """Only the settings the components stage reads: a topology or Hit@k setting does not rerun
    every checkpoint's job (circuits.parquet, an input, already reruns it when circuits change)."""
    s = stage_settings(config, "analysis")
    c = s["circuits"]
    text = json.dumps({"seed": s["seed"], "analysis": {"heads": s["analysis"]["heads"]},
                       "circuit_pairs": {"tasks": s["circuit_pairs"]["tasks"]},
                       "circuits": {k: c[k] for k in ("batch_size", "max_pairs", "edge_budgets")}}, sort_keys=True)
    return lambda wildcards: text


rule components_measure:
    input:
        checkpoint=f"{CKPTS}/{{ckpt}}",
        pairs=f"{DATA}/circuit_pairs.parquet",
        tokenizer=f"{DATA}/tokenizer",
        circuits=f"{CIRCUITS}/{{ckpt}}/circuits.parquet",
    output:
        **{name: f"{CIRCUITS}/{{ckpt}}/{table}.parquet" for table, name in COMPONENT_TABLES.items()},
    wildcard_constraints:
        ckpt=CIRCUIT_CKPT,
    params:
        settings=components_settings(),
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
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} {KC} components measure --settings {params.settings:q} "
        "--checkpoint {input.checkpoint} --pairs {input.pairs} --tokenizer {input.tokenizer} "
        "--circuits {input.circuits} --threads {threads} --out-heads {output.heads} --out-roles {output.roles} "
        "--out-layers {output.layers} --out-lens {output.lens} > {log} 2>&1"


rule components_summary:
    input:
        **{name: expand(f"{CIRCUITS}/{{ckpt}}/{table}.parquet", ckpt=CHECKPOINTS, allow_missing=True)
           for table, name in COMPONENT_TABLES.items()},
    output:
        **{name: f"{COMPONENTS}/{table}.parquet" for table, name in COMPONENT_TABLES.items()},
    params:
        settings=components_settings(),
    log:
        f"{SEED_LOGS}/components/summary.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "{KC} components summary --settings {params.settings:q} --heads {input.heads} --roles {input.roles} "
        "--layers {input.layers} --lens {input.lens} --out-heads {output.heads} --out-roles {output.roles} "
        "--out-layers {output.layers} --out-lens {output.lens} > {log} 2>&1"


COMPONENT_FIGURE_SHELL = (
    "MPLBACKEND=Agg {KC} components figure --kind {params.kind} --settings {params.settings:q} "
    "--tables {input.tables} --entities {input.entities} --pdf {output.pdf} --png {output.png} > {log} 2>&1"
)


def component_figure_outputs(name, label):
    return figure_outputs(name, f"{name}.rst", label, category="Specialised heads and logit lens")


rule figure_head_roles:
    input:
        tables=expand(rules.components_summary.output.roles, seed=SEEDS),
        entities=f"{DATA}/entities.parquet",
    output:
        **component_figure_outputs("head_roles", "mover / relation / mixture heads in circuits"),
    params:
        kind="roles",
        settings=components_settings(),
    log:
        f"{LOGS}/figures/head_roles.log",
    conda:
        "../envs/figures.yaml"
    shell:
        COMPONENT_FIGURE_SHELL


rule figure_head_layers:
    input:
        tables=expand(rules.components_summary.output.layers, seed=SEEDS),
        entities=f"{DATA}/entities.parquet",
    output:
        **component_figure_outputs("head_layers", "in-circuit heads by layer and role"),
    params:
        kind="layers",
        settings=components_settings(),
    log:
        f"{LOGS}/figures/head_layers.log",
    conda:
        "../envs/figures.yaml"
    shell:
        COMPONENT_FIGURE_SHELL


rule figure_logit_lens:
    input:
        tables=expand(rules.components_summary.output.lens, seed=SEEDS),
        entities=f"{DATA}/entities.parquet",
    output:
        **component_figure_outputs("logit_lens", "logit-lens rank by layer"),
    params:
        kind="lens",
        settings=components_settings(),
    log:
        f"{LOGS}/figures/logit_lens.log",
    conda:
        "../envs/figures.yaml"
    shell:
        COMPONENT_FIGURE_SHELL


COMPONENT_TARGETS = [
    *expand(list(rules.components_summary.output), seed=SEEDS),
    *rules.figure_head_roles.output,
    *rules.figure_head_layers.output,
    *rules.figure_logit_lens.output,
]
